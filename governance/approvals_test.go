package governance

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
)

// requestTeardown has alice (operator via the Commander) ask for a teardown, which needs
// approval, and returns the approval ID.
func requestTeardown(t *testing.T, h *harness, n int) Outcome {
	t.Helper()
	out, err := h.gate.Invoke(context.Background(), alice, "fleet.teardown", instancesArgs(n))
	if err != nil || out.Decision != clawops.NeedsApproval {
		t.Fatalf("invoke: got %s/%s, %v; want needs_approval", out.Decision, out.Reason, err)
	}
	return out
}

func teardownHarness(t *testing.T) (*harness, *testTool) {
	tool := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskHigh, 4)
	return newHarness(t, tool), tool
}

func TestApproveExecutesOnce(t *testing.T) {
	h, tool := teardownHarness(t)
	req := requestTeardown(t, h, 2)
	h.clock.Advance(time.Minute)
	out, err := h.gate.Decide(context.Background(), bob, req.ApprovalID, true, "looks right")
	if err != nil {
		t.Fatal(err)
	}
	if out.Decision != clawops.Allow || out.Reason != clawops.ReasonApproved || out.ApprovalID != req.ApprovalID ||
		out.Result == nil || out.Result.Summary != "did teardown on 2 instances" {
		t.Errorf("outcome: got %+v", out)
	}
	if n := tool.applies(); n != 1 {
		t.Fatalf("applies: got %d, want 1", n)
	}
	if got := tool.applied[0].Hash; got != req.Plan.Hash {
		t.Errorf("applied plan hash: got %s, want the approved %s", got, req.Plan.Hash)
	}
	a, err := h.gate.Approval(context.Background(), req.ApprovalID)
	if err != nil {
		t.Fatal(err)
	}
	if a.State != ApprovalExecuted || a.DecidedBy != bob.Identity || a.DecidedAt == nil ||
		!a.DecidedAt.Equal(h.clock.Now().Truncate(time.Microsecond)) || a.Reason != "looks right" ||
		a.Result == nil || a.Result.Summary != "did teardown on 2 instances" || a.Error != "" {
		t.Errorf("approval after execution: got %+v", a)
	}

	// A second approval, by someone else, changes nothing.
	out, err = h.gate.Decide(context.Background(), carol, req.ApprovalID, true, "me too")
	wantReason(t, err, clawops.ReasonAlreadyDecided, clawops.KindDenied)
	if out.Decision != clawops.Deny || out.Result != nil {
		t.Errorf("second approval outcome: got %+v", out)
	}
	if n := tool.applies(); n != 1 {
		t.Errorf("applies after second approval: got %d, want 1", n)
	}
	want := []string{
		"requested", "needs_approval/APPROVAL_REQUIRED",
		"approved/APPROVED", "requested", "completed/OK",
		"violation/APPROVAL_ALREADY_DECIDED",
	}
	if diff := cmp.Diff(want, h.events(t)); diff != "" {
		t.Errorf("audit events (-want +got):\n%s", diff)
	}
	es := h.entries(t)
	if es[2].Actor != bob.String() || es[3].Actor != alice.String() || es[5].Actor != carol.String() {
		t.Errorf("actors: got %q, %q, %q", es[2].Actor, es[3].Actor, es[5].Actor)
	}
	if diff := cmp.Diff([]ApprovalState{ApprovalPending, ApprovalApproved, ApprovalExecuted}, h.notifier.states(req.ApprovalID)); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
	h.verify(t)
}

func TestConcurrentApprovalsExecuteOnce(t *testing.T) {
	h, tool := teardownHarness(t)
	req := requestTeardown(t, h, 1)
	approvers := []clawops.Actor{bob, carol,
		{Identity: "slack:erin", Role: clawops.RoleApprover}, {Identity: "slack:frank", Role: clawops.RoleAdmin},
		{Identity: "tg:gina", Role: clawops.RoleApprover}, {Identity: "discord:hal", Role: clawops.RoleAdmin}}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, len(approvers))
	for i, who := range approvers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = h.gate.Decide(context.Background(), who, req.ApprovalID, true, "")
		}()
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch clawops.ReasonOf(err) {
		case "":
			if err != nil {
				t.Errorf("approver %d: unexpected error %v", i, err)
			}
			wins++
		case clawops.ReasonAlreadyDecided:
		default:
			t.Errorf("approver %d: got %v, want nil or APPROVAL_ALREADY_DECIDED", i, err)
		}
	}
	if wins != 1 {
		t.Errorf("successful approvals: got %d, want 1", wins)
	}
	if n := tool.applies(); n != 1 {
		t.Errorf("applies: got %d, want 1", n)
	}
	h.verify(t)
}

