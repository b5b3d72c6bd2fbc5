package governance

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
)

// Preflight says what Invoke would decide and writes, runs and notifies nothing.
func TestPreflightHasNoSideEffects(t *testing.T) {
	restart := newTestTool("fleet.restart", ActionRestart, clawops.RiskMedium, 30)
	teardown := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskCritical, 3)
	teardown.setTarget("i-003", func(tg *Target) { tg.PeerState = "DEGRADED" })
	provision := newTestTool("fleet.provision", ActionProvision, clawops.RiskLow, 10)
	provision.costEach = 100
	h := newHarness(t, restart, teardown, provision)
	ctx := context.Background()
	if err := h.gate.SetBudget(ctx, carol, Budget{Scope: GlobalScope, Kind: BudgetInfra, SoftUSD: 50, HardUSD: 400}); err != nil {
		t.Fatal(err)
	}
	scoped := clawops.Actor{Identity: "tg:sam", Role: clawops.RoleOperator, Agent: clawops.Commander,
		Scope: &clawops.Scope{Accounts: []string{"acct-001"}}}
	tests := []struct {
		name      string
		actor     clawops.Actor
		tool      string
		args      json.RawMessage
		decision  clawops.Decision
		reasons   []clawops.ReasonCode
		approvals int
	}{
		{"allowed", guardian, "fleet.restart", instancesArgs(2), clawops.Allow, []clawops.ReasonCode{clawops.ReasonRolePermits}, 0},
		{"too many users", guardian, "fleet.restart", instancesArgs(11), clawops.NeedsApproval,
			[]clawops.ReasonCode{clawops.ReasonTooManyUsers, clawops.ReasonApprovalRequired}, 1},
		{"critical", alice, "fleet.teardown", instancesArgs(1), clawops.NeedsApproval,
			[]clawops.ReasonCode{clawops.ReasonApprovalRequired}, 2},
		{"invariant", alice, "fleet.teardown", instancesArgs(3), clawops.Deny, []clawops.ReasonCode{clawops.ReasonStandbyNotActive}, 0},
		{"role", guardian, "fleet.teardown", instancesArgs(1), clawops.Deny, []clawops.ReasonCode{clawops.ReasonRoleNotPermitted}, 0},
		{"unknown tool", guardian, "fleet.nuke", nil, clawops.Deny, []clawops.ReasonCode{clawops.ReasonUnknownTool}, 0},
		{"bad args", guardian, "fleet.restart", json.RawMessage(`[1]`), clawops.Deny, []clawops.ReasonCode{clawops.ReasonBadArguments}, 0},
		{"out of scope", scoped, "fleet.restart", instancesArgs(2), clawops.Deny, []clawops.ReasonCode{clawops.ReasonOutOfScope}, 0},
		{"in scope", scoped, "fleet.restart", instancesArgs(1), clawops.Allow, []clawops.ReasonCode{clawops.ReasonRolePermits}, 0},
		{"over budget", forge, "fleet.provision", instancesArgs(5), clawops.Deny, []clawops.ReasonCode{clawops.ReasonBudgetExceeded}, 0},
	}
	before := countRows(t, h.db)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := h.gate.Preflight(WithTrace(ctx, "trc_00000000000000000000000000000000"), tc.actor, tc.tool, tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if r.Decision != tc.decision || r.Reason != tc.reasons[0] || r.ApprovalsRequired != tc.approvals {
				t.Errorf("got %s/%s approvals %d, want %s/%s approvals %d", r.Decision, r.Reason, r.ApprovalsRequired,
					tc.decision, tc.reasons[0], tc.approvals)
			}
			if diff := cmp.Diff(tc.reasons, r.Reasons); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
			if r.Decision != clawops.Deny && (r.Risk == nil || r.Plan == nil || r.Plan.Hash == "") {
				t.Errorf("risk and plan missing: %+v", r)
			}
		})
	}
	r, _ := h.gate.Preflight(ctx, forge, "fleet.provision", instancesArgs(1))
	if r.Decision != clawops.Allow || r.Forecast == nil || len(r.Warnings) != 1 {
		t.Errorf("soft budget: got %s warnings %v forecast %+v", r.Decision, r.Warnings, r.Forecast)
	}
	if diff := cmp.Diff(before, countRows(t, h.db)); diff != "" {
		t.Errorf("rows written by Preflight (-before +after):\n%s", diff)
	}
	if n := restart.applies() + teardown.applies() + provision.applies(); n != 0 {
		t.Errorf("applies: got %d, want 0", n)
	}
	if len(h.notifier.seen) != 0 {
		t.Errorf("notifications: got %d, want 0", len(h.notifier.seen))
	}
	// What Preflight said is what Invoke does.
	out, err := h.gate.Invoke(ctx, guardian, "fleet.restart", instancesArgs(11))
	if err != nil || out.Decision != clawops.NeedsApproval || out.Reason != clawops.ReasonTooManyUsers {
		t.Errorf("invoke: got %s/%s, %v", out.Decision, out.Reason, err)
	}
}

// An expired grant seen by Preflight is left for Invoke to expire and audit.
func TestPreflightLeavesExpiredGrants(t *testing.T) {
	tool := newTestTool("fleet.restart", ActionRestart, clawops.RiskMedium, 30)
	h := newHarness(t, tool)
	ctx := context.Background()
	req := h.invokeNeedsApproval(t, guardian, "fleet.restart", 11)
	if _, err := h.gate.ApproveForScope(ctx, bob, req.ApprovalID, GrantScope{Instances: idsRange(1, 30), MaxUsers: 30, TTL: time.Hour}, ""); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(2 * time.Hour)
	before := countRows(t, h.db)
	r, err := h.gate.Preflight(ctx, guardian, "fleet.restart", argsRange(12, 22))
	if err != nil || r.Decision != clawops.NeedsApproval || r.GrantID != "" {
		t.Fatalf("preflight: got %+v, %v", r, err)
	}
	if diff := cmp.Diff(before, countRows(t, h.db)); diff != "" {
		t.Errorf("rows written (-before +after):\n%s", diff)
	}
	if gs, _ := h.gate.ListGrants(ctx, true); len(gs) != 1 {
		t.Errorf("active grants: got %d, want 1 (Preflight must not expire it)", len(gs))
	}
}
