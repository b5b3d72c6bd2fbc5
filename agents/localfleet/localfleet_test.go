// Package localfleet_test plays the dialogues against the local fleet: a gateway with
// real gf-clawnode processes (docker runtime, a fake docker on PATH that records its
// argv), the real governed tools over it, the real gate, real agent sessions, and the
// scripted model over HTTP. Tools the fleet does not offer yet come from the eval
// fixture. It lives in its own package so that a half-built room elsewhere cannot stop
// the agents' own tests from compiling.
package localfleet_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops/agents/eval"
	"github.com/gatewayforge/clawops/agents/llm"
	"github.com/gatewayforge/clawops/agents/scripted"
	"github.com/gatewayforge/clawops/config"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/gateway"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/tools"
)

// realTools are the tools of the tools package the dialogues use with their real
// argument shapes; the others keep the fixture until their shapes are settled.
var realTools = []string{"gf_fleet_status", "gf_instance_health", "gf_instance_logs", "gf_restart", "gf_teardown"}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// fakeDocker records every call's argv (tab-separated, one line per call) and answers
// `compose -f <dir>/<instance>/compose.yml logs` with <logs>/<instance>.log when there is one.
func fakeDocker(t *testing.T, binDir, argvLog, logsDir string) {
	t.Helper()
	script := `#!/bin/sh
printf '%s' "$1" >> "` + argvLog + `"
inst=""
for a in "$@"; do
  case "$a" in */compose.yml) inst=$(basename "$(dirname "$a")");; esac
done
shift
for a in "$@"; do printf '\t%s' "$a" >> "` + argvLog + `"; done
printf '\n' >> "` + argvLog + `"
case " $* " in
  *" logs "*)
    if [ -n "$inst" ] && [ -f "` + logsDir + `/$inst.log" ]; then cat "` + logsDir + `/$inst.log"
    else echo "openclaw  | gateway ready"; fi;;
esac
exit 0
`
	if err := os.WriteFile(filepath.Join(binDir, "docker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// localFleet starts a gateway whose local provider runs the pairs demo1, demo2 and idle01
// as real gf-clawnode processes, and waits for all six instances to be ACTIVE.
func localFleet(t *testing.T, logs map[string]string) (*gateway.Gateway, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts six gf-clawnode processes")
	}
	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	logsDir := filepath.Join(root, "logs")
	for _, d := range []string{bin, logsDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for inst, text := range logs {
		if err := os.WriteFile(filepath.Join(logsDir, inst+".log"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "gf-clawnode"), "github.com/gatewayforge/clawops/cmd/gf-clawnode")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build gf-clawnode: %v\n%s", err, out)
	}
	argvLog := filepath.Join(root, "docker.argv")
	fakeDocker(t, bin, argvLog, logsDir)

	cfg, err := config.Load("", []string{
		"CLAWOPS_DATA_DIR=" + filepath.Join(root, "data"),
		"CLAWOPS_LISTEN=127.0.0.1:0",
		"CLAWOPS_FLEET_LOCAL_NODE_BINARY=" + filepath.Join(bin, "gf-clawnode"),
		"CLAWOPS_FLEET_LOCAL_RUNTIME=docker",
		"CLAWOPS_FLEET_LOCAL_COMPOSE_DIR=" + filepath.Join(root, "compose"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gw, err := gateway.New(ctx, gateway.Options{Config: cfg, Listener: ln,
		LocalEnv: []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")},
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway run: %v", err)
		}
	})
	for _, acct := range []string{"demo1", "demo2", "idle01"} {
		if _, err := gw.Fleet().ProvisionPair(ctx, fleet.PairSpec{Account: acct, Tier: "standard",
			Primary: fleet.Placement{Provider: "local", Region: "local-a"},
			Standby: fleet.Placement{Provider: "local", Region: "local-b"}}); err != nil {
			t.Fatalf("provision %s: %v", acct, err)
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		views, err := gw.Fleet().Instances(ctx)
		if err != nil {
			t.Fatal(err)
		}
		active := 0
		for _, v := range views {
			if v.State == fleet.StateActive {
				active++
			}
		}
		if active == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 6 instances ACTIVE after 90s: %+v", active, views)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return gw, argvLog
}

func TestDialoguesOnTheLocalFleet(t *testing.T) {
	ds, err := scripted.LoadDialogues("../scripted/testdata/dialogues")
	if err != nil {
		t.Fatal(err)
	}
	logs := map[string]string{}
	for _, d := range ds {
		for inst, text := range d.Fixtures.InstanceLogs {
			logs[inst] = text
		}
	}
	gw, argvLog := localFleet(t, logs)
	var real []governance.Tool
	for _, tool := range tools.All(gw.Fleet()) {
		if slices.Contains(realTools, tool.Spec().Name) {
			real = append(real, tool)
		}
	}
	if len(real) != len(realTools) {
		t.Fatalf("tools.All offers %d of the %d real tools the test needs", len(real), len(realTools))
	}
	for _, d := range ds {
		t.Run(d.Name, func(t *testing.T) {
			srv := scripted.NewServer(d.Script())
			defer srv.Close()
			client, err := llm.New(llm.Options{BaseURL: srv.BaseURL(), Models: []string{"scripted-model"}, MaxRetries: -1})
			if err != nil {
				t.Fatal(err)
			}
			res, err := eval.Run(context.Background(), d, eval.Options{Model: client, Dir: t.TempDir(), Tools: real,
				Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			if err != nil {
				t.Fatal(err)
			}
			for _, tr := range res.Turns {
				if tr.Err != nil {
					t.Errorf("%v\ncalls: %+v\nreplies: %q", tr.Err, tr.Observation.Calls, tr.Observation.Replies)
				}
			}
			if err := srv.Verify(); err != nil {
				t.Errorf("script: %v", err)
			}
		})
	}

	// The reads went to real nodes: the log-injection dialogue's logs came from
	// demo1-pri's node running `docker compose ... logs --tail 50`.
	raw, err := os.ReadFile(argvLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "demo1-pri/compose.yml\tlogs\t--tail\t50") {
		t.Errorf("no `logs --tail 50` for demo1-pri in the docker calls:\n%s", raw)
	}
	// Nothing was torn down or restarted: every such call waited for approval or was refused.
	views, err := gw.Fleet().Instances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		if v.State != fleet.StateActive {
			t.Errorf("%s is %s after the dialogues, want ACTIVE", v.ID, v.State)
		}
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.Contains(line, "\trestart") || strings.Contains(line, "\tdown") {
			t.Errorf("a dialogue changed a container: %s", line)
		}
	}
}
