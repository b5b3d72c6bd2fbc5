package channels_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/channels/channelstest"
	"github.com/gatewayforge/clawops/governance"
)

func TestDecodeAction(t *testing.T) {
	for _, tt := range []struct {
		in     string
		choice channels.Choice
		id     string
	}{
		{"once|apr_0123abcd", channels.ChoiceApprove, "apr_0123abcd"},
		{"scope|apr_1", channels.ChoiceApproveScope, "apr_1"},
		{"deny|x-y_z", channels.ChoiceDeny, "x-y_z"},
	} {
		c, id, err := channels.DecodeAction(tt.in)
		if err != nil || c != tt.choice || id != tt.id {
			t.Errorf("DecodeAction(%q): got %q %q %v", tt.in, c, id, err)
		}
		if got := channels.EncodeAction(c, id); got != tt.in {
			t.Errorf("EncodeAction round trip: got %q, want %q", got, tt.in)
		}
	}
	for _, bad := range []string{"", "once", "once|", "|apr_1", "approve|apr_1", "once|apr 1", "once|apr_1|x",
		"once|" + strings.Repeat("a", 65), "once|äpr", "ONCE|apr_1"} {
		if _, _, err := channels.DecodeAction(bad); clawops.ReasonOf(err) != clawops.ReasonMalformedRequest {
			t.Errorf("DecodeAction(%q): got %v, want MALFORMED_REQUEST", bad, err)
		}
	}
}

func FuzzDecodeAction(f *testing.F) {
	f.Add("once|apr_0123456789abcdef0123456789abcdef")
	f.Add("deny|")
	f.Fuzz(func(t *testing.T, s string) {
		c, id, err := channels.DecodeAction(s)
		if err != nil {
			return
		}
		if channels.EncodeAction(c, id) != s || !channels.ValidApprovalID(id) || len(s) > 70 {
			t.Fatalf("accepted %q as %q %q", s, c, id)
		}
	})
}

// scopeGate is a Decider that can approve for scope, as the gate will.
type scopeGate struct {
	channels.Decider
	mu    sync.Mutex
	calls []string
}

func (s *scopeGate) DecideScope(_ context.Context, by clawops.Actor, id, _ string) (governance.Outcome, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, by.Identity+":"+id)
	return governance.Outcome{Decision: clawops.Allow, Reason: clawops.ReasonApproved, ApprovalID: id,
		Result: &governance.Result{Summary: "granted for 24h"}}, nil
}

func TestApprovalsPress(t *testing.T) {
	fx := channelstest.New(t, "chat", channelstest.People{Operator: "u1", Approver: "u2", Viewer: "u3"})
	ctx := context.Background()

	// Not wired: a clear refusal, nothing decided.
	if res := (*channels.Approvals)(nil).Press(ctx, channels.Press{}); !res.Refused || res.Reason != clawops.ReasonNotImplemented {
		t.Errorf("nil Approvals: got %+v", res)
	}

	ap := fx.Approvals()
	id := fx.Request(t, "i-001", "large")
	tests := []struct {
		name    string
		press   channels.Press
		refused bool
		reason  clawops.ReasonCode
		text    string
	}{
		{"scope without gate support", channels.Press{Sender: "u2", Choice: channels.ChoiceApproveScope}, true, clawops.ReasonNotImplemented, "not available on this gateway yet"},
		{"unknown choice", channels.Press{Sender: "u2", Choice: "maybe"}, true, clawops.ReasonMalformedRequest, "Unknown choice"},
		{"viewer", channels.Press{Sender: "u3", Choice: channels.ChoiceApprove}, true, clawops.ReasonNotApprover, "carol may not decide"},
		{"no such approval", channels.Press{Sender: "u2", Choice: channels.ChoiceApprove, ApprovalID: "apr_00000000000000000000000000000000"}, true, clawops.ReasonApprovalNotFound, "no such approval"},
		{"deny", channels.Press{Sender: "u2", Choice: channels.ChoiceDeny, Reason: "not now"}, false, clawops.ReasonDenied, "Denied by bob."},
		{"already decided", channels.Press{Sender: "u2", Choice: channels.ChoiceApprove}, true, clawops.ReasonAlreadyDecided, "already decided"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.press
			p.Channel = "chat"
			if p.ApprovalID == "" {
				p.ApprovalID = id
			}
			res := ap.Press(ctx, p)
			if res.Refused != tt.refused || res.Reason != tt.reason || !strings.Contains(res.Text, tt.text) || res.Ignored {
				t.Errorf("got %+v, want refused=%v reason=%s text ~ %q", res, tt.refused, tt.reason, tt.text)
			}
		})
	}
	if got := fx.State(t, id); got != governance.ApprovalDenied {
		t.Errorf("state: got %s, want denied", got)
	}

	sg := &scopeGate{Decider: fx.Gate}
	scoped := channels.NewApprovals(channels.ApprovalsOptions{Resolver: fx.Directory, Decider: sg})
	res := scoped.Press(ctx, channels.Press{Channel: "chat", Sender: "u2", ApprovalID: "apr_1", Choice: channels.ChoiceApproveScope})
	if res.Refused || res.Text != "Approved by bob for scope: granted for 24h." || len(sg.calls) != 1 || sg.calls[0] != "bob:apr_1" {
		t.Errorf("scope with gate support: got %+v, calls %v", res, sg.calls)
	}
}

