// Package channelstest holds what the adapter tests share: a real governance gate on a SQLite
// file with one approval-needing tool, the allowFrom directory of three people (an operator,
// an approver, a viewer), and small helpers. It is the one place that knows how to set up the
// gate, so a change to the gate's API is fixed here once, not in every adapter's tests.
package channelstest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/store"
)

// ToolName is the fixture tool: resize an instance to a tier, which the Commander may only do
// with approval.
const ToolName = "gf_resize"

// People are the platform sender ids of the fixture's three identities on one channel.
type People struct {
	Operator string // alice: may chat and request, may not approve
	Approver string // bob: may approve
	Viewer   string // carol: may only read; her presses are refused with NOT_APPROVER
}

// Fixture is a real gate with its audit log, a directory and the tool, wired for one channel.
// DB is the gate's SQLite database, with the channels room's tables migrated too: give it to
// two adapters in turn to play a gateway restart.
type Fixture struct {
	DB        *gorm.DB
	Gate      *governance.Gate
	Audit     *governance.AuditLog
	Directory *channels.Directory
	Tool      *Tool
	Channel   string
	People    People
	Logger    *slog.Logger

	notifier forwardNotifier
}

// New builds a fixture for channel with the given sender ids.
func New(t testing.TB, channel string, people People) *Fixture {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{DSN: filepath.Join(t.TempDir(), "gate.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	if err := governance.Migrate(db); err != nil {
		t.Fatal(err)
	}
	if err := channels.Migrate(db); err != nil {
		t.Fatal(err)
	}
	f := &Fixture{DB: db, Channel: channel, People: people, Logger: Logger(t), Tool: &Tool{}}
	f.Gate, err = governance.NewGate(governance.GateOptions{DB: db, Logger: f.Logger.With("room", "gate"),
		Notifier: &f.notifier})
	if err != nil {
		t.Fatal(err)
	}
	f.Gate.Register(f.Tool)
	f.Audit = f.Gate.Audit()
	f.Directory, err = channels.NewDirectory([]channels.Allow{
		{Channel: channel, Sender: people.Operator, Identity: "alice", Role: clawops.RoleOperator},
		{Channel: channel, Sender: people.Approver, Identity: "bob", Role: clawops.RoleApprover},
		{Channel: channel, Sender: people.Viewer, Identity: "carol", Role: clawops.RoleViewer},
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Env returns a channels.Env wired to the fixture (Deliver is left to the caller).
func (f *Fixture) Env() channels.Env {
	return channels.Env{Logger: f.Logger, Resolver: f.Directory, Decider: f.Gate, Auditor: f.Audit, DB: f.DB}
}

// Approvals returns the press handler over the fixture's directory, gate and audit log.
func (f *Fixture) Approvals() *channels.Approvals { return f.Env().Approvals() }

// NotifyTo makes the gate's approval changes go to n (usually a channels.Notifier over the
// adapter under test).
func (f *Fixture) NotifyTo(n governance.Notifier) { f.notifier.set(n) }

// Request has alice ask, through the Commander, to resize instance to tier; it returns the
// id of the approval that needs a decision.
func (f *Fixture) Request(t testing.TB, instance, tier string) string {
	t.Helper()
	args, _ := json.Marshal(ResizeArgs{Instance: instance, Tier: tier})
	actor := clawops.Actor{Identity: "alice", Role: clawops.RoleOperator, Agent: clawops.Commander, Channel: f.Channel}
	out, err := f.Gate.Invoke(context.Background(), actor, ToolName, args)
	if err != nil || out.Decision != clawops.NeedsApproval || out.ApprovalID == "" {
		t.Fatalf("invoke %s: got %+v, %v; want a pending approval", ToolName, out, err)
	}
	return out.ApprovalID
}

// State returns the state of approval id.
func (f *Fixture) State(t testing.TB, id string) governance.ApprovalState {
	t.Helper()
	a, err := f.Gate.Approval(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.State
}

// AuditHas reports whether the audit log has an entry with event and reason whose actor
// contains actor.
func (f *Fixture) AuditHas(t testing.TB, event string, reason clawops.ReasonCode, actor string) bool {
	t.Helper()
	entries, err := f.Audit.List(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Event == event && e.Reason == reason && strings.Contains(e.Actor, actor) {
			return true
		}
	}
	return false
}

// ResizeArgs are the fixture tool's arguments.
type ResizeArgs struct {
	Instance string `json:"instance"`
	Tier     string `json:"tier"`
}

// Tool is the fixture's governed tool. It records every plan it applies.
type Tool struct {
	mu      sync.Mutex
	applied []ResizeArgs
}

// Spec describes the tool: a tier change, low risk, so only the role table asks for approval.
func (*Tool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: ToolName, Description: "resize an instance", Action: governance.ActionTierChange,
		Risk: clawops.RiskMedium, Schema: json.RawMessage(`{"type":"object"}`)}
}

// Plan validates the arguments and describes the resize.
func (*Tool) Plan(_ context.Context, _ clawops.Actor, raw json.RawMessage) (governance.Plan, error) {
	var a ResizeArgs
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil || a.Instance == "" || a.Tier == "" {
		return governance.Plan{}, clawops.E("resize.plan", clawops.KindInvalid, clawops.ReasonBadArguments, "need instance and tier")
	}
	return governance.Plan{
		Summary:             fmt.Sprintf("Resize %s to %s", a.Instance, a.Tier),
		Targets:             []governance.Target{{Instance: clawops.InstanceID(a.Instance), Role: "primary", State: "ACTIVE", PeerState: "ACTIVE", Users: 1}},
		UsersAffected:       1,
		Reversible:          true,
		CostDeltaMonthlyUSD: 12.5,
		ExpectedDuration:    2 * time.Minute,
		Effects:             []governance.Effect{{Kind: "provider.resize", Target: a.Instance, Detail: "tier " + a.Tier}},
	}, nil
}

// Apply records the plan's arguments.
func (t *Tool) Apply(_ context.Context, p governance.Plan) (governance.Result, error) {
	var a ResizeArgs
	if err := json.Unmarshal(p.Args, &a); err != nil {
		return governance.Result{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.applied = append(t.applied, a)
	return governance.Result{Summary: fmt.Sprintf("%s is now %s", a.Instance, a.Tier)}, nil
}

// Applied returns the arguments of every plan applied so far.
func (t *Tool) Applied() []ResizeArgs {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]ResizeArgs(nil), t.applied...)
}

type forwardNotifier struct {
	mu sync.RWMutex
	n  governance.Notifier
}

func (f *forwardNotifier) set(n governance.Notifier) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n = n
}

func (f *forwardNotifier) ApprovalChanged(ctx context.Context, a governance.Approval) {
	f.mu.RLock()
	n := f.n
	f.mu.RUnlock()
	if n != nil {
		n.ApprovalChanged(ctx, a)
	}
}

// Logger returns a logger writing to t.Log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// Eventually polls cond every few milliseconds until it holds or 10 seconds pass.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Echo is a channels.Handler that answers every message with "echo: <text>".
type Echo struct{}

// Handle answers text.
func (Echo) Handle(_ context.Context, actor clawops.Actor, text string) ([]string, error) {
	return []string{"echo " + actor.Identity + ": " + text}, nil
}

// FakeSleep is an outbox Sleep that waits for nothing and records what it was asked to wait.
type FakeSleep struct {
	mu    sync.Mutex
	waits []time.Duration
}

// Sleep records d and returns at once (or ctx's error).
func (s *FakeSleep) Sleep(ctx context.Context, d time.Duration) error {
	if d > 0 {
		s.mu.Lock()
		s.waits = append(s.waits, d)
		s.mu.Unlock()
	}
	return ctx.Err()
}

// Waits returns the recorded non-zero waits.
func (s *FakeSleep) Waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// Golden compares got, as indented JSON, with the file at path; with update set it rewrites
// the file instead.
func Golden(t testing.TB, path string, got any, update bool) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(got); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if d := cmp.Diff(string(want), string(b)); d != "" {
		t.Errorf("%s differs (-want +got; run with -update if intended):\n%s", path, d)
	}
}
