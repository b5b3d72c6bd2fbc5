package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestTestdata loads every testdata/*.good.yaml (must succeed) and every *.bad.yaml (must
// fail with an error containing the text of the sibling *.bad.err).
func TestTestdata(t *testing.T) {
	good, _ := filepath.Glob("testdata/*.good.yaml")
	bad, _ := filepath.Glob("testdata/*.bad.yaml")
	if len(good) < 5 || len(bad) < 30 {
		t.Fatalf("got %d good and %d bad files, want the testdata folder", len(good), len(bad))
	}
	for _, path := range good {
		t.Run(filepath.Base(path), func(t *testing.T) {
			if _, err := Load(path, nil); err != nil {
				t.Fatalf("Load: got error\n%v\nwant none", err)
			}
		})
	}
	for _, path := range bad {
		t.Run(filepath.Base(path), func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(path, ".yaml") + ".err")
			if err != nil {
				t.Fatalf("every bad file needs a .bad.err sibling: %v", err)
			}
			c, err := Load(path, nil)
			if err == nil {
				t.Fatalf("Load: got config, want an error containing %q", want)
			}
			if c != nil {
				t.Errorf("Load: got a config with the error, want nil")
			}
			if !strings.Contains(err.Error(), strings.TrimSpace(string(want))) {
				t.Errorf("Load error:\n got %v\nwant it to contain %q", err, strings.TrimSpace(string(want)))
			}
			if len(Problems(err)) == 0 {
				t.Errorf("Problems(err): got none, want *Error values")
			}
		})
	}
}

func TestFullExample(t *testing.T) {
	c, err := Load("testdata/full.good.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:    "100.101.102.103:8443",
		PublicURL: "wss://clawops.example-tailnet.ts.net/v1/nodes/ws",
		DataDir:   "/var/lib/clawops",
		Log:       Log{Level: "info", Format: "json"},
		Database:  Database{Driver: "postgres", DSNFile: "/run/secrets/clawops-dsn"},
		Auth: Auth{Tokens: []TokenRef{
			{Identity: "omar", Role: "admin", TokenEnv: "CLAWOPS_ADMIN_TOKEN"},
			{Identity: "night-shift", Role: "approver", TokenFile: "/run/secrets/night-shift-token"},
			{Identity: "ops-bot", Role: "operator", TokenEnv: "CLAWOPS_OPERATOR_TOKEN"},
			{Identity: "finance", Role: "viewer", TokenEnv: "FINANCE_DASHBOARD_TOKEN"},
		}},
		Approvals: Approvals{TTL: 45 * time.Minute},
		Nodes: Nodes{TickInterval: 15 * time.Second, HeartbeatInterval: 10 * time.Second,
			HeartbeatTimeout: 45 * time.Second, JoinTokenTTL: 2 * time.Hour, InvokeTimeout: 30 * time.Second},
		Fleet: Fleet{Local: LocalProvider{NodeBinary: "/usr/local/bin/gf-clawnode", Runtime: "docker",
			ComposeDir: "/var/lib/clawops/compose"},
			Archive: Archive{S3: S3Archive{Endpoint: "https://fsn1.your-objectstorage.com", Bucket: "clawops-archives",
				Region: "eu-central", Prefix: "workspaces/", AccessKeyEnv: "CLAWOPS_S3_ACCESS_KEY",
				SecretKeyFile: "/run/secrets/clawops-s3-secret"}}},
		Demo: Demo{Pairs: 3},
		Channels: Channels{
			Adapters: []ChannelAdapter{{Type: "channels.telegram",
				Settings: Settings(`{"token":{"env":"CLAWOPS_TELEGRAM_TOKEN"}}`)}},
			AllowFrom: []AllowFrom{{Channel: "telegram", Sender: "123456789", Identity: "omar", Role: "admin"}},
		},
		Governance: Governance{Environment: "production", SecondFactorFrom: "critical",
			TOTP: []TOTPRef{{Identity: "omar", SecretEnv: "CLAWOPS_TOTP_OMAR"}}},
		LLM: LLM{BaseURL: "https://api.openai.com/v1", APIKeyEnv: "CLAWOPS_LLM_API_KEY",
			Models: []string{"gpt-4.1", "gpt-4.1-mini"},
			Prices: []ModelPrice{{Model: "gpt-4.1", InputPerMTok: 2, OutputPerMTok: 8}}},
		Agents:  Agents{Workspace: "/etc/clawops/workspace", MemoryDir: "/var/lib/clawops/memory", Schedules: true},
		Cluster: Cluster{ReplicaID: "gw-fsn1-a", AdvertiseURL: "http://100.101.102.103:8443", LeaseTTL: 15 * time.Second},
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("Load(full.good.yaml) mismatch (-want +got):\n%s", diff)
	}
	golden := "testdata/full.redacted.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(c.Redacted()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./config -update)", err)
	}
	if diff := cmp.Diff(string(g), c.Redacted()); diff != "" {
		t.Errorf("Redacted() differs from %s (-want +got):\n%s", golden, diff)
	}
}

func TestDefaultsWithoutFile(t *testing.T) {
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.PublicURL = "ws://127.0.0.1:8080/v1/nodes/ws"
	want.Fleet.Local.ComposeDir = filepath.Join(".data", "compose")
	want.Fleet.Archive.Dir = filepath.Join(".data", "archives")
	want.Agents.MemoryDir = filepath.Join(".data", "memory")
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("Load(\"\") mismatch (-want +got):\n%s", diff)
	}
	if got, wantBin := filepath.Base(c.Fleet.Local.NodeBinary), "gf-clawnode"; got != wantBin {
		t.Errorf("node_binary: got %q, want a path ending in %q", c.Fleet.Local.NodeBinary, wantBin)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate(): got %v, want nil", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want an error wrapping os.ErrNotExist", err)
	}
}

func TestPublicURLFollowsListen(t *testing.T) {
	c, err := Load("testdata/minimal.good.yaml", []string{"CLAWOPS_DATA_DIR=/tmp/x"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.PublicURL, "ws://127.0.0.1:9090/v1/nodes/ws"; got != want {
		t.Errorf("public_url: got %q, want %q", got, want)
	}
	if got, want := c.Fleet.Local.ComposeDir, filepath.Join("/tmp/x", "compose"); got != want {
		t.Errorf("compose_dir: got %q, want %q", got, want)
	}
	if got, want := c.Fleet.Archive.Dir, filepath.Join("/tmp/x", "archives"); got != want {
		t.Errorf("archive dir: got %q, want %q", got, want)
	}
}

func TestDerivePublicURL(t *testing.T) {
	for _, tc := range []struct{ listen, want string }{
		{"127.0.0.1:8080", "ws://127.0.0.1:8080/v1/nodes/ws"},
		{":8080", "ws://127.0.0.1:8080/v1/nodes/ws"},
		{"0.0.0.0:80", "ws://127.0.0.1:80/v1/nodes/ws"},
		{"[::]:8080", "ws://127.0.0.1:8080/v1/nodes/ws"},
		{"[::1]:8080", "ws://[::1]:8080/v1/nodes/ws"},
		{"gw.tail1234.ts.net:443", "ws://gw.tail1234.ts.net:443/v1/nodes/ws"},
		{"localhost", ""},
		{"", ""},
	} {
		if got := DerivePublicURL(tc.listen); got != tc.want {
			t.Errorf("DerivePublicURL(%q): got %q, want %q", tc.listen, got, tc.want)
		}
	}
}

func TestDSNHasPassword(t *testing.T) {
	for _, tc := range []struct {
		dsn  string
		want bool
	}{
		{"postgres://u:p@h/db", true},
		{"postgresql://u@h/db", false},
		{"postgres://h/db?password=x", true},
		{"host=h user=u password=x", true},
		{"host=h user=u PASSWORD = x", false}, // not key=value: libpq would reject it anyway
		{"host=h user=u", false},
		{"/srv/clawops.db", false},
		{"", false},
	} {
		if got := dsnHasPassword(tc.dsn); got != tc.want {
			t.Errorf("dsnHasPassword(%q): got %v, want %v", tc.dsn, got, tc.want)
		}
	}
}

func TestCloseMatches(t *testing.T) {
	for _, tc := range []struct {
		s    string
		cand []string
		want []string
	}{
		{"tick_intervall", []string{"tick_interval", "invoke_timeout"}, []string{"tick_interval"}},
		{"tick-interval", []string{"tick_interval"}, []string{"tick_interval"}},
		{"LISTEN", []string{"listen"}, []string{"listen"}},
		{"zzz", []string{"listen"}, nil},
	} {
		if diff := cmp.Diff(tc.want, closeMatches(tc.s, tc.cand, 3)); diff != "" {
			t.Errorf("closeMatches(%q) (-want +got):\n%s", tc.s, diff)
		}
	}
}

func TestErrorPositions(t *testing.T) {
	_, err := Load("testdata/many.bad.yaml", nil)
	ps := Problems(err)
	if len(ps) != 2 {
		t.Fatalf("got %d problems (%v), want 2", len(ps), err)
	}
	for i, want := range []struct {
		line int
		key  string
	}{{3, "nodes.tick_intervall"}, {4, "nodes.heartbeat_timout"}} {
		if ps[i].Line != want.line || ps[i].Key != want.key || ps[i].Source != "testdata/many.bad.yaml" {
			t.Errorf("problem %d: got %s:%d key %q, want testdata/many.bad.yaml:%d key %q",
				i, ps[i].Source, ps[i].Line, ps[i].Key, want.line, want.key)
		}
	}
}

// FuzzLoadYAML checks that no file content makes decoding panic, and that whatever is
// accepted passes Validate.
func FuzzLoadYAML(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		c := Default()
		lines, err := decodeYAML("fuzz.yaml", src, c)
		if err != nil || lines == nil {
			return
		}
		c.fillDerived()
		_ = c.Validate()
		_ = c.Redacted()
	})
}

func TestNewLogger(t *testing.T) {
	for _, tc := range []struct {
		log        Log
		wantPrefix string
		debugShown bool
	}{
		{Log{Level: "debug", Format: "json"}, `{"time":`, true},
		{Log{Level: "info", Format: "text"}, `time=`, false},
		{Log{Level: "error", Format: "text"}, ``, false},
	} {
		var b strings.Builder
		lg := tc.log.NewLogger(&b)
		lg.Debug("dbg")
		lg.Info("hello")
		out := b.String()
		if got := strings.Contains(out, "dbg"); got != tc.debugShown {
			t.Errorf("%+v: debug shown = %v, want %v", tc.log, got, tc.debugShown)
		}
		if tc.wantPrefix != "" && !strings.HasPrefix(out, tc.wantPrefix) {
			t.Errorf("%+v: got %q, want it to start with %q", tc.log, out, tc.wantPrefix)
		}
		if tc.log.Level == "error" && out != "" {
			t.Errorf("%+v: got %q, want nothing below error", tc.log, out)
		}
	}
}
