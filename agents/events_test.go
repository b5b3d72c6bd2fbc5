package agents_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents"
	"github.com/gatewayforge/clawops/agents/scripted"
)

// TestEventsReachTheRightAgent sends one event of each routed type to a team on the
// scripted model; the script has exactly one step per agent the routing table names, so
// an event delivered to the wrong agent goes off script.
func TestEventsReachTheRightAgent(t *testing.T) {
	tests := []struct {
		typ   string
		agent clawops.AgentRole
	}{
		{agents.EventInstanceDegraded, clawops.Guardian},
		{agents.EventPairFailed, clawops.Guardian},
		{agents.EventCostAnomaly, clawops.Ledger},
		{agents.EventProvisionQueueBacklog, clawops.Forge},
		{agents.EventProviderDegraded, clawops.Commander},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			script := scripted.Script{Name: tt.typ, Steps: []scripted.Step{{Agent: tt.agent,
				When: scripted.Match{LastUserContains: tt.typ}, Reply: `{"ack":true}`}}}
			e := newTeamEnv(t, envOptions{script: &script})
			err := e.team.Event(context.Background(), agents.Event{Type: tt.typ, Subject: "demo1-pri",
				Severity: agents.SeverityWarning, Summary: "seen by the monitor", Time: start,
				Payload: json.RawMessage(`{"health_score":41}`)})
			if err != nil {
				t.Fatal(err)
			}
			e.idle()
			e.verify()
			reqs := e.sh.Requests()
			if len(reqs) != 1 {
				t.Fatalf("got %d model requests, want 1", len(reqs))
			}
			if !strings.HasPrefix(reqs[0].Request.User, string(tt.agent)+":") {
				t.Errorf("request user: got %q, want agent %s", reqs[0].Request.User, tt.agent)
			}
			if u := reqs[0].LastUser(); !strings.Contains(u, `"subject":"demo1-pri"`) || !strings.Contains(u, `"untrusted_data":true`) {
				t.Errorf("event message: got %s", u)
			}
		})
	}
}

func TestEventWithoutRouteIsDropped(t *testing.T) {
	script := scripted.Script{Name: "none"}
	e := newTeamEnv(t, envOptions{script: &script})
	if err := e.team.Event(context.Background(), agents.Event{Type: "PUSH_BATCH_COMPLETED", Subject: "push-1"}); err != nil {
		t.Fatal(err)
	}
	e.idle()
	if n := len(e.sh.Requests()); n != 0 {
		t.Errorf("got %d model requests, want 0", n)
	}
}

func TestEventBadForms(t *testing.T) {
	e := newTeamEnv(t, envOptions{})
	tests := []struct {
		name string
		ev   agents.Event
	}{
		{"lower-case type", agents.Event{Type: "pair_failed"}},
		{"empty type", agents.Event{}},
		{"type with spaces", agents.Event{Type: "PAIR FAILED"}},
		{"unknown severity", agents.Event{Type: agents.EventPairFailed, Severity: "urgent"}},
		{"payload not JSON", agents.Event{Type: agents.EventPairFailed, Payload: json.RawMessage(`{"a":`)}},
		{"subject too long", agents.Event{Type: agents.EventPairFailed, Subject: strings.Repeat("x", 300)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.team.Event(context.Background(), tt.ev)
			if got := clawops.ReasonOf(err); got != clawops.ReasonMalformedRequest {
				t.Errorf("got %v (%s), want %s", err, got, clawops.ReasonMalformedRequest)
			}
		})
	}
	e.idle()
	if n := len(e.rec.takeCalls()) + len(e.rec.takeNotices()); n != 0 {
		t.Errorf("bad events caused %d calls or notices, want none", n)
	}
	if err := e.team.EventTo(context.Background(), "janitor", agents.Event{Type: agents.EventPairFailed}); clawops.ReasonOf(err) != clawops.ReasonMalformedRequest {
		t.Errorf("unknown agent: got %v", err)
	}
}

