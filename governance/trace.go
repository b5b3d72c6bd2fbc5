package governance

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/gatewayforge/clawops"
)

// A trace records one agent run: who, why (the intent), the scope it was given, every tool
// call with its decision, result, duration and cost, and how the run ended. Text that could
// hold secrets or personal data (intent, arguments, results, errors) passes the gate's
// redactor before it is stored.

// Trace statuses.
const (
	TraceRunning   = "running"
	TraceOK        = "ok"
	TraceFailed    = "failed"
	TraceCancelled = "cancelled"
)

// TraceStart opens a trace.
type TraceStart struct {
	Actor  clawops.Actor `json:"actor"`
	Intent string        `json:"intent"`          // what the run is for, in words
	Scope  string        `json:"scope,omitempty"` // the scope the run was granted, in words
	Parent string        `json:"parent,omitempty"`
}

// TraceEnd closes a trace.
type TraceEnd struct {
	Status  string  `json:"status"` // ok, failed or cancelled
	Result  string  `json:"result,omitempty"`
	CostUSD float64 `json:"cost_usd,omitempty"` // the run's LLM cost
}

// ToolCallSpan is one tool call of a trace.
type ToolCallSpan struct {
	Seq          int64              `json:"seq"`
	At           time.Time          `json:"at"`
	Actor        clawops.Actor      `json:"actor"`
	Tool         string             `json:"tool"`
	Args         json.RawMessage    `json:"args,omitempty"`
	ArgsRedacted bool               `json:"args_redacted,omitempty"`
	Decision     clawops.Decision   `json:"decision"`
	Reason       clawops.ReasonCode `json:"reason,omitempty"`
	Risk         clawops.RiskClass  `json:"risk,omitempty"`
	RiskScore    int                `json:"risk_score,omitempty"`
	PlanHash     string             `json:"plan_hash,omitempty"`
	ApprovalID   string             `json:"approval_id,omitempty"`
	GrantKind    GrantKind          `json:"grant_kind,omitempty"`
	GrantID      string             `json:"grant_id,omitempty"`
	Result       string             `json:"result,omitempty"`
	Error        string             `json:"error,omitempty"`
	Duration     time.Duration      `json:"duration"`
	CostUSD      float64            `json:"cost_usd,omitempty"` // the plan's monthly cost delta
}

// Trace is one recorded run.
type Trace struct {
	ID        string         `json:"id"`
	Actor     clawops.Actor  `json:"actor"`
	Intent    string         `json:"intent"`
	Scope     string         `json:"scope,omitempty"`
	Parent    string         `json:"parent,omitempty"`
	Status    string         `json:"status"`
	Result    string         `json:"result,omitempty"`
	CostUSD   float64        `json:"cost_usd,omitempty"`
	StartedAt time.Time      `json:"started_at"`
	EndedAt   *time.Time     `json:"ended_at,omitempty"`
	Spans     []ToolCallSpan `json:"spans,omitempty"`
}

type traceRow struct {
	ID       string `gorm:"column:id;primaryKey;size:40"`
	Actor    string `gorm:"column:actor;type:text;not null"`
	Identity string `gorm:"column:identity;size:256;not null;index"`
	Intent   string `gorm:"column:intent;type:text;not null"`
	Scope    string `gorm:"column:scope;type:text;not null"`
	Parent   string `gorm:"column:parent;size:40;not null"`
	Status   string `gorm:"column:status;size:16;not null"`
	Result   string `gorm:"column:result;type:text;not null"`
	Cost     int64  `gorm:"column:cost_micros;not null"`
	Started  string `gorm:"column:started_at;size:32;not null;index"`
	Ended    string `gorm:"column:ended_at;size:32;not null"`
}

// TableName names the traces table.
func (traceRow) TableName() string { return "governance_traces" }

type spanRow struct {
	ID           int64  `gorm:"column:id;primaryKey;autoIncrement"`
	TraceID      string `gorm:"column:trace_id;size:40;not null;index"`
	At           string `gorm:"column:at;size:32;not null"`
	Actor        string `gorm:"column:actor;type:text;not null"`
	Tool         string `gorm:"column:tool;size:64;not null"`
	Args         string `gorm:"column:args;type:text;not null"`
	ArgsRedacted bool   `gorm:"column:args_redacted;not null"`
	Decision     string `gorm:"column:decision;size:32;not null"`
	Reason       string `gorm:"column:reason;size:64;not null"`
	Risk         string `gorm:"column:risk;size:16;not null"`
	RiskScore    int    `gorm:"column:risk_score;not null"`
	PlanHash     string `gorm:"column:plan_hash;size:64;not null"`
	ApprovalID   string `gorm:"column:approval_id;size:40;not null"`
	GrantKind    string `gorm:"column:grant_kind;size:16;not null"`
	GrantID      string `gorm:"column:grant_id;size:40;not null"`
	Result       string `gorm:"column:result;type:text;not null"`
	Error        string `gorm:"column:error;type:text;not null"`
	DurationUS   int64  `gorm:"column:duration_us;not null"`
	Cost         int64  `gorm:"column:cost_micros;not null"`
}

// TableName names the trace spans table.
func (spanRow) TableName() string { return "governance_trace_spans" }

var traceIDRE = regexp.MustCompile(`^trc_[0-9a-f]{32}$`)

type traceKey struct{}

// WithTrace returns ctx carrying a trace ID: the gate records every Invoke made with it as
// a span of that trace.
func WithTrace(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, traceKey{}, id)
}

