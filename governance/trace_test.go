package governance

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
)

func TestTraces(t *testing.T) {
	restart := newTestTool("fleet.restart", ActionRestart, clawops.RiskMedium, 30)
	teardown := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskHigh, 3)
	h := newHarness(t, restart, teardown)
	ctx := context.Background()
	id, err := h.gate.StartTrace(ctx, TraceStart{Actor: alice, Intent: "restart the EU block; my token=hunter2secret",
		Scope: "accounts acct-001..acct-030"})
	if err != nil {
		t.Fatal(err)
	}
	tctx := WithTrace(ctx, id)
	h.clock.Advance(time.Second)
	if _, err := h.gate.Invoke(tctx, alice, "fleet.restart", instancesArgs(2)); err != nil {
		t.Fatal(err)
	}
	req, err := h.gate.Invoke(tctx, alice, "fleet.teardown", instancesArgs(1))
	if err != nil || req.Decision != clawops.NeedsApproval {
		t.Fatal(err)
	}
	if _, err := h.gate.Invoke(tctx, guardian, "fleet.teardown", instancesArgs(1)); err == nil {
		t.Fatal("guardian teardown: want a denial")
	}
	if _, err := h.gate.Invoke(tctx, alice, "fleet.restart", json.RawMessage(`{"instances":["i-001"],"note":"password=swordfish"}`)); err == nil {
		t.Fatal("unknown argument: want a denial")
	}
	// Outside the trace: not recorded.
	if _, err := h.gate.Invoke(ctx, alice, "fleet.restart", instancesArgs(1)); err != nil {
		t.Fatal(err)
	}
	// The approval remembers the trace; its execution is recorded there too.
	if _, err := h.gate.Decide(ctx, bob, req.ApprovalID, true, ""); err != nil {
		t.Fatal(err)
	}
	if err := h.gate.EndTrace(ctx, id, TraceEnd{Status: TraceOK, Result: "done; mail ops@example.com", CostUSD: 0.042}); err != nil {
		t.Fatal(err)
	}
	tr, err := h.gate.Trace(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Status != TraceOK || tr.EndedAt == nil || tr.CostUSD != 0.042 || tr.Actor.Identity != alice.Identity ||
		strings.Contains(tr.Intent, "hunter2") || strings.Contains(tr.Result, "ops@example.com") {
		t.Errorf("trace: got %+v", tr)
	}
	type row struct {
		tool     string
		decision clawops.Decision
		reason   clawops.ReasonCode
	}
	want := []row{
		{"fleet.restart", clawops.Allow, clawops.ReasonRolePermits},
		{"fleet.teardown", clawops.NeedsApproval, clawops.ReasonApprovalRequired},
		{"fleet.teardown", clawops.Deny, clawops.ReasonRoleNotPermitted},
		{"fleet.restart", clawops.Deny, clawops.ReasonBadArguments},
		{"fleet.teardown", clawops.Allow, clawops.ReasonApproved},
	}
	if len(tr.Spans) != len(want) {
		t.Fatalf("spans: got %d, want %d: %+v", len(tr.Spans), len(want), tr.Spans)
	}
	for i, w := range want {
		s := tr.Spans[i]
		if s.Seq != int64(i+1) || s.Tool != w.tool || s.Decision != w.decision || s.Reason != w.reason {
			t.Errorf("span %d: got %d %s %s/%s, want %s %s/%s", i, s.Seq, s.Tool, s.Decision, s.Reason, w.tool, w.decision, w.reason)
		}
	}
	if s := tr.Spans[0]; s.Result != "did restart on 2 instances" || s.GrantKind != GrantPolicy || s.PlanHash == "" ||
		string(s.Args) != `{"instances":["i-001","i-002"]}` || s.RiskScore == 0 {
		t.Errorf("first span: got %+v", s)
	}
	if s := tr.Spans[3]; !s.ArgsRedacted || strings.Contains(string(s.Args), "swordfish") {
		t.Errorf("redacted span: got %+v", s)
	}
	if s := tr.Spans[4]; s.ApprovalID != req.ApprovalID || s.GrantKind != GrantApproval || s.GrantID != req.ApprovalID {
		t.Errorf("approved span: got %+v", s)
	}
	list, err := h.gate.ListTraces(ctx, TraceFilter{Identity: alice.Identity})
	if err != nil || len(list) != 1 || list[0].ID != id || list[0].Spans != nil {
		t.Errorf("list: got %+v, %v", list, err)
	}
	if list, _ := h.gate.ListTraces(ctx, TraceFilter{Since: h.clock.Now().Add(time.Hour)}); len(list) != 0 {
		t.Errorf("list since later: got %d", len(list))
	}
}

