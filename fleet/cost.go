package fleet

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
)

// CostAnomalyPercent is how far actual spend may run above the projection before the
// monitor raises COST_ANOMALY.
const CostAnomalyPercent = 15

// CostQuery is the window of a cost report. A zero To is now; a zero From is the start of
// To's week (Monday 00:00 UTC).
type CostQuery struct {
	From time.Time
	To   time.Time
}

// ProviderCost is one provider's share of the spend.
type ProviderCost struct {
	Provider          string  `json:"provider"`
	Instances         int     `json:"instances"` // live now
	ActualUSD         float64 `json:"actual_usd"`
	RunRateMonthlyUSD float64 `json:"run_rate_monthly_usd"`
}

// IdleAccount is an account whose user has not been active for IdleAfter.
type IdleAccount struct {
	Account      string               `json:"account"`
	LastActivity time.Time            `json:"last_activity"` // or its creation, when never active
	IdleDays     int                  `json:"idle_days"`
	Instances    []clawops.InstanceID `json:"instances"`
	MonthlyUSD   float64              `json:"monthly_usd"`
}

// UnderusedInstance is an instance whose last full week stayed below UnderusedPercent CPU
// and memory on average, so the next smaller tier would do.
type UnderusedInstance struct {
	Instance          clawops.InstanceID `json:"instance"`
	Account           string             `json:"account"`
	Provider          string             `json:"provider"`
	Tier              string             `json:"tier"`
	SuggestedTier     string             `json:"suggested_tier"`
	CPUPercent        float64            `json:"cpu_percent"`
	MemPercent        float64            `json:"mem_percent"`
	SavingsMonthlyUSD float64            `json:"savings_monthly_usd"`
}

// CheaperPlacement is an instance another configured provider would serve for less in the
// same region group (never the provider of its pair peer).
type CheaperPlacement struct {
	Instance            clawops.InstanceID `json:"instance"`
	Account             string             `json:"account"`
	Provider            string             `json:"provider"`
	Region              string             `json:"region"`
	Tier                string             `json:"tier"`
	Candidate           string             `json:"candidate_provider"`
	CandidateRegion     string             `json:"candidate_region"` // "*": any region of the group
	Group               string             `json:"group"`
	CurrentMonthlyUSD   float64            `json:"current_monthly_usd"`
	CandidateMonthlyUSD float64            `json:"candidate_monthly_usd"`
	SavingsMonthlyUSD   float64            `json:"savings_monthly_usd"`
}

// RetiredInstance is a former primary replaced by a failover whose server still runs.
type RetiredInstance struct {
	Instance   clawops.InstanceID `json:"instance"`
	Account    string             `json:"account"`
	MonthlyUSD float64            `json:"monthly_usd"`
}

// CostReport is projected versus actual spend over a window and what could be saved: the
// numbers behind the Ledger's answers.
//
// Projected spend is what the fleet live at From would cost over the window if nothing
// changed; actual spend is what every server cost for the hours it existed within the
// window (list prices, the instance's current tier). Both leave out instances that never
// got a server.
type CostReport struct {
	From                  time.Time            `json:"from"`
	To                    time.Time            `json:"to"`
	ProjectedUSD          float64              `json:"projected_usd"`
	ActualUSD             float64              `json:"actual_usd"`
	DeltaPercent          float64              `json:"delta_percent"`
	Anomaly               bool                 `json:"anomaly"` // actual > projected by more than CostAnomalyPercent
	RunRateMonthlyUSD     float64              `json:"run_rate_monthly_usd"`
	ByProvider            []ProviderCost       `json:"by_provider"`
	Idle                  []IdleAccount        `json:"idle"`
	IdleMonthlyUSD        float64              `json:"idle_monthly_usd"`
	Underused             []UnderusedInstance  `json:"underused"`
	UnderusedMonthlyUSD   float64              `json:"underused_monthly_usd"`
	Cheaper               []CheaperPlacement   `json:"cheaper"`
	CheaperMonthlyUSD     float64              `json:"cheaper_monthly_usd"`
	Retired               []RetiredInstance    `json:"retired,omitempty"`
	RetiredMonthlyUSD     float64              `json:"retired_monthly_usd"`
	RecoverableMonthlyUSD float64              `json:"recoverable_monthly_usd"`
	Unpriced              []clawops.InstanceID `json:"unpriced,omitempty"`
}

// costColumns are the instance columns the cost model reads (the rest, metrics above all,
// would only slow the scan of a large fleet).
var costColumns = []string{"id", "account_id", "pair_id", "provider", "region", "tier", "role", "state",
	"created_at", "updated_at", "terminated_at", "last_active_at", "usage_week_full", "usage_week_cpu", "usage_week_mem"}