func TestDecideRefusals(t *testing.T) {
	h, tool := teardownHarness(t)
	req := requestTeardown(t, h, 1)
	aliceAsAdmin := clawops.Actor{Identity: alice.Identity, Role: clawops.RoleAdmin, Channel: "slack"}
	tests := []struct {
		name    string
		decider clawops.Actor
		id      string
		approve bool
		kind    clawops.Kind
		want    clawops.ReasonCode
	}{
		{"operator approves", clawops.Actor{Identity: "tg:olga", Role: clawops.RoleOperator}, req.ApprovalID, true, clawops.KindDenied, clawops.ReasonNotApprover},
		{"viewer denies", clawops.Actor{Identity: "tg:vic", Role: clawops.RoleViewer}, req.ApprovalID, false, clawops.KindDenied, clawops.ReasonNotApprover},
		{"agent approves", clawops.Actor{Identity: "agent:commander", Agent: clawops.Commander}, req.ApprovalID, true, clawops.KindDenied, clawops.ReasonNotApprover},
		{"admin with no identity", clawops.Actor{Role: clawops.RoleAdmin}, req.ApprovalID, true, clawops.KindDenied, clawops.ReasonNotApprover},
		{"forged role string", clawops.Actor{Identity: "tg:mallory", Role: "Admin"}, req.ApprovalID, true, clawops.KindDenied, clawops.ReasonNotApprover},
		{"requester approves own", aliceAsAdmin, req.ApprovalID, true, clawops.KindDenied, clawops.ReasonSelfApproval},
		{"unknown id", bob, "apr_00000000000000000000000000000000", true, clawops.KindNotFound, clawops.ReasonApprovalNotFound},
		{"empty id", bob, "", true, clawops.KindNotFound, clawops.ReasonApprovalNotFound},
		{"upper-case id", bob, strings.ToUpper(req.ApprovalID), true, clawops.KindNotFound, clawops.ReasonApprovalNotFound},
		{"id with SQL", bob, "apr_' OR '1'='1", true, clawops.KindNotFound, clawops.ReasonApprovalNotFound},
		{"id with suffix", bob, req.ApprovalID + "x", true, clawops.KindNotFound, clawops.ReasonApprovalNotFound},
		{"huge id", bob, strings.Repeat("a", 100000), true, clawops.KindNotFound, clawops.ReasonApprovalNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.entries(t))
			out, err := h.gate.Decide(context.Background(), tc.decider, tc.id, tc.approve, "")
			wantReason(t, err, tc.want, tc.kind)
			if out.Decision != clawops.Deny || out.Reason != tc.want {
				t.Errorf("outcome: got %s/%s, want deny/%s", out.Decision, out.Reason, tc.want)
			}
			es := h.entries(t)[before:]
			if len(es) != 1 || es[0].Event != EventViolation || es[0].Reason != tc.want || es[0].Actor != tc.decider.String() {
				t.Fatalf("audit: got %+v, want one violation by %s", es, tc.decider)
			}
			if len(es[0].Detail) > 200 {
				t.Errorf("violation detail is %d bytes; outside input must be cut", len(es[0].Detail))
			}
		})
	}
	if n := tool.applies(); n != 0 {
		t.Errorf("applies: got %d, want 0", n)
	}
	if a, _ := h.gate.Approval(context.Background(), req.ApprovalID); a.State != ApprovalPending {
		t.Errorf("state after refusals: got %s, want pending", a.State)
	}
	h.verify(t)
}

