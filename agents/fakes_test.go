package agents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/store"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

type invokeCall struct {
	Actor clawops.Actor
	Tool  string
	Args  string
}

type decideCall struct {
	Decider clawops.Actor
	ID      string
	Approve bool
	Reason  string
}

var instanceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// fakeGate is a small in-memory gate that behaves like the real one at its boundary:
// strict args, unknown instances, a viewer may only read, teardown needs approval, and the
// approval rules (approver role, no self-approval, decide once).
type fakeGate struct {
	clock *fakeClock

	mu        sync.Mutex
	calls     []invokeCall
	decides   []decideCall
	approvals map[string]governance.Approval
	order     []string

	// hold, when set, makes Invoke of gf_fleet_status wait for it to close;
	// entered receives the identity each time such a call starts.
	hold    chan struct{}
	entered chan string
}

func newFakeGate(clock *fakeClock) *fakeGate {
	return &fakeGate{clock: clock, approvals: map[string]governance.Approval{}}
}

func (g *fakeGate) Invoke(ctx context.Context, actor clawops.Actor, tool string, args json.RawMessage) (governance.Outcome, error) {
	g.mu.Lock()
	g.calls = append(g.calls, invokeCall{actor, tool, string(args)})
	hold, entered := g.hold, g.entered
	g.mu.Unlock()
	deny := func(kind clawops.Kind, code clawops.ReasonCode, msg string) (governance.Outcome, error) {
		out := governance.Outcome{Tool: tool, Reason: code, Message: msg}
		if kind == clawops.KindDenied {
			out.Decision = clawops.Deny
		}
		return out, clawops.E("invoke "+tool, kind, code, msg)
	}
	if tool == ToolFleetStatus {
		if entered != nil {
			entered <- actor.Identity
		}
		if hold != nil {
			select {
			case <-hold:
			case <-ctx.Done():
				return governance.Outcome{}, ctx.Err()
			}
		}
		return governance.Outcome{Decision: clawops.Allow, Reason: clawops.ReasonRolePermits, Tool: tool,
			Result: &governance.Result{Summary: "2 instances: 2 ACTIVE", Data: json.RawMessage(`[{"id":"inst-1"},{"id":"inst-2"}]`)}}, nil
	}
	var a struct {
		Instance string `json:"instance"`
		Lines    *int   `json:"lines"`
	}
	if err := json.Unmarshal(args, &a); err != nil || !instanceRE.MatchString(a.Instance) {
		return deny(clawops.KindInvalid, clawops.ReasonBadArguments, "instance must match "+instanceRE.String())
	}
	if a.Instance == "inst-err" {
		return governance.Outcome{}, clawops.E("invoke", clawops.ReasonInternal, errors.New("sqlite: /data/clawops.db is locked"))
	}
	if a.Instance != "inst-1" && a.Instance != "inst-2" {
		return deny(clawops.KindNotFound, clawops.ReasonUnknownInstance, fmt.Sprintf("no instance %s", a.Instance))
	}
	switch tool {
	case ToolInstanceHealth:
		return governance.Outcome{Decision: clawops.Allow, Tool: tool, Result: &governance.Result{Summary: a.Instance + " healthy"}}, nil
	case ToolInstanceLogs:
		n := 100
		if a.Lines != nil {
			n = *a.Lines
		}
		return governance.Outcome{Decision: clawops.Allow, Tool: tool, Result: &governance.Result{Summary: fmt.Sprintf("%d lines of %s", n, a.Instance)}}, nil
	case ToolRestart:
		if actor.Role == clawops.RoleViewer {
			return deny(clawops.KindDenied, clawops.ReasonRoleNotPermitted, "a viewer may only read")
		}
		return governance.Outcome{Decision: clawops.Allow, Tool: tool, Result: &governance.Result{Summary: "restarted " + a.Instance}}, nil
	case ToolTeardown:
		if actor.Role == clawops.RoleViewer {
			return deny(clawops.KindDenied, clawops.ReasonRoleNotPermitted, "a viewer may only read")
		}
		plan := governance.Plan{Tool: tool, Args: args, Summary: "Tear down " + a.Instance, UsersAffected: 1, Hash: "h-" + a.Instance}
		g.mu.Lock()
		id := fmt.Sprintf("ap-%d", len(g.approvals)+1)
		g.approvals[id] = governance.Approval{ID: id, Tool: tool, Requester: actor, Plan: plan, PlanHash: plan.Hash,
			Risk: clawops.RiskHigh, State: governance.ApprovalPending, CreatedAt: g.clock.Now(), ExpiresAt: g.clock.Now().Add(30 * time.Minute)}
		g.order = append(g.order, id)
		g.mu.Unlock()
		return governance.Outcome{Decision: clawops.NeedsApproval, Reason: clawops.ReasonApprovalRequired, Tool: tool,
			Risk: clawops.RiskHigh, Plan: &plan, ApprovalID: id}, nil
	}
	return deny(clawops.KindNotFound, clawops.ReasonUnknownTool, "no tool "+tool)
}

