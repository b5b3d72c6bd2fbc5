package agents

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	// Schedules name time zones with CRON_TZ=; the zone database must be in the binary.
	_ "time/tzdata"

	"github.com/gatewayforge/clawops"
)

// Schedule is one recurring trigger: at each time Spec names, Agent gets a run with Task.
type Schedule struct {
	// Name identifies the schedule in logs, runs and memory ("briefer-daily").
	Name string `json:"name"`
	// Spec is a five-field cron expression, optionally prefixed with CRON_TZ=<zone>
	// (e.g. "CRON_TZ=UTC 0 7 * * *"); descriptors such as @hourly are accepted.
	// Without a zone, UTC is used (never the machine's local zone).
	Spec  string            `json:"spec"`
	Agent clawops.AgentRole `json:"agent"`
	// Task is what the agent is asked to do; it is sent as the "task" of a JSON message.
	Task string `json:"task"`
	// Briefing names the template the Briefer uses without a model: daily, weekly or
	// monthly. Empty for other schedules.
	Briefing string `json:"briefing,omitempty"`
}

// Briefing kinds.
const (
	BriefingDaily   = "daily"
	BriefingWeekly  = "weekly"
	BriefingMonthly = "monthly"
)

// DefaultSchedules are the cadences of seed 003 §3.3 and §9.2.
func DefaultSchedules() []Schedule {
	return []Schedule{
		{Name: "guardian-sweep", Spec: "CRON_TZ=UTC */5 * * * *", Agent: clawops.Guardian,
			Task: "Health sweep: read the fleet status; heal what is degraded per the auto-heal skill; report only what needs attention."},
		{Name: "ledger-cost", Spec: "CRON_TZ=UTC 0 */6 * * *", Agent: clawops.Ledger,
			Task: "Cost analysis: compare projected and actual spend, list waste and recommendations."},
		{Name: "briefer-daily", Spec: "CRON_TZ=UTC 0 7 * * *", Agent: clawops.Briefer, Briefing: BriefingDaily,
			Task: "Daily briefing for the operators: overnight summary, cost, incidents, actions taken."},
		{Name: "briefer-weekly", Spec: "CRON_TZ=UTC 0 8 * * 1", Agent: clawops.Briefer, Briefing: BriefingWeekly,
			Task: "Weekly cost report: provider breakdown, savings executed, recommendations."},
		{Name: "briefer-monthly", Spec: "CRON_TZ=UTC 0 8 1 * *", Agent: clawops.Briefer, Briefing: BriefingMonthly,
			Task: "Monthly capacity planning report: projected user growth against infrastructure headroom."},
	}
}

var scheduleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// parser reads standard five-field specs and descriptors; CRON_TZ= is handled by cron.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule checks s and returns its cron schedule. A spec without CRON_TZ= or TZ= is
// read in UTC.
func ParseSchedule(s Schedule) (cron.Schedule, error) {
	if !scheduleNameRE.MatchString(s.Name) {
		return nil, fmt.Errorf("schedule %q: name must be lower-case letters, digits and -", s.Name)
	}
	if !s.Agent.Valid() {
		return nil, fmt.Errorf("schedule %s: unknown agent %q", s.Name, s.Agent)
	}
	if strings.TrimSpace(s.Task) == "" {
		return nil, fmt.Errorf("schedule %s: task is empty", s.Name)
	}
	switch s.Briefing {
	case "", BriefingDaily, BriefingWeekly, BriefingMonthly:
	default:
		return nil, fmt.Errorf("schedule %s: briefing %q must be daily, weekly or monthly", s.Name, s.Briefing)
	}
	spec := strings.TrimSpace(s.Spec)
	if !strings.HasPrefix(spec, "CRON_TZ=") && !strings.HasPrefix(spec, "TZ=") {
		spec = "CRON_TZ=UTC " + spec
	}
	sched, err := parseSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("schedule %s: spec %q: %w", s.Name, s.Spec, err)
	}
	return sched, nil
}