func TestDenyExecutesNothing(t *testing.T) {
	h, tool := teardownHarness(t)
	req := requestTeardown(t, h, 1)
	out, err := h.gate.Decide(context.Background(), bob, req.ApprovalID, false, "not during business hours")
	wantReason(t, err, clawops.ReasonDenied, clawops.KindDenied)
	if out.Decision != clawops.Deny || out.Result != nil {
		t.Errorf("outcome: got %+v", out)
	}
	a, _ := h.gate.Approval(context.Background(), req.ApprovalID)
	if a.State != ApprovalDenied || a.DecidedBy != bob.Identity || a.Reason != "not during business hours" {
		t.Errorf("approval: got %+v", a)
	}
	_, err = h.gate.Decide(context.Background(), carol, req.ApprovalID, true, "")
	wantReason(t, err, clawops.ReasonAlreadyDecided, clawops.KindDenied)
	if n := tool.applies(); n != 0 {
		t.Errorf("applies: got %d, want 0", n)
	}
	want := []string{"requested", "needs_approval/APPROVAL_REQUIRED", "rejected/DENIED_BY_APPROVER", "violation/APPROVAL_ALREADY_DECIDED"}
	if diff := cmp.Diff(want, h.events(t)); diff != "" {
		t.Errorf("audit events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]ApprovalState{ApprovalPending, ApprovalDenied}, h.notifier.states(req.ApprovalID)); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
}

func TestExpiredExecutesNothing(t *testing.T) {
	h, tool := teardownHarness(t)
	req := requestTeardown(t, h, 1)
	h.clock.Advance(DefaultApprovalTTL) // exactly at the deadline: still valid
	a, _ := h.gate.Approval(context.Background(), req.ApprovalID)
	if h.clock.Now().Truncate(time.Microsecond).After(a.ExpiresAt) {
		t.Fatalf("clock %v already past %v", h.clock.Now(), a.ExpiresAt)
	}
	h.clock.Advance(time.Second)
	out, err := h.gate.Decide(context.Background(), bob, req.ApprovalID, true, "")
	wantReason(t, err, clawops.ReasonApprovalExpired, clawops.KindExpired)
	if out.Decision != clawops.Deny || out.Result != nil {
		t.Errorf("outcome: got %+v", out)
	}
	if a, _ := h.gate.Approval(context.Background(), req.ApprovalID); a.State != ApprovalExpired {
		t.Errorf("state: got %s, want expired", a.State)
	}
	_, err = h.gate.Decide(context.Background(), carol, req.ApprovalID, true, "")
	wantReason(t, err, clawops.ReasonApprovalExpired, clawops.KindExpired)
	if n := tool.applies(); n != 0 {
		t.Errorf("applies: got %d, want 0", n)
	}
	want := []string{"requested", "needs_approval/APPROVAL_REQUIRED", "expired/APPROVAL_EXPIRED", "violation/APPROVAL_EXPIRED"}
	if diff := cmp.Diff(want, h.events(t)); diff != "" {
		t.Errorf("audit events (-want +got):\n%s", diff)
	}
	if es := h.entries(t); es[2].Actor != bob.String() {
		t.Errorf("expiry noticed by: got %q, want %q", es[2].Actor, bob.String())
	}
}

func TestExpireDue(t *testing.T) {
	h, tool := teardownHarness(t)
	first := requestTeardown(t, h, 1)
	h.clock.Advance(10 * time.Minute)
	second := requestTeardown(t, h, 2)
	h.clock.Advance(10 * time.Minute)
	third := requestTeardown(t, h, 3)
	if _, err := h.gate.Decide(context.Background(), bob, third.ApprovalID, false, ""); clawops.ReasonOf(err) != clawops.ReasonDenied {
		t.Fatal(err)
	}
	h.clock.Advance(15 * time.Minute) // first is 35 min old, second 25, third decided
	n, err := h.gate.ExpireDue(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("ExpireDue: got %d, %v; want 1", n, err)
	}
	h.clock.Advance(10 * time.Minute)
	if n, err = h.gate.ExpireDue(context.Background()); err != nil || n != 1 {
		t.Fatalf("second ExpireDue: got %d, %v; want 1", n, err)
	}
	if n, err = h.gate.ExpireDue(context.Background()); err != nil || n != 0 {
		t.Fatalf("third ExpireDue: got %d, %v; want 0", n, err)
	}
	for id, want := range map[string]ApprovalState{first.ApprovalID: ApprovalExpired, second.ApprovalID: ApprovalExpired, third.ApprovalID: ApprovalDenied} {
		if a, _ := h.gate.Approval(context.Background(), id); a.State != want {
			t.Errorf("%s: got %s, want %s", id, a.State, want)
		}
	}
	if diff := cmp.Diff([]ApprovalState{ApprovalPending, ApprovalExpired}, h.notifier.states(first.ApprovalID)); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
	var expired []AuditEntry
	for _, e := range h.entries(t) {
		if e.Event == EventExpired {
			expired = append(expired, e)
		}
	}
	if len(expired) != 2 || expired[0].Actor != gateActor || !strings.Contains(expired[0].Detail, first.ApprovalID) {
		t.Errorf("expiry audit: got %+v", expired)
	}
	if n := tool.applies(); n != 0 {
		t.Errorf("applies: got %d, want 0", n)
	}
}

func TestPlanDriftIsRefused(t *testing.T) {
	h, tool := teardownHarness(t)
	req := requestTeardown(t, h, 2)
	// Between request and approval the pair's standby degrades: the new plan differs (and
	// would now break an invariant); the approved one must not run.
	tool.setTarget("i-002", func(tg *Target) { tg.PeerState = "DEGRADED" })
	out, err := h.gate.Decide(context.Background(), bob, req.ApprovalID, true, "")
	wantReason(t, err, clawops.ReasonPlanMismatch, clawops.KindDenied)
	if out.Decision != clawops.Deny || out.Result != nil {
		t.Errorf("outcome: got %+v", out)
	}
	if n := tool.applies(); n != 0 {
		t.Errorf("applies: got %d, want 0", n)
	}
	a, _ := h.gate.Approval(context.Background(), req.ApprovalID)
	if a.State != ApprovalFailed || !strings.Contains(a.Error, "changed") {
		t.Errorf("approval: got state %s error %q, want failed with a plan change", a.State, a.Error)
	}
	want := []string{"requested", "needs_approval/APPROVAL_REQUIRED", "approved/APPROVED", "denied/PLAN_MISMATCH"}
	if diff := cmp.Diff(want, h.events(t)); diff != "" {
		t.Errorf("audit events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]ApprovalState{ApprovalPending, ApprovalApproved, ApprovalFailed}, h.notifier.states(req.ApprovalID)); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
}

func TestStoredPlanTamperIsRefused(t *testing.T) {
	h, tool := teardownHarness(t)
	req := requestTeardown(t, h, 1)
	var row approvalRow
	if err := h.db.Where("id = ?", req.ApprovalID).First(&row).Error; err != nil {
		t.Fatal(err)
	}
	// Someone with database access widens the approved plan to four instances.
	bigger := strings.Replace(row.Plan, `"instances":["i-001"]`, `"instances":["i-001","i-002","i-003","i-004"]`, 1)
	if bigger == row.Plan {
		t.Fatalf("plan JSON not as expected: %s", row.Plan)
	}
	if err := h.db.Exec(`UPDATE governance_approvals SET plan = ? WHERE id = ?`, bigger, req.ApprovalID).Error; err != nil {
		t.Fatal(err)
	}
	_, err := h.gate.Decide(context.Background(), bob, req.ApprovalID, true, "")
	wantReason(t, err, clawops.ReasonPlanMismatch, clawops.KindDenied)
	if n := tool.applies(); n != 0 {
		t.Errorf("applies: got %d, want 0", n)
	}
}

func TestApprovedApplyFailure(t *testing.T) {
	h, tool := teardownHarness(t)
	tool.applyErr = clawops.E("hub.send", clawops.KindTransient, clawops.ReasonNodeTimeout, "no answer in 30s")
	req := requestTeardown(t, h, 1)
	out, err := h.gate.Decide(context.Background(), bob, req.ApprovalID, true, "")
	wantReason(t, err, clawops.ReasonNodeTimeout, clawops.KindTransient)
	if out.Reason != clawops.ReasonNodeTimeout {
		t.Errorf("outcome reason: got %s", out.Reason)
	}
	a, _ := h.gate.Approval(context.Background(), req.ApprovalID)
	if a.State != ApprovalFailed || !strings.Contains(a.Error, "no answer") {
		t.Errorf("approval: got state %s error %q", a.State, a.Error)
	}
	want := []string{"requested", "needs_approval/APPROVAL_REQUIRED", "approved/APPROVED", "requested", "failed/NODE_TIMEOUT"}
	if diff := cmp.Diff(want, h.events(t)); diff != "" {
		t.Errorf("audit events (-want +got):\n%s", diff)
	}
}

func TestListApprovalsAndCard(t *testing.T) {
	h, _ := teardownHarness(t)
	first := requestTeardown(t, h, 1)
	h.clock.Advance(time.Second)
	second := requestTeardown(t, h, 2)
	if _, err := h.gate.Decide(context.Background(), bob, first.ApprovalID, false, "no"); clawops.ReasonOf(err) != clawops.ReasonDenied {
		t.Fatal(err)
	}
	ids := func(as []Approval) []string {
		var out []string
		for _, a := range as {
			out = append(out, a.ID)
		}
		return out
	}
	all, err := h.gate.ListApprovals(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{second.ApprovalID, first.ApprovalID}, ids(all)); diff != "" {
		t.Errorf("all, newest first (-want +got):\n%s", diff)
	}
	pending, err := h.gate.ListApprovals(context.Background(), ApprovalPending)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{second.ApprovalID}, ids(pending)); diff != "" {
		t.Errorf("pending (-want +got):\n%s", diff)
	}
	if _, err := h.gate.ListApprovals(context.Background(), "sideways"); clawops.ReasonOf(err) != clawops.ReasonBadArguments {
		t.Errorf("bad state: got %v, want BAD_ARGUMENTS", err)
	}

	card := all[0].Card()
	want := Card{
		ApprovalID:          second.ApprovalID,
		Title:               "tg:alice via commander asks to run fleet.teardown",
		Summary:             "teardown on 2 instances",
		Actions:             []string{"node.command i-001: teardown", "node.command i-002: teardown"},
		Risk:                clawops.RiskHigh,
		RiskFlags:           []string{"risk:high", "irreversible"},
		UsersAffected:       2,
		CostDeltaMonthlyUSD: -9,
		ExpectedDuration:    2 * time.Minute,
		PlanHash:            second.Plan.Hash,
		Requester:           "tg:alice via commander",
		ExpiresAt:           all[0].ExpiresAt,
		State:               ApprovalPending,
		RiskScore:           50,
		ApprovalsRequired:   1,
	}
	if diff := cmp.Diff(want, card); diff != "" {
		t.Errorf("card (-want +got):\n%s", diff)
	}
	b, err := json.Marshal(card)
	if err != nil || !strings.Contains(string(b), `"plan_hash":"`+second.Plan.Hash) {
		t.Errorf("card JSON: %s, %v", b, err)
	}
	if c := all[1].Card(); c.State != ApprovalDenied || c.DecidedBy != bob.Identity || c.DecidedAt == nil {
		t.Errorf("decided card: got %+v", c)
	}
}

func TestRunExpiry(t *testing.T) {
	h, _ := teardownHarness(t)
	req := requestTeardown(t, h, 1)
	if err := h.gate.RunExpiry(context.Background(), 0); err == nil {
		t.Errorf("zero interval: got nil error, want one")
	}
	h.clock.Advance(DefaultApprovalTTL + time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.gate.RunExpiry(ctx, 5*time.Millisecond) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, err := h.gate.Approval(context.Background(), req.ApprovalID)
		if err != nil {
			t.Fatal(err)
		}
		if a.State == ApprovalExpired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("approval still %s after 10s of RunExpiry", a.State)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunExpiry after cancel: got %v, want nil", err)
	}
}

// After a restart with a stricter role table, an approval granted under the old table does
// not run.
func TestApprovalRechecksRoles(t *testing.T) {
	h, tool := teardownHarness(t)
	req := requestTeardown(t, h, 1)
	stricter := DefaultRoles()
	stricter[clawops.Commander][ActionTeardown] = Rule{Mode: Never}
	g2, err := NewGate(GateOptions{DB: h.db, Clock: h.clock, Logger: testLogger(t), Roles: stricter})
	if err != nil {
		t.Fatal(err)
	}
	g2.Register(tool)
	_, err = g2.Decide(context.Background(), bob, req.ApprovalID, true, "")
	wantReason(t, err, clawops.ReasonRoleNotPermitted, clawops.KindDenied)
	if n := tool.applies(); n != 0 {
		t.Errorf("applies: got %d, want 0", n)
	}
	if a, _ := h.gate.Approval(context.Background(), req.ApprovalID); a.State != ApprovalFailed {
		t.Errorf("state: got %s, want failed", a.State)
	}
	h.verify(t)
}
