package governance

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
)

// Regression tests for the failures named in issue #4. Each is denied with its reason
// code, audited, and nothing runs.

// refusedAudited checks that err carries want and the newest audit entry records it.
func refusedAudited(t *testing.T, h *harness, err error, want clawops.ReasonCode, event string) {
	t.Helper()
	if got := clawops.ReasonOf(err); got != want {
		t.Fatalf("reason: got %q (%v), want %q", got, err, want)
	}
	es := h.entries(t)
	last := es[len(es)-1]
	if last.Event != event || last.Reason != want {
		t.Errorf("last audit entry: got %s/%s, want %s/%s", last.Event, last.Reason, event, want)
	}
	h.verify(t)
}

// The approval prompt went only to the requester: the card must be addressed to the
// approvers and never to the requester alone.
func TestRegressionCardAddressedToApprovers(t *testing.T) {
	tool := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskHigh, 3)
	h := newHarnessOpts(t, func(o *GateOptions) {
		o.Approvers = []string{alice.Identity, bob.Identity, erin.Identity}
	}, tool)
	req := h.invokeNeedsApproval(t, alice, "fleet.teardown", 1)
	if len(h.notifier.seen) != 1 {
		t.Fatalf("notifications: got %d, want 1", len(h.notifier.seen))
	}
	card := h.notifier.seen[0].Card()
	if card.ApprovalID != req.ApprovalID || !slices.Equal(card.Audience, []string{bob.Identity, erin.Identity}) {
		t.Errorf("card audience: got %v, want the approvers without the requester", card.Audience)
	}
	if slices.Contains(card.Audience, alice.Identity) {
		t.Error("the card is addressed to the requester")
	}
	// Without an approver set the card goes to the approvers' channel as a whole (empty
	// audience), still never to the requester by name.
	h2 := newHarness(t, newTestTool("fleet.teardown", ActionTeardown, clawops.RiskHigh, 3))
	h2.invokeNeedsApproval(t, alice, "fleet.teardown", 1)
	if c := h2.notifier.seen[0].Card(); len(c.Audience) != 0 {
		t.Errorf("audience without an approver set: got %v", c.Audience)
	}
	// An approver set that leaves nobody but the requester cannot ask anyone: denied.
	h3 := newHarnessOpts(t, func(o *GateOptions) { o.Approvers = []string{alice.Identity} },
		newTestTool("fleet.teardown", ActionTeardown, clawops.RiskHigh, 3))
	_, err := h3.gate.Invoke(context.Background(), alice, "fleet.teardown", instancesArgs(1))
	refusedAudited(t, h3, err, clawops.ReasonNotApprover, EventDenied)
}

// Any allowed sender could approve; and a forged approver (an identity outside the
// approver set, whatever role it claims) must be refused.
func TestRegressionOnlyApproversDecide(t *testing.T) {
	tool := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskHigh, 3)
	h := newHarnessOpts(t, func(o *GateOptions) { o.Approvers = []string{bob.Identity, erin.Identity} }, tool)
	ctx := context.Background()
	req := h.invokeNeedsApproval(t, alice, "fleet.teardown", 1)
	tests := []struct {
		name    string
		decider clawops.Actor
	}{
		{"an allowed sender (operator)", clawops.Actor{Identity: "tg:olga", Role: clawops.RoleOperator, Channel: "telegram"}},
		{"forged approver role", clawops.Actor{Identity: "slack:mallory", Role: clawops.RoleApprover, Channel: "slack"}},
		{"forged admin", clawops.Actor{Identity: "slack:mallory", Role: clawops.RoleAdmin}},
		{"approver spelled differently", clawops.Actor{Identity: "slack:Bob", Role: clawops.RoleApprover}},
		{"an agent", clawops.Actor{Identity: "agent:commander", Agent: clawops.Commander, Role: clawops.RoleApprover}},
		{"a real approver through an agent", clawops.Actor{Identity: bob.Identity, Role: clawops.RoleApprover, Agent: clawops.Commander}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.gate.Decide(ctx, tc.decider, req.ApprovalID, true, "")
			refusedAudited(t, h, err, clawops.ReasonNotApprover, EventViolation)
		})
	}
	if tool.applies() != 0 {
		t.Fatalf("applies: got %d, want 0", tool.applies())
	}
	if _, err := h.gate.Decide(ctx, bob, req.ApprovalID, true, ""); err != nil {
		t.Fatalf("the real approver: %v", err)
	}
}

