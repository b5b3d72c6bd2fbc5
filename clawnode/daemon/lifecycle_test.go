package daemon

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// fakeOpenClaw is the health endpoint of an OpenClaw that is healthy when healthy()
// says so, and a Runtime whose restarts are counted.
type fakeOpenClaw struct {
	healthy  func() bool
	restarts int
}

func (f *fakeOpenClaw) Restart(context.Context) error               { f.restarts++; return nil }
func (f *fakeOpenClaw) Logs(context.Context, int) ([]string, error) { return []string{}, nil }
func (f *fakeOpenClaw) Status(context.Context) (string, error)      { return StateRunning, nil }

func (f *fakeOpenClaw) serve(t *testing.T) *HealthChecker {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.healthy() {
			w.Write([]byte(`{"ok":true}`))
			return
		}
		http.Error(w, "config broken", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	return NewHealthChecker(srv.URL+"/health", nil, time.Second, nil)
}

// configHealth is healthy while the config file at path parses and has "ok": true.
func configHealth(path string) func() bool {
	return func() bool {
		b, err := os.ReadFile(path)
		var c struct{ OK bool }
		return err == nil && json.Unmarshal(b, &c) == nil && c.OK
	}
}

func TestConfigApply(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "openclaw.json")
	oc := &fakeOpenClaw{healthy: configHealth(path)}
	lc := NewLifecycle(oc, oc.serve(t), 300*time.Millisecond, 20*time.Millisecond, nil)
	cf, err := NewConfigFile(ConfigFileOptions{Path: path, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	get := func() proto.ConfigGetResult {
		t.Helper()
		g, err := cf.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	if g := get(); g.Version != "" || string(g.Config) != "{}" {
		t.Errorf("Get with no file = %+v, want empty version and {}", g)
	}

	// A good config is written, restarted into and reported with its version.
	v1 := proto.ConfigApplyParams{Config: json.RawMessage(`{"ok":true,"gateway":{"port":18789}}`), Version: "v1"}
	res, err := cf.Apply(ctx, v1, lc)
	if err != nil || res != (proto.ConfigApplyResult{Version: "v1", Healthy: true}) {
		t.Fatalf("Apply v1 = %+v, %v", res, err)
	}
	if g := get(); g.Version != "v1" || string(g.Config) != `{"ok":true,"gateway":{"port":18789}}` {
		t.Errorf("Get = %s %s", g.Version, g.Config)
	}
	os.Chmod(path, 0o640)
	// Applying the same version again changes nothing and does not restart.
	restarts := oc.restarts
	if res, err := cf.Apply(ctx, v1, lc); err != nil || !res.Healthy || oc.restarts != restarts {
		t.Errorf("re-apply = %+v, %v, %d restarts; want healthy, no restart", res, err, oc.restarts-restarts)
	}

	// A config that makes OpenClaw unhealthy is rolled back.
	v2 := proto.ConfigApplyParams{Config: json.RawMessage(`{"ok":false}`), Version: "v2"}
	_, err = cf.Apply(ctx, v2, lc)
	if clawops.ReasonOf(err) != proto.CodeConfigRolledBack || !strings.Contains(err.Error(), `"v1" restored`) {
		t.Fatalf("Apply v2 = %v, want CONFIG_ROLLED_BACK naming v1", err)
	}
	if g := get(); g.Version != "v1" || !strings.Contains(string(g.Config), `"ok":true`) {
		t.Errorf("after rollback Get = %s %s, want v1 back", g.Version, g.Config)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("config mode = %v, want the file's 0640 kept", st.Mode().Perm())
	}

	// A hand edit makes the version unknown.
	os.WriteFile(path, []byte(`{"ok":true,"edited":1}`), 0o640)
	if g := get(); g.Version != "" {
		t.Errorf("version after a hand edit = %q, want empty", g.Version)
	}

	// When even the rollback is unhealthy, a human is needed.
	oc.healthy = func() bool { return false }
	_, err = cf.Apply(ctx, proto.ConfigApplyParams{Config: json.RawMessage(`{"ok":true,"x":2}`), Version: "v3"}, lc)
	if clawops.ReasonOf(err) != proto.CodeRollbackFailed {
		t.Errorf("Apply with OpenClaw down = %v, want ROLLBACK_FAILED", err)
	}
}

func TestConfigValidator(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "openclaw.json")
	os.WriteFile(path, []byte(`{"ok":true}`), 0o600)
	// The validator refuses configs mentioning "forbidden"; it sees the candidate, not the live file.
	script := filepath.Join(dir, "validate")
	os.WriteFile(script, []byte("#!/bin/sh\n! grep -q forbidden \"$OPENCLAW_CONFIG_PATH\" || { echo 'gateway.mode: forbidden value' >&2; exit 1; }\n"), 0o755)
	oc := &fakeOpenClaw{healthy: configHealth(path)}
	lc := NewLifecycle(oc, oc.serve(t), 300*time.Millisecond, 20*time.Millisecond, nil)
	cf, _ := NewConfigFile(ConfigFileOptions{Path: path, StateDir: t.TempDir(), Validate: []string{script}})
	_, err := cf.Apply(context.Background(), proto.ConfigApplyParams{Config: json.RawMessage(`{"ok":true,"mode":"forbidden"}`), Version: "v9"}, lc)
	if clawops.ReasonOf(err) != proto.CodeConfigInvalid || !strings.Contains(err.Error(), "forbidden value") {
		t.Errorf("Apply = %v, want CONFIG_INVALID with the validator's message", err)
	}
	if b, _ := os.ReadFile(path); string(b) != `{"ok":true}` || oc.restarts != 0 {
		t.Errorf("live config = %s after %d restarts, want untouched", b, oc.restarts)
	}
	if _, err := cf.Apply(context.Background(), proto.ConfigApplyParams{Config: json.RawMessage(`{"ok":true,"mode":"fine"}`), Version: "v10"}, lc); err != nil {
		t.Errorf("valid config: %v", err)
	}
	if _, err := NewConfigFile(ConfigFileOptions{Path: "relative.json", StateDir: dir}); err == nil {
		t.Error("relative config path accepted")
	}
}

// upgradeDocker is a fake docker that keeps the running image in a file: `pull` fails for
// images containing "missing", `up` records the image named in the image file, and
// `config --images` prints the compose file's image.
func upgradeDocker(t *testing.T) (argvFile, running string) {
	t.Helper()
	dir := t.TempDir()
	argvFile, running = filepath.Join(dir, "argv"), filepath.Join(dir, "running")
	script := `#!/bin/sh
for a in "$@"; do printf '%s\n' "$a" >> "$FAKE_DOCKER_ARGV"; done
echo -- >> "$FAKE_DOCKER_ARGV"
if [ "$1" = pull ]; then case "$2" in *missing*) echo "manifest unknown" >&2; exit 1;; esac; exit 0; fi
override=""
while [ $# -gt 0 ]; do
  case "$1" in
    -f) [ -n "$prev_f" ] && override="$2"; prev_f=1; shift 2; continue;;
    config) echo "ghcr.io/openclaw/openclaw:2026.9.1"; exit 0;;
    up) sed -n 's/.*image: "\(.*\)"/\1/p' "$override" > "$FAKE_DOCKER_RUNNING"; exit 0;;
  esac
  shift
done
exit 0
`
	os.WriteFile(filepath.Join(dir, "docker"), []byte(script), 0o755)
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_DOCKER_ARGV", argvFile)
	t.Setenv("FAKE_DOCKER_RUNNING", running)
	return argvFile, running
}

func TestUpgrade(t *testing.T) {
	argvFile, running := upgradeDocker(t)
	state := t.TempDir()
	compose := filepath.Join(t.TempDir(), "compose.yml")
	imageFile := filepath.Join(state, "openclaw-image.yml")
	rt, _ := NewDockerRuntimeWith(DockerOptions{ComposeFile: compose, ImageFile: imageFile})
	healthy := func() bool {
		b, err := os.ReadFile(running)
		return err != nil || !strings.Contains(string(b), "broken") // never upgraded: the compose image runs
	}
	oc := &fakeOpenClaw{healthy: healthy}
	lc := NewLifecycle(rt, oc.serve(t), 300*time.Millisecond, 20*time.Millisecond, nil)
	ctx := context.Background()

	res, err := lc.Upgrade(ctx, "ghcr.io/openclaw/openclaw:2026.9.6")
	want := proto.UpgradeResult{Image: "ghcr.io/openclaw/openclaw:2026.9.6", PreviousImage: "ghcr.io/openclaw/openclaw:2026.9.1", Healthy: true}
	if err != nil || res != want {
		t.Fatalf("Upgrade = %+v, %v; want %+v", res, err, want)
	}
	_, err = lc.Upgrade(ctx, "ghcr.io/openclaw/openclaw:2026.9.7-broken")
	if clawops.ReasonOf(err) != proto.CodeUpgradeRolledBack {
		t.Fatalf("broken upgrade = %v, want UPGRADE_ROLLED_BACK", err)
	}
	if b, _ := os.ReadFile(running); strings.TrimSpace(string(b)) != "ghcr.io/openclaw/openclaw:2026.9.6" {
		t.Errorf("running image after rollback = %q, want 2026.9.6", b)
	}
	before, _ := os.ReadFile(argvFile)
	if _, err := lc.Upgrade(ctx, "ghcr.io/openclaw/openclaw:9.9.9-missing"); err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("failed pull = %v, want an error saying nothing changed", err)
	}
	if after, _ := os.ReadFile(argvFile); strings.Count(string(after), "up\n") != strings.Count(string(before), "up\n") {
		t.Error("a failed pull still recreated the container")
	}
	if res, err := lc.Upgrade(ctx, "ghcr.io/openclaw/openclaw:2026.9.6"); err != nil || !res.Healthy || res.PreviousImage != res.Image {
		t.Errorf("upgrade to the running image = %+v, %v; want a healthy no-op", res, err)
	}
	base := []string{"compose", "-f", compose, "-f", imageFile}
	argv := readArgv(t, argvFile)
	for _, want := range [][]string{
		{"compose", "-f", compose, "config", "--images", "openclaw"},
		{"pull", "ghcr.io/openclaw/openclaw:2026.9.6"},
		append(slices.Clone(base), "up", "-d", "--no-deps", "--force-recreate", "openclaw"),
	} {
		if !slices.ContainsFunc(argv, func(a []string) bool { return cmp.Equal(a, want) }) {
			t.Errorf("docker never ran %q; ran %q", want, argv)
		}
	}

	if _, err := NewLifecycle(&fakeOpenClaw{}, nil, 0, 0, nil).Upgrade(ctx, "x:1"); clawops.ReasonOf(err) != proto.CodeNotImplemented {
		t.Errorf("upgrade on a runtime without images = %v, want NOT_IMPLEMENTED", err)
	}
	plain, _ := NewDockerRuntime(compose)
	if _, err := NewLifecycle(plain, nil, 0, 0, nil).Upgrade(ctx, "x:1"); clawops.ReasonOf(err) != proto.CodeNotConfigured {
		t.Errorf("upgrade without an image file = %v, want NOT_CONFIGURED", err)
	}
}

func TestBackup(t *testing.T) {
	ws := t.TempDir()
	os.MkdirAll(filepath.Join(ws, "agents", "main"), 0o700)
	os.WriteFile(filepath.Join(ws, "openclaw.json"), []byte(`{"ok":true}`), 0o600)
	os.WriteFile(filepath.Join(ws, "agents", "main", "SOUL.md"), []byte("be kind\n"), 0o644)
	os.Symlink("/etc/passwd", filepath.Join(ws, "link"))
	ln, err := net.Listen("unix", filepath.Join(ws, "sock"))
	if err == nil {
		defer ln.Close()
	}
	dst := filepath.Join(ws, "backups") // inside the workspace: must not archive itself
	clock := &stepClock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	a, err := NewArchiver(ws, dst, 2, clock)
	if err != nil {
		t.Fatal(err)
	}
	var last proto.BackupResult
	for range 3 {
		if last, err = a.Create(context.Background()); err != nil {
			t.Fatal(err)
		}
		clock.t = clock.t.Add(time.Minute)
	}
	data, err := os.ReadFile(last.Path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != last.SHA256 || int64(len(data)) != last.Size {
		t.Errorf("result %+v does not match the file (%d bytes)", last, len(data))
	}
	if st, _ := os.Stat(last.Path); st.Mode().Perm() != 0o600 {
		t.Errorf("archive mode %v, want 0600", st.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dst); len(entries) != 2 {
		t.Errorf("%d archives kept, want 2", len(entries))
	}
	got := map[string]string{}
	gz, _ := gzip.NewReader(strings.NewReader(string(data)))
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		got[h.Name] = string(body) + h.Linkname
	}
	want := map[string]string{"agents/": "", "agents/main/": "", "agents/main/SOUL.md": "be kind\n",
		"openclaw.json": `{"ok":true}`, "link": "/etc/passwd"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("archive entries (-want +got):\n%s", diff)
	}
	if _, err := NewArchiver("rel", dst, 1, nil); err == nil {
		t.Error("relative workspace accepted")
	}
}

type stepClock struct{ t time.Time }

func (c *stepClock) Now() time.Time { return c.t }

func TestVPSInfo(t *testing.T) {
	proc := t.TempDir()
	os.MkdirAll(filepath.Join(proc, "sys/kernel"), 0o755)
	os.WriteFile(filepath.Join(proc, "sys/kernel/osrelease"), []byte("6.1.0-test\n"), 0o644)
	os.WriteFile(filepath.Join(proc, "meminfo"), []byte("MemTotal: 2048 kB\nMemAvailable: 1024 kB\n"), 0o644)
	os.WriteFile(filepath.Join(proc, "stat"), []byte("cpu 1 2 3 4 5 6 7 8\nbtime 1700000000\n"), 0o644)
	os.WriteFile(filepath.Join(proc, "uptime"), []byte("123.45 200.0\n"), 0o644)
	osr := filepath.Join(t.TempDir(), "os-release")
	os.WriteFile(osr, []byte("NAME=Debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"), 0o644)
	r := &InfoReader{ProcRoot: proc, OSRelease: osr, NodeVersion: "1.2.3", Runtime: "process",
		Interfaces: func() ([]net.Addr, error) {
			return []net.Addr{
				&net.IPNet{IP: net.ParseIP("10.0.0.5"), Mask: net.CIDRMask(24, 32)},
				&net.IPNet{IP: net.ParseIP("100.101.102.103"), Mask: net.CIDRMask(32, 32)},
				&net.IPNet{IP: net.ParseIP("fd7a:115c:a1e0::1"), Mask: net.CIDRMask(128, 128)},
			}, nil
		}}
	got := r.Info(context.Background(), &fakeOpenClaw{})
	if got.Kernel != "6.1.0-test" || got.Distro != "Debian GNU/Linux 12 (bookworm)" || got.MemTotalBytes != 2048*1024 ||
		got.BootTimeMs != 1700000000000 || got.UptimeSec != 123 || got.NodeVersion != "1.2.3" || got.Runtime != "process" ||
		!cmp.Equal(got.TailnetAddrs, []string{"100.101.102.103", "fd7a:115c:a1e0::1"}) || got.CPUs < 1 || got.Hostname == "" {
		t.Errorf("Info = %+v", got)
	}
}
