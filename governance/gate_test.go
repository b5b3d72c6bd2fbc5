package governance

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
)

func TestInvokeAllowedAuditOrder(t *testing.T) {
	tool := newTestTool("fleet.restart", ActionRestart, clawops.RiskMedium, 3)
	h := newHarness(t, tool)
	out, err := h.gate.Invoke(context.Background(), guardian, "fleet.restart", json.RawMessage(` {"instances": ["i-001","i-002"]} `))
	if err != nil {
		t.Fatal(err)
	}
	if out.Decision != clawops.Allow || out.Reason != clawops.ReasonRolePermits {
		t.Errorf("decision: got %s/%s, want allow/ROLE_PERMITS", out.Decision, out.Reason)
	}
	if out.Result == nil || out.Result.Summary != "did restart on 2 instances" {
		t.Errorf("result: got %+v", out.Result)
	}
	if out.Plan == nil || len(out.Plan.Hash) != 64 || string(out.Plan.Args) != `{"instances":["i-001","i-002"]}` || out.Plan.Tool != "fleet.restart" {
		t.Fatalf("plan: got %+v", out.Plan)
	}
	if got := tool.applies(); got != 1 {
		t.Errorf("applies: got %d, want 1", got)
	}
	want := []string{"requested", "allowed/ROLE_PERMITS", "completed/OK"}
	if diff := cmp.Diff(want, h.events(t)); diff != "" {
		t.Errorf("audit events (-want +got):\n%s", diff)
	}
	for _, e := range h.entries(t) {
		if e.Actor != guardian.String() || e.Tool != "fleet.restart" || e.Target != "i-001,i-002" || e.PlanHash != out.Plan.Hash {
			t.Errorf("audit entry %d: got %+v", e.Seq, e)
		}
	}
	h.verify(t)
}

func TestInvokeDenied(t *testing.T) {
	restart := newTestTool("fleet.restart", ActionRestart, clawops.RiskMedium, 3)
	teardown := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskMedium, 3)
	teardown.setTarget("i-001", func(tg *Target) { tg.PeerState = "DEGRADED" })
	push := newTestTool("fleet.push", ActionConfigPush, clawops.RiskMedium, 150)
	badRolling := newTestTool("fleet.push_rolling", ActionConfigPush, clawops.RiskMedium, 150)
	badRolling.rollingBatch = 500
	lowRead := newTestTool("fleet.read", ActionRead, clawops.RiskLow, 3)
	h := newHarness(t, restart, teardown, push, badRolling, lowRead)
	viewer := clawops.Actor{Identity: "tg:vic", Role: clawops.RoleViewer, Agent: clawops.Commander}
	triage := clawops.Actor{Identity: "agent:triage", Agent: clawops.Triage}
	tests := []struct {
		name  string
		actor clawops.Actor
		tool  string
		args  string
		kind  clawops.Kind
		want  clawops.ReasonCode
	}{
		{"unknown tool", alice, "fleet.nuke", `{}`, clawops.KindNotFound, clawops.ReasonUnknownTool},
		{"args not JSON", alice, "fleet.restart", `{"instances":`, clawops.KindInvalid, clawops.ReasonBadArguments},
		{"args an array", alice, "fleet.restart", `["i-001"]`, clawops.KindInvalid, clawops.ReasonBadArguments},
		{"args with trailing data", alice, "fleet.restart", `{"instances":["i-001"]} {}`, clawops.KindInvalid, clawops.ReasonBadArguments},
		{"args of the wrong type", alice, "fleet.restart", `{"instances":"i-001"}`, clawops.KindInvalid, clawops.ReasonBadArguments},
		{"unknown argument", alice, "fleet.restart", `{"instances":[],"rm":"-rf"}`, clawops.KindInvalid, clawops.ReasonBadArguments},
		{"unknown instance", alice, "fleet.restart", `{"instances":["i-999"]}`, clawops.KindNotFound, clawops.ReasonUnknownInstance},
		{"viewer restarts", viewer, "fleet.restart", `{"instances":["i-001"]}`, clawops.KindDenied, clawops.ReasonRoleNotPermitted},
		{"triage restarts", triage, "fleet.restart", `{"instances":["i-001"]}`, clawops.KindDenied, clawops.ReasonRoleNotPermitted},
		{"guardian tears down", guardian, "fleet.teardown", `{"instances":["i-002"]}`, clawops.KindDenied, clawops.ReasonRoleNotPermitted},
		{"nobody reads", clawops.Actor{}, "fleet.read", `{}`, clawops.KindUnauthorized, clawops.ReasonUnauthenticated},
		{"teardown of primary with degraded standby", forge, "fleet.teardown", `{"instances":["i-002","i-001"]}`, clawops.KindDenied, clawops.ReasonStandbyNotActive},
		{"config push to 101", alice, "fleet.push", string(instancesArgs(101)), clawops.KindDenied, clawops.ReasonRollingRequired},
		{"rolling push with oversized batches", alice, "fleet.push_rolling", string(instancesArgs(150)), clawops.KindDenied, clawops.ReasonRollingRequired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.entries(t))
			out, err := h.gate.Invoke(context.Background(), tc.actor, tc.tool, json.RawMessage(tc.args))
			wantReason(t, err, tc.want, tc.kind)
			if out.Decision != clawops.Deny || out.Reason != tc.want || out.Result != nil || out.ApprovalID != "" {
				t.Errorf("outcome: got %+v, want deny/%s with no result", out, tc.want)
			}
			got := h.events(t)[before:]
			if diff := cmp.Diff([]string{"requested", "denied/" + string(tc.want)}, got); diff != "" {
				t.Errorf("audit events (-want +got):\n%s", diff)
			}
		})
	}
	for _, tool := range []*testTool{restart, teardown, push, badRolling, lowRead} {
		if n := tool.applies(); n != 0 {
			t.Errorf("%s applied %d times, want 0", tool.spec.Name, n)
		}
	}
	if approvals, _ := h.gate.ListApprovals(context.Background(), ""); len(approvals) != 0 {
		t.Errorf("approvals: got %d, want 0", len(approvals))
	}
	h.verify(t)
}

