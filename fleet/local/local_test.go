//go:build unix

package local

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
)

// fakeNode is a stand-in for the gf-clawnode executable: it records its argv, starts a
// child in its process group (so that only a group kill stops it), and waits. With
// IGNORE_TERM set it ignores SIGTERM; with EXIT_NOW set it exits at once.
const fakeNode = `#!/bin/sh
out="$FAKE_OUT/$1-$$"
[ -n "$EXIT_NOW" ] && exit 3
[ -n "$IGNORE_TERM" ] && trap '' TERM
env > "$out.env"
printf '%s\n' "$@" > "$out.tmp" && mv "$out.tmp" "$out.args"
sleep 300 &
echo $! > "$out.tmp2" && mv "$out.tmp2" "$out.child"
echo "started $1"
wait
`

type rig struct {
	p    *Provider
	out  string // where the fake node records
	bin  string
	opts Options
}

func newRig(t *testing.T, mutate func(*Options)) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{out: filepath.Join(dir, "out"), bin: filepath.Join(dir, "gf-clawnode")}
	if err := os.Mkdir(r.out, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.bin, []byte(fakeNode), 0o700); err != nil {
		t.Fatal(err)
	}
	r.opts = Options{NodeBinary: r.bin, StateDir: filepath.Join(dir, "state"),
		Env: []string{"FAKE_OUT=" + r.out}, StopGrace: 2 * time.Second}
	if mutate != nil {
		mutate(&r.opts)
	}
	p, err := New(r.opts)
	if err != nil {
		t.Fatal(err)
	}
	r.p = p
	t.Cleanup(func() { p.Close() })
	return r
}

func spec(name string) fleet.ServerSpec {
	return fleet.ServerSpec{Name: name, Region: "local", Size: "standard",
		Labels: map[string]string{"clawops.instance": name},
		Bootstrap: fleet.Bootstrap{Instance: clawops.InstanceID(name), GatewayURL: "ws://127.0.0.1:9/v1/nodes/ws",
			GatewayKey: "Z2F0ZXdheS1rZXk", JoinToken: "secret-join-token"}}
}

// started is one process the fake node recorded.
type started struct {
	args  []string
	pid   int
	child int
}

