package agents_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// TestNoModelBriefings: without a model the Briefer's schedules send briefings built from
// what the tools report, through gf_send_message.
func TestNoModelBriefings(t *testing.T) {
	for _, tt := range []struct{ schedule, golden string }{
		{"briefer-daily", "briefing-daily.golden"},
		{"briefer-weekly", "briefing-weekly.golden"},
		{"briefer-monthly", "briefing-monthly.golden"},
	} {
		t.Run(tt.schedule, func(t *testing.T) {
			e := newTeamEnv(t, envOptions{skip: []string{agents.ToolCostReport}})
			ctx := context.Background()
			// An incident yesterday, and an approval waiting.
			e.clock.Add(-20 * time.Hour)
			if err := e.team.Event(ctx, agents.Event{Type: agents.EventHealEscalated, Subject: "demo2-pri",
				Severity: agents.SeverityCritical, Summary: "standby not ACTIVE; not failing over"}); err != nil {
				t.Fatal(err)
			}
			e.clock.Add(20 * time.Hour)
			e.idle()
			e.say(omar, "/teardown idle01-sby")
			e.rec.takeNotices()
			e.rec.takeCalls()

			if err := e.team.Trigger(ctx, tt.schedule); err != nil {
				t.Fatal(err)
			}
			e.idle()
			notices := e.rec.takeNotices()
			if len(notices) != 1 || notices[0].Kind != "briefing" || notices[0].Agent != clawops.Briefer {
				t.Fatalf("notices: got %+v, want one briefing from the briefer", notices)
			}
			text := notices[0].Text
			// Approval ids are random; the golden file holds a placeholder.
			if i := strings.Index(text, "apr_"); i >= 0 {
				text = text[:i] + "apr_…" + text[i+len("apr_")+32:]
			}
			checkGolden(t, tt.golden, text+"\n")
			calls := toolNames(e.rec.takeCalls())
			if want := []string{agents.ToolFleetStatus, agents.ToolCostReport, agents.ToolSendMessage}; strings.Join(calls, ",") != strings.Join(want, ",") {
				t.Errorf("briefer calls: got %v, want %v", calls, want)
			}
		})
	}
}

func TestNoModelCommander(t *testing.T) {
	e := newTeamEnv(t, envOptions{})
	if got := e.say(omar, "restart whatever is broken"); !strings.HasPrefix(got, "No model is configured, so I only understand slash commands.") {
		t.Errorf("plain text: got %q", got)
	}
	if got := e.say(omar, "/status"); got != "6 instances: 6 ACTIVE (pairs demo1, demo2, idle01)" {
		t.Errorf("/status: got %q", got)
	}
	if got := e.say(omar, "/restart demo1-pri"); !strings.HasPrefix(got, "Restart OpenClaw on demo1-pri") {
		t.Errorf("/restart: got %q", got)
	}
	// Every governed tool is reachable without a model.
	for _, tt := range []struct{ text, want string }{
		{`/tool gf_heal {"instance": "demo1-pri"}`, "Run the auto-heal runbook on demo1-pri (primary, ACTIVE): done"},
		{`/tool gf_heal {"instance": "demo1-pri"`, "Invalid (BAD_ARGUMENTS): the arguments must be one JSON object"},
		{`/tool gf_heal ["demo1-pri"]`, "Invalid (BAD_ARGUMENTS): the arguments must be one JSON object"},
		{`/tool gf_provision {"count":20,"tier":"standard"}`, "Approval apr_"},
		{`/tool gf_no_such_tool`, "Not found (UNKNOWN_TOOL)"},
		{`/tool`, "Invalid (BAD_ARGUMENTS): usage: /tool <name> [json-arguments]"},
		{`/tools`, "15 tools (call one with /tool <name> {json}):\n- gf_config_push (config_push, risk high)"},
	} {
		if got := e.say(omar, tt.text); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s: got %q, want prefix %q", tt.text, got, tt.want)
		}
	}
	_, err := e.team.Commander().Handle(context.Background(), clawops.Actor{Identity: "agent:guardian", Role: clawops.RoleOperator, Channel: "web"}, "/status")
	if clawops.ReasonOf(err) != clawops.ReasonMalformedRequest {
		t.Errorf("reserved identity: got %v, want MALFORMED_REQUEST", err)
	}
	hist, err := e.team.Commander().History(context.Background(), omar.Channel, omar.Identity, 10)
	if err != nil || len(hist) != 10 {
		t.Errorf("history: got %d messages (%v), want the newest 10", len(hist), err)
	}
}

func TestNoModelOtherSchedules(t *testing.T) {
	e := newTeamEnv(t, envOptions{})
	ctx := context.Background()
	for _, name := range []string{"guardian-sweep", "ledger-cost"} {
		if err := e.team.Trigger(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	e.idle()
	calls := e.rec.takeCalls()
	got := map[clawops.AgentRole]string{}
	for _, c := range calls {
		got[c.Agent] = c.Tool
	}
	if got[clawops.Guardian] != agents.ToolFleetStatus || got[clawops.Ledger] != agents.ToolCostReport {
		t.Errorf("scheduled calls: got %v", got)
	}
	if err := e.team.Trigger(ctx, "nope"); clawops.KindOf(err) != clawops.KindNotFound {
		t.Errorf("unknown schedule: got %v", err)
	}
	notes, _ := e.mem.Day(clawops.Guardian, e.clock.Now())
	if !strings.Contains(notes, "sweep: 6 instances: 6 ACTIVE") {
		t.Errorf("guardian notes: got %q", notes)
	}
}

// TestTeamSchedulesUnderInjectedClock: the team's scheduler sleeps on the injected clock,
// and each schedule's agent runs when the clock reaches the schedule's time.
func TestTeamSchedulesUnderInjectedClock(t *testing.T) {
	tick := make(chan struct{})
	sleeping := make(chan struct{})
	var e *teamEnv
	e = newTeamEnv(t, envOptions{team: func(o *agents.TeamOptions) {
		all := agents.DefaultSchedules()
		o.Schedules = []agents.Schedule{all[1], all[2]} // ledger-cost, briefer-daily
		o.Sleep = func(ctx context.Context, d time.Duration) error {
			// Tell the test the scheduler fired what was due and now waits.
			select {
			case sleeping <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case <-tick:
				e.clock.Add(d)
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}})
	end := time.Date(2026, 11, 24, 7, 30, 0, 0, time.UTC)
	for {
		<-sleeping
		e.idle()
		if !e.clock.Now().Before(end) {
			break
		}
		tick <- struct{}{}
	}
	ledger, _ := e.mem.Day(clawops.Ledger, start)
	next, _ := e.mem.Day(clawops.Ledger, start.Add(24*time.Hour))
	var times []string
	for _, l := range strings.Split(ledger+next, "\n") {
		if strings.HasPrefix(l, "- ") {
			times = append(times, l[2:7])
		}
	}
	if want := "12:00,18:00,00:00,06:00"; strings.Join(times, ",") != want {
		t.Errorf("ledger ran at %v, want %s", times, want)
	}
	notices := e.rec.takeNotices()
	if len(notices) != 1 || notices[0].Kind != "briefing" || !strings.Contains(notices[0].Text, "daily briefing, 2026-11-24 07:00 UTC") {
		t.Errorf("notices: got %+v, want one daily briefing at 07:00 UTC", notices)
	}
}