func (g *fakeGate) Decide(_ context.Context, decider clawops.Actor, id string, approve bool, reason string) (governance.Outcome, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.decides = append(g.decides, decideCall{decider, id, approve, reason})
	a, ok := g.approvals[id]
	fail := func(kind clawops.Kind, code clawops.ReasonCode, msg string) (governance.Outcome, error) {
		return governance.Outcome{Decision: clawops.Deny, Reason: code, Message: msg, ApprovalID: id},
			clawops.E("decide", kind, code, msg)
	}
	switch {
	case !ok:
		return fail(clawops.KindNotFound, clawops.ReasonApprovalNotFound, "no approval "+id)
	case !decider.Role.CanApprove():
		return fail(clawops.KindDenied, clawops.ReasonNotApprover, decider.Identity+" may not approve")
	case decider.Identity == a.Requester.Identity:
		return fail(clawops.KindDenied, clawops.ReasonSelfApproval, "the requester may not decide")
	case a.State != governance.ApprovalPending:
		return fail(clawops.KindInvalid, clawops.ReasonAlreadyDecided, "already "+string(a.State))
	}
	now := g.clock.Now()
	a.DecidedBy, a.DecidedAt, a.Reason = decider.Identity, &now, reason
	if !approve {
		a.State = governance.ApprovalDenied
		g.approvals[id] = a
		return fail(clawops.KindDenied, clawops.ReasonDenied, "denied by "+decider.Identity)
	}
	a.State = governance.ApprovalExecuted
	a.Result = &governance.Result{Summary: a.Plan.Summary + ": done"}
	g.approvals[id] = a
	return governance.Outcome{Decision: clawops.Allow, Reason: clawops.ReasonApproved, Tool: a.Tool, ApprovalID: id, Result: a.Result}, nil
}

func (g *fakeGate) ListApprovals(_ context.Context, state governance.ApprovalState) ([]governance.Approval, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []governance.Approval
	for i := len(g.order) - 1; i >= 0; i-- {
		if a := g.approvals[g.order[i]]; state == "" || a.State == state {
			out = append(out, a)
		}
	}
	return out, nil
}

func (g *fakeGate) Approval(_ context.Context, id string) (governance.Approval, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a, ok := g.approvals[id]
	if !ok {
		return governance.Approval{}, clawops.E("approval", clawops.KindNotFound, clawops.ReasonApprovalNotFound, "no approval "+id)
	}
	return a, nil
}

func (g *fakeGate) takeCalls() []invokeCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.calls
	g.calls = nil
	return c
}

// openDB opens a real SQLite file in a temp folder and migrates the agents' tables.
func openDB(t testing.TB, dir string) *gorm.DB {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	if err := Migrate(db); err != nil {
		t.Fatal(err)
	}
	return db
}

type env struct {
	clock *fakeClock
	gate  *fakeGate
	cmd   *Commander
	dir   string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clock := &fakeClock{now: t0}
	gate := newFakeGate(clock)
	dir := t.TempDir()
	cmd, err := NewCommander(CommanderOptions{Gate: gate, DB: openDB(t, dir), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return &env{clock: clock, gate: gate, cmd: cmd, dir: dir}
}

var (
	alice = clawops.Actor{Identity: "alice", Role: clawops.RoleOperator, Channel: "web"}
	bob   = clawops.Actor{Identity: "bob", Role: clawops.RoleApprover, Channel: "telegram"}
	vera  = clawops.Actor{Identity: "vera", Role: clawops.RoleViewer, Channel: "web"}
)