// WeekStart is the Monday 00:00 UTC of t's week.
func WeekStart(t time.Time) time.Time {
	t = t.UTC()
	d := (int(t.Weekday()) + 6) % 7
	return time.Date(t.Year(), t.Month(), t.Day()-d, 0, 0, 0, 0, time.UTC)
}

// CostReport computes the report for q.
func (s *Service) CostReport(ctx context.Context, q CostQuery) (CostReport, error) {
	const op = "cost report"
	now := s.now()
	if q.To.IsZero() {
		q.To = now
	}
	if q.From.IsZero() {
		q.From = WeekStart(q.To)
	}
	q.From, q.To = q.From.UTC(), q.To.UTC()
	if !q.From.Before(q.To) {
		return CostReport{}, clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments,
			fmt.Errorf("window %s..%s is empty", q.From.Format(time.RFC3339), q.To.Format(time.RFC3339)))
	}
	var rows []Instance
	err := s.db.WithContext(ctx).Select(costColumns).
		Where("provider_id <> '' AND created_at < ? AND (terminated_at IS NULL OR terminated_at > ?)", q.To, q.From).
		Order("id").Find(&rows).Error
	if err != nil {
		return CostReport{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	var accounts []Account
	if err := s.db.WithContext(ctx).Select("id", "created_at", "last_activity_at").Find(&accounts).Error; err != nil {
		return CostReport{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	var pairs []Pair
	if err := s.db.WithContext(ctx).Find(&pairs).Error; err != nil {
		return CostReport{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	r := CostReport{From: q.From, To: q.To, Idle: []IdleAccount{}, Underused: []UnderusedInstance{}, Cheaper: []CheaperPlacement{}}
	byProv := map[string]*ProviderCost{}
	live := map[string][]Instance{} // account → live instances
	providerOf := map[clawops.InstanceID]string{}
	for _, in := range rows {
		providerOf[in.ID] = in.Provider
	}
	windowHours := q.To.Sub(q.From).Hours()
	for _, in := range rows {
		end := q.To
		terminated := in.State == StateTerminated
		if in.TerminatedAt != nil && in.TerminatedAt.Before(end) {
			end = *in.TerminatedAt
		} else if terminated && in.TerminatedAt == nil && in.UpdatedAt.Before(end) {
			end = in.UpdatedAt // terminated before the column was kept
		}
		start := in.CreatedAt
		if start.Before(q.From) {
			start = q.From
		}
		price, ok := s.prices.Monthly(in.Provider, in.Region, in.Tier)
		if !ok {
			r.Unpriced = append(r.Unpriced, in.ID)
			continue
		}
		pc := byProv[in.Provider]
		if pc == nil {
			pc = &ProviderCost{Provider: in.Provider}
			byProv[in.Provider] = pc
		}
		if end.After(start) {
			cost := price * end.Sub(start).Hours() / HoursPerMonth
			r.ActualUSD += cost
			pc.ActualUSD += cost
		}
		if !in.CreatedAt.After(q.From) {
			r.ProjectedUSD += price * windowHours / HoursPerMonth
		}
		if !terminated {
			r.RunRateMonthlyUSD += price
			pc.RunRateMonthlyUSD += price
			pc.Instances++
			live[in.AccountID] = append(live[in.AccountID], in)
		}
	}
	for _, pc := range byProv {
		pc.ActualUSD, pc.RunRateMonthlyUSD = roundCents(pc.ActualUSD), roundCents(pc.RunRateMonthlyUSD)
		r.ByProvider = append(r.ByProvider, *pc)
	}
	slices.SortFunc(r.ByProvider, func(a, b ProviderCost) int { return strings.Compare(a.Provider, b.Provider) })
	r.ActualUSD, r.ProjectedUSD, r.RunRateMonthlyUSD = roundCents(r.ActualUSD), roundCents(r.ProjectedUSD), roundCents(r.RunRateMonthlyUSD)
	if r.ProjectedUSD > 0 {
		r.DeltaPercent = roundCents(100 * (r.ActualUSD - r.ProjectedUSD) / r.ProjectedUSD)
		r.Anomaly = r.DeltaPercent > CostAnomalyPercent
	}

	peerProvider := map[clawops.InstanceID]string{}
	for _, p := range pairs {
		peerProvider[p.PrimaryID] = providerOf[p.StandbyID]
		peerProvider[p.StandbyID] = providerOf[p.PrimaryID]
	}
	idle := map[string]bool{}
	slices.SortFunc(accounts, func(a, b Account) int { return strings.Compare(a.ID, b.ID) })
	for _, a := range accounts {
		ins := live[a.ID]
		if len(ins) == 0 {
			continue
		}
		last := a.CreatedAt
		if a.LastActivityAt != nil && a.LastActivityAt.After(last) {
			last = *a.LastActivityAt
		}
		ia := IdleAccount{Account: a.ID}
		for _, in := range ins {
			if in.LastActiveAt != nil && in.LastActiveAt.After(last) {
				last = *in.LastActiveAt
			}
			ia.Instances = append(ia.Instances, in.ID)
			p, _ := s.prices.Monthly(in.Provider, in.Region, in.Tier)
			ia.MonthlyUSD += p
		}
		if now.Sub(last) < s.opts.IdleAfter {
			continue
		}
		ia.LastActivity, ia.IdleDays, ia.MonthlyUSD = last.UTC(), int(now.Sub(last).Hours()/24), roundCents(ia.MonthlyUSD)
		idle[a.ID] = true
		r.Idle = append(r.Idle, ia)
		r.IdleMonthlyUSD += ia.MonthlyUSD
	}
	savings := map[clawops.InstanceID]float64{} // best saving per instance, for the total
	for _, acct := range sortedKeys(live) {
		for _, in := range live[acct] {
			price, ok := s.prices.Monthly(in.Provider, in.Region, in.Tier)
			if !ok {
				continue
			}
			if in.Role == RoleRetired {
				r.Retired = append(r.Retired, RetiredInstance{Instance: in.ID, Account: in.AccountID, MonthlyUSD: price})
				r.RetiredMonthlyUSD += price
				continue
			}
			if idle[acct] {
				continue
			}
			if u, ok := s.underused(in, price); ok {
				r.Underused = append(r.Underused, u)
				r.UnderusedMonthlyUSD += u.SavingsMonthlyUSD
				savings[in.ID] = max(savings[in.ID], u.SavingsMonthlyUSD)
			}
			if c, ok := s.cheaper(in, price, peerProvider[in.ID]); ok {
				r.Cheaper = append(r.Cheaper, c)
				r.CheaperMonthlyUSD += c.SavingsMonthlyUSD
				savings[in.ID] = max(savings[in.ID], c.SavingsMonthlyUSD)
			}
		}
	}
	r.RecoverableMonthlyUSD = r.IdleMonthlyUSD + r.RetiredMonthlyUSD
	for _, v := range savings {
		r.RecoverableMonthlyUSD += v
	}
	r.IdleMonthlyUSD, r.UnderusedMonthlyUSD = roundCents(r.IdleMonthlyUSD), roundCents(r.UnderusedMonthlyUSD)
	r.CheaperMonthlyUSD, r.RetiredMonthlyUSD = roundCents(r.CheaperMonthlyUSD), roundCents(r.RetiredMonthlyUSD)
	r.RecoverableMonthlyUSD = roundCents(r.RecoverableMonthlyUSD)
	return r, nil
}

// underused says whether in's last full week warrants the next smaller tier.
func (s *Service) underused(in Instance, price float64) (UnderusedInstance, bool) {
	if !in.UsageWeekFull || in.UsageWeekCPU >= s.opts.UnderusedPercent || in.UsageWeekMem >= s.opts.UnderusedPercent {
		return UnderusedInstance{}, false
	}
	lower, ok := s.prices.TierBelow(in.Tier)
	if !ok {
		return UnderusedInstance{}, false
	}
	lp, ok := s.prices.Monthly(in.Provider, in.Region, lower)
	if !ok || lp >= price {
		return UnderusedInstance{}, false
	}
	return UnderusedInstance{Instance: in.ID, Account: in.AccountID, Provider: in.Provider, Tier: in.Tier,
		SuggestedTier: lower, CPUPercent: roundCents(in.UsageWeekCPU), MemPercent: roundCents(in.UsageWeekMem),
		SavingsMonthlyUSD: roundCents(price - lp)}, true
}

// cheaper finds the cheapest configured provider other than in's and its peer's for the
// same tier in the same region group.
func (s *Service) cheaper(in Instance, price float64, peerProvider string) (CheaperPlacement, bool) {
	group := s.prices.Group(in.Region)
	var best Price
	found := false
	for _, prov := range s.prices.providers() {
		if prov == in.Provider || prov == peerProvider {
			continue
		}
		if _, configured := s.opts.Providers[prov]; !configured {
			continue
		}
		p, ok := s.prices.cheapestIn(prov, group, in.Tier)
		if ok && (!found || p.MonthlyUSD < best.MonthlyUSD) {
			best, found = p, true
		}
	}
	if !found || price-best.MonthlyUSD < 0.01 {
		return CheaperPlacement{}, false
	}
	return CheaperPlacement{Instance: in.ID, Account: in.AccountID, Provider: in.Provider, Region: in.Region, Tier: in.Tier,
		Candidate: best.Provider, CandidateRegion: best.Region, Group: group, CurrentMonthlyUSD: price,
		CandidateMonthlyUSD: best.MonthlyUSD, SavingsMonthlyUSD: roundCents(price - best.MonthlyUSD)}, true
}
