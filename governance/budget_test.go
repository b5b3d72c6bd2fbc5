package governance

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops"
)

func provisionHarness(t *testing.T) (*harness, *testTool) {
	tool := newTestTool("fleet.provision", ActionProvision, clawops.RiskLow, 10)
	tool.costEach = 20
	return newHarness(t, tool), tool
}

func TestSetBudget(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	refused := []clawops.Actor{alice, bob, guardian, {Identity: carol.Identity, Role: clawops.RoleAdmin, Agent: clawops.Ledger}}
	for _, a := range refused {
		err := h.gate.SetBudget(ctx, a, Budget{Scope: GlobalScope, Kind: BudgetInfra, HardUSD: 1e6})
		if clawops.ReasonOf(err) != clawops.ReasonRoleNotPermitted {
			t.Errorf("%s: got %v, want ROLE_NOT_PERMITTED", a, err)
		}
	}
	bad := []Budget{
		{Scope: GlobalScope, Kind: "gpu", HardUSD: 1},
		{Scope: "team:x", Kind: BudgetInfra, HardUSD: 1},
		{Scope: "account:", Kind: BudgetInfra, HardUSD: 1},
		{Scope: GlobalScope, Kind: BudgetInfra, SoftUSD: 10, HardUSD: 5},
		{Scope: GlobalScope, Kind: BudgetInfra, HardUSD: math.NaN()},
		{Scope: GlobalScope, Kind: BudgetInfra, HardUSD: math.Inf(1)},
		{Scope: GlobalScope, Kind: BudgetLLM, SoftUSD: -1},
	}
	for _, b := range bad {
		if err := h.gate.SetBudget(ctx, carol, b); clawops.ReasonOf(err) != clawops.ReasonBadArguments {
			t.Errorf("%+v: got %v, want BAD_ARGUMENTS", b, err)
		}
	}
	if bs, _ := h.gate.Budgets(ctx); len(bs) != 0 {
		t.Fatalf("budgets after refusals: got %+v", bs)
	}
	if err := h.gate.SetBudget(ctx, carol, Budget{Scope: AccountScope("acct-001"), Kind: BudgetLLM, SoftUSD: 5, HardUSD: 10}); err != nil {
		t.Fatal(err)
	}
	if err := h.gate.SetBudget(ctx, carol, Budget{Scope: AccountScope("acct-001"), Kind: BudgetLLM, SoftUSD: 6, HardUSD: 12}); err != nil {
		t.Fatal(err)
	}
	bs, _ := h.gate.Budgets(ctx)
	if len(bs) != 1 || bs[0].SoftUSD != 6 || bs[0].HardUSD != 12 {
		t.Errorf("budgets: got %+v", bs)
	}
	ev := h.events(t)
	if ev[len(ev)-1] != "policy.changed/POLICY_CHANGED" || !hasEvent(ev, "violation/ROLE_NOT_PERMITTED") {
		t.Errorf("audit: got %v", ev)
	}
	if err := h.gate.SetBudget(ctx, carol, Budget{Scope: AccountScope("acct-001"), Kind: BudgetLLM}); err != nil {
		t.Fatal(err)
	}
	if bs, _ := h.gate.Budgets(ctx); len(bs) != 0 {
		t.Errorf("after removing: got %+v", bs)
	}
}

func TestBudgetDecisions(t *testing.T) {
	h, tool := provisionHarness(t)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.gate.SetBudget(ctx, carol, Budget{Scope: GlobalScope, Kind: BudgetInfra, SoftUSD: 100, HardUSD: 200}))
	must(h.gate.SetBudget(ctx, carol, Budget{Scope: AccountScope("acct-003"), Kind: BudgetInfra, HardUSD: 10}))
	must(h.gate.RecordCost(ctx, CostEntry{Kind: BudgetInfra, Account: "acct-001", AmountUSD: 150, Source: "hetzner"}))
	// Last month's spend does not count.
	must(h.gate.RecordCost(ctx, CostEntry{Time: h.clock.Now().AddDate(0, -1, 0), Kind: BudgetInfra, AmountUSD: 5000}))
	if got, _ := h.gate.MonthToDate(ctx, BudgetInfra, ""); got != 150 {
		t.Errorf("month to date: got %v, want 150", got)
	}
	if got, _ := h.gate.MonthToDate(ctx, BudgetInfra, "acct-002"); got != 0 {
		t.Errorf("month to date of acct-002: got %v, want 0", got)
	}
	// 2 × $20/month from Nov 3, 09:30: about $36.86 more this month. Over the soft limit only.
	before := len(h.entries(t))
	out, err := h.gate.Invoke(ctx, forge, "fleet.provision", instancesArgs(2))
	if err != nil || out.Decision != clawops.Allow || len(out.Warnings) != 1 {
		t.Fatalf("soft limit: got %s/%s warnings %v, %v", out.Decision, out.Reason, out.Warnings, err)
	}
	fc := out.Plan.Forecast
	if fc == nil || len(fc.Lines) != 1 || fc.Lines[0].Status != ForecastWarn || fc.Lines[0].MonthToDateUSD != 150 ||
		fc.Lines[0].AddedUSD < 36 || fc.Lines[0].AddedUSD > 37.5 {
		t.Errorf("forecast: got %+v", fc)
	}
	if got := h.eventsSince(t, before); !equalStrings(got, []string{"requested", "allowed/ROLE_PERMITS",
		"budget.warning/BUDGET_SOFT_LIMIT", "completed/OK"}) {
		t.Errorf("audit: got %v", got)
	}
	// The forecast is not part of the plan's hash.
	if h2, _ := HashPlan(*out.Plan); h2 != out.Plan.Hash {
		t.Errorf("hash with forecast: got %s, want %s", h2, out.Plan.Hash)
	}
	// 5 × $20 = $100/month, ~$92 this month: over the hard limit.
	out, err = h.gate.Invoke(ctx, forge, "fleet.provision", instancesArgs(5))
	wantReason(t, err, clawops.ReasonBudgetExceeded, clawops.KindDenied)
	if out.Decision != clawops.Deny || !strings.Contains(out.Message, "global infra budget") {
		t.Errorf("hard limit: got %s %q", out.Decision, out.Message)
	}
	// An account budget: acct-003's hard limit is $10.
	_, err = h.gate.Invoke(ctx, forge, "fleet.provision", []byte(`{"instances":["i-003"]}`))
	wantReason(t, err, clawops.ReasonBudgetExceeded, clawops.KindDenied)
	// Savings are never stopped by a budget.
	tool.costEach = -3
	if out, err := h.gate.Invoke(ctx, forge, "fleet.provision", instancesArgs(5)); err != nil || out.Plan.Forecast != nil {
		t.Errorf("saving: got %s/%s forecast %v, %v", out.Decision, out.Reason, out.Plan.Forecast, err)
	}
	if tool.applies() != 2 {
		t.Errorf("applies: got %d, want 2", tool.applies())
	}
	h.verify(t)
}