// waitStarted polls until n processes have recorded their argv and child, or fails.
func (r *rig) waitStarted(t *testing.T, n int) map[string]started {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := map[string]started{}
		files, _ := filepath.Glob(filepath.Join(r.out, "*.args"))
		for _, f := range files {
			base := strings.TrimSuffix(f, ".args")
			child, err := os.ReadFile(base + ".child")
			if err != nil {
				continue
			}
			args, _ := os.ReadFile(f)
			kind, pidS, _ := strings.Cut(filepath.Base(base), "-")
			pid, _ := strconv.Atoi(pidS)
			cpid, _ := strconv.Atoi(strings.TrimSpace(string(child)))
			got[kind] = started{args: strings.Split(strings.TrimSuffix(string(args), "\n"), "\n"), pid: pid, child: cpid}
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes started: got %d, want %d", len(got), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func waitGone(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still alive", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

var portRE = regexp.MustCompile(`^http://127\.0\.0\.1:(\d+)/health$`)

func TestProcessRuntime(t *testing.T) {
	t.Setenv("CLAWOPS_TEST_SECRET", "xoxb-must-not-leak")
	r := newRig(t, nil)
	ctx := context.Background()
	srv, err := r.p.Create(ctx, spec("demo1-pri"))
	if err != nil {
		t.Fatal(err)
	}
	if srv.ProviderID != "local-demo1-pri" || srv.Status != "running" || srv.Labels["clawops.instance"] != "demo1-pri" {
		t.Errorf("server: got %+v", srv)
	}
	got := r.waitStarted(t, 1)
	node := got["run"]
	m := portRE.FindStringSubmatch(argAfter(node.args, "--health-url"))
	if m == nil {
		t.Fatalf("--health-url: got %q", argAfter(node.args, "--health-url"))
	}
	dir := filepath.Join(r.opts.StateDir, "demo1-pri")
	want := []string{"run",
		"--gateway", "ws://127.0.0.1:9/v1/nodes/ws",
		"--gateway-key", "Z2F0ZXdheS1rZXk",
		"--join-token-file", filepath.Join(dir, "join-token"),
		"--state-dir", filepath.Join(dir, "node"),
		"--instance", "demo1-pri",
		"--health-url", "http://127.0.0.1:" + m[1] + "/health",
		"--runtime", "process",
		"--openclaw-config", filepath.Join(dir, "openclaw.json"),
		"--workspace-dir", filepath.Join(dir, "workspace"),
		"--openclaw-cmd", r.bin + " standin --listen 127.0.0.1:" + m[1],
	}
	if !slices.Equal(node.args, want) {
		t.Errorf("argv:\n got %q\nwant %q", node.args, want)
	}
	if slices.Contains(node.args, "secret-join-token") {
		t.Error("join token appears on the command line")
	}
	envFiles, _ := filepath.Glob(filepath.Join(r.out, "run-*.env"))
	if len(envFiles) != 1 {
		t.Fatalf("env files: got %v, want one", envFiles)
	}
	env, _ := os.ReadFile(envFiles[0])
	if strings.Contains(string(env), "xoxb-must-not-leak") || !strings.Contains(string(env), "FAKE_OUT=") {
		t.Errorf("node environment: got %q, want FAKE_OUT and no gateway secrets", env)
	}
	marker := filepath.Join(dir, "node", "device.key")
	if err := os.WriteFile(marker, []byte("old key"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "join-token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("join token file: %v mode %v, want 0600", err, fi)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "join-token")); string(b) != "secret-join-token" {
		t.Errorf("join token file: got %q", b)
	}
	if _, err := r.p.Create(ctx, spec("demo1-pri")); clawops.ReasonOf(err) != fleet.ReasonProviderInvalid {
		t.Errorf("duplicate create: got %v, want %s", err, fleet.ReasonProviderInvalid)
	}
	if err := r.p.Resize(ctx, srv.ProviderID, "large"); err != nil {
		t.Fatal(err)
	}
	if g, err := r.p.Get(ctx, srv.ProviderID); err != nil || g.Size != "large" || g.Status != "running" {
		t.Errorf("Get: got %+v, %v, want size large, running", g, err)
	}
	if l, _ := r.p.List(ctx); len(l) != 1 {
		t.Errorf("List: got %d servers, want 1", len(l))
	}

	if err := r.p.Delete(ctx, srv.ProviderID); err != nil {
		t.Fatal(err)
	}
	waitGone(t, node.pid, node.child)
	if _, err := os.Stat(filepath.Join(dir, "join-token")); !os.IsNotExist(err) {
		t.Errorf("join token file after delete: got %v, want gone", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "node.log")); !strings.Contains(string(b), "started run") {
		t.Errorf("node.log: got %q, want the node's output", b)
	}
	if _, err := r.p.Get(ctx, srv.ProviderID); clawops.ReasonOf(err) != fleet.ReasonProviderNotFound {
		t.Errorf("Get after delete: got %v, want %s", err, fleet.ReasonProviderNotFound)
	}
	if err := r.p.Delete(ctx, srv.ProviderID); err != nil {
		t.Errorf("second delete: got %v, want nil", err)
	}
	// The same name again starts from a clean node state, as a fresh server would.
	if _, err := r.p.Create(ctx, spec("demo1-pri")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("old node state after re-create: got %v, want gone", err)
	}
}

func argAfter(args []string, flag string) string {
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		return ""
	}
	return args[i+1]
}

func TestDockerRuntimeAndClose(t *testing.T) {
	compose := filepath.Join(t.TempDir(), "compose")
	r := newRig(t, func(o *Options) { o.Runtime = RuntimeDocker; o.ComposeDir = compose })
	ctx := context.Background()
	sp := spec("demo2-sby")
	sp.Bootstrap.OpenClawImage = "ghcr.io/openclaw/openclaw:2026.11.1"
	if _, err := r.p.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	got := r.waitStarted(t, 2)
	standin, node := got["standin"], got["run"]
	port := portRE.FindStringSubmatch(argAfter(node.args, "--health-url"))
	if port == nil {
		t.Fatalf("--health-url: got %q", argAfter(node.args, "--health-url"))
	}
	if want := []string{"standin", "--listen", "127.0.0.1:" + port[1]}; !slices.Equal(standin.args, want) {
		t.Errorf("standin argv: got %q, want %q", standin.args, want)
	}
	file := filepath.Join(compose, "demo2-sby", "compose.yml")
	if argAfter(node.args, "--runtime") != "docker" || argAfter(node.args, "--compose-file") != file {
		t.Errorf("node argv: got %q, want --runtime docker --compose-file %s", node.args, file)
	}
	if slices.Contains(node.args, "--openclaw-cmd") {
		t.Errorf("node argv has --openclaw-cmd for the docker runtime: %q", node.args)
	}
	if b, err := os.ReadFile(file); err != nil || !strings.Contains(string(b), "ghcr.io/openclaw/openclaw:2026.11.1") {
		t.Errorf("compose file: got %q, %v", b, err)
	}
	if err := r.p.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, standin.pid, standin.child, node.pid, node.child)
	if _, err := r.p.Create(ctx, spec("demo3-pri")); clawops.ReasonOf(err) != fleet.ReasonProviderUnavailable {
		t.Errorf("create after close: got %v, want %s", err, fleet.ReasonProviderUnavailable)
	}
}

func TestDeleteKillsAfterGrace(t *testing.T) {
	r := newRig(t, func(o *Options) {
		o.Env = append(o.Env, "IGNORE_TERM=1")
		o.StopGrace = 100 * time.Millisecond
	})
	ctx := context.Background()
	srv, err := r.p.Create(ctx, spec("stubborn1"))
	if err != nil {
		t.Fatal(err)
	}
	node := r.waitStarted(t, 1)["run"]
	if err := r.p.Delete(ctx, srv.ProviderID); err != nil {
		t.Fatal(err)
	}
	waitGone(t, node.pid, node.child)
}

func TestExitedStatus(t *testing.T) {
	r := newRig(t, func(o *Options) { o.Env = append(o.Env, "EXIT_NOW=1") })
	ctx := context.Background()
	srv, err := r.p.Create(ctx, spec("quick1"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		g, err := r.p.Get(ctx, srv.ProviderID)
		if err != nil {
			t.Fatal(err)
		}
		if g.Status == "exited" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status: got %q, want exited", g.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCreateBadSpec(t *testing.T) {
	r := newRig(t, nil)
	for _, tc := range []struct {
		name   string
		mutate func(*fleet.ServerSpec)
	}{
		{"bad name", func(s *fleet.ServerSpec) { s.Name = "../x" }},
		{"shell in name", func(s *fleet.ServerSpec) { s.Name = "a;reboot" }},
		{"http gateway", func(s *fleet.ServerSpec) { s.Bootstrap.GatewayURL = "http://127.0.0.1:9/" }},
		{"gateway with space", func(s *fleet.ServerSpec) { s.Bootstrap.GatewayURL = "ws://127.0.0.1:9/ --x" }},
		{"bad key", func(s *fleet.ServerSpec) { s.Bootstrap.GatewayKey = "key with space" }},
		{"no token", func(s *fleet.ServerSpec) { s.Bootstrap.JoinToken = "" }},
		{"token newline", func(s *fleet.ServerSpec) { s.Bootstrap.JoinToken = "a\nb" }},
		{"instance mismatch", func(s *fleet.ServerSpec) { s.Bootstrap.Instance = "other1" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := spec("good1")
			tc.mutate(&sp)
			_, err := r.p.Create(context.Background(), sp)
			if clawops.ReasonOf(err) != fleet.ReasonProviderInvalid || clawops.KindOf(err) != clawops.KindInvalid {
				t.Errorf("got %v, want %s (invalid)", err, fleet.ReasonProviderInvalid)
			}
		})
	}
	if l, _ := r.p.List(context.Background()); len(l) != 0 {
		t.Errorf("servers after bad creates: got %d, want 0", len(l))
	}
	if files, _ := filepath.Glob(filepath.Join(r.out, "*")); len(files) != 0 {
		t.Errorf("processes started: got %v, want none", files)
	}
	if err := r.p.Resize(context.Background(), "local-nope", "large"); clawops.ReasonOf(err) != fleet.ReasonProviderNotFound {
		t.Errorf("Resize unknown: got %v, want %s", err, fleet.ReasonProviderNotFound)
	}
}

func TestNewBadOptions(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{
		{StateDir: dir},
		{NodeBinary: "/opt/my tools/gf-clawnode", StateDir: dir},
		{NodeBinary: "/bin/true"},
		{NodeBinary: "/bin/true", StateDir: dir, Runtime: "podman"},
		{NodeBinary: "/bin/true", StateDir: dir, Runtime: RuntimeDocker},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v): got nil error, want one", o)
		}
	}
}

func TestCrashAndFetchBackup(t *testing.T) {
	r := newRig(t, func(o *Options) { o.HeartbeatInterval = 2 * time.Second })
	ctx := context.Background()
	srv, err := r.p.Create(ctx, spec("crash1"))
	if err != nil {
		t.Fatal(err)
	}
	node := r.waitStarted(t, 1)["run"]
	if got := argAfter(node.args, "--heartbeat"); got != "2s" {
		t.Errorf("--heartbeat: got %q, want 2s", got)
	}
	dir, ok := r.p.Dir(srv.ProviderID)
	if !ok {
		t.Fatal("Dir: server unknown")
	}
	backup := filepath.Join(dir, "node", "backup.tar.gz")
	if err := os.WriteFile(backup, []byte("workspace"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := r.p.FetchBackup(ctx, srv.ProviderID, backup)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "workspace" {
		t.Errorf("backup: got %q", b)
	}
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("x"), 0o600)
	link := filepath.Join(dir, "node", "link")
	os.Symlink(outside, link)
	for _, p := range []string{outside, link, filepath.Join(dir, "node"), dir + "/../../etc/passwd", "/etc/passwd"} {
		if rc, err := r.p.FetchBackup(ctx, srv.ProviderID, p); err == nil {
			rc.Close()
			t.Errorf("FetchBackup(%s): got nil error, want a refusal", p)
		}
	}
	if _, err := r.p.FetchBackup(ctx, "local-nope", backup); clawops.ReasonOf(err) != fleet.ReasonProviderNotFound {
		t.Errorf("unknown server: got %v", err)
	}

	if err := r.p.Crash(srv.ProviderID); err != nil {
		t.Fatal(err)
	}
	waitGone(t, node.pid, node.child)
	if g, err := r.p.Get(ctx, srv.ProviderID); err != nil || g.Status != "exited" {
		t.Errorf("after crash: got %+v, %v, want exited and still listed", g, err)
	}
	if err := r.p.Crash("local-nope"); clawops.ReasonOf(err) != fleet.ReasonProviderNotFound {
		t.Errorf("crash unknown: got %v", err)
	}
	if err := r.p.Delete(ctx, srv.ProviderID); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{NodeBinary: "/bin/true", StateDir: t.TempDir(), HeartbeatInterval: time.Millisecond}); err == nil {
		t.Error("New with a 1ms heartbeat: got nil error")
	}
}
