package api

import (
	"net/http"
	"strings"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

// BudgetView is one budget with its month-to-date spend.
type BudgetView struct {
	governance.Budget
	MonthToDateUSD float64 `json:"month_to_date_usd"`
}

// BudgetsView is the answer of GET /v1/budgets: every configured budget with what its scope
// has spent this month (UTC), and the fleet's month-to-date spend of each kind whether or
// not a budget is set.
type BudgetsView struct {
	Month       string                            `json:"month"`
	Budgets     []BudgetView                      `json:"budgets"`
	MonthToDate map[governance.BudgetKind]float64 `json:"month_to_date"`
}

func (s *server) budgetsView(r *http.Request, bk BudgetKeeper) (BudgetsView, error) {
	ctx := r.Context()
	list, err := bk.Budgets(ctx)
	if err != nil {
		return BudgetsView{}, err
	}
	v := BudgetsView{Month: clawops.ClockOrSystem(s.opts.Clock).Now().UTC().Format("2006-01"),
		Budgets: make([]BudgetView, 0, len(list)), MonthToDate: map[governance.BudgetKind]float64{}}
	for _, kind := range []governance.BudgetKind{governance.BudgetInfra, governance.BudgetLLM} {
		if v.MonthToDate[kind], err = bk.MonthToDate(ctx, kind, ""); err != nil {
			return BudgetsView{}, err
		}
	}
	for _, b := range list {
		bv := BudgetView{Budget: b}
		if b.Scope == governance.GlobalScope {
			bv.MonthToDateUSD = v.MonthToDate[b.Kind]
		} else if account, ok := strings.CutPrefix(b.Scope, "account:"); ok {
			if bv.MonthToDateUSD, err = bk.MonthToDate(ctx, b.Kind, account); err != nil {
				return BudgetsView{}, err
			}
		}
		v.Budgets = append(v.Budgets, bv)
	}
	return v, nil
}

func (s *server) getBudgets(w http.ResponseWriter, r *http.Request) {
	bk, ok := ability[BudgetKeeper](w, s.opts.Gate, "budgets")
	if !ok {
		return
	}
	v, err := s.budgetsView(r, bk)
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	writeData(w, http.StatusOK, v)
}

// budgetRequest is one budget to set. Both limits are required so that leaving one out
// never removes a limit by accident; both zero removes the budget.
type budgetRequest struct {
	Scope   string                `json:"scope"`
	Kind    governance.BudgetKind `json:"kind"`
	SoftUSD *float64              `json:"soft_usd"`
	HardUSD *float64              `json:"hard_usd"`
}

// putBudget answers PUT /v1/budgets: set (or, with both limits zero, remove) one budget.
// Admin only, decided and audited policy.changed by the gate; the answer is the new
// GET /v1/budgets view.
func (s *server) putBudget(w http.ResponseWriter, r *http.Request) {
	bk, ok := ability[BudgetKeeper](w, s.opts.Gate, "budgets")
	if !ok {
		return
	}
	var req budgetRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.fail(w, r, err, "")
		return
	}
	switch {
	case req.Scope == "" || req.Kind == "":
		s.fail(w, r, badRequest(`"scope" (global or account:<id>) and "kind" (infra or llm) are required`), "")
		return
	case req.SoftUSD == nil || req.HardUSD == nil:
		s.fail(w, r, badRequest(`"soft_usd" and "hard_usd" are both required (0 means no limit of that kind)`), "")
		return
	}
	actor := actorFrom(r.Context())
	actor.Channel = "api"
	b := governance.Budget{Scope: req.Scope, Kind: req.Kind, SoftUSD: *req.SoftUSD, HardUSD: *req.HardUSD}
	if err := bk.SetBudget(r.Context(), actor, b); err != nil {
		s.fail(w, r, err, "")
		return
	}
	v, err := s.budgetsView(r, bk)
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	writeData(w, http.StatusOK, v)
}
