package governance

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

// maxListApprovals bounds ListApprovals.
const maxListApprovals = 1000

// approvalIDRE is the shape of every approval ID: "apr_" and 32 hex digits (128 random bits).
var approvalIDRE = regexp.MustCompile(`^apr_[0-9a-f]{32}$`)

// approvalRow is the stored form of an Approval. Times are fixed-width UTC text (the audit
// layout), so they compare as strings in SQL and round-trip exactly in both databases.
type approvalRow struct {
	ID                string `gorm:"column:id;primaryKey;size:40"`
	Tool              string `gorm:"column:tool;size:64;not null"`
	Requester         string `gorm:"column:requester;type:text;not null"` // clawops.Actor as JSON
	RequesterIdentity string `gorm:"column:requester_identity;size:256;not null;index"`
	Plan              string `gorm:"column:plan;type:text;not null"` // Plan as JSON
	PlanHash          string `gorm:"column:plan_hash;size:64;not null;index"`
	Risk              string `gorm:"column:risk;size:16;not null"`
	State             string `gorm:"column:state;size:16;not null;index:idx_governance_approvals_state_created,priority:1"`
	Created           string `gorm:"column:created_at;size:32;not null;index:idx_governance_approvals_state_created,priority:2"`
	Expires           string `gorm:"column:expires_at;size:32;not null"`
	DecidedBy         string `gorm:"column:decided_by;size:256;not null"`
	DecidedAt         string `gorm:"column:decided_at;size:32;not null"`
	DecisionReason    string `gorm:"column:decision_reason;type:text;not null"`
	Result            string `gorm:"column:result;type:text;not null"` // Result as JSON, "" if none
	Error             string `gorm:"column:error;type:text;not null"`

	RiskScore    int    `gorm:"column:risk_score;not null;default:0"`
	RiskFactors  string `gorm:"column:risk_factors;type:text;not null;default:''"` // []RiskFactor as JSON
	Required     int    `gorm:"column:approvals_required;not null;default:1"`
	Decisions    string `gorm:"column:decisions;type:text;not null;default:''"` // []ApprovalDecision as JSON
	SecondFactor bool   `gorm:"column:second_factor;not null;default:false"`
	Approvers    string `gorm:"column:approvers;type:text;not null;default:''"` // []string as JSON
	GrantID      string `gorm:"column:grant_id;size:40;not null;default:''"`
	TraceID      string `gorm:"column:trace_id;size:40;not null;default:''"`
	// Version counts decisions recorded; a decision is written only if it is unchanged
	// since it was read, so two approvers of a four-eyes approval cannot both be "first".
	Version int `gorm:"column:version;not null;default:0"`
}

// TableName names the approvals table.
func (approvalRow) TableName() string { return "governance_approvals" }

func formatTime(t time.Time) string { return t.UTC().Format(auditTimeLayout) }

func parseTime(s string) (time.Time, error) { return time.Parse(auditTimeLayout, s) }

func (r approvalRow) approval() (Approval, error) {
	a := Approval{ID: r.ID, Tool: r.Tool, PlanHash: r.PlanHash, Risk: clawops.RiskClass(r.Risk),
		State: ApprovalState(r.State), DecidedBy: r.DecidedBy, Reason: r.DecisionReason, Error: r.Error,
		RiskScore: r.RiskScore, ApprovalsRequired: max(r.Required, 1), SecondFactor: r.SecondFactor,
		GrantID: r.GrantID, TraceID: r.TraceID}
	var err error
	for _, f := range []struct {
		name, text string
		into       any
	}{{"risk_factors", r.RiskFactors, &a.RiskFactors}, {"decisions", r.Decisions, &a.Decisions}, {"approvers", r.Approvers, &a.Approvers}} {
		if f.text == "" {
			continue
		}
		if err := json.Unmarshal([]byte(f.text), f.into); err != nil {
			return Approval{}, fmt.Errorf("approval %s: %s: %w", r.ID, f.name, err)
		}
	}
	if err = json.Unmarshal([]byte(r.Requester), &a.Requester); err != nil {
		return Approval{}, fmt.Errorf("approval %s: requester: %w", r.ID, err)
	}
	if err = json.Unmarshal([]byte(r.Plan), &a.Plan); err != nil {
		return Approval{}, fmt.Errorf("approval %s: plan: %w", r.ID, err)
	}
	if a.CreatedAt, err = parseTime(r.Created); err != nil {
		return Approval{}, fmt.Errorf("approval %s: created_at: %w", r.ID, err)
	}
	if a.ExpiresAt, err = parseTime(r.Expires); err != nil {
		return Approval{}, fmt.Errorf("approval %s: expires_at: %w", r.ID, err)
	}
	if r.DecidedAt != "" {
		t, err := parseTime(r.DecidedAt)
		if err != nil {
			return Approval{}, fmt.Errorf("approval %s: decided_at: %w", r.ID, err)
		}
		a.DecidedAt = &t
	}
	if r.Result != "" {
		a.Result = new(Result)
		if err := json.Unmarshal([]byte(r.Result), a.Result); err != nil {
			return Approval{}, fmt.Errorf("approval %s: result: %w", r.ID, err)
		}
	}
	return a, nil
}