// An approval was cancelled when the agent run that asked ended: it must persist, and a new
// gate (a restart) over the same database must be able to decide it.
func TestRegressionApprovalOutlivesRun(t *testing.T) {
	first := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskHigh, 3)
	h := newHarness(t, first)
	runCtx, endRun := context.WithCancel(context.Background())
	out, err := h.gate.Invoke(runCtx, alice, "fleet.teardown", instancesArgs(1))
	if err != nil || out.Decision != clawops.NeedsApproval {
		t.Fatal(err)
	}
	endRun()
	h.clock.Advance(5 * time.Minute)
	// A new process: its own connection pool, gate and tool instance.
	second := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskHigh, 3)
	g2, err := NewGate(GateOptions{DB: openPath(t, h.path), Clock: h.clock, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	g2.Register(second)
	pending, err := g2.ListApprovals(context.Background(), ApprovalPending)
	if err != nil || len(pending) != 1 || pending[0].ID != out.ApprovalID {
		t.Fatalf("pending after restart: got %+v, %v", pending, err)
	}
	res, err := g2.Decide(context.Background(), bob, out.ApprovalID, true, "ok after restart")
	if err != nil || res.Result == nil {
		t.Fatalf("decide on the new gate: got %+v, %v", res, err)
	}
	if first.applies() != 0 || second.applies() != 1 {
		t.Errorf("applies: first %d, second %d; want 0 and 1", first.applies(), second.applies())
	}
	h.verify(t)
}

// A command ran with no approval: a high-risk call must never apply without one, whatever
// path is tried.
func TestRegressionHighRiskNeverRunsUnapproved(t *testing.T) {
	tool := newTestTool("fleet.restart_hard", ActionRestart, clawops.RiskHigh, 3)
	h := newHarness(t, tool)
	ctx := context.Background()
	req := h.invokeNeedsApproval(t, guardian, "fleet.restart_hard", 1)
	if req.Result != nil {
		t.Fatal("a result without approval")
	}
	// A made-up approval ID.
	_, err := h.gate.Decide(ctx, bob, "apr_"+req.Plan.Hash[:32], true, "")
	refusedAudited(t, h, err, clawops.ReasonApprovalNotFound, EventViolation)
	// The approval expires.
	h.clock.Advance(DefaultApprovalTTL + time.Second)
	_, err = h.gate.Decide(ctx, bob, req.ApprovalID, true, "")
	if clawops.ReasonOf(err) != clawops.ReasonApprovalExpired {
		t.Fatalf("expired: got %v", err)
	}
	// Asking again gives a new pending approval, never a run.
	h.invokeNeedsApproval(t, guardian, "fleet.restart_hard", 1)
	if tool.applies() != 0 {
		t.Errorf("applies: got %d, want 0", tool.applies())
	}
	if !hasEvent(h.events(t), "expired/APPROVAL_EXPIRED") {
		t.Error("expiry not audited")
	}
}

// An agent widened its own policy.
func TestRegressionAgentCannotWidenPolicy(t *testing.T) {
	tool := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskMedium, 3)
	h := newHarness(t, tool)
	ctx := context.Background()
	wider := h.gate.RoleTable()
	wider[clawops.Guardian][ActionTeardown] = Rule{Mode: Alone}
	err := h.gate.SetRoleTable(ctx, guardian, wider, "I need this")
	refusedAudited(t, h, err, clawops.ReasonRoleNotPermitted, EventViolation)
	err = h.gate.SetApprovers(ctx, guardian, []string{guardian.Identity}, "")
	refusedAudited(t, h, err, clawops.ReasonRoleNotPermitted, EventViolation)
	_, err = h.gate.Invoke(ctx, guardian, "fleet.teardown", instancesArgs(1))
	refusedAudited(t, h, err, clawops.ReasonRoleNotPermitted, EventDenied)
	if tool.applies() != 0 {
		t.Errorf("applies: got %d", tool.applies())
	}
}

