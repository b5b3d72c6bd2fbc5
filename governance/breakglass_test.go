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

// bgNotifier records approvals and break-glass notices.
type bgNotifier struct {
	recordingNotifier
	mu        sync.Mutex
	activated []BreakGlass
}

func (n *bgNotifier) BreakGlassActivated(_ context.Context, bg BreakGlass) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.activated = append(n.activated, bg)
}

const justification = "primary DB host is down, pair failover stuck, approvers asleep"

func TestBreakGlassRefusals(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	good := BreakGlassRequest{Reason: BreakGlassIncident, Justification: justification, Duration: 30 * time.Minute}
	tests := []struct {
		name  string
		actor clawops.Actor
		req   BreakGlassRequest
	}{
		{"operator", alice, good},
		{"approver", bob, good},
		{"admin through an agent", clawops.Actor{Identity: carol.Identity, Role: clawops.RoleAdmin, Agent: clawops.Commander}, good},
		{"agent identity", clawops.Actor{Identity: "agent:commander", Role: clawops.RoleAdmin}, good},
		{"reason not on the list", carol, BreakGlassRequest{Reason: "BECAUSE", Justification: justification}},
		{"lower-case reason", carol, BreakGlassRequest{Reason: "incident_mitigation", Justification: justification}},
		{"no reason", carol, BreakGlassRequest{Justification: justification}},
		{"short justification", carol, BreakGlassRequest{Reason: BreakGlassSecurity, Justification: "   it is urgent!    "}},
		{"two hours", carol, BreakGlassRequest{Reason: BreakGlassSecurity, Justification: justification, Duration: 2 * time.Hour}},
		{"negative duration", carol, BreakGlassRequest{Reason: BreakGlassSecurity, Justification: justification, Duration: -time.Minute}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.gate.BreakGlass(ctx, tc.actor, tc.req)
			wantReason(t, err, ReasonBreakGlassInvalid, clawops.KindDenied)
			if ev := h.lastEvents(t, 1); ev[0] != "violation/BREAK_GLASS_INVALID" {
				t.Errorf("audit: got %v", ev)
			}
		})
	}
	if n := countRows(t, h.db)["governance_break_glass"]; n != 0 {
		t.Errorf("break-glass rows: got %d, want 0", n)
	}
}

