package governance

import (
	"context"
	"fmt"
	"math"
	"strings"
)

// Forecast statuses.
const (
	ForecastOK       = "ok"
	ForecastWarn     = "warn"     // the soft limit would be crossed
	ForecastExceeded = "exceeded" // the hard limit would be crossed
)

// ForecastLine is the forecast for one budget.
type ForecastLine struct {
	Scope          string  `json:"scope"`
	MonthToDateUSD float64 `json:"month_to_date_usd"`
	AddedUSD       float64 `json:"added_usd"`
	ForecastUSD    float64 `json:"forecast_usd"`
	SoftUSD        float64 `json:"soft_usd,omitempty"`
	HardUSD        float64 `json:"hard_usd,omitempty"`
	Status         string  `json:"status"`
}

// BudgetForecast is month-to-date spend plus what a plan (or a call) would add, against
// every budget that applies to it.
type BudgetForecast struct {
	Month string         `json:"month"` // YYYY-MM, UTC
	Kind  BudgetKind     `json:"kind"`
	Lines []ForecastLine `json:"lines,omitempty"`
}

// Exceeded reports whether any hard limit would be crossed.
func (f *BudgetForecast) Exceeded() bool {
	for _, l := range f.Lines {
		if l.Status == ForecastExceeded {
			return true
		}
	}
	return false
}

// Warnings describes every soft limit that would be crossed.
func (f *BudgetForecast) Warnings() []string {
	var out []string
	for _, l := range f.Lines {
		if l.Status == ForecastWarn {
			out = append(out, fmt.Sprintf("%s %s budget: forecast $%.2f for %s is over the soft limit $%.2f",
				l.Scope, f.Kind, l.ForecastUSD, f.Month, l.SoftUSD))
		}
	}
	return out
}

// Summary is one line naming the limits crossed (or "within budget").
func (f *BudgetForecast) Summary() string {
	var parts []string
	for _, l := range f.Lines {
		if l.Status == ForecastExceeded {
			parts = append(parts, fmt.Sprintf("%s %s budget: $%.2f spent + $%.2f = $%.2f, over the hard limit $%.2f for %s",
				l.Scope, f.Kind, l.MonthToDateUSD, l.AddedUSD, l.ForecastUSD, l.HardUSD, f.Month))
		}
	}
	if len(parts) == 0 {
		return "within budget"
	}
	return strings.Join(parts, "; ")
}

// forecast builds the forecast of kind for month: the global budget (adding globalAdded)
// and each account's (adding perAccount[account]). nil when no budget applies.
func (g *Gate) forecast(ctx context.Context, kind BudgetKind, month string, accounts []string, perAccount map[string]float64, globalAdded float64) (*BudgetForecast, error) {
	scopes := []string{GlobalScope}
	for _, a := range accounts {
		if a != "" {
			scopes = append(scopes, AccountScope(a))
		}
	}
	var rows []budgetRow
	if err := g.db.WithContext(ctx).Where("kind = ? AND scope IN ?", string(kind), scopes).Order("scope").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("read budgets: %w", err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	fc := &BudgetForecast{Month: month, Kind: kind}
	for _, r := range rows {
		global := r.Scope == GlobalScope
		account := strings.TrimPrefix(r.Scope, "account:")
		mtd, err := g.monthToDate(ctx, kind, month, account, global)
		if err != nil {
			return nil, err
		}
		added := perAccount[account]
		if global {
			added = globalAdded
		}
		l := ForecastLine{Scope: r.Scope, MonthToDateUSD: dollars(mtd), AddedUSD: roundCents(added),
			SoftUSD: dollars(r.Soft), HardUSD: dollars(r.Hard), Status: ForecastOK}
		l.ForecastUSD = roundCents(l.MonthToDateUSD + added)
		switch {
		case l.HardUSD > 0 && l.ForecastUSD > l.HardUSD:
			l.Status = ForecastExceeded
		case l.SoftUSD > 0 && l.ForecastUSD > l.SoftUSD:
			l.Status = ForecastWarn
		}
		fc.Lines = append(fc.Lines, l)
	}
	return fc, nil
}

func roundCents(usd float64) float64 { return math.Round(usd*100) / 100 }
