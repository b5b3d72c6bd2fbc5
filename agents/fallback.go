package agents

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

// fallback is what an agent does without a model: deterministic code for events and
// schedules, through the same gate; anything else is refused with NO_MODEL.
func (r *run) fallback(ctx context.Context) runResult {
	switch {
	case r.in.kind == kindEvent && r.in.event != nil:
		return r.fallbackEvent(ctx, *r.in.event)
	case r.in.kind == kindSchedule && r.in.schedule != nil:
		return r.fallbackSchedule(ctx, *r.in.schedule)
	}
	return r.stop(ReasonNoModel, "no model is configured; use slash commands (/help)")
}

// invoke calls a gate tool from code, with the run's actor.
func (r *run) invoke(ctx context.Context, tool string, args any) toolReply {
	b, err := json.Marshal(args)
	if err != nil {
		return refused(clawops.ReasonBadArguments, err.Error())
	}
	return r.call(ctx, tool, string(b))
}

// outcome renders a reply in one line.
func (rep toolReply) outcome() string {
	switch rep.Status {
	case "ok":
		if rep.Summary != "" {
			return rep.Summary
		}
		return "done"
	case "needs_approval":
		return fmt.Sprintf("approval %s requested: %s", rep.ApprovalID, rep.Summary)
	}
	return fmt.Sprintf("%s (%s): %s", rep.Status, rep.Reason, rep.Message)
}

func (r *run) fallbackEvent(ctx context.Context, e Event) runResult {
	role := r.in.key.Agent
	switch {
	case role == clawops.Guardian && (e.Type == EventInstanceDegraded || e.Type == EventPairFailed) && e.Subject != "":
		// The auto-heal runbook is code in the fleet; the Guardian's part is to start it.
		target := healTarget(e)
		rep := r.invoke(ctx, ToolHeal, map[string]string{"instance": target})
		line := fmt.Sprintf("%s %s: heal %s → %s", e.Type, e.Subject, target, rep.outcome())
		r.t.note(role, line)
		return runResult{reply: mustJSON(map[string]any{"event": e.Type, "instance": target,
			"action": ToolHeal, "status": rep.Status, "reason": rep.Reason, "result": rep.Summary})}
	}
	line := fmt.Sprintf("%s %s (%s): %s", e.Type, e.Subject, e.Severity, truncate(e.Summary, 200))
	r.t.note(role, line)
	return runResult{reply: mustJSON(map[string]any{"event": e.Type, "subject": e.Subject, "status": "noted"})}
}

// healTarget is the instance a heal starts from: the subject of INSTANCE_DEGRADED, and
// the primary of a PAIR_FAILED, whose subject is the pair (the runbook checks the
// standby itself).
func healTarget(e Event) string {
	if e.Type == EventPairFailed {
		var p struct {
			Primary string `json:"primary"`
		}
		if json.Unmarshal(e.Payload, &p) == nil && p.Primary != "" {
			return p.Primary
		}
	}
	return e.Subject
}

func (r *run) fallbackSchedule(ctx context.Context, s Schedule) runResult {
	role := r.in.key.Agent
	switch {
	case role == clawops.Briefer && s.Briefing != "":
		text := r.briefing(ctx, s.Briefing)
		rep := r.invoke(ctx, ToolSendMessage, map[string]string{"text": text, "kind": "briefing"})
		r.t.note(role, fmt.Sprintf("%s briefing → %s", s.Briefing, rep.outcome()))
		return runResult{reply: text}
	case role == clawops.Guardian:
		rep := r.invoke(ctx, ToolFleetStatus, struct{}{})
		r.t.note(role, "sweep: "+rep.outcome())
		return runResult{reply: mustJSON(map[string]any{"schedule": s.Name, "status": rep.Status, "fleet": rep.Summary})}
	case role == clawops.Ledger:
		rep := r.invoke(ctx, ToolCostReport, struct{}{})
		r.t.note(role, "cost analysis: "+rep.outcome())
		return runResult{reply: mustJSON(map[string]any{"schedule": s.Name, "status": rep.Status, "cost": rep.Summary})}
	}
	r.t.note(role, "schedule "+s.Name+": no model, nothing to do")
	return runResult{reply: mustJSON(map[string]any{"schedule": s.Name, "status": "skipped", "reason": ReasonNoModel})}
}

// briefing renders a briefing from the fleet's own numbers, read through the gate as the
// Briefer: what the tools report, never invented figures; a part the tools cannot give is
// said to be unavailable, with the reason.
func (r *run) briefing(ctx context.Context, kind string) string {
	now := r.t.clock.Now().UTC()
	var b strings.Builder
	switch kind {
	case BriefingWeekly:
		fmt.Fprintf(&b, "[Briefer — weekly cost report, %s]\n", now.Format("2006-01-02"))
	case BriefingMonthly:
		fmt.Fprintf(&b, "[Briefer — monthly capacity report, %s]\n", now.Format("2006-01"))
	default:
		fmt.Fprintf(&b, "[Briefer — daily briefing, %s]\n", now.Format(timeLayout))
	}
	fleet := r.invoke(ctx, ToolFleetStatus, struct{}{})
	fmt.Fprintf(&b, "Fleet: %s\n", part(fleet))
	period := "week"
	if kind == BriefingMonthly {
		period = "month"
	}
	cost := r.invoke(ctx, ToolCostReport, map[string]string{"period": period})
	fmt.Fprintf(&b, "Cost: %s\n", part(cost))

	if pending, err := r.t.gate.ListApprovals(ctx, governance.ApprovalPending); err == nil {
		if len(pending) == 0 {
			b.WriteString("Approvals waiting: none\n")
		} else {
			ids := make([]string, 0, len(pending))
			for i, a := range pending {
				if i == 5 {
					ids = append(ids, fmt.Sprintf("… %d more", len(pending)-5))
					break
				}
				ids = append(ids, a.ID+" "+a.Tool)
			}
			fmt.Fprintf(&b, "Approvals waiting: %d (%s)\n", len(pending), strings.Join(ids, "; "))
		}
	}
	incidents := r.incidents(kind)
	if len(incidents) == 0 {
		b.WriteString("Incidents: none recorded\n")
	} else {
		fmt.Fprintf(&b, "Incidents: %d\n", len(incidents))
		for i, l := range incidents {
			if i == 5 {
				fmt.Fprintf(&b, "- … %d more in the incident log\n", len(incidents)-5)
				break
			}
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	return strings.TrimSpace(b.String())
}

// part renders one section of a briefing from a tool reply.
func part(rep toolReply) string {
	if rep.Status == "ok" {
		if rep.Summary != "" {
			return rep.Summary
		}
		return "no summary"
	}
	return fmt.Sprintf("unavailable (%s)", rep.Reason)
}

// incidents returns the incident lines of the Briefer's log over the briefing's period.
func (r *run) incidents(kind string) []string {
	if r.t.memory == nil {
		return nil
	}
	days := 2
	switch kind {
	case BriefingWeekly:
		days = 7
	case BriefingMonthly:
		days = 31
	}
	now := r.t.clock.Now()
	var out []string
	for d := days - 1; d >= 0; d-- {
		text, err := r.t.memory.Day(clawops.Briefer, now.AddDate(0, 0, -d))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(text, "\n") {
			if i := strings.Index(l, "INCIDENT "); i >= 0 && strings.HasPrefix(l, "- ") {
				out = append(out, strings.TrimSpace(l[i+len("INCIDENT "):]))
			}
		}
	}
	return out
}