// Self-approval (as AWX allowed): the requester approving their own request, under another
// role, another channel, or while being in the approver set.
func TestRegressionSelfApproval(t *testing.T) {
	tool := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskHigh, 3)
	h := newHarnessOpts(t, func(o *GateOptions) { o.Approvers = []string{carol.Identity, bob.Identity} }, tool)
	ctx := context.Background()
	req := h.invokeNeedsApproval(t, carol, "fleet.teardown", 1) // an admin asks
	for _, self := range []clawops.Actor{carol, {Identity: carol.Identity, Role: clawops.RoleAdmin, Channel: "web"},
		{Identity: carol.Identity, Role: clawops.RoleApprover, Channel: "telegram"}} {
		_, err := h.gate.Decide(ctx, self, req.ApprovalID, true, "")
		refusedAudited(t, h, err, clawops.ReasonSelfApproval, EventViolation)
		_, err = h.gate.ApproveForScope(ctx, self, req.ApprovalID, GrantScope{Accounts: []string{"acct-001"}, MaxUsers: 1, TTL: time.Hour}, "")
		refusedAudited(t, h, err, clawops.ReasonSelfApproval, EventViolation)
	}
	if tool.applies() != 0 {
		t.Errorf("applies: got %d", tool.applies())
	}
}

// The plan drifted after approval (here: between the first and second approver of a
// four-eyes approval).
func TestRegressionPlanDriftAfterApproval(t *testing.T) {
	h, tool := criticalHarness(t)
	ctx := context.Background()
	req := h.invokeNeedsApproval(t, alice, "fleet.teardown", 2)
	if _, err := h.gate.Decide(ctx, bob, req.ApprovalID, true, ""); err != nil {
		t.Fatal(err)
	}
	tool.setTarget("i-002", func(tg *Target) { tg.Users = 3 })
	_, err := h.gate.Decide(ctx, carol, req.ApprovalID, true, "")
	refusedAudited(t, h, err, clawops.ReasonPlanMismatch, EventDenied)
	if tool.applies() != 0 {
		t.Errorf("applies: got %d", tool.applies())
	}
}

// A replayed approval (deciding again after it ran) and an expired one.
func TestRegressionReplayedOrExpiredApproval(t *testing.T) {
	h, tool := teardownHarness(t)
	ctx := context.Background()
	req := h.invokeNeedsApproval(t, alice, "fleet.teardown", 1)
	if _, err := h.gate.Decide(ctx, bob, req.ApprovalID, true, ""); err != nil {
		t.Fatal(err)
	}
	for _, who := range []clawops.Actor{bob, carol} {
		_, err := h.gate.Decide(ctx, who, req.ApprovalID, true, "again")
		refusedAudited(t, h, err, clawops.ReasonAlreadyDecided, EventViolation)
	}
	old := h.invokeNeedsApproval(t, alice, "fleet.teardown", 2)
	h.clock.Advance(DefaultApprovalTTL + time.Minute)
	if n, err := h.gate.ExpireDue(ctx); err != nil || n != 1 {
		t.Fatalf("expire: got %d, %v", n, err)
	}
	_, err := h.gate.Decide(ctx, bob, old.ApprovalID, true, "")
	refusedAudited(t, h, err, clawops.ReasonApprovalExpired, EventViolation)
	if tool.applies() != 1 {
		t.Errorf("applies: got %d, want 1", tool.applies())
	}
}

