package fleet

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gatewayforge/clawops"
)

// MaxProvisionBatch is the most pairs one provisioning request may ask for.
const MaxProvisionBatch = 200

// ProvisionRequest asks for new account pairs: either the account IDs, or a prefix and a
// count (accounts prefix-001, prefix-002, ... numbered after the highest one recorded).
// Placements come from the routing policy for Group unless Primary and Standby are given.
type ProvisionRequest struct {
	Accounts []string   `json:"accounts,omitempty"`
	Prefix   string     `json:"prefix,omitempty"`
	Count    int        `json:"count,omitempty"`
	Tier     string     `json:"tier"`
	Group    string     `json:"group,omitempty"`
	Primary  *Placement `json:"primary,omitempty"`
	Standby  *Placement `json:"standby,omitempty"`
}

// ProvisionPlan is what a ProvisionRequest resolves to: the pairs, where they go, and what
// they cost. It is deterministic for one fleet state, routing version and price table.
type ProvisionPlan struct {
	Pairs          []PairSpec `json:"pairs"`
	RoutingVersion int        `json:"routing_version"` // -1 when the placements were given
	MonthlyUSD     float64    `json:"monthly_usd"`     // added spend per month at list prices
	Unpriced       []string   `json:"unpriced,omitempty"`
}

// PlanProvision resolves req without changing anything.
func (s *Service) PlanProvision(ctx context.Context, req ProvisionRequest) (ProvisionPlan, error) {
	const op = "plan provision"
	bad := func(format string, a ...any) error {
		return clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, fmt.Errorf(format, a...))
	}
	if !s.prices.HasTier(req.Tier) {
		return ProvisionPlan{}, clawops.E(op, clawops.KindInvalid, ReasonUnknownTier,
			fmt.Errorf("tier %q: want one of %s", req.Tier, strings.Join(s.prices.Tiers, ", ")))
	}
	accounts, err := s.accountsFor(ctx, op, req)
	if err != nil {
		return ProvisionPlan{}, err
	}
	if (req.Primary == nil) != (req.Standby == nil) {
		return ProvisionPlan{}, bad("give both primary and standby placements, or neither")
	}
	var place PairPlacement
	if req.Primary != nil {
		place = PairPlacement{Primary: *req.Primary, Standby: *req.Standby, RoutingVersion: -1}
	} else {
		if !slugRE.MatchString(req.Group) {
			return ProvisionPlan{}, bad("region group %q: want a slug such as eu", req.Group)
		}
		if place, err = s.PlacePair(ctx, req.Group); err != nil {
			return ProvisionPlan{}, err
		}
	}
	plan := ProvisionPlan{RoutingVersion: place.RoutingVersion}
	for _, a := range accounts {
		spec := PairSpec{Account: a, Tier: req.Tier, Primary: place.Primary, Standby: place.Standby}
		if err := s.checkPairSpec(&spec); err != nil {
			return ProvisionPlan{}, err
		}
		plan.Pairs = append(plan.Pairs, spec)
	}
	for _, pl := range []Placement{place.Primary, place.Standby} {
		if p, ok := s.prices.Monthly(pl.Provider, pl.Region, req.Tier); ok {
			plan.MonthlyUSD += p * float64(len(accounts))
		} else {
			plan.Unpriced = append(plan.Unpriced, pl.Provider+"/"+pl.Region+"/"+req.Tier)
		}
	}
	plan.MonthlyUSD = roundCents(plan.MonthlyUSD)
	ids := make([]string, len(plan.Pairs))
	for i, p := range plan.Pairs {
		ids[i] = p.Pair
	}
	if err := s.checkFree(s.db.WithContext(ctx), ids); err != nil {
		return ProvisionPlan{}, err
	}
	return plan, nil
}

// accountsFor lists the accounts req names or numbers.
func (s *Service) accountsFor(ctx context.Context, op string, req ProvisionRequest) ([]string, error) {
	bad := func(format string, a ...any) error {
		return clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, fmt.Errorf(format, a...))
	}
	maxID := 40 - len(PrimarySuffix)
	switch {
	case len(req.Accounts) > 0 && (req.Prefix != "" || req.Count != 0):
		return nil, bad("give accounts, or prefix and count, not both")
	case len(req.Accounts) > 0:
		if len(req.Accounts) > MaxProvisionBatch {
			return nil, bad("%d accounts: at most %d per request", len(req.Accounts), MaxProvisionBatch)
		}
		seen := map[string]bool{}
		for _, a := range req.Accounts {
			if !ValidInstanceID(a) || len(a) > maxID {
				return nil, bad("account %.48q: want 2-%d of a-z, 0-9 and '-'", a, maxID)
			}
			if seen[a] {
				return nil, bad("account %q is listed twice", a)
			}
			seen[a] = true
		}
		return slices.Clone(req.Accounts), nil
	case req.Count < 1 || req.Count > MaxProvisionBatch:
		return nil, bad("count %d: want 1..%d", req.Count, MaxProvisionBatch)
	case !ValidInstanceID(req.Prefix) || len(req.Prefix)+4 > maxID:
		return nil, bad("prefix %.48q: want 2-%d of a-z, 0-9 and '-'", req.Prefix, maxID-4)
	}
	// Number after the highest prefix-NNN already recorded or queued.
	var taken []string
	like := req.Prefix + "-%"
	if err := s.db.WithContext(ctx).Model(&Pair{}).Where("id LIKE ?", like).Pluck("id", &taken).Error; err != nil {
		return nil, clawops.E(op, clawops.ReasonInternal, err)
	}
	var queued []string
	if err := s.db.WithContext(ctx).Model(&ProvisionJob{}).Where("pair_id LIKE ?", like).Pluck("pair_id", &queued).Error; err != nil {
		return nil, clawops.E(op, clawops.ReasonInternal, err)
	}
	next := 1
	for _, id := range append(taken, queued...) {
		if n, err := strconv.Atoi(strings.TrimPrefix(id, req.Prefix+"-")); err == nil && n >= next {
			next = n + 1
		}
	}
	out := make([]string, 0, req.Count)
	for i := range req.Count {
		a := fmt.Sprintf("%s-%03d", req.Prefix, next+i)
		if len(a) > maxID {
			return nil, bad("account %s is longer than %d characters: use a shorter prefix", a, maxID)
		}
		out = append(out, a)
	}
	return out, nil
}