func (g *Gate) newApprovalID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(g.rand, b[:]); err != nil {
		return "", fmt.Errorf("approval id: %w", err)
	}
	return "apr_" + hex.EncodeToString(b[:]), nil
}

// requestApproval audits the need for approval, persists a pending Approval bound to the
// plan hash, tells the Notifier (the card is addressed to the approvers, never to the
// requester alone), and returns the NeedsApproval outcome. Nothing runs.
func (g *Gate) requestApproval(ctx context.Context, ev *evaluation) (Outcome, error) {
	c := ev.c
	id, err := g.newApprovalID()
	if err != nil {
		return g.refuse(ctx, c, clawops.KindOther, clawops.ReasonInternal, err.Error())
	}
	now := g.now()
	var approvers []string
	if set := g.Approvers(); set != nil {
		approvers = slices.DeleteFunc(set, func(x string) bool { return x == c.actor.Identity })
		if len(approvers) < ev.approvals {
			return g.refuse(ctx, c, clawops.KindDenied, clawops.ReasonNotApprover, fmt.Sprintf(
				"needs %d approver(s) other than the requester; the approver set has %d", ev.approvals, len(approvers)))
		}
	}
	traceID, _ := TraceFromContext(ctx)
	row := approvalRow{
		ID: id, Tool: c.name, Requester: mustJSON(c.actor), RequesterIdentity: cleanText(c.actor.Identity, 256),
		Plan: mustJSON(c.plan), PlanHash: c.plan.Hash, Risk: string(c.riskClass()),
		State: string(ApprovalPending), Created: formatTime(now), Expires: formatTime(now.Add(g.ttl)),
		RiskScore: ev.risk.Score, RiskFactors: mustJSON(ev.risk.Factors), Required: ev.approvals,
		SecondFactor: ev.factor, Approvers: mustJSON(approvers), TraceID: traceID,
	}
	why := ev.why
	if ev.approvals > 1 {
		why += fmt.Sprintf(" (%d distinct approvers)", ev.approvals)
	}
	if ev.factor {
		why += " (second factor)"
	}
	entries := []AuditEntry{c.entry(EventRequested, "", "", c.plan.Summary),
		c.entry(EventNeedsApproval, clawops.NeedsApproval, ev.reason, fmt.Sprintf("approval %s: %s", id, why))}
	for _, w := range ev.warnings {
		entries = append(entries, c.entry(EventBudgetWarning, clawops.NeedsApproval, ReasonBudgetSoftLimit, w))
	}
	if _, err := g.audit.AppendBatch(ctx, entries...); err != nil {
		return g.auditFailed(c, err)
	}
	if err := g.db.WithContext(ctx).Create(&row).Error; err != nil {
		if _, aerr := g.audit.Append(ctx, c.entry(EventFailed, clawops.NeedsApproval, clawops.ReasonInternal,
			fmt.Sprintf("approval %s not stored", id))); aerr != nil {
			g.log.ErrorContext(ctx, "audit approval store failure", "err", aerr)
		}
		out := c.outcome(clawops.Deny, clawops.ReasonInternal, "approval not stored")
		return out, clawops.E("governance.Invoke "+c.name, clawops.ReasonInternal, fmt.Errorf("store approval: %w", err))
	}
	g.log.InfoContext(ctx, "approval requested", "approval", id, "actor", c.actor.String(), "tool", c.name,
		"reason", ev.reason, "plan", c.plan.Hash, "approvals", ev.approvals)
	if a, err := row.approval(); err == nil {
		g.notify(ctx, a)
	}
	out := c.outcome(clawops.NeedsApproval, ev.reason, ev.why)
	out.ApprovalID, out.ApprovalsRequired, out.Warnings = id, ev.approvals, ev.warnings
	return out, nil
}

// jsonUnmarshal decodes stored JSON text; "" leaves v as it is.
func jsonUnmarshal(s string, v any) error {
	if s == "" {
		return nil
	}
	return json.Unmarshal([]byte(s), v)
}

// mustJSON encodes v, which is always one of our own encodable types; "" for nil slices.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("governance: encode %T: %v", v, err))
	}
	if string(b) == "null" {
		return ""
	}
	return string(b)
}

func (g *Gate) notify(ctx context.Context, a Approval) {
	if g.notifier != nil {
		g.notifier.ApprovalChanged(ctx, a)
	}
}

// loadApproval reads one approval; a malformed or unknown ID is APPROVAL_NOT_FOUND.
func (g *Gate) loadApproval(ctx context.Context, id string) (Approval, error) {
	a, _, err := g.loadApprovalVersion(ctx, id)
	return a, err
}

