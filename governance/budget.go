package governance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
)

// BudgetKind is what a budget limits: infrastructure spend or LLM spend.
type BudgetKind string

// Budget kinds.
const (
	BudgetInfra BudgetKind = "infra"
	BudgetLLM   BudgetKind = "llm"
)

// GlobalScope is the budget scope of the whole fleet; an account's is "account:<id>".
const GlobalScope = "global"

// AccountScope returns the budget scope of one account.
func AccountScope(account string) string { return "account:" + account }

// Budget is a monthly spending limit for a scope. Crossing SoftUSD warns (audited
// budget.warning); a plan that would cross HardUSD is denied (BUDGET_EXCEEDED). Zero means
// no limit of that kind.
type Budget struct {
	Scope   string     `json:"scope"`
	Kind    BudgetKind `json:"kind"`
	SoftUSD float64    `json:"soft_usd"`
	HardUSD float64    `json:"hard_usd"`
}

func (b Budget) validate() error {
	switch {
	case b.Kind != BudgetInfra && b.Kind != BudgetLLM:
		return fmt.Errorf("budget kind %s: use infra or llm", quoteShort(string(b.Kind)))
	case b.Scope != GlobalScope && (!strings.HasPrefix(b.Scope, "account:") || len(b.Scope) == len("account:") || len(b.Scope) > 140):
		return fmt.Errorf("budget scope %s: use global or account:<id>", quoteShort(b.Scope))
	case !validUSD(b.SoftUSD) || !validUSD(b.HardUSD) || b.SoftUSD < 0 || b.HardUSD < 0:
		return errors.New("budget limits must be finite, non-negative amounts")
	case b.HardUSD > 0 && b.SoftUSD > b.HardUSD:
		return fmt.Errorf("soft limit %.2f is above the hard limit %.2f", b.SoftUSD, b.HardUSD)
	}
	return nil
}

func validUSD(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && math.Abs(v) < 1e12 }

// micros converts dollars to the integer micro-dollars the ledger stores (no float drift
// in sums).
func micros(usd float64) int64 { return int64(math.Round(usd * 1e6)) }

func dollars(m int64) float64 { return float64(m) / 1e6 }

// CostEntry is one actual cost in the ledger.
type CostEntry struct {
	Time      time.Time  `json:"time"` // zero: now
	Account   string     `json:"account,omitempty"`
	Kind      BudgetKind `json:"kind"`
	AmountUSD float64    `json:"amount_usd"`
	Source    string     `json:"source,omitempty"` // e.g. hetzner, openai
	Ref       string     `json:"ref,omitempty"`    // invoice line, trace ID…
}

type budgetRow struct {
	Scope     string `gorm:"column:scope;primaryKey;size:160"`
	Kind      string `gorm:"column:kind;primaryKey;size:16"`
	Soft      int64  `gorm:"column:soft_micros;not null"`
	Hard      int64  `gorm:"column:hard_micros;not null"`
	UpdatedBy string `gorm:"column:updated_by;size:256;not null"`
	Updated   string `gorm:"column:updated_at;size:32;not null"`
}

// TableName names the budgets table.
func (budgetRow) TableName() string { return "governance_budgets" }

type costRow struct {
	ID      int64  `gorm:"column:id;primaryKey;autoIncrement"`
	Time    string `gorm:"column:time;size:32;not null"`
	Month   string `gorm:"column:month;size:7;not null;index:idx_governance_costs_month,priority:1"`
	Kind    string `gorm:"column:kind;size:16;not null;index:idx_governance_costs_month,priority:2"`
	Account string `gorm:"column:account;size:128;not null;index:idx_governance_costs_month,priority:3"`
	Amount  int64  `gorm:"column:amount_micros;not null"`
	Source  string `gorm:"column:source;size:64;not null"`
	Ref     string `gorm:"column:ref;size:256;not null"`
}

// TableName names the cost ledger table.
func (costRow) TableName() string { return "governance_costs" }

// SetBudget creates or replaces a budget. Admin only (as SetRoleTable); audited
// policy.changed. A budget with both limits zero removes it.
func (g *Gate) SetBudget(ctx context.Context, actor clawops.Actor, b Budget) error {
	if err := mayChangePolicy(actor); err != nil {
		return g.policyRefused(ctx, actor, "budget "+b.Scope, err)
	}
	if err := b.validate(); err != nil {
		return clawops.E("governance.SetBudget", clawops.KindInvalid, clawops.ReasonBadArguments, err)
	}
	q := g.db.WithContext(ctx)
	var err error
	if b.SoftUSD == 0 && b.HardUSD == 0 {
		err = q.Where("scope = ? AND kind = ?", b.Scope, string(b.Kind)).Delete(&budgetRow{}).Error
	} else {
		err = q.Save(&budgetRow{Scope: b.Scope, Kind: string(b.Kind), Soft: micros(b.SoftUSD), Hard: micros(b.HardUSD),
			UpdatedBy: cleanText(actor.Identity, 256), Updated: formatTime(g.now())}).Error
	}
	if err != nil {
		return fmt.Errorf("set budget: %w", err)
	}
	if _, err := g.audit.Append(ctx, AuditEntry{Actor: actor.String(), Tool: policyTool, Target: "budget " + b.Scope,
		Event: EventPolicyChanged, Decision: clawops.Allow, Reason: ReasonPolicyChanged,
		Detail: fmt.Sprintf("%s budget of %s: soft $%.2f, hard $%.2f per month", b.Kind, b.Scope, b.SoftUSD, b.HardUSD)}); err != nil {
		return fmt.Errorf("set budget: audit: %w", err)
	}
	return nil
}