func TestInvokeNeedsApproval(t *testing.T) {
	restart := newTestTool("fleet.restart", ActionRestart, clawops.RiskMedium, 20)
	risky := newTestTool("fleet.restart_hard", ActionRestart, clawops.RiskHigh, 3)
	critical := newTestTool("fleet.heal_deep", ActionHeal, clawops.RiskCritical, 3)
	teardown := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskMedium, 3)
	provision := newTestTool("fleet.provision", ActionProvision, clawops.RiskMedium, 10)
	push := newTestTool("fleet.push", ActionConfigPush, clawops.RiskMedium, 300)
	push.rollingBatch = 50
	h := newHarness(t, restart, risky, critical, teardown, provision, push)
	tests := []struct {
		name  string
		actor clawops.Actor
		tool  string
		args  json.RawMessage
		want  clawops.ReasonCode
	}{
		{"guardian restarts 11 users", guardian, "fleet.restart", instancesArgs(11), clawops.ReasonTooManyUsers},
		{"high risk even for an allowed role", guardian, "fleet.restart_hard", instancesArgs(1), clawops.ReasonApprovalRequired},
		{"critical risk for an operator's commander", alice, "fleet.heal_deep", instancesArgs(1), clawops.ReasonApprovalRequired},
		{"commander tears down", alice, "fleet.teardown", instancesArgs(1), clawops.ReasonApprovalRequired},
		{"forge tears down a safe pair", forge, "fleet.teardown", instancesArgs(2), clawops.ReasonApprovalRequired},
		{"forge provisions 6", forge, "fleet.provision", instancesArgs(6), clawops.ReasonApprovalRequired},
		{"admin without agent provisions", carol, "fleet.provision", instancesArgs(1), clawops.ReasonApprovalRequired},
		{"rolling push to 300", alice, "fleet.push", instancesArgs(300), clawops.ReasonTooManyUsers},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.entries(t))
			out, err := h.gate.Invoke(context.Background(), tc.actor, tc.tool, tc.args)
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if out.Decision != clawops.NeedsApproval || out.Reason != tc.want || out.Result != nil {
				t.Fatalf("outcome: got %s/%s, want needs_approval/%s", out.Decision, out.Reason, tc.want)
			}
			a, err := h.gate.Approval(context.Background(), out.ApprovalID)
			if err != nil {
				t.Fatal(err)
			}
			if a.State != ApprovalPending || a.PlanHash != out.Plan.Hash || a.Requester != tc.actor || a.Tool != tc.tool {
				t.Errorf("approval: got %+v", a)
			}
			if want := a.CreatedAt.Add(DefaultApprovalTTL); !a.ExpiresAt.Equal(want) {
				t.Errorf("expires: got %v, want %v", a.ExpiresAt, want)
			}
			if diff := cmp.Diff([]ApprovalState{ApprovalPending}, h.notifier.states(a.ID)); diff != "" {
				t.Errorf("notifications (-want +got):\n%s", diff)
			}
			got := h.events(t)[before:]
			if diff := cmp.Diff([]string{"requested", "needs_approval/" + string(tc.want)}, got); diff != "" {
				t.Errorf("audit events (-want +got):\n%s", diff)
			}
		})
	}
	for _, tool := range []*testTool{restart, risky, critical, teardown, provision, push} {
		if n := tool.applies(); n != 0 {
			t.Errorf("%s applied %d times, want 0", tool.spec.Name, n)
		}
	}
	// Within the limits the same tools run alone.
	if out, err := h.gate.Invoke(context.Background(), forge, "fleet.provision", instancesArgs(5)); err != nil || out.Decision != clawops.Allow {
		t.Errorf("forge provisions 5: got %s/%s, %v; want allow", out.Decision, out.Reason, err)
	}
	if out, err := h.gate.Invoke(context.Background(), guardian, "fleet.restart", instancesArgs(10)); err != nil || out.Decision != clawops.Allow {
		t.Errorf("guardian restarts 10 users: got %s/%s, %v; want allow", out.Decision, out.Reason, err)
	}
	h.verify(t)
}

