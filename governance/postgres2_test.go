package governance

import (
	"context"
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
)

// The whole governance surface on PostgreSQL: four-eyes, grants, budgets, break-glass,
// traces, checkpoints and bundles.
func TestPostgresGovernanceInDepth(t *testing.T) {
	open := openPostgres(t)
	db := open()
	clock := newFakeClock()
	critical := newTestTool("fleet.wipe", ActionTeardown, clawops.RiskCritical, 3)
	restart := newTestTool("fleet.restart", ActionRestart, clawops.RiskMedium, 30)
	provision := newTestTool("fleet.provision", ActionProvision, clawops.RiskLow, 10)
	provision.costEach = 50
	g, err := NewGate(GateOptions{DB: db, Clock: clock, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	g.Register(critical)
	g.Register(restart)
	g.Register(provision)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	trace, err := g.StartTrace(ctx, TraceStart{Actor: alice, Intent: "postgres run"})
	must(err)
	tctx := WithTrace(ctx, trace)

	req, err := g.Invoke(tctx, alice, "fleet.wipe", instancesArgs(1))
	must(err)
	if _, err := g.Decide(ctx, bob, req.ApprovalID, true, ""); err != nil {
		t.Fatal(err)
	}
	if out, err := g.Decide(ctx, carol, req.ApprovalID, true, ""); err != nil || out.Result == nil {
		t.Fatalf("second approval: %+v, %v", out, err)
	}

	gReq, err := g.Invoke(ctx, guardian, "fleet.restart", instancesArgs(11))
	must(err)
	_, err = g.ApproveForScope(ctx, bob, gReq.ApprovalID, GrantScope{Instances: idsRange(1, 30), MaxUsers: 20, TTL: time.Hour}, "")
	must(err)
	if out, err := g.Invoke(ctx, guardian, "fleet.restart", argsRange(12, 22)); err != nil || out.Reason != ReasonGrantScope {
		t.Errorf("grant use: got %s/%s, %v", out.Decision, out.Reason, err)
	}
	if out, _ := g.Invoke(ctx, guardian, "fleet.restart", argsRange(1, 11)); out.Decision != clawops.NeedsApproval {
		t.Errorf("grant exhausted: got %s", out.Decision)
	}

	must(g.SetBudget(ctx, carol, Budget{Scope: GlobalScope, Kind: BudgetInfra, SoftUSD: 100, HardUSD: 300}))
	must(g.RecordCost(ctx, CostEntry{Kind: BudgetInfra, Account: "acct-001", AmountUSD: 120.25}))
	if got, err := g.MonthToDate(ctx, BudgetInfra, ""); err != nil || got != 120.25 {
		t.Errorf("month to date: got %v, %v", got, err)
	}
	if out, err := g.Invoke(ctx, forge, "fleet.provision", instancesArgs(1)); err != nil || len(out.Warnings) != 1 {
		t.Errorf("soft limit: got %+v, %v", out, err)
	}
	_, err = g.Invoke(ctx, forge, "fleet.provision", instancesArgs(5))
	wantReason(t, err, clawops.ReasonBudgetExceeded, clawops.KindDenied)

	bg, err := g.BreakGlass(ctx, carol, BreakGlassRequest{Reason: BreakGlassIncident, Justification: justification})
	must(err)
	if out, err := g.Invoke(WithBreakGlass(ctx, bg.ID), carol, "fleet.wipe", instancesArgs(2)); err != nil || out.Reason != ReasonBreakGlass {
		t.Errorf("break-glass: got %s/%s, %v", out.Decision, out.Reason, err)
	}
	must(g.EndBreakGlass(ctx, carol, bg.ID))

	must(g.EndTrace(ctx, trace, TraceEnd{Status: TraceOK, CostUSD: 0.5}))
	tr, err := g.Trace(ctx, trace)
	if err != nil || len(tr.Spans) != 2 || tr.CostUSD != 0.5 {
		t.Errorf("trace: got %+v, %v", tr, err)
	}
	if rep, err := g.Replay(ctx, trace); err != nil || len(rep.Steps) != 2 {
		t.Errorf("replay: got %+v, %v", rep, err)
	}
	if r, err := g.Preflight(ctx, guardian, "fleet.restart", instancesArgs(2)); err != nil || r.Decision != clawops.Allow {
		t.Errorf("preflight: got %+v, %v", r, err)
	}

	key := testKey(t, 3)
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := g.Audit().ExportBundle(ctx, dir, key); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyBundle(dir, key.Public().(ed25519.PublicKey)); err != nil {
		t.Errorf("bundle: %v", err)
	}
	if rep, err := g.Audit().Verify(ctx); err != nil || !rep.OK || rep.Checkpoints != 1 {
		t.Errorf("verify: got %+v, %v", rep, err)
	}
	if n := critical.applies(); n != 2 {
		t.Errorf("critical applies: got %d, want 2", n)
	}
}
