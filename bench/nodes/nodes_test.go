//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops/internal/syncbuf"
)

// TestMain lets the test binary play the child roles: the driver re-executes its own
// binary, which under `go test` is this one.
func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role, os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// tinyFlags are the flags of a run small and fast enough for a test.
func tinyFlags(t *testing.T, extra ...string) config {
	t.Helper()
	args := append([]string{"-n", "50", "-m", "2", "-rounds", "2", "-steady", "300ms", "-settle", "50ms",
		"-heartbeat", "200ms", "-tick", "1s", "-status-every", "20ms", "-connect-timeout", "20s",
		"-invoke-timeout", "10s", "-budget", "50s", "-src-ips", "4"}, extra...)
	cfg, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags(%q): %v", args, err)
	}
	return cfg
}

func TestTinyRun(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // the working folder goes here and must be gone afterwards
	jsonPath := filepath.Join(t.TempDir(), "results.json")
	cfg := tinyFlags(t, "-json", jsonPath)
	var out bytes.Buffer
	res, err := run(context.Background(), cfg, &out)
	t.Log(out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := res.Connect.Connected; got != 50 {
		t.Errorf("connected = %d, want 50", got)
	}
	if got, want := res.Fanout.OK, 50*cfg.Rounds; got != want || len(res.Fanout.Errors) != 0 {
		t.Errorf("fan-out ok = %d (errors %v), want %d", got, res.Fanout.Errors, want)
	}
	if res.Fanout.ReqFrameBytes < 200 || res.Fanout.ResFrameBytes < 200 {
		t.Errorf("frame sizes = %d/%d B, want the real invoke frames (> 200 B)", res.Fanout.ReqFrameBytes, res.Fanout.ResFrameBytes)
	}
	if res.Gateway == nil || res.Gateway.RSSMB <= 0 || res.Gateway.HeartbeatsPerSec <= 0 {
		t.Errorf("gateway = %+v, want RSS and heartbeats measured", res.Gateway)
	}
	if res.Bare == nil || res.Bare.Fanout == nil || res.Bare.Fanout.OK != 50*cfg.Rounds {
		t.Fatalf("bare = %+v, want %d echoes", res.Bare, 50*cfg.Rounds)
	}
	if res.Ratio == nil || res.Ratio.Throughput <= 0 {
		t.Errorf("ratio = %+v, want a positive throughput ratio", res.Ratio)
	}
	var back results
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &back); err != nil || back.Connect == nil || back.Connect.Connected != 50 {
		t.Errorf("JSON results = %v, %+v; want them to round-trip", err, back.Connect)
	}
	for _, want := range []string{"connect", "gateway RSS", "fan-out", "bare fan-out", "ratio"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary has no %q row", want)
		}
	}
	entries, _ := os.ReadDir(tmp)
	if len(entries) != 0 {
		t.Errorf("working folder left behind: %v", entries)
	}
	if kids := ownChildren(t); len(kids) != 0 {
		t.Errorf("child processes still running: %v", kids)
	}
}

