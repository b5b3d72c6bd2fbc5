//go:build unix

package tools

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode"
	"github.com/gatewayforge/clawops/clawnode/proto"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/fleet/local"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/store"
)

// buildNode builds gf-clawnode for the fault tests.
func buildNode(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gf-clawnode")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/gatewayforge/clawops/cmd/gf-clawnode")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build gf-clawnode: %v\n%s", err, out)
	}
	return bin
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// faultRig is a gateway's fleet side, in process, over real parts: a SQLite file, the node
// hub on a loopback WebSocket, and the local provider running real gf-clawnode processes
// (each supervising an OpenClaw stand-in).
type faultRig struct {
	dir    string
	hub    *clawnode.Hub
	svc    *fleet.Service
	gate   *governance.Gate
	local  *local.Provider
	bus    *fleet.Bus
	mon    *fleet.Monitor
	cancel context.CancelFunc
}

func newFaultRig(t *testing.T) *faultRig {
	t.Helper()
	return newFaultRigWith(t, nil)
}

// newFaultRigWith is newFaultRig whose fleet sees the local provider through wrap (nil:
// as it is).
func newFaultRigWith(t *testing.T, wrap func(*local.Provider) fleet.Provider) *faultRig {
	t.Helper()
	if testing.Short() {
		t.Skip("starts gf-clawnode processes")
	}
	bin := buildNode(t)
	dir := t.TempDir()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{DSN: filepath.Join(dir, "clawops.db")})
	if err != nil {
		t.Fatal(err)
	}
	for _, migrate := range []func() error{func() error { return clawnode.Migrate(db) },
		func() error { return fleet.Migrate(db) }, func() error { return governance.Migrate(db) }} {
		if err := migrate(); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	r := &faultRig{dir: dir, bus: fleet.NewBus(log)}
	var svc *fleet.Service
	hub, err := clawnode.NewHub(clawnode.HubOptions{DB: db, Key: key, Logger: log, TickInterval: time.Second,
		OnHeartbeat: func(ctx context.Context, hb proto.Heartbeat) {
			if svc != nil {
				svc.RecordHeartbeat(ctx, hb)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.hub = hub
	mux := http.NewServeMux()
	mux.Handle("/v1/nodes/ws", hub)
	srv := httptest.NewServer(mux)
	r.local, err = local.New(local.Options{NodeBinary: bin, StateDir: filepath.Join(dir, "local"),
		HeartbeatInterval: time.Second, StopGrace: time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	var prov fleet.Provider = r.local
	if wrap != nil {
		prov = wrap(r.local)
	}
	svc, err = fleet.NewService(fleet.Options{DB: db, Nodes: hub, Tokens: hub, Bus: r.bus,
		Providers:  map[string]fleet.Provider{local.Name: prov},
		GatewayURL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/nodes/ws",
		GatewayKey: base64.RawURLEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
		DefaultRouting: &fleet.RoutingPolicy{Groups: map[string]fleet.GroupRoute{
			"local": {Primary: []fleet.Placement{{Provider: local.Name, Region: "local"}}, Standby: []fleet.Placement{{Provider: local.Name, Region: "local"}}}}},
		Archive:          fleet.DirStore{Root: filepath.Join(dir, "archives")},
		HeartbeatTimeout: 3 * time.Second, HealWait: time.Second, HealPoll: 200 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r.svc = svc
	r.gate, err = governance.NewGate(governance.GateOptions{DB: db, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range All(svc) {
		r.gate.Register(tl)
	}
	r.mon = fleet.NewMonitor(svc, fleet.MonitorOptions{Interval: 2 * time.Second, CostEvery: -1, Logger: log})
	runCtx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	var wg sync.WaitGroup
	wg.Go(func() { svc.RunProvisioner(runCtx, 200*time.Millisecond) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		r.local.Close()
		hub.Close()
		srv.Close()
		store.Close(db)
	})
	return r
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *faultRig) state(t *testing.T, id clawops.InstanceID) fleet.State {
	v, err := r.svc.Instance(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return v.State
}

// guardian subscribes to INSTANCE_DEGRADED as the Guardian's event router will and runs
// gf_heal through the gate for each, one at a time. It records the monitor's sweep count
// when each event arrived.
func (r *faultRig) guardian(t *testing.T, ctx context.Context) (detected func(clawops.InstanceID) int64) {
	sub := r.bus.Subscribe(64, fleet.EventInstanceDegraded)
	var mu sync.Mutex
	seen := map[clawops.InstanceID]int64{}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-sub.C():
				if !ok {
					return
				}
				id := clawops.InstanceID(e.Subject)
				mu.Lock()
				if _, ok := seen[id]; !ok {
					seen[id] = r.mon.Sweeps()
				}
				mu.Unlock()
				args, _ := json.Marshal(map[string]string{"instance": e.Subject})
				out, err := r.gate.Invoke(ctx, guardian, NameHeal, args)
				if out.Result != nil {
					t.Logf("guardian heal %s: %s", e.Subject, out.Result.Summary)
				} else {
					t.Logf("guardian heal %s: %v", e.Subject, err)
				}
			}
		}
	})
	t.Cleanup(func() { sub.Close(); wg.Wait() })
	return func(id clawops.InstanceID) int64 {
		mu.Lock()
		defer mu.Unlock()
		return seen[id]
	}
}

func (r *faultRig) activePair(t *testing.T, account string) {
	t.Helper()
	ctx := context.Background()
	if _, err := r.svc.ProvisionPair(ctx, fleet.PairSpec{Account: account, Tier: "standard",
		Primary: fleet.Placement{Provider: local.Name, Region: "local"}, Standby: fleet.Placement{Provider: local.Name, Region: "local"}}); err != nil {
		t.Fatal(err)
	}
	pri, sby := clawops.InstanceID(account+fleet.PrimarySuffix), clawops.InstanceID(account+fleet.StandbySuffix)
	waitFor(t, "the pair ACTIVE", 30*time.Second, func() bool {
		return r.state(t, pri) == fleet.StateActive && r.state(t, sby) == fleet.StateActive
	})
}

// TestFaultPrimaryKilledFailsOver kills a primary's processes. The monitor's sweep raises
// INSTANCE_DEGRADED, the Guardian's gf_heal runs the runbook (verify, restart, wait) and
// fails over to the ACTIVE standby within three sweep intervals; a new standby is
// provisioned; the audit log holds the trail.
func TestFaultPrimaryKilledFailsOver(t *testing.T) {
	r := newFaultRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.activePair(t, "fault1")
	done := r.bus.Subscribe(16, fleet.EventFailoverCompleted)
	defer done.Close()
	detected := r.guardian(t, ctx)
	go r.mon.Run(ctx)

	if err := r.local.Crash("local-fault1-pri"); err != nil {
		t.Fatal(err)
	}
	var completedAt int64
	select {
	case e := <-done.C():
		completedAt = r.mon.Sweeps()
		t.Logf("failover: %s", e.Summary)
	case <-time.After(60 * time.Second):
		t.Fatal("no failover within 60s")
	}
	det := detected("fault1-pri")
	if det == 0 || completedAt > det+2 {
		t.Errorf("failover completed by sweep %d, detected at sweep %d: want within three sweep intervals", completedAt, det)
	}
	pv, err := r.svc.Pair(ctx, "fault1")
	if err != nil || pv.PrimaryID != "fault1-sby" || pv.Primary.State != fleet.StateActive || pv.StandbyID != "fault1-r1" {
		t.Fatalf("pair after failover: %+v, %v", pv.Pair, err)
	}
	// The new standby is a real server that enrolls and reports healthy.
	waitFor(t, "the new standby ACTIVE", 30*time.Second, func() bool { return r.state(t, "fault1-r1") == fleet.StateActive })
	// Nothing was deleted: the crashed server is kept for review.
	if servers, _ := r.local.List(ctx); len(servers) != 3 {
		t.Errorf("servers: got %d, want 3 (nothing deleted)", len(servers))
	}
	var trail []string
	waitFor(t, "the heal's audit trail", 10*time.Second, func() bool {
		entries, err := r.gate.Audit().List(ctx, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		trail = trail[:0]
		for _, e := range entries {
			if e.Tool == NameHeal && strings.HasPrefix(e.Target, "fault1-pri") {
				trail = append(trail, e.Event+":"+e.Detail)
			}
		}
		return len(trail) >= 3 && strings.Contains(trail[len(trail)-1], "failed_over")
	})
	if !strings.HasPrefix(trail[0], governance.EventRequested) {
		t.Errorf("audit trail of the heal: got %q", trail)
	}
}

// TestFaultStandbyDownEscalates kills the standby, then the primary: the runbook restarts,
// waits, finds no ACTIVE standby and escalates; nothing is deleted and the pair is not
// changed.
func TestFaultStandbyDownEscalates(t *testing.T) {
	r := newFaultRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.activePair(t, "fault2")
	escalated := r.bus.Subscribe(16, fleet.EventHealEscalated, fleet.EventPairFailed)
	defer escalated.Close()
	r.guardian(t, ctx)
	go r.mon.Run(ctx)

	if err := r.local.Crash("local-fault2-sby"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the standby DEGRADED", 30*time.Second, func() bool { return r.state(t, "fault2-sby") == fleet.StateDegraded })
	if err := r.local.Crash("local-fault2-pri"); err != nil {
		t.Fatal(err)
	}
	var critical, pairFailed bool
	deadline := time.After(60 * time.Second)
	for !critical || !pairFailed {
		select {
		case e := <-escalated.C():
			t.Logf("%s %s: %s", e.Type, e.Severity, e.Summary)
			if e.Type == fleet.EventHealEscalated && e.Subject == "fault2-pri" && e.Severity == fleet.SeverityCritical {
				critical = true
			}
			if e.Type == fleet.EventPairFailed && e.Subject == "fault2" {
				pairFailed = true
			}
		case <-deadline:
			t.Fatalf("escalation %v, PAIR_FAILED %v within 60s", critical, pairFailed)
		}
	}
	pv, err := r.svc.Pair(ctx, "fault2")
	if err != nil || pv.PrimaryID != "fault2-pri" || pv.StandbyID != "fault2-sby" {
		t.Fatalf("pair: got %+v, %v; want unchanged", pv.Pair, err)
	}
	servers, _ := r.local.List(ctx)
	if len(servers) != 2 {
		t.Errorf("servers: got %d, want both kept", len(servers))
	}
	for _, id := range []clawops.InstanceID{"fault2-pri", "fault2-sby"} {
		if st := r.state(t, id); st == fleet.StateTerminated {
			t.Errorf("%s was terminated", id)
		}
	}
	// The event is raised inside the runbook; the gate audits "completed" when it returns.
	var entries []governance.AuditEntry
	waitFor(t, "the completed gf_heal of fault2-pri in the audit log", 10*time.Second, func() bool {
		entries, _ = r.gate.Audit().List(ctx, 0, 1000)
		for _, e := range entries {
			if e.Tool == NameHeal && strings.HasPrefix(e.Target, "fault2-pri") && e.Event == governance.EventCompleted &&
				strings.Contains(e.Detail, "escalated") {
				return true
			}
		}
		return false
	})
	for _, e := range entries {
		if e.Tool == NameTeardown || e.Tool == NameFailover {
			t.Errorf("audit has a %s call: %+v", e.Tool, e)
		}
	}
}

// TestRealNodesRollingPush pushes a config to six real gf-clawnode instances through
// gf_config_push, batch by batch. It skips while gf-clawnode does not declare
// config.apply and config.get.
func TestRealNodesRollingPush(t *testing.T) {
	r := newFaultRig(t)
	ctx := context.Background()
	for _, a := range []string{"push1", "push2", "push3"} {
		r.activePair(t, a)
	}
	for _, n := range r.hub.Nodes() {
		if !slices.Contains(n.Commands, fleet.CmdConfigApply) || !slices.Contains(n.Commands, fleet.CmdConfigGet) {
			t.Skipf("gf-clawnode declares %v: no config.apply/config.get yet", n.Commands)
		}
	}
	commander := clawops.Actor{Identity: "alice", Role: clawops.RoleOperator, Agent: clawops.Commander}
	out, err := r.gate.Invoke(ctx, commander, NameConfigPush,
		json.RawMessage(`{"config":{"gateway":{"mode":"local"}},"version":"v2","targets":"all_active","batch_size":2,"max_fail_percent":0}`))
	if err != nil || out.Decision != clawops.NeedsApproval {
		t.Fatalf("push: got %+v, %v", out, err)
	}
	out, err = r.gate.Decide(ctx, approver, out.ApprovalID, true, "go")
	if err != nil || out.Result == nil {
		t.Fatalf("approve: %+v, %v", out, err)
	}
	var started fleet.PushView
	json.Unmarshal(out.Result.Data, &started)
	v, err := r.svc.RunPush(ctx, started.ID)
	if err != nil || v.State != fleet.PushCompleted || v.Counts[fleet.TargetApplied] != 6 {
		t.Fatalf("push: got %+v, %v", v, err)
	}
}

// TestRealNodesTeardownArchives tears down a real standby through gf_teardown: its node
// packs the workspace (backup.create), hands the file over (backup.read), and it is stored
// in the archive folder with its SHA-256 checked before the server is deleted.
func TestRealNodesTeardownArchives(t *testing.T) {
	r := newFaultRig(t)
	ctx := context.Background()
	r.activePair(t, "arch1")
	for _, n := range r.hub.Nodes() {
		if !slices.Contains(n.Commands, fleet.CmdBackup) {
			t.Skipf("gf-clawnode declares %v: no backup.create yet", n.Commands)
		}
	}
	dir, _ := r.local.Dir("local-arch1-sby")
	if err := os.WriteFile(filepath.Join(dir, "workspace", "MEMORY.md"), []byte("the user's notes"), 0o600); err != nil {
		t.Fatal(err)
	}
	commander := clawops.Actor{Identity: "alice", Role: clawops.RoleOperator, Agent: clawops.Commander}
	out, err := r.gate.Invoke(ctx, commander, NameTeardown, json.RawMessage(`{"instance":"arch1-sby"}`))
	if err != nil || out.Decision != clawops.NeedsApproval {
		t.Fatalf("teardown: got %+v, %v", out, err)
	}
	out, err = r.gate.Decide(ctx, approver, out.ApprovalID, true, "idle")
	if err != nil || out.Result == nil || !strings.Contains(out.Result.Summary, "workspace archived to file://") {
		t.Fatalf("approve: got %+v, %v", out, err)
	}
	list, err := r.svc.Archives(ctx, "arch1")
	if err != nil || len(list) != 1 {
		t.Fatalf("archives: got %v, %v", list, err)
	}
	b, err := os.ReadFile(strings.TrimPrefix(list[0].Location, "file://"))
	if err != nil || int64(len(b)) != list[0].Size || sha256hex(b) != list[0].SHA256 {
		t.Fatalf("archive file: %d bytes, %v; want %d bytes with sha256 %s", len(b), err, list[0].Size, list[0].SHA256)
	}
	if v, _ := r.svc.Instance(ctx, "arch1-sby"); v.State != fleet.StateTerminated {
		t.Errorf("arch1-sby: got %s, want TERMINATED", v.State)
	}
	if servers, _ := r.local.List(ctx); len(servers) != 1 {
		t.Errorf("servers: got %d, want 1 (the standby deleted)", len(servers))
	}
}

// cloudLike is the local provider as the fleet sees a cloud: no BackupFetcher, so a
// server's files can reach the gateway only over the node plane. Before a server is
// deleted it hashes the archives the server's node wrote, for the test to compare.
type cloudLike struct {
	fleet.Provider // an interface: *local.Provider's FetchBackup is not promoted
	local          *local.Provider
	mu             sync.Mutex
	onDisk         map[string]string // archive file → sha256, seen before Delete
}

func (c *cloudLike) Delete(ctx context.Context, providerID string) error {
	if dir, ok := c.local.Dir(providerID); ok {
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && strings.HasPrefix(d.Name(), "openclaw-") && strings.HasSuffix(d.Name(), ".tar.gz") {
				if b, err := os.ReadFile(path); err == nil {
					c.mu.Lock()
					c.onDisk[path] = sha256hex(b)
					c.mu.Unlock()
				}
			}
			return nil
		})
	}
	return c.Provider.Delete(ctx, providerID)
}

// TestRealNodesTeardownArchivesOverNodePlane is TestRealNodesTeardownArchives at a
// provider that cannot fetch files, as every cloud is: the archive of a 9 MiB workspace
// travels from the real gf-clawnode to the gateway as backup.read chunks over the real hub
// (three frames of up to 4 MiB of data each) and is stored byte for byte identical to the
// file the node wrote, before the server is deleted.
func TestRealNodesTeardownArchivesOverNodePlane(t *testing.T) {
	var cloud *cloudLike
	r := newFaultRigWith(t, func(p *local.Provider) fleet.Provider {
		cloud = &cloudLike{Provider: p, local: p, onDisk: map[string]string{}}
		return cloud
	})
	if _, ok := any(cloud).(fleet.BackupFetcher); ok {
		t.Fatal("the wrapped provider still fetches files: the test would not prove the node-plane path")
	}
	ctx := context.Background()
	r.activePair(t, "arch2")
	dir, _ := r.local.Dir("local-arch2-sby")
	noise := make([]byte, 9<<20)
	rand.Read(noise) // incompressible: the archive is as large as the workspace
	if err := os.WriteFile(filepath.Join(dir, "workspace", "MEMORY.md"), noise, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := r.svc.TeardownWith(ctx, "arch2-sby", fleet.TeardownOptions{})
	if err != nil || res.Archive == nil {
		t.Fatalf("teardown: got %+v, %v", res, err)
	}
	a := res.Archive
	if a.Size <= 2*proto.MaxBackupChunk {
		t.Fatalf("archive of %d bytes: want more than two chunks", a.Size)
	}
	b, err := os.ReadFile(strings.TrimPrefix(a.Location, "file://"))
	if err != nil || int64(len(b)) != a.Size || sha256hex(b) != a.SHA256 {
		t.Fatalf("stored archive: %d bytes, %v; want %d bytes with sha256 %s", len(b), err, a.Size, a.SHA256)
	}
	cloud.mu.Lock()
	onDisk := maps.Clone(cloud.onDisk)
	cloud.mu.Unlock()
	if len(onDisk) != 1 {
		t.Fatalf("archives on the node before delete: got %v, want the one backup.create wrote", onDisk)
	}
	for path, sum := range onDisk {
		if sum != a.SHA256 {
			t.Errorf("node's archive %s has sha256 %s; stored %s", path, sum, a.SHA256)
		}
	}
	if v, _ := r.svc.Instance(ctx, "arch2-sby"); v.State != fleet.StateTerminated {
		t.Errorf("arch2-sby: got %s, want TERMINATED", v.State)
	}
	if servers, _ := r.local.List(ctx); len(servers) != 1 {
		t.Errorf("servers: got %d, want 1 (the standby deleted)", len(servers))
	}
}