// Budgets returns every configured budget.
func (g *Gate) Budgets(ctx context.Context) ([]Budget, error) {
	var rows []budgetRow
	if err := g.db.WithContext(ctx).Order("kind, scope").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("budgets: %w", err)
	}
	out := make([]Budget, len(rows))
	for i, r := range rows {
		out[i] = Budget{Scope: r.Scope, Kind: BudgetKind(r.Kind), SoftUSD: dollars(r.Soft), HardUSD: dollars(r.Hard)}
	}
	return out, nil
}

// RecordCost adds an actual cost to the ledger. When it takes a scope's month-to-date
// spend across a soft or hard limit, that is audited budget.warning.
func (g *Gate) RecordCost(ctx context.Context, e CostEntry) error {
	const op = "governance.RecordCost"
	switch {
	case e.Kind != BudgetInfra && e.Kind != BudgetLLM:
		return clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, "kind must be infra or llm")
	case !validUSD(e.AmountUSD):
		return clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, "amount must be a finite number")
	case len(e.Account) > 128 || len(e.Source) > 64 || len(e.Ref) > 256:
		return clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, "account, source or ref is too long")
	}
	if e.Time.IsZero() {
		e.Time = g.now()
	}
	month := e.Time.UTC().Format("2006-01")
	before, err := g.forecast(ctx, e.Kind, month, []string{e.Account}, map[string]float64{}, 0)
	if err != nil {
		return fmt.Errorf("record cost: %w", err)
	}
	row := costRow{Time: formatTime(e.Time), Month: month, Kind: string(e.Kind), Account: cleanText(e.Account, 128),
		Amount: micros(e.AmountUSD), Source: cleanText(e.Source, 64), Ref: cleanText(e.Ref, 256)}
	if err := g.db.WithContext(ctx).Create(&row).Error; err != nil {
		return fmt.Errorf("record cost: %w", err)
	}
	if before == nil {
		return nil
	}
	for _, l := range before.Lines {
		after := l.MonthToDateUSD + e.AmountUSD
		for _, lim := range []struct {
			name string
			usd  float64
		}{{"soft", l.SoftUSD}, {"hard", l.HardUSD}} {
			if lim.usd > 0 && l.MonthToDateUSD <= lim.usd && after > lim.usd {
				g.appendOrLog(ctx, AuditEntry{Actor: gateActor, Tool: "governance.budget", Target: l.Scope,
					Event: EventBudgetWarning, Decision: clawops.Allow, Reason: ReasonBudgetSoftLimit, Detail: fmt.Sprintf(
						"%s spend of %s for %s is $%.2f, over its %s limit of $%.2f", e.Kind, l.Scope, month, after, lim.name, lim.usd)})
			}
		}
	}
	return nil
}

// MonthToDate returns the spend of kind recorded this month (UTC) for account, or for the
// whole fleet when account is "".
func (g *Gate) MonthToDate(ctx context.Context, kind BudgetKind, account string) (float64, error) {
	m, err := g.monthToDate(ctx, kind, g.now().Format("2006-01"), account, account == "")
	return dollars(m), err
}

func (g *Gate) monthToDate(ctx context.Context, kind BudgetKind, month, account string, global bool) (int64, error) {
	q := g.db.WithContext(ctx).Model(&costRow{}).Where("month = ? AND kind = ?", month, string(kind))
	if !global {
		q = q.Where("account = ?", account)
	}
	var sum struct{ Total int64 }
	if err := q.Select("COALESCE(SUM(amount_micros), 0) AS total").Scan(&sum).Error; err != nil {
		return 0, fmt.Errorf("month to date: %w", err)
	}
	return sum.Total, nil
}

// CheckBudget forecasts spending amountUSD more of kind for account this month (an LLM call
// before it is made, say). It returns the forecast, and a BUDGET_EXCEEDED error when a hard
// limit would be crossed.
func (g *Gate) CheckBudget(ctx context.Context, kind BudgetKind, account string, amountUSD float64) (BudgetForecast, error) {
	const op = "governance.CheckBudget"
	if (kind != BudgetInfra && kind != BudgetLLM) || !validUSD(amountUSD) {
		return BudgetForecast{}, clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, "bad kind or amount")
	}
	fc, err := g.forecast(ctx, kind, g.now().Format("2006-01"), []string{account}, map[string]float64{account: amountUSD}, amountUSD)
	if err != nil {
		return BudgetForecast{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	if fc == nil {
		return BudgetForecast{Month: g.now().Format("2006-01"), Kind: kind}, nil
	}
	if fc.Exceeded() {
		return *fc, clawops.E(op, clawops.KindDenied, clawops.ReasonBudgetExceeded, fc.Summary())
	}
	return *fc, nil
}

// forecastPlan forecasts the infrastructure spend of plan p: what it adds for the rest of
// this month (its monthly cost delta, prorated), on top of month-to-date actuals, for the
// global budget and each account it touches. nil when the plan adds no cost or no budget
// applies.
func (g *Gate) forecastPlan(ctx context.Context, p Plan) (*BudgetForecast, error) {
	if p.CostDeltaMonthlyUSD <= 0 {
		return nil, nil
	}
	now := g.now()
	start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 1, 0)
	added := p.CostDeltaMonthlyUSD * float64(end.Sub(now)) / float64(end.Sub(start))
	perAccount := map[string]float64{}
	var accounts []string
	for _, t := range p.Targets {
		if t.Account == "" {
			continue
		}
		if _, seen := perAccount[t.Account]; !seen {
			accounts = append(accounts, t.Account)
		}
		perAccount[t.Account] += added / float64(len(p.Targets))
	}
	return g.forecast(ctx, BudgetInfra, now.Format("2006-01"), accounts, perAccount, added)
}