// parseSpec guards against the parser's panics on some malformed input.
func parseSpec(spec string) (sched cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			sched, err = nil, fmt.Errorf("cannot parse: %v", r)
		}
	}()
	return parser.Parse(spec)
}

// Firing is one due run of a schedule.
type Firing struct {
	Schedule Schedule
	At       time.Time // the time the schedule named, not when it was noticed
}

// Scheduler fires schedules by an injected clock. Run drives it with real waiting; tests
// move the clock and call Fire. Missed times (the process was down or busy) fire once,
// not once per missed time.
type Scheduler struct {
	clock clawops.Clock
	sleep func(ctx context.Context, d time.Duration) error
	log   *slog.Logger
	fire  func(ctx context.Context, f Firing)

	mu      sync.Mutex
	entries []*scheduleEntry
}

type scheduleEntry struct {
	s    Schedule
	cron cron.Schedule
	next time.Time
}

// SchedulerOptions configure a Scheduler.
type SchedulerOptions struct {
	Schedules []Schedule
	Clock     clawops.Clock
	// Sleep waits d or until ctx ends; nil uses a timer. Tests pass one that advances
	// the clock instead.
	Sleep  func(ctx context.Context, d time.Duration) error
	Logger *slog.Logger
	// Fire is called for each due firing, in time order; it must not block for long.
	Fire func(ctx context.Context, f Firing)
}

// NewScheduler checks every schedule (a bad one is an error naming it) and computes each
// one's first time after the clock's now.
func NewScheduler(opts SchedulerOptions) (*Scheduler, error) {
	if opts.Fire == nil {
		return nil, fmt.Errorf("new scheduler: Fire is required")
	}
	s := &Scheduler{clock: clawops.ClockOrSystem(opts.Clock), sleep: opts.Sleep, log: opts.Logger, fire: opts.Fire}
	if s.sleep == nil {
		s.sleep = sleepCtx
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	now := s.clock.Now()
	seen := map[string]bool{}
	for _, sc := range opts.Schedules {
		c, err := ParseSchedule(sc)
		if err != nil {
			return nil, fmt.Errorf("new scheduler: %w", err)
		}
		if seen[sc.Name] {
			return nil, fmt.Errorf("new scheduler: schedule %s is given twice", sc.Name)
		}
		seen[sc.Name] = true
		s.entries = append(s.entries, &scheduleEntry{s: sc, cron: c, next: c.Next(now)})
	}
	return s, nil
}

// Next returns the next time each schedule fires, by name.
func (s *Scheduler) Next() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]time.Time{}
	for _, e := range s.entries {
		out[e.s.Name] = e.next
	}
	return out
}

// Fire fires every schedule due at the clock's now and returns the firings, in time
// order. Each schedule then moves to its first time after now.
func (s *Scheduler) Fire(ctx context.Context) []Firing {
	now := s.clock.Now()
	s.mu.Lock()
	var due []Firing
	for _, e := range s.entries {
		if e.next.IsZero() || e.next.After(now) {
			continue
		}
		due = append(due, Firing{Schedule: e.s, At: e.next})
		e.next = e.cron.Next(now)
	}
	s.mu.Unlock()
	slices.SortStableFunc(due, func(a, b Firing) int { return a.At.Compare(b.At) })
	for _, f := range due {
		if late := now.Sub(f.At); late > time.Minute {
			s.log.Warn("schedule fired late", "schedule", f.Schedule.Name, "due", f.At, "late", late)
		}
		s.fire(ctx, f)
	}
	return due
}

// Run fires schedules until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		s.Fire(ctx)
		wait := time.Hour
		now := s.clock.Now()
		s.mu.Lock()
		for _, e := range s.entries {
			if !e.next.IsZero() {
				wait = min(wait, e.next.Sub(now))
			}
		}
		s.mu.Unlock()
		if err := s.sleep(ctx, max(wait, 0)); err != nil {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