// A plan approved before spend moved is checked again at execution.
func TestBudgetRecheckedOnApproval(t *testing.T) {
	h, tool := provisionHarness(t)
	ctx := context.Background()
	if err := h.gate.SetBudget(ctx, carol, Budget{Scope: GlobalScope, Kind: BudgetInfra, HardUSD: 500}); err != nil {
		t.Fatal(err)
	}
	req := h.invokeNeedsApproval(t, forge, "fleet.provision", 8) // over Forge's limit of 5
	if req.Plan.Forecast == nil {
		t.Fatal("approval plan has no forecast")
	}
	a, _ := h.gate.Approval(ctx, req.ApprovalID)
	if a.Card().Forecast == nil {
		t.Error("card has no forecast")
	}
	if err := h.gate.RecordCost(ctx, CostEntry{Kind: BudgetInfra, AmountUSD: 400}); err != nil {
		t.Fatal(err)
	}
	_, err := h.gate.Decide(ctx, bob, req.ApprovalID, true, "")
	wantReason(t, err, clawops.ReasonBudgetExceeded, clawops.KindDenied)
	if tool.applies() != 0 {
		t.Errorf("applies: got %d, want 0", tool.applies())
	}
}

func TestRecordCostAndLLMBudget(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if err := h.gate.SetBudget(ctx, carol, Budget{Scope: AccountScope("acct-007"), Kind: BudgetLLM, SoftUSD: 4, HardUSD: 5}); err != nil {
		t.Fatal(err)
	}
	for _, amt := range []float64{1.5, 2.0, 1.0} {
		if err := h.gate.RecordCost(ctx, CostEntry{Kind: BudgetLLM, Account: "acct-007", AmountUSD: amt, Source: "openai"}); err != nil {
			t.Fatal(err)
		}
	}
	warnings := 0
	for _, e := range h.entries(t) {
		if e.Event == EventBudgetWarning {
			warnings++
			if e.Actor != gateActor || !strings.Contains(e.Detail, "soft limit") {
				t.Errorf("warning: got %+v", e)
			}
		}
	}
	if warnings != 1 {
		t.Errorf("budget warnings: got %d, want 1 (crossing the soft limit once)", warnings)
	}
	if got, _ := h.gate.MonthToDate(ctx, BudgetLLM, "acct-007"); got != 4.5 {
		t.Errorf("month to date: got %v, want 4.5", got)
	}
	if _, err := h.gate.CheckBudget(ctx, BudgetLLM, "acct-007", 0.4); err != nil {
		t.Errorf("within budget: %v", err)
	}
	fc, err := h.gate.CheckBudget(ctx, BudgetLLM, "acct-007", 1.0)
	wantReason(t, err, clawops.ReasonBudgetExceeded, clawops.KindDenied)
	if !fc.Exceeded() || fc.Lines[0].ForecastUSD != 5.5 {
		t.Errorf("forecast: got %+v", fc)
	}
	if _, err := h.gate.CheckBudget(ctx, BudgetLLM, "acct-008", 100); err != nil {
		t.Errorf("no budget for acct-008: got %v", err)
	}
	bad := []CostEntry{
		{Kind: "gpu", AmountUSD: 1},
		{Kind: BudgetLLM, AmountUSD: math.NaN()},
		{Kind: BudgetLLM, AmountUSD: math.Inf(-1)},
		{Kind: BudgetLLM, AmountUSD: 1, Account: strings.Repeat("a", 200)},
	}
	for _, e := range bad {
		if err := h.gate.RecordCost(ctx, e); clawops.ReasonOf(err) != clawops.ReasonBadArguments {
			t.Errorf("%+v: got %v, want BAD_ARGUMENTS", e, err)
		}
	}
	if got, _ := h.gate.MonthToDate(ctx, BudgetLLM, ""); got != 4.5 {
		t.Errorf("global LLM month to date after bad input: got %v, want 4.5", got)
	}
}
