package governance

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
)

func TestSetRoleTable(t *testing.T) {
	teardown := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskMedium, 3)
	h := newHarness(t, teardown)
	ctx := context.Background()
	wider := DefaultRoles()
	wider[clawops.Guardian][ActionTeardown] = Rule{Mode: WithApproval}
	refused := []struct {
		name  string
		actor clawops.Actor
	}{
		{"the agent itself", guardian},
		{"an admin through an agent", clawops.Actor{Identity: carol.Identity, Role: clawops.RoleAdmin, Agent: clawops.Commander}},
		{"an agent claiming admin", clawops.Actor{Identity: "agent:guardian", Role: clawops.RoleAdmin}},
		{"an operator", clawops.Actor{Identity: alice.Identity, Role: clawops.RoleOperator}},
		{"an approver", bob},
		{"nobody", clawops.Actor{}},
	}
	for _, tc := range refused {
		err := h.gate.SetRoleTable(ctx, tc.actor, wider, "let me")
		if clawops.ReasonOf(err) != clawops.ReasonRoleNotPermitted {
			t.Errorf("%s: got %v, want ROLE_NOT_PERMITTED", tc.name, err)
		}
		if ev := h.lastEvents(t, 1); ev[0] != "violation/ROLE_NOT_PERMITTED" {
			t.Errorf("%s: audit got %v", tc.name, ev)
		}
	}
	_, err := h.gate.Invoke(ctx, guardian, "fleet.teardown", instancesArgs(1))
	wantReason(t, err, clawops.ReasonRoleNotPermitted, clawops.KindDenied)

	bad := []RoleTable{
		{"janitor": {ActionRead: {Mode: Alone}}},
		{clawops.Guardian: {"nuke": {Mode: Alone}}},
		{clawops.Guardian: {ActionRead: {Mode: Mode(7)}}},
		{clawops.Forge: {ActionProvision: {Mode: Alone, MaxTargets: -1}}},
	}
	for _, tb := range bad {
		if err := h.gate.SetRoleTable(ctx, carol, tb, ""); clawops.ReasonOf(err) != clawops.ReasonBadArguments {
			t.Errorf("%v: got %v, want BAD_ARGUMENTS", tb, err)
		}
	}
	if err := h.gate.SetRoleTable(ctx, carol, wider, "guardian may ask to tear down"); err != nil {
		t.Fatal(err)
	}
	es := h.entries(t)
	last := es[len(es)-1]
	if last.Event != EventPolicyChanged || last.Actor != carol.Identity ||
		last.Detail != "guardian/teardown: never → needs approval — guardian may ask to tear down" {
		t.Errorf("policy.changed entry: got %+v", last)
	}
	out, err := h.gate.Invoke(ctx, guardian, "fleet.teardown", instancesArgs(1))
	if err != nil || out.Decision != clawops.NeedsApproval {
		t.Errorf("after the change: got %s/%s, %v", out.Decision, out.Reason, err)
	}
	// The table handed out is a copy.
	got := h.gate.RoleTable()
	got[clawops.Triage][ActionTeardown] = Rule{Mode: Alone}
	if h.gate.RoleTable().Lookup(clawops.Triage, ActionTeardown).Mode != Never {
		t.Error("changing RoleTable()'s result changed the gate")
	}
	if teardown.applies() != 0 {
		t.Errorf("applies: got %d", teardown.applies())
	}
	h.verify(t)
}

func TestSetApproversAndConfigChange(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if got := h.gate.Approvers(); got != nil {
		t.Errorf("default approvers: got %v, want nil", got)
	}
	if err := h.gate.SetApprovers(ctx, bob, []string{bob.Identity}, ""); clawops.ReasonOf(err) != clawops.ReasonRoleNotPermitted {
		t.Errorf("approver sets approvers: got %v", err)
	}
	if err := h.gate.SetApprovers(ctx, carol, []string{" slack:bob ", "slack:erin", "slack:bob", ""}, "rota"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"slack:bob", "slack:erin"}, h.gate.Approvers()); diff != "" {
		t.Errorf("approvers (-want +got):\n%s", diff)
	}
	if err := h.gate.RecordConfigChange(ctx, carol, "channels.slack", "bot_token=xoxb-1234567890-abcdefghij rotated"); err != nil {
		t.Fatal(err)
	}
	es := h.entries(t)
	last := es[len(es)-1]
	if last.Event != EventConfigChanged || strings.Contains(last.Detail, "xoxb-") || !strings.Contains(last.Detail, "[REDACTED]") {
		t.Errorf("config.changed: got %+v (the token must be redacted)", last)
	}
	if !strings.Contains(es[len(es)-2].Detail, "[slack:bob, slack:erin]") {
		t.Errorf("approvers change: got %+v", es[len(es)-2])
	}
	h.verify(t)
}
