package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeDocker puts a `docker` script first on PATH that appends its argv (one argument per
// line, then "--") to the returned file, prints canned output and exits with
// $FAKE_DOCKER_EXIT.
func fakeDocker(t *testing.T) (argvFile string) {
	t.Helper()
	dir := t.TempDir()
	argvFile = filepath.Join(dir, "argv")
	script := `#!/bin/sh
for a in "$@"; do printf '%s\n' "$a" >> "$FAKE_DOCKER_ARGV"; done
echo -- >> "$FAKE_DOCKER_ARGV"
case "$4" in
  logs) printf 'openclaw-1  | line one\nopenclaw-1  | line two\nopenclaw-1  | line three\n' ;;
  ps) [ -n "$FAKE_DOCKER_PS" ] && echo "$FAKE_DOCKER_PS" ;;
esac
if [ -n "$FAKE_DOCKER_EXIT" ]; then echo "Error: service openclaw failed" >&2; exit "$FAKE_DOCKER_EXIT"; fi
exit 0
`
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_DOCKER_ARGV", argvFile)
	t.Setenv("FAKE_DOCKER_EXIT", "")
	t.Setenv("FAKE_DOCKER_PS", "")
	return argvFile
}

func readArgv(t *testing.T, path string) [][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	var cur []string
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if l == "--" {
			out = append(out, cur)
			cur = nil
			continue
		}
		cur = append(cur, l)
	}
	return out
}

func TestDockerRuntimeArgv(t *testing.T) {
	argvFile := fakeDocker(t)
	// A compose path with spaces and shell metacharacters must arrive as one argument.
	compose := filepath.Join(t.TempDir(), "my compose;$(id).yml")
	rt, err := NewDockerRuntime(compose)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := rt.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	lines, err := rt.Logs(ctx, 2)
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	if want := []string{"openclaw-1  | line two", "openclaw-1  | line three"}; !cmp.Equal(lines, want) {
		t.Errorf("Logs = %q, want %q", lines, want)
	}
	st, err := rt.Status(ctx)
	if err != nil || st != StateExited {
		t.Errorf("Status (no container) = %q, %v; want exited", st, err)
	}
	t.Setenv("FAKE_DOCKER_PS", "abc123")
	if st, _ := rt.Status(ctx); st != StateRunning {
		t.Errorf("Status (container) = %q, want running", st)
	}

	want := [][]string{
		{"compose", "-f", compose, "restart", "openclaw"},
		{"compose", "-f", compose, "logs", "--tail", "2", "openclaw"},
		{"compose", "-f", compose, "ps", "-q", "openclaw"},
		{"compose", "-f", compose, "ps", "-q", "openclaw"},
	}
	if diff := cmp.Diff(want, readArgv(t, argvFile)); diff != "" {
		t.Errorf("docker argv (-want +got):\n%s", diff)
	}
}

func TestDockerRuntimeFailures(t *testing.T) {
	fakeDocker(t)
	rt, _ := NewDockerRuntime("/srv/openclaw/compose.yml")
	t.Setenv("FAKE_DOCKER_EXIT", "3")
	err := rt.Restart(context.Background())
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "service openclaw failed") {
		t.Errorf("Restart = %v, want exit status 3 with docker's message", err)
	}
	if _, err := rt.Logs(context.Background(), 0); err == nil {
		t.Error("Logs(0) = nil error")
	}
	t.Setenv("PATH", t.TempDir())
	if err := rt.Restart(context.Background()); err == nil || !strings.Contains(err.Error(), "executable file not found") {
		t.Errorf("Restart without docker = %v, want not found", err)
	}
	if _, err := NewDockerRuntime(""); err == nil {
		t.Error("NewDockerRuntime(\"\") = nil error")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hasLine(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func TestProcessRuntimeRestartAndLogs(t *testing.T) {
	rt, err := NewProcessRuntime([]string{"/bin/sh", "-c", `echo "hello from $$"; exec sleep 60`},
		ProcessOptions{Grace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if st, _ := rt.Status(ctx); st != StateStopped {
		t.Errorf("Status before start = %q, want stopped", st)
	}
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Stop(context.Background()) })
	pid1 := rt.PID()
	if pid1 == 0 {
		t.Fatal("no PID after Start")
	}
	waitFor(t, "first output", func() bool { l, _ := rt.Logs(ctx, 10); return hasLine(l, "hello from") })
	if err := rt.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	pid2 := rt.PID()
	if pid2 == 0 || pid2 == pid1 {
		t.Fatalf("PID after restart = %d, want a new process (was %d)", pid2, pid1)
	}
	waitFor(t, "second output", func() bool { l, _ := rt.Logs(ctx, 10); return len(l) >= 2 })
	lines, _ := rt.Logs(ctx, 10)
	want := []string{"hello from " + strconv.Itoa(pid1), "hello from " + strconv.Itoa(pid2)}
	if !cmp.Equal(lines, want) {
		t.Errorf("Logs = %q, want %q", lines, want)
	}
	if l, _ := rt.Logs(ctx, 1); !cmp.Equal(l, want[1:]) {
		t.Errorf("Logs(1) = %q, want %q", l, want[1:])
	}
	if st, _ := rt.Status(ctx); st != StateRunning {
		t.Errorf("Status = %q, want running", st)
	}
	if err := rt.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := rt.Status(ctx); st != StateExited {
		t.Errorf("Status after stop = %q, want exited", st)
	}
}

func TestProcessRuntimeKillsStubbornGroup(t *testing.T) {
	// The shell ignores SIGTERM and its child sleeps: Stop must SIGKILL the whole group.
	rt, err := NewProcessRuntime([]string{"/bin/sh", "-c", `trap "" TERM; echo ready; while :; do sleep 1; done`},
		ProcessOptions{Grace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready", func() bool { l, _ := rt.Logs(ctx, 5); return hasLine(l, "ready") })
	if err := rt.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := rt.Status(ctx); st != StateExited {
		t.Errorf("Status after stop = %q, want exited", st)
	}
}

func TestProcessRuntimeRun(t *testing.T) {
	rt, err := NewProcessRuntime([]string{"sleep", "60"}, ProcessOptions{Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	waitFor(t, "child running", func() bool { return rt.PID() != 0 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	if rt.PID() != 0 {
		t.Error("child still running after Run returned")
	}
	if _, err := NewProcessRuntime(nil, ProcessOptions{}); err == nil {
		t.Error("NewProcessRuntime(nil) = nil error")
	}
	bad, _ := NewProcessRuntime([]string{"/no/such/binary"}, ProcessOptions{})
	if err := bad.Start(context.Background()); err == nil {
		t.Error("Start of a missing binary = nil error")
	}
}

func TestLineRing(t *testing.T) {
	r := newLineRing(3)
	if got := r.last(5); len(got) != 0 {
		t.Errorf("empty ring = %q", got)
	}
	r.Write([]byte("a\nb\nc"))
	r.Write([]byte("c\nd\n"))
	if got, want := r.last(10), []string{"b", "cc", "d"}; !cmp.Equal(got, want) {
		t.Errorf("last = %q, want %q", got, want)
	}
	r.Write([]byte("partial"))
	if got, want := r.last(2), []string{"d", "partial"}; !cmp.Equal(got, want) {
		t.Errorf("last(2) = %q, want %q", got, want)
	}
	r.Write([]byte(strings.Repeat("x", maxLineBytes+100) + "\n"))
	if got := r.last(1); len(got[0]) != maxLineBytes {
		t.Errorf("long line kept %d bytes, want %d", len(got[0]), maxLineBytes)
	}
}
