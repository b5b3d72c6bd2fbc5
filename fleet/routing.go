package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

// RoutingPolicy says where new pairs are placed: for each region group ("eu", "us"), the
// placements to try for the primary and for the standby, in order of preference. A pair's
// standby always goes to a different provider than its primary when the list offers one.
type RoutingPolicy struct {
	Groups map[string]GroupRoute `json:"groups"`
	// AvoidBelowScore skips a provider whose health score is below it while a later
	// placement in the list is healthier; 0 disables it.
	AvoidBelowScore int `json:"avoid_below_score,omitempty"`
}

// GroupRoute is the routing of one region group.
type GroupRoute struct {
	Primary []Placement `json:"primary"`
	Standby []Placement `json:"standby"`
}

// RoutingVersion is one stored version of the routing policy. Every change is a new
// version that records who made it and why; versions are never edited.
type RoutingVersion struct {
	Version   int           `json:"version"`
	Policy    RoutingPolicy `json:"policy"`
	Author    string        `json:"author"`
	Reason    string        `json:"reason"`
	CreatedAt time.Time     `json:"created_at"`
}

// RoutingRecord is the stored form of a RoutingVersion.
type RoutingRecord struct {
	Version   int    `gorm:"primaryKey;autoIncrement:false"`
	Policy    string // JSON of RoutingPolicy
	Author    string `gorm:"size:200"`
	Reason    string `gorm:"size:1000"`
	CreatedAt time.Time
}

// TableName is fleet_routing_policies.
func (RoutingRecord) TableName() string { return "fleet_routing_policies" }

// Limits of a routing policy.
const (
	maxRoutingGroups     = 50
	maxRoutingPlacements = 10
	maxRoutingReason     = 1000
)

func (p RoutingPolicy) validate(providers map[string]Provider) error {
	if len(p.Groups) == 0 {
		return errors.New("routing policy has no groups")
	}
	if len(p.Groups) > maxRoutingGroups {
		return fmt.Errorf("routing policy has %d groups, more than %d", len(p.Groups), maxRoutingGroups)
	}
	if p.AvoidBelowScore < 0 || p.AvoidBelowScore > 100 {
		return fmt.Errorf("avoid_below_score %d: want 0..100", p.AvoidBelowScore)
	}
	for g, r := range p.Groups {
		if !slugRE.MatchString(g) {
			return fmt.Errorf("group %q is not a slug such as eu", g)
		}
		for _, side := range []struct {
			name string
			pls  []Placement
		}{{"primary", r.Primary}, {"standby", r.Standby}} {
			if len(side.pls) == 0 || len(side.pls) > maxRoutingPlacements {
				return fmt.Errorf("group %s: %s needs 1..%d placements", g, side.name, maxRoutingPlacements)
			}
			for _, pl := range side.pls {
				if _, ok := providers[pl.Provider]; !ok {
					return clawops.E("routing policy", clawops.KindInvalid, ReasonUnknownProvider,
						fmt.Errorf("group %s: %s provider %q is not configured", g, side.name, pl.Provider))
				}
				if !slugRE.MatchString(pl.Region) {
					return fmt.Errorf("group %s: %s region %q is not a slug", g, side.name, pl.Region)
				}
			}
		}
	}
	return nil
}

