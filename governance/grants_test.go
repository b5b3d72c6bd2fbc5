package governance

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
)

// idsRange returns i-<from>..i-<to>.
func idsRange(from, to int) []clawops.InstanceID {
	var out []clawops.InstanceID
	for i := from; i <= to; i++ {
		out = append(out, clawops.InstanceID(fmt.Sprintf("i-%03d", i)))
	}
	return out
}

func argsRange(from, to int) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"instances": idsRange(from, to)})
	return b
}

func TestScopedGrant(t *testing.T) {
	tool := newTestTool("fleet.restart", ActionRestart, clawops.RiskMedium, 40)
	h := newHarness(t, tool)
	ctx := context.Background()
	req, err := h.gate.Invoke(ctx, guardian, "fleet.restart", argsRange(1, 11))
	if err != nil || req.Decision != clawops.NeedsApproval || req.Reason != clawops.ReasonTooManyUsers {
		t.Fatalf("request: got %s/%s, %v", req.Decision, req.Reason, err)
	}
	scope := GrantScope{Instances: idsRange(1, 30), MaxUsers: 20, TTL: 2 * time.Hour}
	out, err := h.gate.ApproveForScope(ctx, bob, req.ApprovalID, scope, "restarts in this block today")
	if err != nil || out.Decision != clawops.Allow || tool.applies() != 1 {
		t.Fatalf("approve for scope: got %s/%s, %v, %d applies", out.Decision, out.Reason, err, tool.applies())
	}
	a, _ := h.gate.Approval(ctx, req.ApprovalID)
	grants, err := h.gate.ListGrants(ctx, true)
	if err != nil || len(grants) != 1 || a.GrantID != grants[0].ID {
		t.Fatalf("grants: got %+v, %v; approval grant %q", grants, err, a.GrantID)
	}
	gr := grants[0]
	if gr.Grantee != guardian.Identity || gr.Agent != clawops.Guardian || gr.MaxUsers != 20 || gr.CreatedBy != bob.Identity ||
		!gr.ExpiresAt.Equal(h.clock.Now().Truncate(time.Microsecond).Add(2*time.Hour)) {
		t.Errorf("grant: got %+v", gr)
	}

	// Preflight sees the grant but does not use it.
	pf, err := h.gate.Preflight(ctx, guardian, "fleet.restart", argsRange(12, 22))
	if err != nil || pf.Decision != clawops.Allow || pf.Reason != ReasonGrantScope || pf.GrantID != gr.ID {
		t.Fatalf("preflight: got %+v, %v", pf, err)
	}
	// Within scope: runs without a new approval, and the use is audited.
	before := len(h.entries(t))
	out, err = h.gate.Invoke(ctx, guardian, "fleet.restart", argsRange(12, 22))
	if err != nil || out.Decision != clawops.Allow || out.Reason != ReasonGrantScope || out.Grant == nil ||
		out.Grant.Kind != GrantScoped || out.Grant.ID != gr.ID || out.ApprovalID != "" {
		t.Fatalf("within scope: got %+v, %v", out, err)
	}
	if got := h.eventsSince(t, before); !equalStrings(got, []string{"requested", "grant.used/GRANT_SCOPE", "completed/OK"}) {
		t.Errorf("audit: got %v", got)
	}
	if tool.applies() != 2 {
		t.Fatalf("applies: got %d, want 2", tool.applies())
	}
	// Each of these needs a new approval: the grant does not cover it.
	outside := []struct {
		name  string
		actor clawops.Actor
		args  json.RawMessage
	}{
		{"users budget used up (11+11 > 20)", guardian, argsRange(1, 11)},
		{"instances outside the selector", guardian, argsRange(25, 35)},
		{"another requester", alice, argsRange(1, 11)},
	}
	for _, tc := range outside {
		out, err := h.gate.Invoke(ctx, tc.actor, "fleet.restart", tc.args)
		if err != nil || out.Decision != clawops.NeedsApproval {
			t.Errorf("%s: got %s/%s, %v; want needs_approval", tc.name, out.Decision, out.Reason, err)
		}
	}
	// Small enough to fit the rest of the budget: runs.
	if out, err := h.gate.Invoke(ctx, guardian, "fleet.restart", argsRange(23, 25)); err != nil || out.Reason != clawops.ReasonRolePermits {
		t.Errorf("3 users need no grant at all: got %s/%s, %v", out.Decision, out.Reason, err)
	}
	if tool.applies() != 3 {
		t.Errorf("applies: got %d, want 3", tool.applies())
	}

	// Expired: the grant is marked and audited, and the call needs approval again.
	h.clock.Advance(2*time.Hour + time.Second)
	out, err = h.gate.Invoke(ctx, guardian, "fleet.restart", argsRange(12, 22))
	if err != nil || out.Decision != clawops.NeedsApproval {
		t.Fatalf("after expiry: got %s/%s, %v", out.Decision, out.Reason, err)
	}
	es := h.entries(t)
	var expired []AuditEntry
	for _, e := range es {
		if e.Event == EventGrantExpired {
			expired = append(expired, e)
		}
	}
	if len(expired) != 1 || expired[0].Reason != ReasonGrantExpired || expired[0].Actor != gateActor {
		t.Errorf("grant.expired entries: got %+v", expired)
	}
	if grants, _ := h.gate.ListGrants(ctx, false); len(grants) != 1 || grants[0].State != GrantExpired || grants[0].UsersUsed != 11 || grants[0].Uses != 1 {
		t.Errorf("grant after expiry: got %+v", grants)
	}
	if tool.applies() != 3 {
		t.Errorf("applies: got %d, want 3", tool.applies())
	}
	h.verify(t)
}