// TraceFromContext returns the trace ID ctx carries.
func TraceFromContext(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(traceKey{}).(string)
	return id, ok && id != ""
}

// StartTrace opens a trace and returns its ID (trc_ and 32 hex digits).
func (g *Gate) StartTrace(ctx context.Context, s TraceStart) (string, error) {
	if s.Parent != "" && !traceIDRE.MatchString(s.Parent) {
		return "", clawops.E("governance.StartTrace", clawops.KindInvalid, clawops.ReasonBadArguments, "bad parent trace "+quoteShort(s.Parent))
	}
	id, err := g.newID("trc_")
	if err != nil {
		return "", err
	}
	row := traceRow{ID: id, Actor: mustJSON(s.Actor), Identity: cleanText(s.Actor.Identity, 256),
		Intent: g.clean(s.Intent, maxAuditLong), Scope: g.clean(s.Scope, 2048), Parent: s.Parent,
		Status: TraceRunning, Started: formatTime(g.now())}
	if err := g.db.WithContext(ctx).Create(&row).Error; err != nil {
		return "", fmt.Errorf("start trace: %w", err)
	}
	return id, nil
}

// EndTrace closes a trace with its status, result and cost.
func (g *Gate) EndTrace(ctx context.Context, id string, e TraceEnd) error {
	const op = "governance.EndTrace"
	switch {
	case !traceIDRE.MatchString(id):
		return clawops.E(op, clawops.KindNotFound, clawops.ReasonBadArguments, "no trace "+quoteShort(id))
	case e.Status != TraceOK && e.Status != TraceFailed && e.Status != TraceCancelled:
		return clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, "status must be ok, failed or cancelled")
	case !validUSD(e.CostUSD) || e.CostUSD < 0:
		return clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, "cost must be a non-negative amount")
	}
	res := g.db.WithContext(ctx).Model(&traceRow{}).Where("id = ? AND status = ?", id, TraceRunning).Updates(map[string]any{
		"status": e.Status, "result": g.clean(e.Result, maxAuditLong), "cost_micros": micros(e.CostUSD), "ended_at": formatTime(g.now()),
	})
	if res.Error != nil {
		return fmt.Errorf("end trace: %w", res.Error)
	}
	if res.RowsAffected != 1 {
		return clawops.E(op, clawops.KindNotFound, clawops.ReasonBadArguments, "no running trace "+id)
	}
	return nil
}

// TraceToolCall adds a span to a trace. The gate calls it for every Invoke made with a
// trace in its context; an agent may call it for work done outside the gate.
func (g *Gate) TraceToolCall(ctx context.Context, traceID string, s ToolCallSpan) error {
	if !traceIDRE.MatchString(traceID) {
		return clawops.E("governance.TraceToolCall", clawops.KindNotFound, clawops.ReasonBadArguments, "no trace "+quoteShort(traceID))
	}
	if s.At.IsZero() {
		s.At = g.now()
	}
	args := string(s.Args)
	if red := g.redactor.String(args); red != args {
		args, s.ArgsRedacted = red, true
	}
	row := spanRow{TraceID: traceID, At: formatTime(s.At), Actor: mustJSON(s.Actor), Tool: cleanText(s.Tool, 64),
		Args: cleanText(args, MaxArgsBytes), ArgsRedacted: s.ArgsRedacted, Decision: string(s.Decision), Reason: string(s.Reason),
		Risk: string(s.Risk), RiskScore: s.RiskScore, PlanHash: cleanText(s.PlanHash, 64), ApprovalID: cleanText(s.ApprovalID, 40),
		GrantKind: string(s.GrantKind), GrantID: cleanText(s.GrantID, 40), Result: g.clean(s.Result, maxAuditLong),
		Error: g.clean(s.Error, maxAuditLong), DurationUS: s.Duration.Microseconds(), Cost: micros(s.CostUSD)}
	if err := g.db.WithContext(ctx).Create(&row).Error; err != nil {
		return fmt.Errorf("trace tool call: %w", err)
	}
	return nil
}

// clean redacts s and makes it storable.
func (g *Gate) clean(s string, max int) string { return cleanText(g.redactor.String(s), max) }

// traceCall records the span of one gate call when ctx carries a trace.
func (g *Gate) traceCall(ctx context.Context, actor clawops.Actor, tool string, args json.RawMessage, out Outcome, err error, start time.Time) {
	id, ok := TraceFromContext(ctx)
	if !ok {
		return
	}
	s := ToolCallSpan{At: start.UTC(), Actor: actor, Tool: tool, Args: args, Decision: out.Decision, Reason: out.Reason,
		Risk: out.Risk, RiskScore: out.RiskScore, ApprovalID: out.ApprovalID, Duration: g.clock.Now().Sub(start)}
	if canon, cerr := CanonicalArgs(args); cerr == nil {
		s.Args = canon
	} else {
		s.Args = json.RawMessage(mustJSON(cleanText(string(args), 4096))) // keep bad input as a JSON string
	}
	if out.Plan != nil {
		s.PlanHash, s.CostUSD = out.Plan.Hash, out.Plan.CostDeltaMonthlyUSD
	}
	if out.Grant != nil {
		s.GrantKind, s.GrantID = out.Grant.Kind, out.Grant.ID
	}
	if out.Result != nil {
		s.Result = out.Result.Summary
	}
	if err != nil {
		s.Error = err.Error()
	}
	if terr := g.TraceToolCall(context.WithoutCancel(ctx), id, s); terr != nil {
		g.log.ErrorContext(ctx, "record trace span", "trace", id, "tool", tool, "err", terr)
	}
}