// loadApprovalVersion reads one approval and the version its decisions are at.
func (g *Gate) loadApprovalVersion(ctx context.Context, id string) (Approval, int, error) {
	const op = "governance.Approval"
	if !approvalIDRE.MatchString(id) {
		return Approval{}, 0, clawops.E(op, clawops.KindNotFound, clawops.ReasonApprovalNotFound,
			"no approval "+quoteShort(id))
	}
	var rows []approvalRow
	if err := g.db.WithContext(ctx).Where("id = ?", id).Limit(1).Find(&rows).Error; err != nil {
		return Approval{}, 0, fmt.Errorf("load approval %s: %w", id, err)
	}
	if len(rows) == 0 {
		return Approval{}, 0, clawops.E(op, clawops.KindNotFound, clawops.ReasonApprovalNotFound, "no approval "+id)
	}
	a, err := rows[0].approval()
	return a, rows[0].Version, err
}

// Approval returns the approval with the given ID.
func (g *Gate) Approval(ctx context.Context, id string) (Approval, error) {
	return g.loadApproval(ctx, id)
}

// ListApprovals returns approvals in state (all states when state is ""), newest first, at
// most 1000.
func (g *Gate) ListApprovals(ctx context.Context, state ApprovalState) ([]Approval, error) {
	q := g.db.WithContext(ctx).Order("created_at DESC").Order("id DESC").Limit(maxListApprovals)
	switch state {
	case "":
	case ApprovalPending, ApprovalApproved, ApprovalDenied, ApprovalExpired, ApprovalExecuted, ApprovalFailed:
		q = q.Where("state = ?", string(state))
	default:
		return nil, clawops.E("governance.ListApprovals", clawops.KindInvalid, clawops.ReasonBadArguments,
			"unknown approval state "+quoteShort(string(state)))
	}
	var rows []approvalRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	out := make([]Approval, 0, len(rows))
	for _, r := range rows {
		a, err := r.approval()
		if err != nil {
			return nil, fmt.Errorf("list approvals: %w", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// transition moves approval id from state from to state to, setting the given columns too,
// only if it is still in from (and, when notAfter is set, not expired at that time). It
// reports whether this call made the change: of two concurrent transitions exactly one wins.
func (g *Gate) transition(ctx context.Context, id string, from, to ApprovalState, set map[string]any, notExpiredAt *time.Time) (bool, error) {
	cols := map[string]any{"state": string(to)}
	for k, v := range set {
		cols[k] = v
	}
	q := g.db.WithContext(ctx).Model(&approvalRow{}).Where("id = ? AND state = ?", id, string(from))
	if notExpiredAt != nil {
		q = q.Where("expires_at >= ?", formatTime(*notExpiredAt))
	}
	res := q.Updates(cols)
	if res.Error != nil {
		return false, fmt.Errorf("approval %s %s→%s: %w", id, from, to, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// Card renders a as the approval card every channel shows.
func (a Approval) Card() Card {
	actions := make([]string, 0, len(a.Plan.Effects))
	for _, e := range a.Plan.Effects {
		s := e.Kind + " " + e.Target
		if e.Detail != "" {
			s += ": " + e.Detail
		}
		actions = append(actions, s)
	}
	if len(actions) == 0 && a.Plan.Summary != "" {
		actions = append(actions, a.Plan.Summary)
	}
	return Card{
		ApprovalID:           a.ID,
		Title:                fmt.Sprintf("%s asks to run %s", a.Requester.String(), a.Tool),
		Summary:              a.Plan.Summary,
		Actions:              actions,
		Risk:                 a.Risk,
		RiskFlags:            riskFlags(a.Risk, a.Plan),
		UsersAffected:        a.Plan.UsersAffected,
		CostDeltaMonthlyUSD:  a.Plan.CostDeltaMonthlyUSD,
		ExpectedDuration:     a.Plan.ExpectedDuration,
		PlanHash:             a.PlanHash,
		Requester:            a.Requester.String(),
		ExpiresAt:            a.ExpiresAt,
		State:                a.State,
		DecidedBy:            a.DecidedBy,
		DecidedAt:            a.DecidedAt,
		RiskScore:            a.RiskScore,
		ApprovalsRequired:    a.ApprovalsRequired,
		Deciders:             slices.Clone(a.Decisions),
		SecondFactorRequired: a.SecondFactor,
		Audience:             slices.Clone(a.Approvers),
		Forecast:             a.Plan.Forecast,
	}
}

// quoteShort quotes outside input for messages and audit rows, cut to a sane length.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}

var errApprovalCorrupt = errors.New("stored plan does not match its hash")

// Migrate creates or updates the governance tables in db: audit log and checkpoints,
// approvals, scoped grants, break-glass sessions, budgets and the cost ledger, traces.
func Migrate(db *gorm.DB) error {
	if err := db.AutoMigrate(&auditRow{}, &checkpointRow{}, &approvalRow{}, &grantRow{}, &breakGlassRow{},
		&budgetRow{}, &costRow{}, &traceRow{}, &spanRow{}); err != nil {
		return fmt.Errorf("migrate governance: %w", err)
	}
	return nil
}