func TestGrantScopeRefused(t *testing.T) {
	restart := newTestTool("fleet.restart", ActionRestart, clawops.RiskMedium, 20)
	critical := newTestTool("fleet.wipe", ActionTeardown, clawops.RiskCritical, 3)
	h := newHarness(t, restart, critical)
	ctx := context.Background()
	req := h.invokeNeedsApproval(t, guardian, "fleet.restart", 11)
	crit := h.invokeNeedsApproval(t, alice, "fleet.wipe", 1)
	good := GrantScope{Accounts: []string{"acct-001"}, MaxUsers: 5, TTL: time.Hour}
	tests := []struct {
		name  string
		id    string
		scope GrantScope
	}{
		{"longer than 24 h", req.ApprovalID, GrantScope{Accounts: good.Accounts, MaxUsers: 5, TTL: 25 * time.Hour}},
		{"no duration", req.ApprovalID, GrantScope{Accounts: good.Accounts, MaxUsers: 5}},
		{"no selector", req.ApprovalID, GrantScope{MaxUsers: 5, TTL: time.Hour}},
		{"no users", req.ApprovalID, GrantScope{Accounts: good.Accounts, TTL: time.Hour}},
		{"too many users", req.ApprovalID, GrantScope{Accounts: good.Accounts, MaxUsers: MaxGrantUsers + 1, TTL: time.Hour}},
		{"empty account", req.ApprovalID, GrantScope{Accounts: []string{""}, MaxUsers: 5, TTL: time.Hour}},
		{"critical approval", crit.ApprovalID, good},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := h.gate.ApproveForScope(ctx, bob, tc.id, tc.scope, "")
			wantReason(t, err, ReasonGrantInvalid, clawops.KindInvalid)
			if out.Decision != clawops.Deny {
				t.Errorf("decision: got %s", out.Decision)
			}
			if ev := h.lastEvents(t, 1); ev[0] != "violation/GRANT_INVALID" {
				t.Errorf("audit: got %v", ev)
			}
		})
	}
	for _, id := range []string{req.ApprovalID, crit.ApprovalID} {
		if a, _ := h.gate.Approval(ctx, id); a.State != ApprovalPending || len(a.Decisions) != 0 {
			t.Errorf("approval %s: got %s with %d decisions, want untouched", id, a.State, len(a.Decisions))
		}
	}
	if grants, _ := h.gate.ListGrants(ctx, false); len(grants) != 0 {
		t.Errorf("grants: got %d, want 0", len(grants))
	}
	if restart.applies()+critical.applies() != 0 {
		t.Error("something ran")
	}
}

func TestRevokeGrant(t *testing.T) {
	tool := newTestTool("fleet.restart", ActionRestart, clawops.RiskMedium, 30)
	h := newHarness(t, tool)
	ctx := context.Background()
	req := h.invokeNeedsApproval(t, guardian, "fleet.restart", 11)
	if _, err := h.gate.ApproveForScope(ctx, bob, req.ApprovalID, GrantScope{Instances: idsRange(1, 30), MaxUsers: 30, TTL: time.Hour}, ""); err != nil {
		t.Fatal(err)
	}
	grants, _ := h.gate.ListGrants(ctx, true)
	err := h.gate.RevokeGrant(ctx, alice, grants[0].ID, "")
	wantReason(t, err, clawops.ReasonNotApprover, clawops.KindDenied)
	if err := h.gate.RevokeGrant(ctx, carol, grants[0].ID, "incident over"); err != nil {
		t.Fatal(err)
	}
	if err := h.gate.RevokeGrant(ctx, carol, grants[0].ID, ""); clawops.ReasonOf(err) != ReasonGrantInvalid {
		t.Errorf("revoke twice: got %v", err)
	}
	if out, err := h.gate.Invoke(ctx, guardian, "fleet.restart", argsRange(12, 22)); err != nil || out.Decision != clawops.NeedsApproval {
		t.Errorf("after revoke: got %s/%s, %v; want needs_approval", out.Decision, out.Reason, err)
	}
	if !hasEvent(h.events(t), EventGrantRevoked) {
		t.Error("no grant.revoked audit entry")
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