// An approval for one set of instances must not run (or cover) another set.
func TestRegressionApprovalForOtherInstances(t *testing.T) {
	h, tool := teardownHarness(t)
	ctx := context.Background()
	forOne := h.invokeNeedsApproval(t, alice, "fleet.teardown", 1)
	forTwo := h.invokeNeedsApproval(t, alice, "fleet.teardown", 2)
	if forOne.ApprovalID == forTwo.ApprovalID || forOne.Plan.Hash == forTwo.Plan.Hash {
		t.Fatal("two instance sets share an approval")
	}
	if _, err := h.gate.Decide(ctx, bob, forOne.ApprovalID, true, ""); err != nil {
		t.Fatal(err)
	}
	if tool.applies() != 1 || len(tool.applied[0].Targets) != 1 || tool.applied[0].Targets[0].Instance != "i-001" {
		t.Fatalf("applied: got %+v", tool.applied)
	}
	// The approved tool's stored plan is edited to name other instances: refused.
	if err := h.db.Exec(`UPDATE governance_approvals SET plan = replace(plan, '"i-002"', '"i-003"') WHERE id = ?`,
		forTwo.ApprovalID).Error; err != nil {
		t.Fatal(err)
	}
	_, err := h.gate.Decide(ctx, bob, forTwo.ApprovalID, true, "")
	refusedAudited(t, h, err, clawops.ReasonPlanMismatch, EventDenied)
	// A scoped grant for one account does not cover another's instance.
	restart := newTestTool("fleet.restart", ActionRestart, clawops.RiskMedium, 30)
	h2 := newHarness(t, restart)
	req := h2.invokeNeedsApproval(t, guardian, "fleet.restart", 11)
	if _, err := h2.gate.ApproveForScope(ctx, bob, req.ApprovalID, GrantScope{Accounts: []string{"acct-001", "acct-002"}, MaxUsers: 50, TTL: time.Hour}, ""); err != nil {
		t.Fatal(err)
	}
	out, err := h2.gate.Invoke(ctx, guardian, "fleet.restart", argsRange(1, 11))
	if err != nil || out.Decision != clawops.NeedsApproval {
		t.Errorf("grant for other accounts: got %s/%s, %v; want needs_approval", out.Decision, out.Reason, err)
	}
	if tool.applies() != 1 || restart.applies() != 1 {
		t.Errorf("applies: got %d and %d, want 1 and 1", tool.applies(), restart.applies())
	}
}

// An actor with a scope acts on an instance outside it.
func TestRegressionOutOfScope(t *testing.T) {
	tool := newTestTool("fleet.restart", ActionRestart, clawops.RiskLow, 5)
	h := newHarness(t, tool)
	ctx := context.Background()
	sam := clawops.Actor{Identity: "tg:sam", Role: clawops.RoleOperator, Agent: clawops.Commander,
		Scope: &clawops.Scope{Accounts: []string{"acct-001"}, Instances: []clawops.InstanceID{"i-004"}}}
	if _, err := h.gate.Invoke(ctx, sam, "fleet.restart", []byte(`{"instances":["i-001","i-004"]}`)); err != nil {
		t.Fatalf("in scope: %v", err)
	}
	_, err := h.gate.Invoke(ctx, sam, "fleet.restart", []byte(`{"instances":["i-001","i-002"]}`))
	refusedAudited(t, h, err, clawops.ReasonOutOfScope, EventDenied)
	_, err = h.gate.Invoke(ctx, sam, "fleet.restart", []byte(`{"instances":[]}`))
	refusedAudited(t, h, err, clawops.ReasonOutOfScope, EventDenied)
	if tool.applies() != 1 {
		t.Errorf("applies: got %d, want 1", tool.applies())
	}
}