func TestBreakGlass(t *testing.T) {
	teardown := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskHigh, 4)
	teardown.setTarget("i-004", func(tg *Target) { tg.PeerState = "DEGRADED" })
	n := &bgNotifier{}
	h := newHarnessOpts(t, func(o *GateOptions) { o.Notifier, o.Admins = n, []string{carol.Identity, frank.Identity} }, teardown)
	ctx := context.Background()
	bg, err := h.gate.BreakGlass(ctx, carol, BreakGlassRequest{Reason: BreakGlassApproverUnavailable,
		Justification: justification, Duration: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !breakGlassIDRE.MatchString(bg.ID) || bg.Admin != carol.Identity ||
		!bg.ExpiresAt.Equal(h.clock.Now().Truncate(time.Microsecond).Add(30*time.Minute)) {
		t.Errorf("break-glass: got %+v", bg)
	}
	if len(n.activated) != 1 || !cmp.Equal(n.activated[0].NotifyAdmins, []string{carol.Identity, frank.Identity}) {
		t.Errorf("admins notified: got %+v", n.activated)
	}
	if ev := h.events(t); len(ev) != 1 || ev[0] != "override/BREAK_GLASS" {
		t.Errorf("audit: got %v", ev)
	}
	bctx := WithBreakGlass(ctx, bg.ID)
	before := len(h.entries(t))
	out, err := h.gate.Invoke(bctx, carol, "fleet.teardown", instancesArgs(1))
	if err != nil || out.Decision != clawops.Allow || out.Reason != ReasonBreakGlass || out.Grant == nil ||
		out.Grant.Kind != GrantBreakGlass || out.Grant.ID != bg.ID {
		t.Fatalf("under break-glass: got %+v, %v", out, err)
	}
	if got := h.eventsSince(t, before); !equalStrings(got, []string{"requested", "override/BREAK_GLASS", "completed/OK"}) {
		t.Errorf("audit: got %v", got)
	}
	if teardown.applies() != 1 {
		t.Fatalf("applies: got %d, want 1", teardown.applies())
	}
	// Break-glass skips approval only.
	refused := []struct {
		name  string
		ctx   context.Context
		actor clawops.Actor
		args  []int
		want  clawops.ReasonCode
	}{
		{"invariant still holds", bctx, carol, []int{4}, clawops.ReasonStandbyNotActive},
		{"role never still holds", bctx, clawops.Actor{Identity: carol.Identity, Role: clawops.RoleAdmin, Agent: clawops.Guardian}, []int{1}, clawops.ReasonRoleNotPermitted},
		{"scope still holds", bctx, clawops.Actor{Identity: carol.Identity, Role: clawops.RoleAdmin, Scope: &clawops.Scope{Accounts: []string{"acct-002"}}}, []int{1}, clawops.ReasonOutOfScope},
		{"another admin", bctx, frank, []int{2}, ReasonBreakGlassInvalid},
		{"unknown id", WithBreakGlass(ctx, "bg_00000000000000000000000000000000"), carol, []int{2}, ReasonBreakGlassInvalid},
		{"malformed id", WithBreakGlass(ctx, "bg_' OR 1=1"), carol, []int{2}, ReasonBreakGlassInvalid},
	}
	for _, tc := range refused {
		ids := make([]string, len(tc.args))
		for i, x := range tc.args {
			ids[i] = string(idsRange(x, x)[0])
		}
		_, err := h.gate.Invoke(tc.ctx, tc.actor, "fleet.teardown", []byte(`{"instances":["`+strings.Join(ids, `","`)+`"]}`))
		if got := clawops.ReasonOf(err); got != tc.want {
			t.Errorf("%s: got %q (%v), want %q", tc.name, got, err, tc.want)
		}
	}
	h.clock.Advance(31 * time.Minute)
	_, err = h.gate.Invoke(bctx, carol, "fleet.teardown", instancesArgs(2))
	wantReason(t, err, ReasonBreakGlassInvalid, clawops.KindExpired)
	if teardown.applies() != 1 {
		t.Errorf("applies: got %d, want 1", teardown.applies())
	}
	h.verify(t)
}

func TestEndBreakGlass(t *testing.T) {
	tool := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskHigh, 4)
	h := newHarness(t, tool)
	ctx := context.Background()
	bg, err := h.gate.BreakGlass(ctx, carol, BreakGlassRequest{Reason: BreakGlassDataRecovery, Justification: justification})
	if err != nil {
		t.Fatal(err)
	}
	if got := bg.ExpiresAt.Sub(bg.CreatedAt); got != MaxBreakGlass {
		t.Errorf("default duration: got %s, want %s", got, MaxBreakGlass)
	}
	if err := h.gate.EndBreakGlass(ctx, alice, bg.ID); clawops.ReasonOf(err) != ReasonBreakGlassInvalid {
		t.Errorf("operator ends it: got %v", err)
	}
	if err := h.gate.EndBreakGlass(ctx, carol, bg.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.gate.EndBreakGlass(ctx, carol, bg.ID); clawops.ReasonOf(err) != ReasonBreakGlassInvalid {
		t.Errorf("end twice: got %v", err)
	}
	_, err = h.gate.Invoke(WithBreakGlass(ctx, bg.ID), carol, "fleet.teardown", instancesArgs(1))
	wantReason(t, err, ReasonBreakGlassInvalid, clawops.KindExpired)
	if tool.applies() != 0 {
		t.Errorf("applies: got %d, want 0", tool.applies())
	}
}

func TestBreakGlassNeedsSecondFactor(t *testing.T) {
	h := newHarnessOpts(t, func(o *GateOptions) {
		v, err := NewTOTPVerifier(map[string]string{carol.Identity: testTOTPSecret}, o.Clock)
		if err != nil {
			t.Fatal(err)
		}
		o.SecondFactor, o.SecondFactorFrom = v, clawops.RiskCritical
	})
	ctx := context.Background()
	req := BreakGlassRequest{Reason: BreakGlassSecurity, Justification: justification}
	_, err := h.gate.BreakGlass(ctx, carol, req)
	wantReason(t, err, ReasonSecondFactorRequired, clawops.KindDenied)
	req.SecondFactor = wrongCode(totpCode(t, h.clock.Now()))
	_, err = h.gate.BreakGlass(ctx, carol, req)
	wantReason(t, err, ReasonSecondFactorInvalid, clawops.KindDenied)
	req.SecondFactor = totpCode(t, h.clock.Now())
	if _, err := h.gate.BreakGlass(ctx, carol, req); err != nil {
		t.Fatal(err)
	}
}
