package tools

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/store"
)

// nodeRecorder is the NodeInvoker at the node boundary: it records commands and answers.
type nodeRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (n *nodeRecorder) Invoke(_ context.Context, node clawops.NodeID, command string, params any) (json.RawMessage, error) {
	b, _ := json.Marshal(params)
	n.mu.Lock()
	n.calls = append(n.calls, string(node)+" "+command+" "+string(b))
	n.mu.Unlock()
	switch command {
	case fleet.CmdLogs:
		return json.RawMessage(`{"lines":["booted","ready"]}`), nil
	case fleet.CmdHealth:
		return json.RawMessage(`{"ok":true,"status":200,"latencyMs":3,"checkedAt":1}`), nil
	}
	return json.RawMessage(`{}`), nil
}

type tokens struct{}

func (tokens) MintJoinToken(_ context.Context, id clawops.InstanceID, _ time.Duration) (string, error) {
	return "tok-" + string(id), nil
}

// nullProvider accepts every server; it sits at the cloud boundary.
type nullProvider struct {
	mu      sync.Mutex
	deletes []string
}

func (p *nullProvider) Name() string { return "null" }
func (p *nullProvider) Create(_ context.Context, s fleet.ServerSpec) (fleet.Server, error) {
	return fleet.Server{ProviderID: "srv-" + s.Name, Name: s.Name}, nil
}
func (p *nullProvider) Get(context.Context, string) (fleet.Server, error) { return fleet.Server{}, nil }
func (p *nullProvider) Delete(_ context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deletes = append(p.deletes, id)
	return nil
}
func (p *nullProvider) Resize(context.Context, string, string) error { return nil }
func (p *nullProvider) List(context.Context) ([]fleet.Server, error) { return nil, nil }

// TestThroughGate runs the catalog over the real fleet service and the real gate on one
// SQLite file: the plans carry what the gate's invariants and approvals need.
func TestThroughGate(t *testing.T) {
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
	nodes, prov := &nodeRecorder{}, &nullProvider{}
	svc, err := fleet.NewService(fleet.Options{DB: db, Nodes: nodes, Tokens: tokens{},
		Providers: map[string]fleet.Provider{"null": prov}, GatewayURL: "ws://127.0.0.1:1/v1/nodes/ws", GatewayKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	gate, err := governance.NewGate(governance.GateOptions{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range All(svc) {
		gate.Register(tl)
	}
	for _, acct := range []string{"demo1", "demo2"} {
		if _, err := svc.ProvisionPair(ctx, fleet.PairSpec{Account: acct, Tier: "standard",
			Primary: fleet.Placement{Provider: "null", Region: "local"}, Standby: fleet.Placement{Provider: "null", Region: "local"}}); err != nil {
			t.Fatal(err)
		}
	}
	beat := func(id clawops.InstanceID, ok bool) {
		t.Helper()
		if err := svc.RecordHeartbeat(ctx, proto.Heartbeat{Node: clawops.NodeID("node-" + id), Instance: id,
			OpenClaw: proto.Health{OK: ok}}); err != nil {
			t.Fatal(err)
		}
	}
	beat("demo1-pri", true)
	beat("demo1-sby", true)
	beat("demo2-pri", true)
	beat("demo2-sby", false)

	invoke := func(tool, args string) (governance.Outcome, error) {
		return gate.Invoke(ctx, actor, tool, json.RawMessage(args))
	}

	// demo2-sby's unhealthy first heartbeat leaves it BOOTSTRAPPING.
	out, err := invoke(NameFleetStatus, `{}`)
	if err != nil || out.Result == nil || out.Result.Summary != "4 instances: 1 BOOTSTRAPPING, 3 ACTIVE" {
		t.Fatalf("status: got %+v, %v", out, err)
	}

	out, err = invoke(NameRestart, `{"instance":"demo1-pri"}`)
	if err != nil || out.Decision != clawops.Allow {
		t.Fatalf("restart: got %+v, %v, want allowed", out, err)
	}
	out, err = invoke(NameInstanceLogs, `{"instance":"demo1-sby","lines":2}`)
	if err != nil || out.Result == nil || out.Result.Summary != "demo1-sby: 2 log lines\nbooted\nready" {
		t.Fatalf("logs: got %+v, %v", out, err)
	}

	// The primary of demo2 is ACTIVE and its standby is not: the invariant denies.
	_, err = invoke(NameTeardown, `{"instance":"demo2-pri"}`)
	wantReason(t, err, clawops.ReasonStandbyNotActive)
	// A teardown the invariants allow still needs a human: high risk.
	out, err = invoke(NameTeardown, `{"instance":"demo1-sby"}`)
	if err != nil || out.Decision != clawops.NeedsApproval || out.ApprovalID == "" {
		t.Fatalf("teardown standby: got %+v, %v, want needs approval", out, err)
	}
	if len(prov.deletes) != 0 {
		t.Errorf("provider deletes before approval: got %v, want none", prov.deletes)
	}
	approver := clawops.Actor{Identity: "bob", Role: clawops.RoleApprover}
	out, err = gate.Decide(ctx, approver, out.ApprovalID, true, "ok")
	if err != nil || out.Result == nil {
		t.Fatalf("approve teardown: got %+v, %v", out, err)
	}
	if len(prov.deletes) != 1 || prov.deletes[0] != "srv-demo1-sby" {
		t.Errorf("provider deletes: got %v, want [srv-demo1-sby]", prov.deletes)
	}
	if v, _ := svc.Instance(ctx, "demo1-sby"); v.State != fleet.StateTerminated {
		t.Errorf("demo1-sby: got %s, want TERMINATED", v.State)
	}
	nodes.mu.Lock()
	defer nodes.mu.Unlock()
	want := []string{"node-demo1-pri openclaw.restart {}", `node-demo1-sby openclaw.logs {"tail":2}`}
	if len(nodes.calls) != 2 || nodes.calls[0] != want[0] || nodes.calls[1] != want[1] {
		t.Errorf("node commands: got %q, want %q", nodes.calls, want)
	}
}
