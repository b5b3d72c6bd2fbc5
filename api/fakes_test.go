package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

type invokeCall struct {
	Actor clawops.Actor
	Tool  string
	Args  string
}

// fakeGate is a small in-memory gate. Invoke answers gf_fleet_status (or what invokeFn
// says); teardown creates a pending approval; Decide follows the gate's rules.
type fakeGate struct {
	mu        sync.Mutex
	invokeFn  func(actor clawops.Actor, tool string, args json.RawMessage) (governance.Outcome, error)
	calls     []invokeCall
	approvals map[string]governance.Approval
	order     []string
	states    []governance.ApprovalState
	decides   int
}

func newFakeGate() *fakeGate {
	g := &fakeGate{approvals: map[string]governance.Approval{}}
	g.add(governance.Approval{ID: "ap-1", Tool: "gf_teardown", Requester: clawops.Actor{Identity: "olga", Role: clawops.RoleOperator, Agent: clawops.Commander},
		Plan: governance.Plan{Tool: "gf_teardown", Summary: "Tear down inst-2", UsersAffected: 1}, Risk: clawops.RiskHigh,
		State: governance.ApprovalPending, CreatedAt: t0, ExpiresAt: t0.Add(30 * time.Minute)})
	g.add(governance.Approval{ID: "ap-2", Tool: "gf_teardown", Requester: clawops.Actor{Identity: "olga", Role: clawops.RoleOperator},
		Plan: governance.Plan{Tool: "gf_teardown", Summary: "Tear down inst-3"}, Risk: clawops.RiskHigh,
		State: governance.ApprovalExecuted, CreatedAt: t0, ExpiresAt: t0.Add(30 * time.Minute)})
	g.add(governance.Approval{ID: "ap-3", Tool: "gf_teardown", Requester: clawops.Actor{Identity: "olga", Role: clawops.RoleOperator},
		Plan: governance.Plan{Tool: "gf_teardown", Summary: "Tear down inst-4"}, Risk: clawops.RiskHigh,
		State: governance.ApprovalPending, CreatedAt: t0.Add(-time.Hour), ExpiresAt: t0.Add(-30 * time.Minute)})
	return g
}

func (g *fakeGate) add(a governance.Approval) {
	g.approvals[a.ID] = a
	g.order = append(g.order, a.ID)
}

func (g *fakeGate) Invoke(_ context.Context, actor clawops.Actor, tool string, args json.RawMessage) (governance.Outcome, error) {
	g.mu.Lock()
	g.calls = append(g.calls, invokeCall{actor, tool, string(args)})
	fn := g.invokeFn
	g.mu.Unlock()
	if fn != nil {
		return fn(actor, tool, args)
	}
	switch tool {
	case "gf_fleet_status":
		return governance.Outcome{Decision: clawops.Allow, Tool: tool, Result: &governance.Result{
			Summary: "2 instances: 2 ACTIVE", Data: json.RawMessage(`[{"id":"inst-1","state":"ACTIVE"},{"id":"inst-2","state":"ACTIVE"}]`)}}, nil
	case "gf_teardown":
		var a struct{ Instance string }
		_ = json.Unmarshal(args, &a)
		plan := governance.Plan{Tool: tool, Args: args, Summary: "Tear down " + a.Instance, UsersAffected: 1}
		g.mu.Lock()
		id := fmt.Sprintf("ap-%d", len(g.order)+1)
		g.add(governance.Approval{ID: id, Tool: tool, Requester: actor, Plan: plan, Risk: clawops.RiskHigh,
			State: governance.ApprovalPending, CreatedAt: t0, ExpiresAt: t0.Add(30 * time.Minute)})
		g.mu.Unlock()
		return governance.Outcome{Decision: clawops.NeedsApproval, Reason: clawops.ReasonApprovalRequired, Tool: tool,
			Risk: clawops.RiskHigh, Plan: &plan, ApprovalID: id}, nil
	}
	return governance.Outcome{Tool: tool, Reason: clawops.ReasonUnknownTool},
		clawops.E("invoke", clawops.KindNotFound, clawops.ReasonUnknownTool, "no tool "+tool)
}

func (g *fakeGate) Decide(_ context.Context, decider clawops.Actor, id string, approve bool, reason string) (governance.Outcome, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.decides++
	a, ok := g.approvals[id]
	fail := func(kind clawops.Kind, code clawops.ReasonCode, msg string) (governance.Outcome, error) {
		return governance.Outcome{Decision: clawops.Deny, Reason: code, Message: msg, ApprovalID: id}, clawops.E("decide", kind, code, msg)
	}
	switch {
	case !ok:
		return fail(clawops.KindNotFound, clawops.ReasonApprovalNotFound, "no approval "+id)
	case decider.Agent != "":
		return fail(clawops.KindDenied, clawops.ReasonForbidden, "agents do not decide")
	case !decider.Role.CanApprove():
		return fail(clawops.KindDenied, clawops.ReasonNotApprover, decider.Identity+" may not approve")
	case decider.Identity == a.Requester.Identity:
		return fail(clawops.KindDenied, clawops.ReasonSelfApproval, "the requester may not decide")
	case a.State != governance.ApprovalPending:
		return fail(clawops.KindInvalid, clawops.ReasonAlreadyDecided, "already "+string(a.State))
	case !t0.Before(a.ExpiresAt):
		a.State = governance.ApprovalExpired
		g.approvals[id] = a
		return fail(clawops.KindExpired, clawops.ReasonApprovalExpired, "expired")
	}
	a.DecidedBy, a.Reason = decider.Identity, reason
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
	g.states = append(g.states, state)
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

// fakeAudit serves a fixed chain of n entries.
type fakeAudit struct {
	n       int64
	failing bool
}

func (f *fakeAudit) List(_ context.Context, after int64, limit int) ([]governance.AuditEntry, error) {
	if f.failing {
		return nil, errors.New("disk I/O error at /var/lib/clawops/clawops.db")
	}
	var out []governance.AuditEntry
	for s := after + 1; s <= f.n && len(out) < limit; s++ {
		out = append(out, governance.AuditEntry{Seq: s, Time: t0, Actor: "alice", Tool: "gf_restart", Event: governance.EventRequested})
	}
	return out, nil
}

func (f *fakeAudit) Verify(context.Context) (governance.VerifyReport, error) {
	return governance.VerifyReport{OK: true, Entries: f.n}, nil
}

// commanderFunc adapts a function to Commander.
type commanderFunc func(ctx context.Context, a clawops.Actor, text string) ([]string, error)

func (f commanderFunc) Handle(ctx context.Context, a clawops.Actor, text string) ([]string, error) {
	return f(ctx, a, text)
}
