package governance

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
)

func criticalHarness(t *testing.T) (*harness, *testTool) {
	tool := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskCritical, 4)
	return newHarness(t, tool), tool
}

func TestFourEyes(t *testing.T) {
	h, tool := criticalHarness(t)
	ctx := context.Background()
	req := h.invokeNeedsApproval(t, alice, "fleet.teardown", 1)
	if req.ApprovalsRequired != 2 {
		t.Fatalf("approvals required: got %d, want 2", req.ApprovalsRequired)
	}
	out, err := h.gate.Decide(ctx, bob, req.ApprovalID, true, "first look")
	if err != nil || out.Decision != clawops.NeedsApproval || out.Reason != ReasonAwaitingSecondApprover {
		t.Fatalf("first approval: got %s/%s, %v; want needs_approval/AWAITING_SECOND_APPROVER", out.Decision, out.Reason, err)
	}
	if n := tool.applies(); n != 0 {
		t.Fatalf("applies after one approval: got %d, want 0", n)
	}
	refusals := []struct {
		name    string
		decider clawops.Actor
		want    clawops.ReasonCode
	}{
		{"same approver twice", bob, ReasonDuplicateApprover},
		{"same identity, other channel", clawops.Actor{Identity: bob.Identity, Role: clawops.RoleApprover, Channel: "web"}, ReasonDuplicateApprover},
		{"requester as admin", clawops.Actor{Identity: alice.Identity, Role: clawops.RoleAdmin}, clawops.ReasonSelfApproval},
	}
	for _, tc := range refusals {
		_, err := h.gate.Decide(ctx, tc.decider, req.ApprovalID, true, "")
		if got := clawops.ReasonOf(err); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	if n := tool.applies(); n != 0 {
		t.Fatalf("applies after refusals: got %d, want 0", n)
	}
	h.clock.Advance(time.Minute)
	out, err = h.gate.Decide(ctx, carol, req.ApprovalID, true, "second look")
	if err != nil || out.Decision != clawops.Allow || out.Result == nil {
		t.Fatalf("second approval: got %+v, %v", out, err)
	}
	if out.Grant == nil || out.Grant.Kind != GrantApproval || !cmp.Equal(out.Grant.By, []string{bob.Identity, carol.Identity}) ||
		out.Grant.PlanHash != req.Plan.Hash {
		t.Errorf("grant: got %+v", out.Grant)
	}
	if n := tool.applies(); n != 1 {
		t.Fatalf("applies: got %d, want 1", n)
	}
	a, err := h.gate.Approval(ctx, req.ApprovalID)
	if err != nil {
		t.Fatal(err)
	}
	card := a.Card()
	if a.State != ApprovalExecuted || len(card.Deciders) != 2 || card.Deciders[0].By != bob.Identity ||
		card.Deciders[1].By != carol.Identity || card.DecidedBy != carol.Identity || card.ApprovalsRequired != 2 ||
		!card.Deciders[1].At.After(card.Deciders[0].At) {
		t.Errorf("card after four eyes: got %+v", card)
	}
	want := []string{
		"requested", "needs_approval/APPROVAL_REQUIRED",
		"approved/AWAITING_SECOND_APPROVER",
		"violation/DUPLICATE_APPROVER", "violation/DUPLICATE_APPROVER", "violation/SELF_APPROVAL",
		"approved/APPROVED", "requested", "completed/OK",
	}
	if diff := cmp.Diff(want, h.events(t)); diff != "" {
		t.Errorf("audit events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]ApprovalState{ApprovalPending, ApprovalPending, ApprovalApproved, ApprovalExecuted},
		h.notifier.states(req.ApprovalID)); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
	h.verify(t)
}

func TestFourEyesDenyAfterOneApproval(t *testing.T) {
	h, tool := criticalHarness(t)
	ctx := context.Background()
	req := h.invokeNeedsApproval(t, alice, "fleet.teardown", 1)
	if _, err := h.gate.Decide(ctx, bob, req.ApprovalID, true, ""); err != nil {
		t.Fatal(err)
	}
	_, err := h.gate.Decide(ctx, erin, req.ApprovalID, false, "not during the sale")
	wantReason(t, err, clawops.ReasonDenied, clawops.KindDenied)
	_, err = h.gate.Decide(ctx, carol, req.ApprovalID, true, "")
	wantReason(t, err, clawops.ReasonAlreadyDecided, clawops.KindDenied)
	if n := tool.applies(); n != 0 {
		t.Errorf("applies: got %d, want 0", n)
	}
	a, _ := h.gate.Approval(ctx, req.ApprovalID)
	if a.State != ApprovalDenied || len(a.Decisions) != 2 || a.Decisions[1].Approve || a.DecidedBy != erin.Identity {
		t.Errorf("approval: got %+v", a)
	}
}

// Many approvers at once: the plan runs exactly once, after exactly two approvals.
func TestFourEyesConcurrent(t *testing.T) {
	h, tool := criticalHarness(t)
	req := h.invokeNeedsApproval(t, alice, "fleet.teardown", 1)
	deciders := []clawops.Actor{bob, carol, erin, frank,
		{Identity: "tg:gina", Role: clawops.RoleApprover}, {Identity: "discord:hal", Role: clawops.RoleAdmin}}
	var wg sync.WaitGroup
	start := make(chan struct{})
	outs := make([]Outcome, len(deciders))
	errs := make([]error, len(deciders))
	for i, d := range deciders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			outs[i], errs[i] = h.gate.Decide(context.Background(), d, req.ApprovalID, true, "")
		}()
	}
	close(start)
	wg.Wait()
	partial, final := 0, 0
	for i, err := range errs {
		switch {
		case err == nil && outs[i].Reason == ReasonAwaitingSecondApprover:
			partial++
		case err == nil && outs[i].Decision == clawops.Allow:
			final++
		case clawops.ReasonOf(err) == clawops.ReasonAlreadyDecided:
		default:
			t.Errorf("decider %d: got %s/%s, %v", i, outs[i].Decision, outs[i].Reason, err)
		}
	}
	if partial != 1 || final != 1 {
		t.Errorf("got %d first and %d second approvals, want 1 and 1", partial, final)
	}
	if n := tool.applies(); n != 1 {
		t.Errorf("applies: got %d, want 1", n)
	}
	a, _ := h.gate.Approval(context.Background(), req.ApprovalID)
	if len(a.Decisions) != 2 || a.Decisions[0].By == a.Decisions[1].By {
		t.Errorf("decisions: got %+v", a.Decisions)
	}
	h.verify(t)
}