func TestTinyRamp(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	cfg := tinyFlags(t, "-ramp", "-ramp-step", "20", "-ramp-max", "40", "-per-sim", "15")
	var out bytes.Buffer
	res, err := run(context.Background(), cfg, &out)
	t.Log(out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	rp := res.Ramp
	if rp == nil || len(rp.Steps) != 2 {
		t.Fatalf("ramp = %+v, want 2 steps", rp)
	}
	if rp.LargestHeld != 40 || rp.LargestFullStep != 40 || !strings.Contains(rp.StopReason, "ramp-max") {
		t.Errorf("ramp: held %d, full step %d, stop %q; want 40, 40, ramp-max", rp.LargestHeld, rp.LargestFullStep, rp.StopReason)
	}
	if kids := ownChildren(t); len(kids) != 0 {
		t.Errorf("child processes still running: %v", kids)
	}
}

func TestInterruptStopsEverything(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	cfg := tinyFlags(t, "-steady", "1m")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	out := &syncBuffer{}
	go func() { _, err := run(ctx, cfg, out); done <- err }()
	// Interrupt once the steady-state window has begun: every process is up by then.
	deadline := time.Now().Add(20 * time.Second)
	for len(ownChildren(t)) < 3 || !strings.Contains(out.String(), "steady state") {
		if time.Now().After(deadline) {
			t.Fatalf("run did not reach the steady state; output:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("run = %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after the interrupt")
	}
	if kids := ownChildren(t); len(kids) != 0 {
		t.Errorf("child processes still running after the interrupt: %v", kids)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("working folder left behind: %v", entries)
	}
}

// syncBuffer is a bytes.Buffer safe to read while run writes to it.
type syncBuffer = syncbuf.Buffer

// ownChildren lists live processes whose parent is this one and that run a bench role.
func ownChildren(t *testing.T) []int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	me := os.Getpid()
	var out []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", d.Name(), "status"))
		if err != nil || !strings.Contains(string(status), "\nPPid:\t"+strconv.Itoa(me)+"\n") {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if bytes.Contains(env, []byte(roleEnv+"=")) {
			out = append(out, pid)
		}
	}
	return out
}

func TestParseFlagsRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "0"}, "-n 0"},
		{[]string{"-n", "300000"}, "-n 300000"},
		{[]string{"-per-sim", "5000"}, "-per-sim 5000"},
		{[]string{"-n", "10", "-m", "11"}, "-m 11"},
		{[]string{"-src-ips", "0"}, "-src-ips"},
		{[]string{"-rounds", "0"}, "-rounds"},
		{[]string{"-command", "openclaw.restart"}, "-command"},
		{[]string{"-concurrency", "0"}, "-concurrency"},
		{[]string{"-steady", "0s"}, "-steady"},
		{[]string{"-budget", "48h"}, "-budget"},
		{[]string{"-ramp", "-ramp-step", "10", "-ramp-max", "5"}, "-ramp-max"},
		{[]string{"-gateway-gogc", "lots"}, "-gateway-gogc"},
		{[]string{"-gateway-memlimit", "250 MB"}, "-gateway-memlimit"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"-no-such-flag"}, "no-such-flag"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := parseFlags(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseFlags(%q) = %v, want an error naming %q", tc.args, err, tc.want)
			}
		})
	}
	cfg, err := parseFlags([]string{"-n", "10001", "-dials", "1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.M != 3 || cfg.Dials != 3 {
		t.Errorf("-n 10001: m=%d dials=%d, want 3 sims (4,000 each at most) and a dial slot each", cfg.M, cfg.Dials)
	}
}

// inproc runs a child role in this process, talking over pipes as the driver would.
type inproc struct {
	in     io.WriteCloser
	events chan event
	done   chan error
}

func startInProc(t *testing.T, fn func(context.Context, io.Reader, io.Writer) error, config any) *inproc {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	p := &inproc{in: inW, events: make(chan event, 1000), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		err := fn(ctx, inR, outW)
		outW.Close()
		p.done <- err
	}()
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				select {
				case p.events <- e:
				default:
				}
			}
		}
	}()
	line, _ := json.Marshal(config)
	go inW.Write(append(line, '\n'))
	t.Cleanup(func() {
		inW.Close()
		cancel()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Error("in-process child did not stop")
		}
	})
	return p
}

