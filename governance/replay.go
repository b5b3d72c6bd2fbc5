package governance

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gatewayforge/clawops"
)

// maxListTraces bounds ListTraces and the spans read for one trace.
const maxListTraces = 1000

func (r traceRow) trace() (Trace, error) {
	t := Trace{ID: r.ID, Intent: r.Intent, Scope: r.Scope, Parent: r.Parent, Status: r.Status, Result: r.Result,
		CostUSD: dollars(r.Cost)}
	if err := jsonUnmarshal(r.Actor, &t.Actor); err != nil {
		return Trace{}, fmt.Errorf("trace %s: actor: %w", r.ID, err)
	}
	var err error
	if t.StartedAt, err = parseTime(r.Started); err != nil {
		return Trace{}, fmt.Errorf("trace %s: started_at: %w", r.ID, err)
	}
	if r.Ended != "" {
		e, err := parseTime(r.Ended)
		if err != nil {
			return Trace{}, fmt.Errorf("trace %s: ended_at: %w", r.ID, err)
		}
		t.EndedAt = &e
	}
	return t, nil
}

func (r spanRow) span(seq int64) (ToolCallSpan, error) {
	s := ToolCallSpan{Seq: seq, Tool: r.Tool, ArgsRedacted: r.ArgsRedacted, Decision: clawops.Decision(r.Decision),
		Reason: clawops.ReasonCode(r.Reason), Risk: clawops.RiskClass(r.Risk), RiskScore: r.RiskScore, PlanHash: r.PlanHash,
		ApprovalID: r.ApprovalID, GrantKind: GrantKind(r.GrantKind), GrantID: r.GrantID, Result: r.Result, Error: r.Error,
		Duration: time.Duration(r.DurationUS) * time.Microsecond, CostUSD: dollars(r.Cost)}
	if err := jsonUnmarshal(r.Actor, &s.Actor); err != nil {
		return ToolCallSpan{}, fmt.Errorf("span %d: actor: %w", r.ID, err)
	}
	if r.Args != "" {
		if json.Valid([]byte(r.Args)) {
			s.Args = json.RawMessage(r.Args)
		} else {
			s.Args = json.RawMessage(mustJSON(r.Args))
		}
	}
	var err error
	if s.At, err = parseTime(r.At); err != nil {
		return ToolCallSpan{}, fmt.Errorf("span %d: at: %w", r.ID, err)
	}
	return s, nil
}

// Trace returns one trace with its spans in order.
func (g *Gate) Trace(ctx context.Context, id string) (Trace, error) {
	const op = "governance.Trace"
	if !traceIDRE.MatchString(id) {
		return Trace{}, clawops.E(op, clawops.KindNotFound, clawops.ReasonBadArguments, "no trace "+quoteShort(id))
	}
	var rows []traceRow
	if err := g.db.WithContext(ctx).Where("id = ?", id).Limit(1).Find(&rows).Error; err != nil {
		return Trace{}, fmt.Errorf("load trace: %w", err)
	}
	if len(rows) == 0 {
		return Trace{}, clawops.E(op, clawops.KindNotFound, clawops.ReasonBadArguments, "no trace "+id)
	}
	t, err := rows[0].trace()
	if err != nil {
		return Trace{}, err
	}
	var spans []spanRow
	if err := g.db.WithContext(ctx).Where("trace_id = ?", id).Order("id ASC").Limit(maxListTraces).Find(&spans).Error; err != nil {
		return Trace{}, fmt.Errorf("load trace spans: %w", err)
	}
	for i, r := range spans {
		s, err := r.span(int64(i + 1))
		if err != nil {
			return Trace{}, err
		}
		t.Spans = append(t.Spans, s)
	}
	return t, nil
}

// TraceFilter selects traces for ListTraces.
type TraceFilter struct {
	Identity string    // only runs for this identity
	Since    time.Time // only runs started at or after this
	Limit    int       // 0: 100; at most 1000
}

// ListTraces returns traces (without spans), newest first.
func (g *Gate) ListTraces(ctx context.Context, f TraceFilter) ([]Trace, error) {
	if f.Limit == 0 {
		f.Limit = 100
	}
	if f.Limit < 1 || f.Limit > maxListTraces {
		return nil, clawops.E("governance.ListTraces", clawops.KindInvalid, clawops.ReasonBadArguments,
			fmt.Sprintf("limit %d is outside 1..%d", f.Limit, maxListTraces))
	}
	q := g.db.WithContext(ctx).Order("started_at DESC").Order("id DESC").Limit(f.Limit)
	if f.Identity != "" {
		q = q.Where("identity = ?", f.Identity)
	}
	if !f.Since.IsZero() {
		q = q.Where("started_at >= ?", formatTime(f.Since))
	}
	var rows []traceRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list traces: %w", err)
	}
	out := make([]Trace, 0, len(rows))
	for _, r := range rows {
		t, err := r.trace()
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// ReplayStep compares one recorded tool call with what today's policy would decide.
type ReplayStep struct {
	Span ToolCallSpan     `json:"span"`
	Now  *PreflightResult `json:"now,omitempty"`
	// Changed is true when the decision today differs from the one recorded (or, for two
	// denials, the reason does).
	Changed bool   `json:"changed"`
	Note    string `json:"note,omitempty"`
}

// ReplayReport is the outcome of Replay.
type ReplayReport struct {
	TraceID string       `json:"trace_id"`
	Steps   []ReplayStep `json:"steps"`
	Changed int          `json:"changed"`
}

// Replay re-evaluates every tool call recorded in a trace against today's policy — roles,
// scope, invariants, risk, budgets, approval rules — through Preflight, with no side
// effect, and says what would be decided now against what was decided then. A call whose
// arguments were redacted when recorded cannot be re-planned and is reported with a note.
// A call that ran after an approval was, by policy, a needs-approval call: it compares as
// such.
func (g *Gate) Replay(ctx context.Context, traceID string) (ReplayReport, error) {
	t, err := g.Trace(ctx, traceID)
	if err != nil {
		return ReplayReport{}, err
	}
	rep := ReplayReport{TraceID: t.ID, Steps: make([]ReplayStep, 0, len(t.Spans))}
	pctx := context.WithValue(context.WithoutCancel(ctx), traceKey{}, "") // no trace, no break-glass
	pctx = context.WithValue(pctx, breakGlassKey{}, nil)
	for _, s := range t.Spans {
		step := ReplayStep{Span: s}
		if s.ArgsRedacted {
			step.Note = "arguments were redacted when recorded; the call cannot be re-planned"
			rep.Steps = append(rep.Steps, step)
			continue
		}
		now, err := g.Preflight(pctx, s.Actor, s.Tool, s.Args)
		if err != nil {
			return ReplayReport{}, fmt.Errorf("replay %s span %d: %w", t.ID, s.Seq, err)
		}
		step.Now = &now
		then := s.Decision
		if s.Reason == clawops.ReasonApproved || s.Reason == ReasonAwaitingSecondApprover {
			then = clawops.NeedsApproval
		}
		if s.GrantKind == GrantScoped || s.GrantKind == GrantBreakGlass {
			then = clawops.NeedsApproval // the grant or override answered a need for approval
			if now.Decision == clawops.Allow {
				then = clawops.Allow
			}
		}
		step.Changed = then != now.Decision || (then == clawops.Deny && s.Reason != now.Reason)
		if step.Changed {
			rep.Changed++
			step.Note = fmt.Sprintf("then %s/%s, now %s/%s", then, s.Reason, now.Decision, now.Reason)
		}
		rep.Steps = append(rep.Steps, step)
	}
	return rep, nil
}
