package fleet

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/gatewayforge/clawops"
)

// ProviderSample is one provisioning outcome at a provider: a server that reached ACTIVE
// (with how long it took) or a creation that failed.
type ProviderSample struct {
	ID         uint      `gorm:"primaryKey"`
	Provider   string    `gorm:"index:idx_fleet_provider_samples_at,priority:1;size:40"`
	At         time.Time `gorm:"index:idx_fleet_provider_samples_at,priority:2"`
	OK         bool
	DurationMs int64
	Error      string `gorm:"size:500"`
}

// TableName is fleet_provider_samples.
func (ProviderSample) TableName() string { return "fleet_provider_samples" }

// ScoreWindow is how far back the provider health score looks.
const ScoreWindow = 7 * 24 * time.Hour

// ProviderDegradedScore is the score below which a provider counts as degraded.
const ProviderDegradedScore = 75

// ProviderScore is one provider's health over ScoreWindow, from its provision times and
// failures:
//
//	score = 100 − 60 × failure_rate − 40 × slowness
//	slowness = clamp((mean provision time − target) / (2 × target), 0, 1)
//
// so a provider that never fails and provisions within the target scores 100, one that
// takes three times the target loses 40, and one that fails every time scores at most 40.
// A provider without samples scores 100.
type ProviderScore struct {
	Provider        string  `json:"provider"`
	Score           int     `json:"score"`
	Provisions      int     `json:"provisions"` // servers that reached ACTIVE
	Failures        int     `json:"failures"`   // creations that failed
	MeanProvisionMs int64   `json:"mean_provision_ms"`
	FailureRate     float64 `json:"failure_rate"`
	Degraded        bool    `json:"degraded"` // score < ProviderDegradedScore
}

func (s *Service) recordProviderSample(ctx context.Context, provider string, ok bool, d time.Duration, errText string) {
	row := ProviderSample{Provider: provider, At: s.now(), OK: ok, DurationMs: max(d.Milliseconds(), 0), Error: truncate(errText, 500)}
	if err := s.db.WithContext(context.WithoutCancel(ctx)).Create(&row).Error; err != nil {
		s.log.Warn("record provider sample", "provider", provider, "err", err)
	}
}

// ProviderScores returns the health score of every configured provider (and any other
// provider with samples), sorted by name.
func (s *Service) ProviderScores(ctx context.Context) ([]ProviderScore, error) {
	const op = "provider scores"
	type agg struct {
		Provider string
		OK       bool
		N        int
		SumMs    int64
	}
	var rows []agg
	err := s.db.WithContext(ctx).Model(&ProviderSample{}).
		Select("provider, ok, count(*) AS n, coalesce(sum(duration_ms), 0) AS sum_ms").
		Where("at >= ?", s.now().Add(-ScoreWindow)).Group("provider, ok").Scan(&rows).Error
	if err != nil {
		return nil, clawops.E(op, clawops.ReasonInternal, err)
	}
	by := map[string]*ProviderScore{}
	sums := map[string]int64{}
	get := func(p string) *ProviderScore {
		if by[p] == nil {
			by[p] = &ProviderScore{Provider: p}
		}
		return by[p]
	}
	for name := range s.opts.Providers {
		get(name)
	}
	for _, r := range rows {
		ps := get(r.Provider)
		if r.OK {
			ps.Provisions += r.N
			sums[r.Provider] += r.SumMs
		} else {
			ps.Failures += r.N
		}
	}
	out := make([]ProviderScore, 0, len(by))
	for name, ps := range by {
		if ps.Provisions > 0 {
			ps.MeanProvisionMs = sums[name] / int64(ps.Provisions)
		}
		ps.Score, ps.FailureRate = score(ps.Provisions, ps.Failures, time.Duration(ps.MeanProvisionMs)*time.Millisecond, s.opts.ProvisionTarget)
		ps.Degraded = ps.Score < ProviderDegradedScore
		out = append(out, *ps)
	}
	slices.SortFunc(out, func(a, b ProviderScore) int {
		if a.Provider < b.Provider {
			return -1
		}
		if a.Provider > b.Provider {
			return 1
		}
		return 0
	})
	return out, nil
}

// score computes the formula documented on ProviderScore.
func score(ok, failed int, mean, target time.Duration) (int, float64) {
	n := ok + failed
	if n == 0 {
		return 100, 0
	}
	rate := float64(failed) / float64(n)
	slowness := 0.0
	if ok > 0 && target > 0 {
		slowness = math.Min(1, math.Max(0, float64(mean-target)/float64(2*target)))
	}
	v := 100 - 60*rate - 40*slowness
	return int(math.Round(math.Max(0, v))), math.Round(rate*1000) / 1000
}
