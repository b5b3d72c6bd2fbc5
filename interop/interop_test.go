// Package interop checks ClawOps against the stock OpenClaw (npm openclaw 2026.9.6), which
// is the judge of protocol compatibility:
//
//   - TestStockGatewayDrivesGFClawnode: gf-clawnode pairs with a stock OpenClaw gateway and
//     answers `openclaw nodes invoke`; the gateway signs nothing, so gf-clawnode (configured
//     for it) runs its read-only commands and refuses the rest with UNSIGNED_COMMAND.
//   - TestStockNodeHostPairsWithClawOps: the stock OpenClaw node host pairs with the ClawOps
//     hub (challenge-signed connect, a pairing request an operator approves, a device token)
//     and answers a ClawOps-signed system.which, also after it reconnects.
//
// The tests run only through interop/run.sh (`make interop`), which installs OpenClaw into
// the repository's ignored .interop/ folder and runs this package's test binary inside a
// network namespace that has nothing but loopback. Without CLAWOPS_INTEROP=1 they skip.
package interop

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
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

// env is what run.sh provides.
type env struct {
	node     string // the Node 24 binary
	openclaw string // openclaw.mjs
	gfNode   string // gf-clawnode
}

func setup(t *testing.T) env {
	t.Helper()
	if os.Getenv("CLAWOPS_INTEROP") != "1" {
		t.Skip("interop tests run only through interop/run.sh (make interop): they need the stock OpenClaw and a loopback-only network namespace")
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifaces {
		if i.Flags&net.FlagLoopback == 0 {
			t.Fatalf("interface %s is not loopback: run these tests inside the namespace interop/run.sh makes", i.Name)
		}
	}
	e := env{node: os.Getenv("INTEROP_NODE"), openclaw: os.Getenv("INTEROP_OPENCLAW"), gfNode: os.Getenv("INTEROP_GF_CLAWNODE")}
	for name, p := range map[string]string{"INTEROP_NODE": e.node, "INTEROP_OPENCLAW": e.openclaw, "INTEROP_GF_CLAWNODE": e.gfNode} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%q: %v", name, p, err)
		}
	}
	return e
}

// buffer collects a process's output.
type buffer = syncbuf.Buffer

// baseEnv is the environment of every OpenClaw process: no update checks, no telemetry,
// no channels, no Bonjour; the namespace blocks anything else.
func baseEnv(home string) []string {
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "OPENCLAW_DISABLE_BONJOUR=1", "OPENCLAW_SKIP_CHANNELS=1",
		"OPENCLAW_NO_RESPAWN=1", "OPENCLAW_NO_AUTO_UPDATE=1", "DO_NOT_TRACK=1", "OPENCLAW_SKIP_CRON=1", "NO_COLOR=1"}
	if d := os.Getenv("npm_config_nodedir"); d != "" {
		env = append(env, "npm_config_nodedir="+d)
	}
	return env
}

// start runs a long-lived process in its own process group and kills the whole group
// (OpenClaw's gateway has worker children) at cleanup, by that group's id.
func start(t *testing.T, name string, env []string, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	out := &buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		// OpenClaw's gateway starts workers, some in process groups of their own: find
		// them all before the parent goes, then stop each by its PID.
		pids := append(descendants(cmd.Process.Pid), cmd.Process.Pid)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(3 * time.Second): // the stock gateway may drain for minutes
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if t.Failed() || testing.Verbose() {
			t.Logf("%s output (last 6 KB):\n%s", name, tail(out.String(), 6<<10))
		}
	})
	return cmd
}

