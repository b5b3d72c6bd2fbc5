package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/store"
)

// simNodes answers node commands at the NodeInvoker boundary with the shapes gf-clawnode
// uses, per node: up or down, OpenClaw healthy or not, the config version and the image
// it runs.
type simNodes struct {
	mu        sync.Mutex
	down      map[clawops.NodeID]bool
	unhealthy map[clawops.NodeID]bool
	version   map[clawops.NodeID]string
	applies   map[clawops.NodeID]int
	image     map[clawops.NodeID]string
	upgrades  map[clawops.NodeID]int
	calls     []string
}

func newSimNodes() *simNodes {
	return &simNodes{down: map[clawops.NodeID]bool{}, unhealthy: map[clawops.NodeID]bool{},
		version: map[clawops.NodeID]string{}, applies: map[clawops.NodeID]int{},
		image: map[clawops.NodeID]string{}, upgrades: map[clawops.NodeID]int{}}
}

func (s *simNodes) Invoke(ctx context.Context, node clawops.NodeID, command string, params any) (json.RawMessage, error) {
	b, _ := json.Marshal(params)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, fmt.Sprintf("%s %s", node, command))
	if s.down[node] {
		return nil, clawops.E("invoke", clawops.KindTransient, clawops.ReasonNodeOffline, "node is not connected")
	}
	switch command {
	case fleet.CmdHealth:
		if s.unhealthy[node] {
			return json.RawMessage(`{"ok":false,"status":502,"latencyMs":4,"error":"bad gateway","checkedAt":1}`), nil
		}
		return json.RawMessage(`{"ok":true,"status":200,"latencyMs":4,"checkedAt":1}`), nil
	case fleet.CmdRestart:
		return json.RawMessage(`{"restarted":true,"container":"running"}`), nil
	case fleet.CmdMetrics:
		return json.Marshal(proto.Metrics{CPUPercent: 3, MemUsedBytes: 1, MemTotalBytes: 10, DiskUsedBytes: 1, DiskTotalBytes: 10})
	case fleet.CmdLogs:
		return json.RawMessage(`{"lines":["ready"]}`), nil
	case fleet.CmdConfigGet:
		v := s.version[node]
		if v == "" {
			v = "v0"
		}
		return json.Marshal(fleet.ConfigGetResult{Version: v, Config: json.RawMessage(`{}`)})
	case fleet.CmdConfigApply:
		var p fleet.ConfigApplyParams
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, err
		}
		s.version[node] = p.Version
		s.applies[node]++
		return json.Marshal(fleet.ConfigApplyResult{Version: p.Version, Healthy: true})
	case fleet.CmdInfo:
		return json.Marshal(proto.VPSInfo{Hostname: string(node), OS: "linux", Runtime: "docker", Image: s.image[node]})
	case fleet.CmdUpgrade:
		var p proto.UpgradeParams
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, err
		}
		prev := s.image[node]
		s.image[node] = p.Image
		s.upgrades[node]++
		return json.Marshal(proto.UpgradeResult{Image: p.Image, PreviousImage: prev, Healthy: true})
	}
	return nil, clawops.E("invoke", clawops.KindDenied, clawops.ReasonNotAllowlisted, command)
}

// cloud is a provider that accepts every server and lists them.
type cloud struct {
	name    string
	mu      sync.Mutex
	servers map[string]fleet.Server
	deletes []string
	resizes []string
}

func (c *cloud) Name() string { return c.name }
func (c *cloud) Create(_ context.Context, s fleet.ServerSpec) (fleet.Server, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	srv := fleet.Server{ProviderID: c.name + "-" + s.Name, Name: s.Name, Region: s.Region, Size: s.Size, Labels: s.Labels}
	c.servers[srv.ProviderID] = srv
	return srv, nil
}
func (c *cloud) Get(context.Context, string) (fleet.Server, error) { return fleet.Server{}, nil }
func (c *cloud) Delete(_ context.Context, id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deletes = append(c.deletes, id)
	delete(c.servers, id)
	return nil
}
func (c *cloud) Resize(_ context.Context, id, size string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resizes = append(c.resizes, id+"="+size)
	return nil
}
func (c *cloud) List(context.Context) ([]fleet.Server, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []fleet.Server
	for _, s := range c.servers {
		out = append(out, s)
	}
	return out, nil
}

