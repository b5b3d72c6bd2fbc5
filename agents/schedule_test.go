package agents_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents"
)

// runScheduler drives a scheduler from from to to on a fake clock whose Sleep advances
// the clock, and returns every firing.
func runScheduler(t *testing.T, scheds []agents.Schedule, from, to time.Time) []agents.Firing {
	t.Helper()
	c := &clock{now: from}
	var mu sync.Mutex
	var fired []agents.Firing
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := agents.NewScheduler(agents.SchedulerOptions{
		Schedules: scheds, Clock: c,
		Sleep: func(ctx context.Context, d time.Duration) error {
			if c.Now().Add(d).After(to) {
				cancel()
				return context.Canceled
			}
			c.Add(d)
			return nil
		},
		Fire: func(_ context.Context, f agents.Firing) {
			mu.Lock()
			defer mu.Unlock()
			if got := c.Now(); !got.Equal(f.At) {
				t.Errorf("%s fired at clock %s, want its time %s", f.Schedule.Name, got, f.At)
			}
			fired = append(fired, f)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return fired
}

func TestDefaultSchedulesFireOnTime(t *testing.T) {
	// Saturday 28 November to Thursday 3 December 2026: a Monday and the 1st of a month.
	from := time.Date(2026, 11, 28, 0, 0, 30, 0, time.UTC)
	to := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	fired := runScheduler(t, agents.DefaultSchedules(), from, to)
	byName := map[string][]time.Time{}
	for _, f := range fired {
		byName[f.Schedule.Name] = append(byName[f.Schedule.Name], f.At)
	}
	check := func(name string, want int, ok func(time.Time) bool) {
		t.Helper()
		got := byName[name]
		if len(got) != want {
			t.Errorf("%s: got %d firings, want %d", name, len(got), want)
		}
		for _, at := range got {
			if !ok(at) || at.Second() != 0 {
				t.Errorf("%s fired at %s", name, at)
			}
		}
	}
	// 00:05 on the 28th to 00:00 on the 3rd: five days of every five minutes.
	check("guardian-sweep", 5*24*12, func(at time.Time) bool { return at.Minute()%5 == 0 })
	// 06:00 on the 28th to 00:00 on the 3rd.
	check("ledger-cost", 5*4, func(at time.Time) bool { return at.Hour()%6 == 0 && at.Minute() == 0 })
	check("briefer-daily", 5, func(at time.Time) bool { return at.Hour() == 7 && at.Minute() == 0 })
	check("briefer-weekly", 1, func(at time.Time) bool {
		return at.Weekday() == time.Monday && at.Hour() == 8 && at.Minute() == 0 && at.Day() == 30
	})
	check("briefer-monthly", 1, func(at time.Time) bool { return at.Day() == 1 && at.Hour() == 8 && at.Month() == time.December })
	for _, f := range fired {
		if f.Schedule.Name == "guardian-sweep" && f.Schedule.Agent != clawops.Guardian {
			t.Errorf("guardian-sweep runs %s", f.Schedule.Agent)
		}
	}
}

func TestScheduleTimeZones(t *testing.T) {
	from := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC) // winter: Berlin is UTC+1
	to := from.Add(24 * time.Hour)
	fired := runScheduler(t, []agents.Schedule{
		{Name: "berlin", Spec: "CRON_TZ=Europe/Berlin 0 7 * * *", Agent: clawops.Briefer, Task: "brief"},
		{Name: "no-zone", Spec: "0 7 * * *", Agent: clawops.Briefer, Task: "brief"},
	}, from, to)
	want := map[string]time.Time{
		"berlin":  time.Date(2026, 1, 10, 6, 0, 0, 0, time.UTC),
		"no-zone": time.Date(2026, 1, 10, 7, 0, 0, 0, time.UTC), // UTC, never the machine's zone
	}
	if len(fired) != 2 {
		t.Fatalf("got %d firings, want 2", len(fired))
	}
	for _, f := range fired {
		if !f.At.Equal(want[f.Schedule.Name]) {
			t.Errorf("%s: got %s, want %s", f.Schedule.Name, f.At.UTC(), want[f.Schedule.Name])
		}
	}
}

func TestScheduleMissedTimesFireOnce(t *testing.T) {
	c := &clock{now: time.Date(2026, 11, 23, 9, 1, 0, 0, time.UTC)}
	var fired []agents.Firing
	s, err := agents.NewScheduler(agents.SchedulerOptions{
		Schedules: []agents.Schedule{{Name: "sweep", Spec: "*/5 * * * *", Agent: clawops.Guardian, Task: "sweep"}},
		Clock:     c,
		Fire:      func(_ context.Context, f agents.Firing) { fired = append(fired, f) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Fire(context.Background()); len(got) != 0 {
		t.Fatalf("before its time: got %d firings, want 0", len(got))
	}
	c.Add(time.Hour) // the process was stopped for an hour
	s.Fire(context.Background())
	if len(fired) != 1 {
		t.Fatalf("after an hour: got %d firings, want 1", len(fired))
	}
	if want := time.Date(2026, 11, 23, 9, 5, 0, 0, time.UTC); !fired[0].At.Equal(want) {
		t.Errorf("firing time: got %s, want %s", fired[0].At, want)
	}
	if next, want := s.Next()["sweep"], time.Date(2026, 11, 23, 10, 5, 0, 0, time.UTC); !next.Equal(want) {
		t.Errorf("next: got %s, want %s", next, want)
	}
}

func TestScheduleBadForms(t *testing.T) {
	ok := agents.Schedule{Name: "x", Spec: "0 7 * * *", Agent: clawops.Briefer, Task: "brief"}
	tests := []struct {
		name   string
		mutate func(*agents.Schedule)
		want   string
	}{
		{"bad spec", func(s *agents.Schedule) { s.Spec = "every morning" }, `schedule x: spec "every morning"`},
		{"six fields", func(s *agents.Schedule) { s.Spec = "0 0 7 * * *" }, "schedule x: spec"},
		{"bad zone", func(s *agents.Schedule) { s.Spec = "CRON_TZ=Mars/Olympus 0 7 * * *" }, "schedule x: spec"},
		{"minute 61", func(s *agents.Schedule) { s.Spec = "61 7 * * *" }, "schedule x: spec"},
		{"unknown agent", func(s *agents.Schedule) { s.Agent = "janitor" }, `schedule x: unknown agent "janitor"`},
		{"no task", func(s *agents.Schedule) { s.Task = " " }, "schedule x: task is empty"},
		{"bad name", func(s *agents.Schedule) { s.Name = "Daily Brief" }, `schedule "Daily Brief": name must be`},
		{"bad briefing", func(s *agents.Schedule) { s.Briefing = "hourly" }, `briefing "hourly" must be daily, weekly or monthly`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.mutate(&s)
			_, err := agents.NewScheduler(agents.SchedulerOptions{Schedules: []agents.Schedule{s},
				Fire: func(context.Context, agents.Firing) {}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	_, err := agents.NewScheduler(agents.SchedulerOptions{Schedules: []agents.Schedule{ok, ok},
		Fire: func(context.Context, agents.Firing) {}})
	if err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("duplicate: got %v, want given twice", err)
	}
}

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"0 7 * * *", "CRON_TZ=UTC */5 * * * *", "@hourly", "TZ=Europe/Berlin 0 8 * * 1", "0 8 1 * *", "* * * * * *"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		sched, err := agents.ParseSchedule(agents.Schedule{Name: "f", Spec: spec, Agent: clawops.Guardian, Task: "t"})
		if err != nil {
			return
		}
		now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
		if next := sched.Next(now); !next.IsZero() && !next.After(now) {
			t.Errorf("%q: next %s is not after %s", spec, next, now)
		}
	})
}
