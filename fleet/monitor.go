package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gatewayforge/clawops"
)

// Defaults of MonitorOptions.
const (
	DefaultMonitorInterval  = time.Minute
	DefaultRealert          = 30 * time.Minute
	DefaultCostEvery        = time.Hour
	DefaultBacklogThreshold = 20
)

// MonitorOptions configure a Monitor.
type MonitorOptions struct {
	// Interval between sweeps (DefaultMonitorInterval when zero).
	Interval time.Duration
	// Realert raises a condition again when it still holds this long after it was last
	// raised (DefaultRealert when zero). A condition that clears and returns is raised at
	// once.
	Realert time.Duration
	// CostEvery is how often the sweep computes the week's cost for COST_ANOMALY
	// (DefaultCostEvery when zero; negative: never).
	CostEvery time.Duration
	// BacklogThreshold: more provisioning jobs waiting than this raises
	// PROVISION_QUEUE_BACKLOG (DefaultBacklogThreshold when zero).
	BacklogThreshold int
	// ProviderScoreThreshold: a provider scoring below this raises PROVIDER_DEGRADED
	// (ProviderDegradedScore when zero).
	ProviderScoreThreshold int
	Logger                 *slog.Logger
}

// Monitor is the fleet health monitor: each sweep marks silent instances DEGRADED, then
// raises INSTANCE_DEGRADED, PAIR_FAILED, COST_ANOMALY, PROVISION_QUEUE_BACKLOG and
// PROVIDER_DEGRADED on the service's bus for the agents, and reports provisioning
// progress. Run it on the gateway's leader only.
type Monitor struct {
	svc  *Service
	opts MonitorOptions
	log  *slog.Logger

	mu       sync.Mutex
	sweeps   int64
	alerted  map[string]time.Time // condition key → when last raised
	lastCost time.Time
}

// SweepReport says what one sweep saw and raised.
type SweepReport struct {
	Sweep       int64        `json:"sweep"` // 1 for the monitor's first sweep
	At          time.Time    `json:"at"`
	Instances   int          `json:"instances"` // live instances looked at
	Transitions []Transition `json:"transitions"`
	Events      []Event      `json:"events"`
}

// NewMonitor returns a monitor over svc; it publishes to svc's bus.
func NewMonitor(svc *Service, opts MonitorOptions) *Monitor {
	if opts.Interval <= 0 {
		opts.Interval = DefaultMonitorInterval
	}
	if opts.Realert <= 0 {
		opts.Realert = DefaultRealert
	}
	if opts.CostEvery == 0 {
		opts.CostEvery = DefaultCostEvery
	}
	if opts.BacklogThreshold <= 0 {
		opts.BacklogThreshold = DefaultBacklogThreshold
	}
	if opts.ProviderScoreThreshold <= 0 {
		opts.ProviderScoreThreshold = ProviderDegradedScore
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Monitor{svc: svc, opts: opts, log: log.With("component", "fleet.monitor"), alerted: map[string]time.Time{}}
}

// Run sweeps every Interval until ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := m.SweepOnce(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("health sweep failed", "err", err)
			}
		}
	}
}

// Sweeps is how many sweeps have run.
func (m *Monitor) Sweeps() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sweeps
}

// monitorRow is the slice of an instance a sweep needs.
type monitorRow struct {
	ID            clawops.InstanceID
	AccountID     string
	PairID        string
	Provider      string
	Region        string
	Role          Role
	State         State
	HealthError   string
	LastHeartbeat *time.Time
	ActiveAt      *time.Time
}