func TestInvokeApplyFailure(t *testing.T) {
	tool := newTestTool("fleet.restart", ActionRestart, clawops.RiskLow, 2)
	tool.applyErr = clawops.E("hub.send", clawops.KindTransient, clawops.ReasonNodeOffline, "node i-001 offline")
	plain := newTestTool("fleet.heal", ActionHeal, clawops.RiskLow, 2)
	plain.applyErr = errors.New("disk full")
	h := newHarness(t, tool, plain)
	out, err := h.gate.Invoke(context.Background(), guardian, "fleet.restart", instancesArgs(1))
	wantReason(t, err, clawops.ReasonNodeOffline, clawops.KindTransient)
	if out.Decision != clawops.Allow || out.Reason != clawops.ReasonNodeOffline || out.Result != nil {
		t.Errorf("outcome: got %+v", out)
	}
	_, err = h.gate.Invoke(context.Background(), guardian, "fleet.heal", instancesArgs(1))
	wantReason(t, err, clawops.ReasonExecutionFailed, clawops.KindOther)
	want := []string{"requested", "allowed/ROLE_PERMITS", "failed/NODE_OFFLINE", "requested", "allowed/ROLE_PERMITS", "failed/EXECUTION_FAILED"}
	if diff := cmp.Diff(want, h.events(t)); diff != "" {
		t.Errorf("audit events (-want +got):\n%s", diff)
	}
}

// If the audit log cannot take the "requested" entry, nothing may run.
func TestInvokeRefusesWhenAuditUnavailable(t *testing.T) {
	tool := newTestTool("fleet.restart", ActionRestart, clawops.RiskLow, 2)
	h := newHarness(t, tool)
	err := h.db.Exec(`CREATE TRIGGER audit_blocked BEFORE INSERT ON governance_audit
		BEGIN SELECT RAISE(ABORT, 'audit disk is read-only'); END`).Error
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.gate.Invoke(context.Background(), guardian, "fleet.restart", instancesArgs(1))
	wantReason(t, err, clawops.ReasonInternal, clawops.KindOther)
	if !errors.Is(err, errAuditUnavailable) {
		t.Errorf("error: got %v, want it to wrap errAuditUnavailable", err)
	}
	if out.Decision != clawops.Deny {
		t.Errorf("decision: got %s, want deny", out.Decision)
	}
	if n := tool.applies(); n != 0 {
		t.Errorf("applies: got %d, want 0", n)
	}
}

