package agents

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
)

// autonomous is the actor of a run no person started: an event or a schedule.
func autonomous(role clawops.AgentRole) clawops.Actor {
	return clawops.Actor{Identity: "agent:" + string(role), Agent: role}
}

// Event hands a fleet event to the agent its route names, after alerting people at once
// when the route says so. An event without a route is dropped (and logged). A malformed
// event is an error and nothing acts on it.
func (t *Team) Event(ctx context.Context, e Event) error {
	if err := e.validate(); err != nil {
		return err
	}
	route, ok := t.routes[e.Type]
	if !ok {
		t.log.Debug("event has no route", "type", e.Type, "subject", e.Subject)
		return nil
	}
	if route.Alert && severityRank(e.Severity) >= severityRank(route.MinSeverity) {
		t.alert(ctx, e)
	}
	if route.Agent == "" {
		return nil
	}
	return t.EventTo(ctx, route.Agent, e)
}

// EventTo hands an event to one agent's main session, whatever the routes say, without
// an alert.
func (t *Team) EventTo(ctx context.Context, role clawops.AgentRole, e Event) error {
	if err := e.validate(); err != nil {
		return err
	}
	if !role.Valid() {
		return clawops.E("agents event", clawops.KindInvalid, clawops.ReasonMalformedRequest, fmt.Sprintf("unknown agent %q", role))
	}
	if e.Time.IsZero() {
		e.Time = t.clock.Now()
	}
	ev := e
	in := runInput{key: mainSession(role), actor: autonomous(role), kind: kindEvent, text: t.eventMessage(e),
		record: true, event: &ev}
	if err := t.enqueue(job{in: in}); err != nil {
		return fmt.Errorf("event %s for %s: %w", e.Type, role, err)
	}
	return nil
}

// eventMessage is the JSON an agent receives for an event; the payload is cut and
// redacted, and the summary is marked as the fleet's words.
func (t *Team) eventMessage(e Event) string {
	payload := json.RawMessage(nil)
	if len(e.Payload) > 0 {
		if len(e.Payload) <= MaxEventPayload {
			payload = json.RawMessage(t.redactor.String(string(e.Payload)))
			if !json.Valid(payload) {
				payload = nil
			}
		}
	}
	m := map[string]any{"type": "event", "event": e.Type, "subject": e.Subject, "severity": e.Severity,
		"summary": truncate(t.redactor.String(e.Summary), 500), "time": e.Time.UTC().Format(time.RFC3339)}
	if payload != nil {
		m["payload"] = payload
		m["untrusted_data"] = true
	}
	return mustJSON(m)
}

// Trigger fires the named schedule now, as if its time had come.
func (t *Team) Trigger(ctx context.Context, name string) error {
	s, ok := t.schedules[name]
	if !ok {
		names := make([]string, 0, len(t.schedules))
		for n := range t.schedules {
			names = append(names, n)
		}
		sort.Strings(names)
		return clawops.E("agents trigger", clawops.KindNotFound, clawops.ReasonBadArguments,
			fmt.Sprintf("no schedule %q (schedules: %s)", name, strings.Join(names, ", ")))
	}
	return t.schedule(Firing{Schedule: s, At: t.clock.Now()})
}

// ScheduleOf returns the name of role's first schedule, in configuration order.
func (t *Team) ScheduleOf(role clawops.AgentRole) (string, bool) {
	best := ""
	for n, s := range t.schedules {
		if s.Agent == role && (best == "" || n < best) {
			best = n
		}
	}
	return best, best != ""
}

func (t *Team) fireSchedule(_ context.Context, f Firing) {
	if err := t.schedule(f); err != nil {
		t.log.Warn("schedule not run", "schedule", f.Schedule.Name, "err", err)
	}
}