func secondFactorHarness(t *testing.T) (*harness, *testTool) {
	tool := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskHigh, 4)
	h := newHarnessOpts(t, func(o *GateOptions) {
		v, err := NewTOTPVerifier(map[string]string{bob.Identity: testTOTPSecret, carol.Identity: "jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp"}, o.Clock)
		if err != nil {
			t.Fatal(err)
		}
		o.SecondFactor, o.SecondFactorFrom = v, clawops.RiskHigh
	}, tool)
	return h, tool
}

func TestSecondFactor(t *testing.T) {
	h, tool := secondFactorHarness(t)
	ctx := context.Background()
	req := h.invokeNeedsApproval(t, alice, "fleet.teardown", 1)
	a, _ := h.gate.Approval(ctx, req.ApprovalID)
	if !a.SecondFactor || !a.Card().SecondFactorRequired {
		t.Fatalf("approval: got second factor %v, want required", a.SecondFactor)
	}
	right := totpCode(t, h.clock.Now())
	refusals := []struct {
		name    string
		decider clawops.Actor
		code    *string
		want    clawops.ReasonCode
	}{
		{"chat button", bob, nil, ReasonSecondFactorRequired},
		{"wrong code", bob, ptr(wrongCode(right)), ReasonSecondFactorInvalid},
		{"empty code", bob, ptr(""), ReasonSecondFactorInvalid},
		{"five digits", bob, ptr(right[:5]), ReasonSecondFactorInvalid},
		{"letters", bob, ptr("12a456"), ReasonSecondFactorInvalid},
		{"code of a minute ago", bob, ptr(totpCode(t, h.clock.Now().Add(-2*time.Minute))), ReasonSecondFactorInvalid},
		{"not enrolled", erin, ptr(right), ReasonSecondFactorInvalid},
	}
	for _, tc := range refusals {
		var err error
		if tc.code == nil {
			_, err = h.gate.Decide(ctx, tc.decider, req.ApprovalID, true, "")
		} else {
			_, err = h.gate.DecideWithFactor(ctx, tc.decider, req.ApprovalID, true, "", *tc.code)
		}
		if got := clawops.ReasonOf(err); got != tc.want {
			t.Errorf("%s: got %q (%v), want %q", tc.name, got, err, tc.want)
		}
		if es := h.entries(t); es[len(es)-1].Event != EventViolation || es[len(es)-1].Reason != tc.want {
			t.Errorf("%s: last audit entry %+v, want a violation", tc.name, es[len(es)-1])
		}
	}
	if n := tool.applies(); n != 0 {
		t.Fatalf("applies after refusals: got %d, want 0", n)
	}
	out, err := h.gate.DecideWithFactor(ctx, bob, req.ApprovalID, true, "checked", " "+right+" ")
	if err != nil || out.Decision != clawops.Allow {
		t.Fatalf("approve with factor: got %s/%s, %v", out.Decision, out.Reason, err)
	}
	a, _ = h.gate.Approval(ctx, req.ApprovalID)
	if a.State != ApprovalExecuted || len(a.Decisions) != 1 || !a.Decisions[0].SecondFactor {
		t.Errorf("approval: got %+v", a)
	}

	// The same code cannot approve a second request; the next step's code can.
	req2 := h.invokeNeedsApproval(t, alice, "fleet.teardown", 2)
	_, err = h.gate.DecideWithFactor(ctx, bob, req2.ApprovalID, true, "", right)
	wantReason(t, err, ReasonSecondFactorInvalid, clawops.KindDenied)
	h.clock.Advance(30 * time.Second)
	if _, err := h.gate.DecideWithFactor(ctx, bob, req2.ApprovalID, true, "", totpCode(t, h.clock.Now())); err != nil {
		t.Fatalf("next code: %v", err)
	}
	// Carol's secret is the same, written with spaces and in lower case.
	req3 := h.invokeNeedsApproval(t, alice, "fleet.teardown", 3)
	if _, err := h.gate.DecideWithFactor(ctx, carol, req3.ApprovalID, true, "", totpCode(t, h.clock.Now())); err != nil {
		t.Fatalf("carol: %v", err)
	}
	// Denying needs no second factor.
	req4 := h.invokeNeedsApproval(t, alice, "fleet.teardown", 4)
	_, err = h.gate.Decide(ctx, bob, req4.ApprovalID, false, "no")
	wantReason(t, err, clawops.ReasonDenied, clawops.KindDenied)
	if n := tool.applies(); n != 3 {
		t.Errorf("applies: got %d, want 3", n)
	}
	h.verify(t)
}