// fixedClock is the clock of the ops tests.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// opsRig is the real fleet service and the real gate over one SQLite file, with
// simulated nodes and clouds at their boundaries.
type opsRig struct {
	svc   *fleet.Service
	gate  *governance.Gate
	nodes *simNodes
	hz    *cloud
	vu    *cloud
	clock *fixedClock
}

var euPolicy = &fleet.RoutingPolicy{Groups: map[string]fleet.GroupRoute{
	"eu": {Primary: []fleet.Placement{{Provider: "hetzner", Region: "fsn1"}}, Standby: []fleet.Placement{{Provider: "vultr", Region: "ams"}}},
}}

func newOpsRig(t testing.TB) *opsRig {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{DSN: filepath.Join(t.TempDir(), "clawops.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	if err := fleet.Migrate(db); err != nil {
		t.Fatal(err)
	}
	if err := governance.Migrate(db); err != nil {
		t.Fatal(err)
	}
	r := &opsRig{nodes: newSimNodes(), hz: &cloud{name: "hetzner", servers: map[string]fleet.Server{}},
		vu:    &cloud{name: "vultr", servers: map[string]fleet.Server{}},
		clock: &fixedClock{t: time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)}}
	r.svc, err = fleet.NewService(fleet.Options{DB: db, Nodes: r.nodes, Tokens: tokens{},
		Providers:  map[string]fleet.Provider{"hetzner": r.hz, "vultr": r.vu},
		GatewayURL: "ws://127.0.0.1:1/v1/nodes/ws", GatewayKey: "k", DefaultRouting: euPolicy,
		HealWait: 100 * time.Millisecond, HealPoll: 10 * time.Millisecond, Clock: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	r.gate, err = governance.NewGate(governance.GateOptions{DB: db, Clock: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range All(r.svc) {
		r.gate.Register(tl)
	}
	return r
}

// activePairs provisions pairs <prefix>NNN and brings both members ACTIVE with nodes.
func (r *opsRig) activePairs(t testing.TB, prefix string, n int) []clawops.InstanceID {
	t.Helper()
	ctx := context.Background()
	var ids []clawops.InstanceID
	for i := range n {
		acct := fmt.Sprintf("%s%03d", prefix, i)
		if _, err := r.svc.ProvisionPair(ctx, fleet.PairSpec{Account: acct, Tier: "standard",
			Primary: fleet.Placement{Provider: "hetzner", Region: "fsn1"}, Standby: fleet.Placement{Provider: "vultr", Region: "ams"}}); err != nil {
			t.Fatal(err)
		}
		for _, id := range []clawops.InstanceID{clawops.InstanceID(acct + fleet.PrimarySuffix), clawops.InstanceID(acct + fleet.StandbySuffix)} {
			if err := r.svc.RecordHeartbeat(ctx, proto.Heartbeat{Node: clawops.NodeID("node-" + id), Instance: id,
				OpenClaw: proto.Health{OK: true}}); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
	}
	return ids
}

func (r *opsRig) invoke(t *testing.T, actor clawops.Actor, tool, args string) (governance.Outcome, error) {
	t.Helper()
	return r.gate.Invoke(context.Background(), actor, tool, json.RawMessage(args))
}

var (
	guardian = clawops.Actor{Identity: "agent:guardian", Agent: clawops.Guardian}
	forge    = clawops.Actor{Identity: "agent:forge", Agent: clawops.Forge}
	ledger   = clawops.Actor{Identity: "agent:ledger", Agent: clawops.Ledger}
	triage   = clawops.Actor{Identity: "agent:triage", Agent: clawops.Triage}
	approver = clawops.Actor{Identity: "bob", Role: clawops.RoleApprover}
)

// golden compares v, as indented JSON, with testdata/name; -update rewrites it.
func golden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./tools -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}