// RoutingPolicy returns the current routing policy: the newest stored version, or the
// configured default as version 0. With neither it is NO_PLACEMENT.
func (s *Service) RoutingPolicy(ctx context.Context) (RoutingVersion, error) {
	const op = "routing policy"
	var rec RoutingRecord
	err := s.db.WithContext(ctx).Order("version DESC").Take(&rec).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		if s.opts.DefaultRouting == nil {
			return RoutingVersion{}, clawops.E(op, clawops.KindNotFound, ReasonNoPlacement, "no routing policy is stored or configured")
		}
		return RoutingVersion{Version: 0, Policy: *s.opts.DefaultRouting, Author: "config", Reason: "configured default"}, nil
	}
	if err != nil {
		return RoutingVersion{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	return rec.version()
}

func (rec RoutingRecord) version() (RoutingVersion, error) {
	v := RoutingVersion{Version: rec.Version, Author: rec.Author, Reason: rec.Reason, CreatedAt: rec.CreatedAt.UTC()}
	if err := json.Unmarshal([]byte(rec.Policy), &v.Policy); err != nil {
		return RoutingVersion{}, clawops.E("routing policy", clawops.ReasonInternal, fmt.Errorf("version %d: %w", rec.Version, err))
	}
	return v, nil
}

// RoutingHistory returns up to limit stored versions, newest first.
func (s *Service) RoutingHistory(ctx context.Context, limit int) ([]RoutingVersion, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	var recs []RoutingRecord
	if err := s.db.WithContext(ctx).Order("version DESC").Limit(limit).Find(&recs).Error; err != nil {
		return nil, clawops.E("routing history", clawops.ReasonInternal, err)
	}
	out := make([]RoutingVersion, 0, len(recs))
	for _, r := range recs {
		v, err := r.version()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// RoutingChange is a request for a new routing policy version.
type RoutingChange struct {
	Policy RoutingPolicy
	Author string // who asked, e.g. "alice via commander"
	Reason string // why, in their words
	// BaseVersion, when non-zero, must be the current version: the change was planned
	// against it, and a change made meanwhile must not be overwritten.
	BaseVersion int
}

// CheckRoutingPolicy validates p against the configured providers without storing it.
func (s *Service) CheckRoutingPolicy(p RoutingPolicy) error {
	if err := p.validate(s.opts.Providers); err != nil {
		if clawops.ReasonOf(err) != "" {
			return err
		}
		return clawops.E("check routing policy", clawops.KindInvalid, clawops.ReasonBadArguments, err)
	}
	return nil
}

// SetRoutingPolicy stores change as the next version and returns it. The policy is
// checked (groups, placements at configured providers); a stale BaseVersion is
// PLAN_MISMATCH.
func (s *Service) SetRoutingPolicy(ctx context.Context, change RoutingChange) (RoutingVersion, error) {
	const op = "set routing policy"
	if err := change.Policy.validate(s.opts.Providers); err != nil {
		if clawops.ReasonOf(err) != "" {
			return RoutingVersion{}, err
		}
		return RoutingVersion{}, clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, err)
	}
	change.Author = strings.TrimSpace(change.Author)
	if change.Author == "" || strings.TrimSpace(change.Reason) == "" {
		return RoutingVersion{}, clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, "a routing change needs an author and a reason")
	}
	body, err := json.Marshal(change.Policy)
	if err != nil {
		return RoutingVersion{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	var rec RoutingRecord
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var cur int
		if err := tx.Model(&RoutingRecord{}).Select("coalesce(max(version), 0)").Scan(&cur).Error; err != nil {
			return err
		}
		if change.BaseVersion != 0 && change.BaseVersion != cur {
			return clawops.E(op, clawops.KindDenied, clawops.ReasonPlanMismatch,
				fmt.Errorf("planned against version %d, but the current version is %d", change.BaseVersion, cur))
		}
		rec = RoutingRecord{Version: cur + 1, Policy: string(body), Author: truncate(change.Author, 200),
			Reason: truncate(change.Reason, maxRoutingReason), CreatedAt: s.now()}
		return tx.Create(&rec).Error
	})
	if err != nil {
		if clawops.ReasonOf(err) != "" {
			return RoutingVersion{}, err
		}
		return RoutingVersion{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	v, err := rec.version()
	if err != nil {
		return RoutingVersion{}, err
	}
	s.log.Info("routing policy changed", "version", v.Version, "author", v.Author)
	s.publish(Event{Type: EventRoutingChanged, Subject: fmt.Sprintf("v%d", v.Version),
		Summary: fmt.Sprintf("routing policy v%d by %s: %s", v.Version, v.Author, truncate(v.Reason, 200)), Payload: payload(v)})
	return v, nil
}

// Placement decision for one pair.
type PairPlacement struct {
	Primary        Placement `json:"primary"`
	Standby        Placement `json:"standby"`
	RoutingVersion int       `json:"routing_version"`
}

// PlacePair chooses a primary and a standby placement for a new pair in group from the
// current routing policy and the providers' health scores. It is deterministic for one
// policy version and one set of scores.
func (s *Service) PlacePair(ctx context.Context, group string) (PairPlacement, error) {
	const op = "place pair"
	rv, err := s.RoutingPolicy(ctx)
	if err != nil {
		return PairPlacement{}, err
	}
	route, ok := rv.Policy.Groups[group]
	if !ok {
		return PairPlacement{}, clawops.E(op, clawops.KindInvalid, ReasonNoPlacement,
			fmt.Errorf("routing policy v%d has no group %q (groups: %s)", rv.Version, group, strings.Join(sortedKeys(rv.Policy.Groups), ", ")))
	}
	scores := map[string]int{}
	if rv.Policy.AvoidBelowScore > 0 {
		all, err := s.ProviderScores(ctx)
		if err != nil {
			return PairPlacement{}, err
		}
		for _, sc := range all {
			scores[sc.Provider] = sc.Score
		}
	}
	usable := func(pl Placement) bool {
		_, configured := s.opts.Providers[pl.Provider]
		return configured
	}
	healthy := func(pl Placement) bool {
		sc, ok := scores[pl.Provider]
		return rv.Policy.AvoidBelowScore == 0 || !ok || sc >= rv.Policy.AvoidBelowScore
	}
	pick := func(pls []Placement, not string) (Placement, bool) {
		// Best: configured, healthy, on another provider; then relax health; then relax
		// the other-provider rule (a fleet with one provider).
		for _, try := range []func(Placement) bool{
			func(pl Placement) bool { return usable(pl) && healthy(pl) && pl.Provider != not },
			func(pl Placement) bool { return usable(pl) && pl.Provider != not },
			func(pl Placement) bool { return usable(pl) },
		} {
			for _, pl := range pls {
				if try(pl) {
					return pl, true
				}
			}
		}
		return Placement{}, false
	}
	pri, ok := pick(route.Primary, "")
	if !ok {
		return PairPlacement{}, clawops.E(op, clawops.KindInvalid, ReasonNoPlacement, fmt.Errorf("group %s: no primary placement at a configured provider", group))
	}
	sby, ok := pick(route.Standby, pri.Provider)
	if !ok {
		return PairPlacement{}, clawops.E(op, clawops.KindInvalid, ReasonNoPlacement, fmt.Errorf("group %s: no standby placement at a configured provider", group))
	}
	return PairPlacement{Primary: pri, Standby: sby, RoutingVersion: rv.Version}, nil
}

// standbyPlacement chooses where a replacement standby goes: the routing policy's standby
// list for the group of fallback's region, on a provider other than avoid; fallback when
// the policy offers nothing better.
func (s *Service) standbyPlacement(ctx context.Context, avoid string, fallback Placement) Placement {
	rv, err := s.RoutingPolicy(ctx)
	if err != nil {
		return fallback
	}
	route, ok := rv.Policy.Groups[s.prices.Group(fallback.Region)]
	if !ok {
		return fallback
	}
	for _, pl := range route.Standby {
		if _, configured := s.opts.Providers[pl.Provider]; configured && pl.Provider != avoid {
			return pl
		}
	}
	return fallback
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