// SweepOnce runs one sweep. Sweeps are serialized.
func (m *Monitor) SweepOnce(ctx context.Context) (SweepReport, error) {
	const op = "health sweep"
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweeps++
	s := m.svc
	now := s.now()
	rep := SweepReport{Sweep: m.sweeps, At: now, Transitions: []Transition{}, Events: []Event{}}
	seen := map[string]bool{}
	raise := func(key string, e Event) {
		seen[key] = true
		if last, ok := m.alerted[key]; ok && now.Sub(last) < m.opts.Realert {
			return
		}
		m.alerted[key] = now
		e.Time = now
		s.publish(e)
		rep.Events = append(rep.Events, e)
	}

	tr, err := s.Sweep(ctx)
	if err != nil {
		return rep, err
	}
	rep.Transitions = append(rep.Transitions, tr...)

	var rows []monitorRow
	if err := s.db.WithContext(ctx).Model(&Instance{}).
		Select("id, account_id, pair_id, provider, region, role, state, health_error, last_heartbeat, active_at").
		Where("state <> ?", StateTerminated).Order("id").Scan(&rows).Error; err != nil {
		return rep, clawops.E(op, clawops.ReasonInternal, err)
	}
	rep.Instances = len(rows)
	byID := make(map[clawops.InstanceID]*monitorRow, len(rows))
	for i := range rows {
		byID[rows[i].ID] = &rows[i]
	}
	for _, r := range rows {
		if r.State != StateDegraded || r.Role == RoleRetired {
			continue
		}
		raise("degraded:"+string(r.ID), Event{Type: EventInstanceDegraded, Subject: string(r.ID), Severity: SeverityWarning,
			Summary: fmt.Sprintf("%s (%s of %s at %s/%s) is DEGRADED: %s", r.ID, r.Role, r.PairID, r.Provider, r.Region, orUnknown(r.HealthError)),
			Payload: payload(map[string]any{"instance": r.ID, "account": r.AccountID, "pair": r.PairID, "role": r.Role,
				"provider": r.Provider, "region": r.Region, "health_error": r.HealthError, "last_heartbeat": r.LastHeartbeat})})
	}

	var pairs []Pair
	if err := s.db.WithContext(ctx).Find(&pairs).Error; err != nil {
		return rep, clawops.E(op, clawops.ReasonInternal, err)
	}
	for _, p := range pairs {
		pri, sby := byID[p.PrimaryID], byID[p.StandbyID]
		if pri == nil || pri.ActiveAt == nil {
			continue // terminated, or never served: provisioning reports on it
		}
		if pri.State == StateActive || pri.State == StateStandbyPromoting || (sby != nil && (sby.State == StateActive || sby.State == StateStandbyPromoting)) {
			continue
		}
		sbyState := "missing"
		if sby != nil {
			sbyState = string(sby.State)
		}
		raise("pairfailed:"+p.ID, Event{Type: EventPairFailed, Subject: p.ID, Severity: SeverityCritical,
			Summary: fmt.Sprintf("pair %s has no serving instance: primary %s is %s, standby %s is %s", p.ID, p.PrimaryID, pri.State, p.StandbyID, sbyState),
			Payload: payload(map[string]any{"pair": p.ID, "account": p.AccountID, "primary": p.PrimaryID, "primary_state": pri.State,
				"standby": p.StandbyID, "standby_state": sbyState})})
	}

	depth, err := s.QueueDepth(ctx)
	if err != nil {
		return rep, err
	}
	if depth > m.opts.BacklogThreshold {
		raise("backlog", Event{Type: EventProvisionQueueBacklog, Subject: "provisioning", Severity: SeverityWarning,
			Summary: fmt.Sprintf("%d provisioning jobs waiting (threshold %d)", depth, m.opts.BacklogThreshold),
			Payload: payload(map[string]any{"depth": depth, "threshold": m.opts.BacklogThreshold})})
	}

	scores, err := s.ProviderScores(ctx)
	if err != nil {
		return rep, err
	}
	for _, sc := range scores {
		if sc.Provisions+sc.Failures == 0 || sc.Score >= m.opts.ProviderScoreThreshold {
			continue
		}
		raise("provider:"+sc.Provider, Event{Type: EventProviderDegraded, Subject: sc.Provider, Severity: SeverityWarning,
			Summary: fmt.Sprintf("provider %s health score %d/100 (threshold %d): %d failed of %d provisions, mean %s",
				sc.Provider, sc.Score, m.opts.ProviderScoreThreshold, sc.Failures, sc.Provisions+sc.Failures,
				(time.Duration(sc.MeanProvisionMs) * time.Millisecond).Round(time.Second)),
			Payload: payload(sc)})
	}

	if m.opts.CostEvery > 0 && (m.lastCost.IsZero() || now.Sub(m.lastCost) >= m.opts.CostEvery) {
		m.lastCost = now
		cr, err := s.CostReport(ctx, CostQuery{To: now})
		if err != nil {
			return rep, err
		}
		key := "cost:" + cr.From.Format("2006-01-02")
		if cr.Anomaly {
			raise(key, Event{Type: EventCostAnomaly, Subject: "week of " + cr.From.Format("2006-01-02"), Severity: SeverityWarning,
				Summary: fmt.Sprintf("spend %.2f USD vs %.2f USD projected (%+.1f%%, threshold %d%%)", cr.ActualUSD, cr.ProjectedUSD, cr.DeltaPercent, CostAnomalyPercent),
				Payload: payload(map[string]any{"from": cr.From, "to": cr.To, "actual_usd": cr.ActualUSD, "projected_usd": cr.ProjectedUSD,
					"delta_percent": cr.DeltaPercent, "by_provider": cr.ByProvider})})
		} else if _, ok := m.alerted[key]; ok {
			seen[key] = true // keep the week's alert until the week ends
		}
	} else {
		for k := range m.alerted {
			if len(k) > 5 && k[:5] == "cost:" {
				seen[k] = true // cost is not rechecked this sweep
			}
		}
	}
	for k := range m.alerted {
		if !seen[k] {
			delete(m.alerted, k)
		}
	}
	if err := s.reportOpenBatches(ctx); err != nil {
		return rep, clawops.E(op, clawops.ReasonInternal, err)
	}
	return rep, nil
}
