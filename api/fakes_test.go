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

	decideCalls []decideCall
	gov         fakeGov // the governance abilities' state (fakes_gov_test.go)
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
	return g.decide(decideCall{decider: decider, id: id, approve: approve, reason: reason})
}

// decideCall is one decision as the fake gate saw it: plain, with a factor, or for a scope.
type decideCall struct {
	decider clawops.Actor
	id      string
	approve bool
	reason  string
	factor  *string
	scope   *governance.GrantScope
}

// decide follows the gate's rules: approver role, no self-approval, pending and unexpired,
// a second factor when the approval needs one ("123456" is the good code), four-eyes with
// distinct approvers, and no grant from a critical or second-factor approval.
func (g *fakeGate) decide(c decideCall) (governance.Outcome, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.decides++
	g.decideCalls = append(g.decideCalls, c)
	id := c.id
	a, ok := g.approvals[id]
	fail := func(kind clawops.Kind, code clawops.ReasonCode, msg string) (governance.Outcome, error) {
		return governance.Outcome{Decision: clawops.Deny, Reason: code, Message: msg, ApprovalID: id}, clawops.E("decide", kind, code, msg)
	}
	switch {
	case !ok:
		return fail(clawops.KindNotFound, clawops.ReasonApprovalNotFound, "no approval "+id)
	case c.decider.Agent != "":
		return fail(clawops.KindDenied, clawops.ReasonForbidden, "agents do not decide")
	case !c.decider.Role.CanApprove():
		return fail(clawops.KindDenied, clawops.ReasonNotApprover, c.decider.Identity+" may not approve")
	case c.decider.Identity == a.Requester.Identity:
		return fail(clawops.KindDenied, clawops.ReasonSelfApproval, "the requester may not decide")
	case a.State != governance.ApprovalPending:
		return fail(clawops.KindInvalid, clawops.ReasonAlreadyDecided, "already "+string(a.State))
	case !t0.Before(a.ExpiresAt):
		a.State = governance.ApprovalExpired
		g.approvals[id] = a
		return fail(clawops.KindExpired, clawops.ReasonApprovalExpired, "expired")
	case c.approve && a.SecondFactor && c.factor == nil:
		return fail(clawops.KindDenied, governance.ReasonSecondFactorRequired, "this approval needs a second factor")
	case c.factor != nil && *c.factor != "123456":
		return fail(clawops.KindDenied, governance.ReasonSecondFactorInvalid, "the code is wrong or expired")
	case c.scope != nil && (a.ApprovalsRequired > 1 || a.SecondFactor):
		return fail(clawops.KindInvalid, governance.ReasonGrantInvalid, "a critical approval cannot be widened into a grant")
	case c.scope != nil && len(c.scope.Accounts)+len(c.scope.Instances) == 0:
		return fail(clawops.KindInvalid, governance.ReasonGrantInvalid, "a grant needs a target selector")
	}
	for _, d := range a.Decisions {
		if d.By == c.decider.Identity {
			return fail(clawops.KindDenied, governance.ReasonDuplicateApprover, d.By+" already approved")
		}
	}
	a.Decisions = append(a.Decisions, governance.ApprovalDecision{By: c.decider.Identity, Role: c.decider.Role,
		Channel: c.decider.Channel, Approve: c.approve, At: t0, Reason: c.reason, SecondFactor: c.factor != nil})
	if c.approve && len(a.Decisions) < max(a.ApprovalsRequired, 1) {
		g.approvals[id] = a
		msg := fmt.Sprintf("%d of %d approvals", len(a.Decisions), a.ApprovalsRequired)
		return governance.Outcome{Decision: clawops.NeedsApproval, Reason: governance.ReasonAwaitingSecondApprover, Message: msg,
			Tool: a.Tool, ApprovalID: id, ApprovalsRequired: a.ApprovalsRequired}, nil
	}
	a.DecidedBy, a.Reason = c.decider.Identity, c.reason
	if !c.approve {
		a.State = governance.ApprovalDenied
		g.approvals[id] = a
		return fail(clawops.KindDenied, clawops.ReasonDenied, "denied by "+c.decider.Identity)
	}
	if c.scope != nil {
		a.GrantID = g.addGrantLocked(a, c.decider, *c.scope)
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