// waitEvent returns the first event satisfying ok, or fails after 15 s.
func (p *inproc) waitEvent(t *testing.T, what string, ok func(event) bool) event {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case e := <-p.events:
			if ok(e) {
				return e
			}
		case err := <-p.done:
			t.Fatalf("waiting for %s: child ended: %v", what, err)
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (p *inproc) send(t *testing.T, cmd string) {
	t.Helper()
	b, _ := json.Marshal(command{Cmd: cmd})
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
}

func isReady(e event) bool { return e.Ev == eventReady }

func TestChildConfigRejects(t *testing.T) {
	abs := t.TempDir()
	good := simConfig{Name: "s", GatewayURL: "ws://127.0.0.1:1/v1/nodes/ws", GatewayKey: strings.Repeat("A", 43),
		SourceIPs: 1, Nodes: []simNodeConfig{{Index: 0, Instance: "bench-000000", Token: "gfj_x"}},
		HeartbeatMs: 1000, DialConcurrency: 1, HandshakeTimeoutMs: 1000, StatusEveryMs: 100}
	sim := func(mut func(*simConfig)) string {
		c := good
		c.Nodes = append([]simNodeConfig(nil), good.Nodes...)
		mut(&c)
		b, _ := json.Marshal(c)
		return string(b)
	}
	manyNodes := make([]simNodeConfig, maxPerSim+1)
	for i := range manyNodes {
		manyNodes[i] = simNodeConfig{Index: i, Instance: "bench-" + strconv.Itoa(i), Token: "t"}
	}
	echoGood := echoClientConfig{Name: "e", URL: "ws://127.0.0.1:1/ws", SourceIPs: 1, Count: 1, ResBytes: 100,
		DialConcurrency: 1, HandshakeTimeoutMs: 1000, StatusEveryMs: 100}
	echo := func(mut func(*echoClientConfig)) string {
		c := echoGood
		mut(&c)
		b, _ := json.Marshal(c)
		return string(b)
	}
	type roleFn = func(context.Context, io.Reader, io.Writer) error
	for _, tc := range []struct {
		name string
		fn   roleFn
		line string
		want string
	}{
		{"sim: no config", runSim, "", "stdin closed"},
		{"sim: not JSON", runSim, "{", "decode config"},
		{"sim: unknown field", runSim, `{"name":"s","bogus":1}`, "unknown field"},
		{"sim: remote gateway", runSim, sim(func(c *simConfig) { c.GatewayURL = "ws://10.0.0.1:80/x" }), "127.0.0.0/8"},
		{"sim: host name", runSim, sim(func(c *simConfig) { c.GatewayURL = "ws://localhost:80/x" }), "127.0.0.0/8"},
		{"sim: wss", runSim, sim(func(c *simConfig) { c.GatewayURL = "wss://127.0.0.1:80/x" }), "scheme"},
		{"sim: bad key", runSim, sim(func(c *simConfig) { c.GatewayKey = "short" }), "gatewayKey"},
		{"sim: no nodes", runSim, sim(func(c *simConfig) { c.Nodes = nil }), "0 nodes"},
		{"sim: too many nodes", runSim, sim(func(c *simConfig) { c.Nodes = manyNodes }), "4001 nodes"},
		{"sim: bad instance", runSim, sim(func(c *simConfig) { c.Nodes[0].Instance = "a b" }), "instance"},
		{"sim: empty token", runSim, sim(func(c *simConfig) { c.Nodes[0].Token = "" }), "token"},
		{"sim: heartbeat", runSim, sim(func(c *simConfig) { c.HeartbeatMs = 0 }), "heartbeatMs"},
		{"sim: source IPs", runSim, sim(func(c *simConfig) { c.SourceIPs = 251 }), "sourceIPs"},
		{"echo client: remote", runEchoClients, echo(func(c *echoClientConfig) { c.URL = "ws://192.168.1.1:80/ws" }), "127.0.0.0/8"},
		{"echo client: frame size", runEchoClients, echo(func(c *echoClientConfig) { c.ResBytes = maxFrameSize + 1 }), "resBytes"},
		{"echo server: remote", runEchoServer, `{"listen":"0.0.0.0:0"}`, "127.0.0.0/8"},
		{"gateway: relative dir", runGateway, `{"dir":"rel","listen":"127.0.0.1:0","tickMs":1000}`, "absolute"},
		{"gateway: remote listen", runGateway, `{"dir":"` + abs + `","listen":"0.0.0.0:0","tickMs":1000}`, "127.0.0.0/8"},
		{"gateway: tick", runGateway, `{"dir":"` + abs + `","listen":"127.0.0.1:0","tickMs":0}`, "tickMs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.NewReader(tc.line + "\n")
			if tc.line == "" {
				in = strings.NewReader("")
			}
			var out bytes.Buffer
			err := tc.fn(context.Background(), in, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("child wrote %q before refusing its config, want nothing", out.String())
			}
		})
	}
	if entries, _ := os.ReadDir(abs); len(entries) != 0 {
		t.Errorf("refused gateway configs created %v, want nothing", entries)
	}
}
