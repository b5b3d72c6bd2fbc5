package channels_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/governance"
)

func TestCardStatusAndExtras(t *testing.T) {
	at := time.Date(2026, 11, 23, 9, 5, 0, 0, time.UTC)
	exp := time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)
	for _, tt := range []struct {
		card governance.Card
		want string
	}{
		{governance.Card{State: governance.ApprovalPending, ExpiresAt: exp}, "Waiting for a decision until 2026-11-23 09:30 UTC"},
		{governance.Card{State: governance.ApprovalApproved, DecidedBy: "bob", DecidedAt: &at}, "Approved by bob at 2026-11-23 09:05 UTC; running"},
		{governance.Card{State: governance.ApprovalExecuted, DecidedBy: "bob", DecidedAt: &at}, "Approved by bob at 2026-11-23 09:05 UTC; done"},
		{governance.Card{State: governance.ApprovalFailed, DecidedBy: "bob", DecidedAt: &at}, "Approved by bob at 2026-11-23 09:05 UTC; failed"},
		{governance.Card{State: governance.ApprovalDenied, DecidedBy: "dan", DecidedAt: &at}, "Denied by dan at 2026-11-23 09:05 UTC"},
		{governance.Card{State: governance.ApprovalExpired, DecidedAt: &at}, "Expired at 2026-11-23 09:05 UTC without a decision"},
	} {
		if got := channels.CardStatus(tt.card); got != tt.want {
			t.Errorf("CardStatus(%s): got %q, want %q", tt.card.State, got, tt.want)
		}
	}
	four := governance.Card{RiskScore: 91, ApprovalsRequired: 2, SecondFactorRequired: true,
		Deciders: []governance.ApprovalDecision{{By: "bob", Approve: true, At: at}}}
	got := strings.Join(channels.CardExtras(four), " | ")
	want := "Risk score: 91/100 | Needs 2 approvers; approved so far by bob | Approving needs a second factor: decide in the web console"
	if got != want {
		t.Errorf("CardExtras: got %q, want %q", got, want)
	}
	for d, want := range map[time.Duration]string{0: "unknown", 45 * time.Second: "45 s", 2 * time.Minute: "2 min", 90 * time.Minute: "1 h 30 min", 3 * time.Hour: "3 h"} {
		if got := channels.DurationText(d); got != want {
			t.Errorf("DurationText(%s): got %q, want %q", d, got, want)
		}
	}
	for usd, want := range map[float64]string{0: "none", 12.5: "+$12.50/month", -3: "-$3.00/month"} {
		if got := channels.CostText(usd); got != want {
			t.Errorf("CostText(%v): got %q, want %q", usd, got, want)
		}
	}
	if got := channels.ShortCode("apr_3F9A2C1B77"); got != "3f9a2c1b" {
		t.Errorf("ShortCode: got %q", got)
	}
}