// A provider delete only ever runs after its "requested" entry is in the log: Apply looks.
func TestProviderDeleteAuditedBeforeApply(t *testing.T) {
	tool := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskCritical, 2)
	tool.providerDelete = true
	var h *harness
	var seen []AuditEntry
	tool.onApply = func(ctx context.Context, p Plan) {
		es, err := h.gate.Audit().List(ctx, 0, 1000)
		if err != nil {
			t.Error(err)
		}
		seen = es
	}
	h = newHarness(t, tool)
	out, err := h.gate.Invoke(context.Background(), alice, "fleet.teardown", instancesArgs(1))
	if err != nil || out.Decision != clawops.NeedsApproval {
		t.Fatalf("invoke: got %s, %v; want needs_approval", out.Decision, err)
	}
	// Critical: four-eyes, so two distinct approvers.
	if _, err := h.gate.Decide(context.Background(), bob, out.ApprovalID, true, "ok"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.gate.Decide(context.Background(), carol, out.ApprovalID, true, "ok"); err != nil {
		t.Fatal(err)
	}
	if len(seen) == 0 {
		t.Fatal("Apply saw an empty audit log")
	}
	last := seen[len(seen)-1]
	if last.Event != EventRequested || last.PlanHash != out.Plan.Hash || last.Target != "i-001" {
		t.Errorf("last entry before Apply: got %+v, want requested for plan %s", last, out.Plan.Hash)
	}

	// With the log refusing "requested" rows, the approved delete never runs.
	out, err = h.gate.Invoke(context.Background(), alice, "fleet.teardown", instancesArgs(2))
	if err != nil {
		t.Fatal(err)
	}
	err = h.db.Exec(`CREATE TRIGGER audit_no_requested BEFORE INSERT ON governance_audit
		WHEN NEW.event = 'requested' BEGIN SELECT RAISE(ABORT, 'no'); END`).Error
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.gate.Decide(context.Background(), bob, out.ApprovalID, true, "ok"); err != nil {
		t.Fatal(err)
	}
	_, err = h.gate.Decide(context.Background(), carol, out.ApprovalID, true, "ok")
	wantReason(t, err, clawops.ReasonInternal, clawops.KindOther)
	if n := tool.applies(); n != 1 {
		t.Errorf("applies: got %d, want 1 (only the first delete)", n)
	}
	if a, _ := h.gate.Approval(context.Background(), out.ApprovalID); a.State != ApprovalFailed {
		t.Errorf("approval state: got %s, want failed", a.State)
	}
}

func TestRegister(t *testing.T) {
	h := newHarness(t)
	h.gate.Register(newTestTool("b.tool", ActionRead, clawops.RiskLow, 0))
	h.gate.Register(newTestTool("a.tool", ActionRead, clawops.RiskLow, 0))
	var names []string
	for _, s := range h.gate.Tools() {
		names = append(names, s.Name)
	}
	if diff := cmp.Diff([]string{"a.tool", "b.tool"}, names); diff != "" {
		t.Errorf("tools (-want +got):\n%s", diff)
	}
	bad := map[string]*testTool{
		"duplicate":    newTestTool("a.tool", ActionRead, clawops.RiskLow, 0),
		"empty name":   newTestTool("", ActionRead, clawops.RiskLow, 0),
		"bad name":     newTestTool("Fleet Nuke!", ActionRead, clawops.RiskLow, 0),
		"bad action":   newTestTool("c.tool", "format_disk", clawops.RiskLow, 0),
		"missing risk": newTestTool("d.tool", ActionRead, "", 0),
	}
	for name, tool := range bad {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("Register: got no panic, want one")
				}
			}()
			h.gate.Register(tool)
		})
	}
}

func TestNewGateOptions(t *testing.T) {
	if _, err := NewGate(GateOptions{}); err == nil || !strings.Contains(err.Error(), "DB") {
		t.Errorf("no DB: got %v, want an error naming DB", err)
	}
	db, _ := openDB(t)
	if _, err := NewGate(GateOptions{DB: db, ApprovalTTL: -1}); err == nil {
		t.Errorf("negative TTL: got nil error, want one")
	}
	g, err := NewGate(GateOptions{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	if g.ttl != DefaultApprovalTTL || g.roles.Lookup(clawops.Forge, ActionProvision).MaxTargets != ForgeProvisionLimit {
		t.Errorf("defaults: got ttl %s and roles %v", g.ttl, g.roles)
	}
	// A custom table is copied: changing it afterwards changes nothing.
	custom := DefaultRoles()
	g, err = NewGate(GateOptions{DB: db, Roles: custom})
	if err != nil {
		t.Fatal(err)
	}
	custom[clawops.Triage][ActionTeardown] = Rule{Mode: Alone}
	if got := g.roles.Lookup(clawops.Triage, ActionTeardown).Mode; got != Never {
		t.Errorf("after changing the caller's table: got %v, want never", got)
	}
}
