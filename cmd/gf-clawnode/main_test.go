package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode"
	"github.com/gatewayforge/clawops/clawnode/proto"
	"github.com/gatewayforge/clawops/store"

	"github.com/gatewayforge/clawops/internal/syncbuf"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer collects a process's output for the test log.
type syncBuffer = syncbuf.Buffer

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildBinary builds gf-clawnode once per test run, into a folder removed by TestMain.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gf-clawnode-test-")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		builtBin = filepath.Join(dir, "gf-clawnode")
		build := exec.Command("go", "build", "-o", builtBin, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestBinaryEnrollsAndAnswers builds gf-clawnode, runs it as a real process with the process
// runtime (supervising its own stand-in) against an in-process hub, and drives it.
func TestBinaryEnrollsAndAnswers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t)

	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(db)
	if err := clawnode.Migrate(db); err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	heartbeats := make(chan proto.Heartbeat, 10)
	hub, err := clawnode.NewHub(clawnode.HubOptions{DB: db, Key: key, OnHeartbeat: func(_ context.Context, hb proto.Heartbeat) {
		select {
		case heartbeats <- hb:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hub)
	defer srv.Close()
	defer hub.Close()

	tok, err := hub.MintJoinToken(ctx, "demo1-pri", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(dir, "join-token")
	if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(freePort(t))
	out := &syncBuffer{}
	cmd := exec.Command(bin, "run",
		"--gateway", "ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/nodes/ws",
		"--gateway-key", proto.EncodePublicKey(hub.PublicKey()),
		"--join-token-file", tokFile,
		"--state-dir", filepath.Join(dir, "state"),
		"--instance", "demo1-pri",
		"--health-url", "http://127.0.0.1:"+port+"/health",
		"--runtime", "process",
		"--openclaw-cmd", bin+" standin --listen 127.0.0.1:"+port,
		"--openclaw-config", filepath.Join(dir, "openclaw", "openclaw.json"),
		"--workspace-dir", filepath.Join(dir, "openclaw"),
		"--health-wait", "20s",
		"--heartbeat", "1s")
	os.MkdirAll(filepath.Join(dir, "openclaw"), 0o700)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		t.Logf("gf-clawnode output:\n%s", out.String())
	}()

	var nodeID string
	waitFor(t, "the node to enroll", func() bool {
		for _, n := range hub.Nodes() {
			if n.Connected && n.Instance == "demo1-pri" {
				nodeID = string(n.Node)
				return true
			}
		}
		return false
	})
	invoke := func(command string, params any) (json.RawMessage, error) {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		return hub.Invoke(ctx, clawops.NodeID(nodeID), command, params)
	}
	raw, err := invoke("vps.metrics", nil)
	if err != nil {
		t.Fatalf("vps.metrics: %v", err)
	}
	var m proto.Metrics
	if err := json.Unmarshal(raw, &m); err != nil || m.MemTotalBytes == 0 || m.DiskTotalBytes == 0 {
		t.Errorf("vps.metrics = %s, %v", raw, err)
	}
	waitFor(t, "the stand-in to be healthy", func() bool {
		raw, err := invoke("openclaw.health", nil)
		var h proto.Health
		return err == nil && json.Unmarshal(raw, &h) == nil && h.OK
	})
	if raw, err := invoke("openclaw.restart", nil); err != nil || !strings.Contains(string(raw), `"restarted":true`) {
		t.Errorf("openclaw.restart = %s, %v", raw, err)
	}
	waitFor(t, "the restarted stand-in to be healthy", func() bool {
		raw, err := invoke("openclaw.health", nil)
		var h proto.Health
		return err == nil && json.Unmarshal(raw, &h) == nil && h.OK
	})
	raw, err = invoke("openclaw.logs", map[string]int{"tail": 50})
	if err != nil || !strings.Contains(string(raw), "GET /health 200") {
		t.Errorf("openclaw.logs = %s, %v; want the stand-in's request lines", raw, err)
	}
	// The lifecycle commands, on the real process: a config applied, read back, archived.
	raw, err = invoke("config.apply", map[string]any{"config": map[string]any{"gateway": map[string]any{"port": 18789}}, "version": "v1"})
	if err != nil || string(raw) != `{"version":"v1","healthy":true,"rolledBack":false}` {
		t.Errorf("config.apply = %s, %v", raw, err)
	}
	if raw, err = invoke("config.get", nil); err != nil || string(raw) != `{"version":"v1","config":{"gateway":{"port":18789}}}` {
		t.Errorf("config.get = %s, %v", raw, err)
	}
	var b proto.BackupResult
	if raw, err = invoke("backup.create", nil); err != nil || json.Unmarshal(raw, &b) != nil || b.Size == 0 || !strings.HasSuffix(b.Path, ".tar.gz") {
		t.Errorf("backup.create = %s, %v", raw, err)
	}
	// backup.read hands the archive back over the node plane, byte for byte.
	var got []byte
	for eof := false; !eof && err == nil; {
		var chunk proto.BackupReadResult
		if raw, err = invoke(proto.CmdBackupRead, proto.BackupReadParams{Path: b.Path, Offset: int64(len(got)), Length: 1000}); err == nil {
			err = json.Unmarshal(raw, &chunk)
		}
		got, eof = append(got, chunk.Data...), chunk.EOF
	}
	if sum := sha256.Sum256(got); err != nil || int64(len(got)) != b.Size || hex.EncodeToString(sum[:]) != b.SHA256 {
		t.Errorf("backup.read: %d bytes, %v; want %d bytes with sha256 %s", len(got), err, b.Size, b.SHA256)
	}
	if _, err = invoke(proto.CmdBackupRead, proto.BackupReadParams{Path: "/etc/passwd", Length: 10}); err == nil {
		t.Error("backup.read of /etc/passwd: got nil error, want a refusal")
	}
	var info proto.VPSInfo
	if raw, err = invoke("vps.info", nil); err != nil || json.Unmarshal(raw, &info) != nil || info.Runtime != "process" || info.CPUs < 1 {
		t.Errorf("vps.info = %s, %v", raw, err)
	}
	if _, err = invoke("openclaw.upgrade", map[string]string{"image": "ghcr.io/openclaw/openclaw:2026.9.6"}); clawops.ReasonOf(err) != proto.CodeNotImplemented {
		t.Errorf("openclaw.upgrade on the process runtime = %v, want NOT_IMPLEMENTED", err)
	}
	select {
	case hb := <-heartbeats:
		if string(hb.Node) != nodeID || hb.Instance != "demo1-pri" {
			t.Errorf("heartbeat from %s/%s", hb.Node, hb.Instance)
		}
	case <-time.After(20 * time.Second):
		t.Error("no heartbeat from the binary")
	}
	if strings.Contains(out.String(), tok) {
		t.Error("the join token appears in gf-clawnode's output")
	}

	// SIGTERM stops the daemon and the child it supervises.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("gf-clawnode exited with %v, want 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("gf-clawnode did not exit after SIGTERM")
	}
	waitFor(t, "the stand-in port to close", func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
}

func TestRunFlagErrors(t *testing.T) {
	key := proto.EncodePublicKey(make(ed25519.PublicKey, 32))
	base := []string{"run", "--gateway", "ws://127.0.0.1:1/v1/nodes/ws", "--gateway-key", key, "--state-dir", t.TempDir()}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", nil, "a subcommand is required"},
		{"unknown subcommand", []string{"fly"}, "unknown subcommand"},
		{"missing required", []string{"run"}, "--gateway"},
		{"bad key", []string{"run", "--gateway", "ws://x/y", "--gateway-key", "short", "--state-dir", "d"}, "--gateway-key"},
		{"bad runtime", append(base, "--runtime", "podman"), "use docker or process"},
		{"docker without compose", append(base, "--runtime", "docker"), "--compose-file"},
		{"process without cmd", append(base, "--runtime", "process"), "--openclaw-cmd"},
		{"tiny heartbeat", append(base, "--heartbeat", "10ms"), "--heartbeat"},
		{"unknown flag", append(base, "--frobnicate"), "frobnicate"},
		{"stray argument", append(base, "extra"), "unexpected argument"},
		{"missing token file", append(base, "--join-token-file", "/no/such/file"), "--join-token-file"},
		{"backup keep", append(base, "--backup-keep", "0"), "--backup-keep"},
		{"health wait", append(base, "--health-wait", "10ms"), "--health-wait"},
		{"relative config", append(base, "--openclaw-config", "openclaw.json"), "absolute"},
		{"rotate too often", append(base, "--rotate-key-every", "1m"), "--rotate-key-every"},
		{"ssh-exec without state", []string{"ssh-exec", "--compose-file", "/c.yml"}, "--state-dir"},
		{"ssh-exec process runtime", []string{"ssh-exec", "--state-dir", "/tmp/x", "--runtime", "process"}, "docker runtime only"},
		{"ssh-exec outside ssh", []string{"ssh-exec", "--state-dir", "/tmp/x", "--compose-file", "/c.yml"}, "SSH_ORIGINAL_COMMAND"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), tc.args, io.Discard, io.Discard, func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run(%q) = %v, want error containing %q", tc.args, err, tc.want)
			}
		})
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, io.Discard, nil); err != nil || !strings.Contains(out.String(), "gf-clawnode") {
		t.Errorf("version = %q, %v", out.String(), err)
	}
	if err := run(context.Background(), []string{"fly"}, io.Discard, io.Discard, nil); !errors.Is(err, errUsage) {
		t.Errorf("usage errors must wrap errUsage: %v", err)
	}
}

func TestStandinSubcommand(t *testing.T) {
	portFile := filepath.Join(t.TempDir(), "port")
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"standin", "--listen", "127.0.0.1:0", "--port-file", portFile}, out, io.Discard, nil)
	}()
	var port string
	waitFor(t, "the port file", func() bool {
		b, err := os.ReadFile(portFile)
		port = strings.TrimSpace(string(b))
		return err == nil && port != ""
	})
	resp, err := http.Get("http://127.0.0.1:" + port + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"ok":true}` {
		t.Errorf("GET /health = %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get("http://127.0.0.1:" + port + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /nope = %d, want 404", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("standin = %v, want nil after cancel", err)
	}
	if !strings.Contains(out.String(), "GET /health 200") || !strings.Contains(out.String(), "GET /nope 404") {
		t.Errorf("standin output = %q, want a line per request", out.String())
	}
}