func (t *Team) schedule(f Firing) error {
	s := f.Schedule
	text := mustJSON(map[string]any{"type": "schedule", "schedule": s.Name, "task": s.Task,
		"at": f.At.UTC().Format(time.RFC3339)})
	in := runInput{key: mainSession(s.Agent), actor: autonomous(s.Agent), kind: kindSchedule, text: text,
		record: true, schedule: &s}
	return t.enqueue(job{in: in, done: t.afterSchedule})
}

// afterSchedule sends a briefing from its template when the model could not: the
// operators get their briefing either way.
func (t *Team) afterSchedule(_ context.Context, in runInput, res runResult) {
	if t.model == nil || in.fallback || in.schedule == nil || in.schedule.Briefing == "" {
		return
	}
	if res.err == nil && res.stopped == "" {
		return
	}
	t.log.Warn("briefing run failed; sending the template", "schedule", in.schedule.Name, "stopped", string(res.stopped))
	again := in
	again.fallback = true
	if err := t.enqueue(job{in: again}); err != nil {
		t.log.Warn("template briefing not queued", "schedule", in.schedule.Name, "err", err)
	}
}

// alert tells the operators about an event at once, from a template, as the Briefer
// through gf_send_message, and writes it to the Briefer's incident log.
func (t *Team) alert(ctx context.Context, e Event) {
	now := t.clock.Now()
	key := e.Type + "|" + e.Subject
	t.mu.Lock()
	last, seen := t.alerted[key]
	if seen && now.Sub(last) < t.alertDedup {
		t.mu.Unlock()
		t.log.Debug("alert suppressed as a repeat", "type", e.Type, "subject", e.Subject)
		return
	}
	t.alerted[key] = now
	for k, at := range t.alerted {
		if now.Sub(at) > t.alertDedup {
			delete(t.alerted, k)
		}
	}
	t.mu.Unlock()

	at := e.Time
	if at.IsZero() {
		at = now
	}
	sev := e.Severity
	if sev == "" {
		sev = SeverityWarning
	}
	summary := truncate(t.redactor.String(strings.Join(strings.Fields(e.Summary), " ")), 300)
	text := fmt.Sprintf("[ALERT %s] %s", strings.ToUpper(string(sev)), e.Type)
	if e.Subject != "" {
		text += " " + e.Subject
	}
	if summary != "" {
		text += ": " + summary
	}
	text += fmt.Sprintf(" (detected %s)", at.UTC().Format(timeLayout))
	t.note(clawops.Briefer, "INCIDENT "+text)

	args, _ := json.Marshal(map[string]string{"text": text, "priority": string(PriorityHigh), "kind": "alert"})
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	_, err := t.gate.Invoke(actx, autonomous(clawops.Briefer), ToolSendMessage, args)
	switch {
	case err == nil:
	case clawops.ReasonOf(err) == clawops.ReasonUnknownTool:
		// An unrecoverable failure must reach a person even when the gateway forgot to
		// register the message tool; say loudly that it went unaudited.
		t.log.Error("gf_send_message is not registered: alert delivered without the gate", "type", e.Type)
		t.deliver(actx, Notice{Agent: clawops.Briefer, To: ToOperators, Text: text, Priority: PriorityHigh, Kind: "alert"})
	default:
		t.log.Error("alert not sent", "type", e.Type, "subject", e.Subject, "reason", string(clawops.ReasonOf(err)), "err", err)
	}
}

// sendBriefing sends a briefing the Briefer wrote to the operators, through the gate as
// the Briefer (so it is audited like every message).
func (t *Team) sendBriefing(ctx context.Context, kind, text string) {
	args, _ := json.Marshal(map[string]string{"text": cutBytes(text, MaxNoticeBytes), "kind": "briefing"})
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	if _, err := t.gate.Invoke(bctx, autonomous(clawops.Briefer), ToolSendMessage, args); err != nil {
		t.log.Error("briefing not sent", "briefing", kind, "reason", string(clawops.ReasonOf(err)), "err", err)
	}
}