func ptr[T any](v T) *T { return &v }

func TestSecondFactorConfigErrors(t *testing.T) {
	db, _ := openDB(t)
	if _, err := NewGate(GateOptions{DB: db, SecondFactorFrom: clawops.RiskCritical}); err == nil ||
		!strings.Contains(err.Error(), "SecondFactor") {
		t.Errorf("no verifier: got %v", err)
	}
	v, _ := NewTOTPVerifier(nil, nil)
	if _, err := NewGate(GateOptions{DB: db, SecondFactor: v, SecondFactorFrom: "extreme"}); err == nil {
		t.Error("bad class: got nil error")
	}
	if _, err := NewGate(GateOptions{DB: db, Environment: "prod"}); err == nil {
		t.Error("bad environment: got nil error")
	}
	bad := map[string]map[string]string{
		"not base32": {"slack:bob": "not-a-secret!"},
		"too short":  {"slack:bob": "JBSWY3DP"},
	}
	for name, secrets := range bad {
		_, err := NewTOTPVerifier(secrets, nil)
		if err == nil || !strings.Contains(err.Error(), "slack:bob") || strings.Contains(err.Error(), secrets["slack:bob"]) {
			t.Errorf("%s: got %v, want an error naming the identity and not the secret", name, err)
		}
	}
}
