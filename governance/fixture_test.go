package governance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/store"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 3, 9, 30, 0, 123456789, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// openDB opens a fresh SQLite database file in a temp dir, with the governance tables.
func openDB(t testing.TB) (*gorm.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gov.db")
	db := openPath(t, path)
	if err := Migrate(db); err != nil {
		t.Fatal(err)
	}
	return db, path
}

func openPath(t testing.TB, path string) *gorm.DB {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{DSN: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	return db
}

// testLogger sends gate logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// recordingNotifier remembers every approval it is told about.
type recordingNotifier struct {
	mu   sync.Mutex
	seen []Approval
}

func (n *recordingNotifier) ApprovalChanged(_ context.Context, a Approval) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seen = append(n.seen, a)
}

func (n *recordingNotifier) states(id string) []ApprovalState {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []ApprovalState
	for _, a := range n.seen {
		if a.ID == id {
			out = append(out, a.State)
		}
	}
	return out
}

// testTool is a small real Tool over an in-memory fleet. Its arguments are
// {"instances": ["i-001", ...]}; its plan targets those instances.
type testTool struct {
	spec ToolSpec

	mu             sync.Mutex
	fleet          map[clawops.InstanceID]Target
	applied        []Plan
	applyErr       error
	onApply        func(ctx context.Context, p Plan)
	rollingBatch   int
	providerDelete bool
	costEach       float64 // monthly cost delta per instance; 0: -4.5 (a saving)
}

func newTestTool(name string, action Action, risk clawops.RiskClass, fleetSize int) *testTool {
	tt := &testTool{
		spec:  ToolSpec{Name: name, Description: "test tool", Action: action, Risk: risk, Schema: json.RawMessage(`{"type":"object"}`)},
		fleet: make(map[clawops.InstanceID]Target),
	}
	for i := 1; i <= fleetSize; i++ {
		id := clawops.InstanceID(fmt.Sprintf("i-%03d", i))
		tt.fleet[id] = Target{Instance: id, Account: fmt.Sprintf("acct-%03d", i), Role: "primary",
			State: "ACTIVE", PeerState: "ACTIVE", Users: 1}
	}
	return tt
}

func (tt *testTool) Spec() ToolSpec { return tt.spec }

type testArgs struct {
	Instances []clawops.InstanceID `json:"instances"`
}

func (tt *testTool) Plan(_ context.Context, _ clawops.Actor, args json.RawMessage) (Plan, error) {
	var a testArgs
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return Plan{}, clawops.E("test.plan", clawops.KindInvalid, clawops.ReasonBadArguments, err)
	}
	tt.mu.Lock()
	defer tt.mu.Unlock()
	p := Plan{Summary: fmt.Sprintf("%s on %d instances", tt.spec.Action, len(a.Instances)),
		Reversible: tt.spec.Action != ActionTeardown, ProviderDelete: tt.providerDelete,
		CostDeltaMonthlyUSD: -4.5 * float64(len(a.Instances)), ExpectedDuration: 2 * time.Minute}
	if tt.costEach != 0 {
		p.CostDeltaMonthlyUSD = tt.costEach * float64(len(a.Instances))
	}
	if tt.rollingBatch > 0 {
		p.Rolling, p.BatchSize = true, tt.rollingBatch
	}
	for _, id := range a.Instances {
		tg, ok := tt.fleet[id]
		if !ok {
			return Plan{}, clawops.E("test.plan", clawops.KindNotFound, clawops.ReasonUnknownInstance, "no instance "+string(id))
		}
		p.Targets = append(p.Targets, tg)
		p.UsersAffected += tg.Users
		p.Effects = append(p.Effects, Effect{Kind: "node.command", Target: string(id), Detail: string(tt.spec.Action)})
	}
	return p, nil
}

func (tt *testTool) Apply(ctx context.Context, p Plan) (Result, error) {
	tt.mu.Lock()
	tt.applied = append(tt.applied, p)
	err, hook := tt.applyErr, tt.onApply
	tt.mu.Unlock()
	if hook != nil {
		hook(ctx, p)
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Summary: fmt.Sprintf("did %s on %d instances", tt.spec.Action, len(p.Targets)),
		Data: json.RawMessage(`{"ok":true}`)}, nil
}

func (tt *testTool) applies() int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return len(tt.applied)
}

func (tt *testTool) setTarget(id clawops.InstanceID, f func(*Target)) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tg := tt.fleet[id]
	f(&tg)
	tt.fleet[id] = tg
}

// instancesArgs builds {"instances": ["i-001", ... "i-00n"]}.
func instancesArgs(n int) json.RawMessage {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("i-%03d", i+1)
	}
	b, _ := json.Marshal(map[string]any{"instances": ids})
	return b
}

type harness struct {
	gate     *Gate
	db       *gorm.DB
	path     string
	clock    *fakeClock
	notifier *recordingNotifier
}

func newHarness(t testing.TB, tools ...Tool) *harness {
	t.Helper()
	db, path := openDB(t)
	h := &harness{db: db, path: path, clock: newFakeClock(), notifier: &recordingNotifier{}}
	g, err := NewGate(GateOptions{DB: db, Clock: h.clock, Logger: testLogger(t), Notifier: h.notifier})
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools {
		g.Register(tool)
	}
	h.gate = g
	return h
}

// events returns the audit log as "event/reason" strings, in order.
func (h *harness) events(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, e := range h.entries(t) {
		s := e.Event
		if e.Reason != "" {
			s += "/" + string(e.Reason)
		}
		out = append(out, s)
	}
	return out
}

func (h *harness) entries(t testing.TB) []AuditEntry {
	t.Helper()
	es, err := h.gate.Audit().List(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func (h *harness) verify(t testing.TB) {
	t.Helper()
	rep, err := h.gate.Audit().Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("audit verify: got %+v, want OK", rep)
	}
}

// Actors used across tests.
var (
	alice    = clawops.Actor{Identity: "tg:alice", Role: clawops.RoleOperator, Agent: clawops.Commander, Channel: "telegram"}
	bob      = clawops.Actor{Identity: "slack:bob", Role: clawops.RoleApprover, Channel: "slack"}
	carol    = clawops.Actor{Identity: "slack:carol", Role: clawops.RoleAdmin, Channel: "slack"}
	guardian = clawops.Actor{Identity: "agent:guardian", Agent: clawops.Guardian}
	forge    = clawops.Actor{Identity: "agent:forge", Agent: clawops.Forge}
)

func wantReason(t testing.TB, err error, want clawops.ReasonCode, wantKind clawops.Kind) {
	t.Helper()
	if got := clawops.ReasonOf(err); got != want {
		t.Fatalf("reason: got %q (err %v), want %q", got, err, want)
	}
	if got := clawops.KindOf(err); got != wantKind {
		t.Fatalf("kind: got %v, want %v", got, wantKind)
	}
}