// TestNoModelEvents: without a model the Guardian starts the heal runbook on a degraded
// instance and an unrecoverable failure reaches the operators at once, as the Briefer,
// through the gate.
func TestNoModelEvents(t *testing.T) {
	e := newTeamEnv(t, envOptions{})
	ctx := context.Background()
	detected := e.clock.Now()
	// The fleet's monitor names the pair and puts its instances in the payload.
	if err := e.team.Event(ctx, agents.Event{Type: agents.EventPairFailed, Subject: "demo1",
		Severity: agents.SeverityCritical, Summary: "primary and standby unreachable", Time: detected,
		Payload: json.RawMessage(`{"pair":"demo1","primary":"demo1-pri","primary_state":"DEGRADED","standby":"demo1-sby","standby_state":"DEGRADED"}`)}); err != nil {
		t.Fatal(err)
	}
	// The alert is sent before Event returns: no queue, no model between the failure and people.
	notices := e.rec.takeNotices()
	if len(notices) != 1 {
		t.Fatalf("got %d notices, want 1 alert", len(notices))
	}
	alert := notices[0]
	if alert.Kind != "alert" || alert.Priority != agents.PriorityHigh || alert.Agent != clawops.Briefer || alert.To != agents.ToOperators {
		t.Errorf("alert: got %+v", alert)
	}
	if want := "[ALERT CRITICAL] PAIR_FAILED demo1: primary and standby unreachable (detected 2026-11-23 09:00 UTC)"; alert.Text != want {
		t.Errorf("alert text: got %q, want %q", alert.Text, want)
	}
	if lag := e.clock.Now().Sub(detected); lag > time.Minute {
		t.Errorf("alert sent %s after detection, want within 60s", lag)
	}
	e.idle()
	calls := e.rec.takeCalls()
	if len(calls) != 1 || calls[0].Tool != agents.ToolHeal || calls[0].Agent != clawops.Guardian || calls[0].Decision != clawops.Allow {
		t.Fatalf("guardian calls: got %+v, want one allowed gf_heal", calls)
	}
	if got := calls[0].Args; got != `{"instance":"demo1-pri"}` {
		t.Errorf("heal args: got %s", got)
	}
	// The audit log shows who sent the alert.
	entries, err := e.gate.Audit().List(ctx, 0, 200)
	if err != nil {
		t.Fatal(err)
	}
	var sent bool
	for _, en := range entries {
		if en.Tool == agents.ToolSendMessage && strings.HasPrefix(en.Actor, "agent:briefer") && en.Event == "completed" {
			sent = true
		}
	}
	if !sent {
		t.Errorf("no completed gf_send_message by agent:briefer in the audit log")
	}
	// The Briefer's incident log and the Guardian's notes.
	day, _ := e.mem.Day(clawops.Briefer, e.clock.Now())
	if !strings.Contains(day, "INCIDENT [ALERT CRITICAL] PAIR_FAILED demo1") {
		t.Errorf("briefer incident log: got %q", day)
	}
	gday, _ := e.mem.Day(clawops.Guardian, e.clock.Now())
	if !strings.Contains(gday, "PAIR_FAILED demo1: heal demo1-pri →") {
		t.Errorf("guardian notes: got %q", gday)
	}

	// A repeat within ten minutes is not alerted again; after that it is.
	e.clock.Add(5 * time.Minute)
	if err := e.team.Event(ctx, agents.Event{Type: agents.EventPairFailed, Subject: "demo1", Severity: agents.SeverityCritical}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.rec.takeNotices()); n != 0 {
		t.Errorf("repeat alert within 10 min: got %d notices, want 0", n)
	}
	e.clock.Add(6 * time.Minute)
	if err := e.team.Event(ctx, agents.Event{Type: agents.EventPairFailed, Subject: "demo1", Severity: agents.SeverityCritical}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.rec.takeNotices()); n != 1 {
		t.Errorf("alert after 11 min: got %d notices, want 1", n)
	}
	e.idle()
}