// descendants lists the processes below pid, from /proc.
func descendants(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		if i := bytes.LastIndexByte(b, ')'); i > 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) > 1 {
				parent[p], _ = strconv.Atoi(f[1])
			}
		}
	}
	var out []int
	frontier := []int{pid}
	for len(frontier) > 0 {
		next := frontier[0]
		frontier = frontier[1:]
		for p, pp := range parent {
			if pp == next {
				out = append(out, p)
				frontier = append(frontier, p)
			}
		}
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func writeJSON5(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// quietConfig is the part of an OpenClaw config that keeps it from reaching out.
func quietConfig(logFile string) string {
	return fmt.Sprintf(`discovery: { mdns: { mode: "off" } },
  update: { checkOnStart: false },
  telemetry: { enabled: false },
  models: { catalogRefresh: { enabled: false } },
  logging: { file: %q },`, logFile)
}

func TestStockGatewayDrivesGFClawnode(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	home := filepath.Join(dir, "gw-home")
	tokBytes := make([]byte, 16)
	rand.Read(tokBytes)
	token := "oc" + hex.EncodeToString(tokBytes)
	port := freePort(t)
	writeJSON5(t, filepath.Join(home, ".openclaw", "openclaw.json"), fmt.Sprintf(`{
  gateway: { mode: "local", port: %d, bind: "loopback",
    auth: { mode: "token", token: %q },
    nodes: { pairing: { sshVerify: false },
             commands: { allow: ["openclaw.health", "openclaw.logs", "vps.metrics", "vps.info", "config.get", "openclaw.restart"] } } },
  %s
}`, port, token, quietConfig(filepath.Join(dir, "gateway.log"))))
	gwEnv := append(baseEnv(home), "OPENCLAW_GATEWAY_TOKEN="+token)
	start(t, "openclaw gateway", gwEnv, e.node, e.openclaw, "gateway", "run", "--port", strconv.Itoa(port), "--bind", "loopback")
	addr := "127.0.0.1:" + strconv.Itoa(port)
	waitFor(t, "the stock gateway to listen", 3*time.Minute, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	// gf-clawnode, configured for a stock gateway: it cannot prove a ClawOps key, and it
	// signs nothing, so only read-only commands may run. Its OpenClaw is a stand-in.
	ocPort := freePort(t)
	pinned, _, _ := ed25519.GenerateKey(rand.Reader) // a ClawOps key this gateway does not hold
	state := filepath.Join(dir, "node-state")
	start(t, "gf-clawnode", os.Environ(), e.gfNode, "run",
		"--gateway", "ws://"+addr, "--gateway-key", proto.EncodePublicKey(pinned),
		"--join-token", token, "--state-dir", state, "--instance", "interop-1",
		"--health-url", "http://127.0.0.1:"+strconv.Itoa(ocPort)+"/health",
		"--runtime", "process", "--openclaw-cmd", e.gfNode+" standin --listen 127.0.0.1:"+strconv.Itoa(ocPort),
		"--allow-unproven-gateway", "--allow-unsigned-read-only", "--heartbeat", "5s")

	cli := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, e.node, append([]string{e.openclaw}, args...)...)
		cmd.Env = gwEnv
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	var requestID, nodeID string
	waitFor(t, "gf-clawnode's pairing request", 2*time.Minute, func() bool {
		out, err := cli("nodes", "pending", "--json")
		if err != nil {
			return false
		}
		var pending []struct {
			RequestID, NodeID, ClientID string
			Commands                    []string
		}
		if json.Unmarshal([]byte(jsonPart(out)), &pending) != nil {
			return false
		}
		for _, p := range pending {
			if p.ClientID == proto.ClientIDNodeHost && len(p.Commands) > 0 {
				requestID, nodeID = p.RequestID, p.NodeID
				return true
			}
		}
		return false
	})
	if out, err := cli("nodes", "approve", requestID); err != nil {
		t.Fatalf("openclaw nodes approve: %v\n%s", err, out)
	}

	type invokeOut struct {
		OK      bool
		NodeID  string
		Payload json.RawMessage
		Error   *struct{ Message string }
	}
	invoke := func(command, params string) (invokeOut, string) {
		out, _ := cli("nodes", "invoke", "--node", nodeID, "--command", command, "--params", params, "--json")
		var r invokeOut
		json.Unmarshal([]byte(jsonPart(out)), &r)
		return r, out
	}
	var health invokeOut
	waitFor(t, "openclaw.health through the stock gateway", 2*time.Minute, func() bool {
		var out string
		health, out = invoke(proto.CmdHealth, "{}")
		if !health.OK {
			t.Logf("openclaw.health not yet: %s", tail(out, 400))
		}
		return health.OK
	})
	var h proto.Health
	if err := json.Unmarshal(health.Payload, &h); err != nil || !h.OK || h.Status != 200 || health.NodeID != nodeID {
		t.Errorf("openclaw.health = %s from %s, want the stand-in healthy", health.Payload, health.NodeID)
	}
	for _, c := range []struct{ command, params, has string }{
		{proto.CmdMetrics, "{}", "memTotalBytes"},
		{proto.CmdInfo, "{}", `"runtime":"process"`},
		{proto.CmdLogs, `{"tail":5}`, "GET /health 200"},
	} {
		r, out := invoke(c.command, c.params)
		var compact bytes.Buffer
		json.Compact(&compact, r.Payload)
		if !r.OK || !strings.Contains(compact.String(), c.has) {
			t.Errorf("%s = %s, want ok with %q", c.command, tail(out, 600), c.has)
		}
	}
	// A command that changes the node, unsigned: refused with a reason code, not run.
	r, out := invoke(proto.CmdRestart, "{}")
	if r.OK || !strings.Contains(out, string(clawops.ReasonUnsignedCommand)) {
		t.Errorf("openclaw.restart from the stock gateway = %s, want UNSIGNED_COMMAND", tail(out, 600))
	}
	r, out = invoke(proto.CmdLogs, `{"tail":"5; id"}`)
	if r.OK || !strings.Contains(out, string(clawops.ReasonShellMetachar)) {
		t.Errorf("openclaw.logs with a metacharacter = %s, want SHELL_METACHARACTER", tail(out, 600))
	}
}

// jsonPart drops anything the CLI printed before its JSON.
func jsonPart(out string) string {
	if i := strings.IndexAny(out, "[{"); i >= 0 {
		return out[i:]
	}
	return out
}

func TestStockNodeHostPairsWithClawOps(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
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
	var audits []clawnode.PairingEvent
	var mu sync.Mutex
	hub, err := clawnode.NewHub(clawnode.HubOptions{DB: db, Key: key, TickInterval: 5 * time.Second,
		HeartbeatInterval: 10 * time.Second, // hello-ok carries the ClawOps policy addition the stock node must ignore
		Audit: func(_ context.Context, ev clawnode.PairingEvent) error {
			mu.Lock()
			defer mu.Unlock()
			audits = append(audits, ev)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	// The stock node host dials the gateway's root path; the hub answers on any path.
	srv := httptest.NewServer(hub)
	defer srv.Close()
	port := strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)

	home := filepath.Join(dir, "node-home")
	writeJSON5(t, filepath.Join(home, ".openclaw", "openclaw.json"), fmt.Sprintf(`{
  %s
  nodeHost: { browserProxy: { enabled: false } },
}`, quietConfig(filepath.Join(dir, "node.log"))))
	// No shared gateway token: ClawOps has none. Its first connect becomes a pairing
	// request; after approval it presents the device token the hub issued.
	nodeHost := func() *exec.Cmd {
		return start(t, "openclaw node host", baseEnv(home), e.node, e.openclaw, "node", "run",
			"--host", "127.0.0.1", "--port", port, "--display-name", "interop-node")
	}
	first := nodeHost()

	var req clawnode.PairingRequest
	waitFor(t, "the node host's pairing request", 3*time.Minute, func() bool {
		ps, _ := hub.PendingPairings(ctx)
		if len(ps) > 0 {
			req = ps[0]
		}
		return len(ps) > 0
	})
	if req.ClientID != proto.ClientIDNodeHost || req.DisplayName != "interop-node" || !strings.Contains(req.Commands, "system.which") {
		t.Errorf("pairing request = %+v", req)
	}
	if _, err := hub.ApprovePairing(ctx, req.ID, "stock-1", "interop-test"); err != nil {
		t.Fatal(err)
	}
	node := clawops.NodeID(req.DeviceID)
	waitFor(t, "the approved node host to connect", 2*time.Minute, func() bool { return hub.Connected(node) })

	which := func() {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		raw, err := hub.Invoke(cctx, node, "system.which", map[string]any{"bins": []string{"ls"}})
		var res struct{ Bins map[string]string }
		if err != nil || json.Unmarshal(raw, &res) != nil || !strings.HasSuffix(res.Bins["ls"], "/ls") {
			t.Fatalf("system.which through ClawOps = %s, %v; want the path of ls", raw, err)
		}
	}
	which()

	// Restarted, it reconnects with its device token, without a new approval.
	syscall.Kill(-first.Process.Pid, syscall.SIGKILL)
	waitFor(t, "the hub to see the node host leave", time.Minute, func() bool { return !hub.Connected(node) })
	nodeHost()
	waitFor(t, "the node host to reconnect", 2*time.Minute, func() bool { return hub.Connected(node) })
	which()

	mu.Lock()
	defer mu.Unlock()
	var actions []string
	for _, ev := range audits {
		actions = append(actions, ev.Action)
	}
	for _, want := range []string{clawnode.EventPairingRequested, clawnode.EventApproved, clawnode.EventTokenIssued} {
		if !strings.Contains(strings.Join(actions, ","), want) {
			t.Errorf("audited %v, want %s among them", actions, want)
		}
	}
}