func TestTraceBadInput(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	id, _ := h.gate.StartTrace(ctx, TraceStart{Actor: guardian, Intent: "heal"})
	tests := []struct {
		name string
		err  error
	}{
		{"bad parent", func() error { _, err := h.gate.StartTrace(ctx, TraceStart{Parent: "x"}); return err }()},
		{"end with bad status", h.gate.EndTrace(ctx, id, TraceEnd{Status: "meh"})},
		{"end with negative cost", h.gate.EndTrace(ctx, id, TraceEnd{Status: TraceOK, CostUSD: -1})},
		{"end unknown", h.gate.EndTrace(ctx, "trc_00000000000000000000000000000000", TraceEnd{Status: TraceOK})},
		{"end malformed", h.gate.EndTrace(ctx, "trc_' OR 1=1", TraceEnd{Status: TraceOK})},
		{"span on malformed", h.gate.TraceToolCall(ctx, "nope", ToolCallSpan{Tool: "x"})},
		{"read malformed", func() error { _, err := h.gate.Trace(ctx, "../etc"); return err }()},
		{"read unknown", func() error { _, err := h.gate.Trace(ctx, "trc_00000000000000000000000000000000"); return err }()},
		{"list limit", func() error { _, err := h.gate.ListTraces(ctx, TraceFilter{Limit: 5000}); return err }()},
	}
	for _, tc := range tests {
		if clawops.ReasonOf(tc.err) != clawops.ReasonBadArguments {
			t.Errorf("%s: got %v, want BAD_ARGUMENTS", tc.name, tc.err)
		}
	}
	if err := h.gate.EndTrace(ctx, id, TraceEnd{Status: TraceCancelled}); err != nil {
		t.Fatal(err)
	}
	if err := h.gate.EndTrace(ctx, id, TraceEnd{Status: TraceOK}); clawops.ReasonOf(err) != clawops.ReasonBadArguments {
		t.Errorf("end twice: got %v", err)
	}
}

func TestReplay(t *testing.T) {
	restart := newTestTool("fleet.restart", ActionRestart, clawops.RiskMedium, 30)
	h := newHarness(t, restart)
	ctx := context.Background()
	id, _ := h.gate.StartTrace(ctx, TraceStart{Actor: guardian, Intent: "nightly heal"})
	tctx := WithTrace(ctx, id)
	if _, err := h.gate.Invoke(tctx, guardian, "fleet.restart", instancesArgs(1)); err != nil {
		t.Fatal(err)
	}
	h.gate.Invoke(tctx, guardian, "fleet.restart", instancesArgs(11))
	h.gate.Invoke(tctx, guardian, "fleet.restart", json.RawMessage(`{"instances":["i-001"],"token":"abc123"}`))
	rep, err := h.gate.Replay(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Changed != 0 || len(rep.Steps) != 3 || rep.Steps[2].Note == "" || rep.Steps[2].Now != nil {
		t.Fatalf("replay under the same policy: got %+v", rep)
	}
	// Policy tightens: Guardian may no longer restart alone.
	stricter := DefaultRoles()
	stricter[clawops.Guardian][ActionRestart] = Rule{Mode: WithApproval}
	if err := h.gate.SetRoleTable(ctx, carol, stricter, "change freeze"); err != nil {
		t.Fatal(err)
	}
	before := countRows(t, h.db)
	rep, err = h.gate.Replay(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Changed != 1 || !rep.Steps[0].Changed || rep.Steps[0].Now.Decision != clawops.NeedsApproval || rep.Steps[1].Changed {
		t.Errorf("replay under stricter policy: got %+v", rep)
	}
	after := countRows(t, h.db)
	if before["governance_audit"] != after["governance_audit"] || before["governance_trace_spans"] != after["governance_trace_spans"] ||
		before["governance_approvals"] != after["governance_approvals"] {
		t.Errorf("Replay wrote rows: before %v after %v", before, after)
	}
	if restart.applies() != 1 {
		t.Errorf("applies: got %d, want 1", restart.applies())
	}
	if _, err := h.gate.Replay(ctx, "trc_00000000000000000000000000000000"); clawops.ReasonOf(err) != clawops.ReasonBadArguments {
		t.Errorf("unknown trace: got %v", err)
	}
}