func TestUnknownPresserAuditedOncePerWindow(t *testing.T) {
	fx := channelstest.New(t, "chat", channelstest.People{Operator: "u1", Approver: "u2", Viewer: "u3"})
	clk := newStepClock()
	ap := channels.NewApprovals(channels.ApprovalsOptions{Resolver: fx.Directory, Decider: fx.Gate, Auditor: fx.Audit, Clock: clk})
	ctx := context.Background()
	id := fx.Request(t, "i-001", "large")
	press := func() channels.PressResult {
		return ap.Press(ctx, channels.Press{Channel: "chat", Sender: "evil", ApprovalID: id, Choice: channels.ChoiceApprove})
	}
	for i := 0; i < 5; i++ {
		if res := press(); !res.Ignored || res.Text != "" {
			t.Fatalf("press %d: got %+v, want ignored silently", i, res)
		}
	}
	count := func() int {
		entries, err := fx.Audit.List(ctx, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range entries {
			if e.Reason == clawops.ReasonUnknownSender && e.Actor == "chat:evil" {
				n++
			}
		}
		return n
	}
	if got := count(); got != 1 {
		t.Errorf("audit rows after 5 presses: got %d, want 1", got)
	}
	_ = clk.sleep(ctx, 11*time.Minute)
	press()
	if got := count(); got != 2 {
		t.Errorf("audit rows after the window: got %d, want 2", got)
	}
	if got := fx.State(t, id); got != governance.ApprovalPending {
		t.Errorf("state: got %s, want pending", got)
	}
}

func TestWithScopeGrantsAroundThePlan(t *testing.T) {
	fx := channelstest.New(t, "chat", channelstest.People{Operator: "u1", Approver: "u2", Viewer: "u3"})
	ap := channels.NewApprovals(channels.ApprovalsOptions{Resolver: fx.Directory, Decider: channels.WithScope(fx.Gate, channels.ScopePolicy{TTL: time.Hour}), Auditor: fx.Audit})
	ctx := context.Background()
	id := fx.Request(t, "i-007", "large")
	res := ap.Press(ctx, channels.Press{Channel: "chat", Sender: "u2", ApprovalID: id, Choice: channels.ChoiceApproveScope})
	if res.Refused || !strings.Contains(res.Text, "Approved by bob for scope (granted gf_resize on i-007 for 1 h, up to 10 users)") {
		t.Fatalf("press: got %+v", res)
	}
	if got := fx.State(t, id); got != governance.ApprovalExecuted {
		t.Errorf("state: got %s, want executed", got)
	}
	grants, err := fx.Gate.ListGrants(ctx, true)
	if err != nil || len(grants) != 1 {
		t.Fatalf("grants: got %+v, %v; want one", grants, err)
	}
	// Within the grant, the same request now runs without a new approval.
	actor := clawops.Actor{Identity: "alice", Role: clawops.RoleOperator, Agent: clawops.Commander, Channel: "chat"}
	out, err := fx.Gate.Invoke(ctx, actor, channelstest.ToolName, []byte(`{"instance":"i-007","tier":"xlarge"}`))
	if err != nil || out.Decision != clawops.Allow {
		t.Errorf("invoke within the grant: got %s %s, %v; want allow", out.Decision, out.Reason, err)
	}
	// A viewer's scope press is refused by the gate like any other.
	id2 := fx.Request(t, "i-008", "large")
	res = ap.Press(ctx, channels.Press{Channel: "chat", Sender: "u3", ApprovalID: id2, Choice: channels.ChoiceApproveScope})
	if !res.Refused || res.Reason != clawops.ReasonNotApprover {
		t.Errorf("viewer scope press: got %+v", res)
	}
	res = ap.Press(ctx, channels.Press{Channel: "chat", Sender: "u2", ApprovalID: "apr_ffffffffffffffffffffffffffffffff", Choice: channels.ChoiceApproveScope})
	if !res.Refused || res.Reason != clawops.ReasonApprovalNotFound {
		t.Errorf("scope press on no approval: got %+v", res)
	}
}
