package governance

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
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
}

// TableName names the approvals table.
func (approvalRow) TableName() string { return "governance_approvals" }

func formatTime(t time.Time) string { return t.UTC().Format(auditTimeLayout) }

func parseTime(s string) (time.Time, error) { return time.Parse(auditTimeLayout, s) }

func (r approvalRow) approval() (Approval, error) {
	a := Approval{ID: r.ID, Tool: r.Tool, PlanHash: r.PlanHash, Risk: clawops.RiskClass(r.Risk),
		State: ApprovalState(r.State), DecidedBy: r.DecidedBy, Reason: r.DecisionReason, Error: r.Error}
	var err error
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
// plan hash, tells the Notifier, and returns the NeedsApproval outcome. Nothing runs.
func (g *Gate) requestApproval(ctx context.Context, c *call, reason clawops.ReasonCode, why string) (Outcome, error) {
	id, err := g.newApprovalID()
	if err != nil {
		return g.refuse(ctx, c, clawops.KindOther, clawops.ReasonInternal, err.Error())
	}
	now := g.clock.Now().UTC().Truncate(time.Microsecond)
	actorJSON, err := json.Marshal(c.actor)
	if err != nil {
		return g.refuse(ctx, c, clawops.KindOther, clawops.ReasonInternal, err.Error())
	}
	planJSON, err := json.Marshal(c.plan)
	if err != nil {
		return g.refuse(ctx, c, clawops.KindOther, clawops.ReasonInternal, err.Error())
	}
	row := approvalRow{
		ID: id, Tool: c.name, Requester: string(actorJSON), RequesterIdentity: cleanText(c.actor.Identity, 256),
		Plan: string(planJSON), PlanHash: c.plan.Hash, Risk: string(c.spec.Risk),
		State: string(ApprovalPending), Created: formatTime(now), Expires: formatTime(now.Add(g.ttl)),
	}
	if _, err := g.audit.Append(ctx, c.entry(EventRequested, "", "", c.plan.Summary)); err != nil {
		return g.auditFailed(c, err)
	}
	if _, err := g.audit.Append(ctx, c.entry(EventNeedsApproval, clawops.NeedsApproval, reason,
		fmt.Sprintf("approval %s: %s", id, why))); err != nil {
		return g.auditFailed(c, err)
	}
	if err := g.db.WithContext(ctx).Create(&row).Error; err != nil {
		if _, aerr := g.audit.Append(ctx, c.entry(EventFailed, clawops.NeedsApproval, clawops.ReasonInternal,
			fmt.Sprintf("approval %s not stored", id))); aerr != nil {
			g.log.ErrorContext(ctx, "audit approval store failure", "err", aerr)
		}
		out := Outcome{Decision: clawops.Deny, Reason: clawops.ReasonInternal, Message: "approval not stored",
			Tool: c.name, Risk: c.spec.Risk, Plan: c.plan}
		return out, clawops.E("governance.Invoke "+c.name, clawops.ReasonInternal, fmt.Errorf("store approval: %w", err))
	}
	g.log.InfoContext(ctx, "approval requested", "approval", id, "actor", c.actor.String(), "tool", c.name,
		"reason", reason, "plan", c.plan.Hash)
	a, err := row.approval()
	if err == nil {
		g.notify(ctx, a)
	}
	return Outcome{Decision: clawops.NeedsApproval, Reason: reason, Message: why, Tool: c.name,
		Risk: c.spec.Risk, Plan: c.plan, ApprovalID: id}, nil
}

func (g *Gate) notify(ctx context.Context, a Approval) {
	if g.notifier != nil {
		g.notifier.ApprovalChanged(ctx, a)
	}
}

// loadApproval reads one approval; a malformed or unknown ID is APPROVAL_NOT_FOUND.
func (g *Gate) loadApproval(ctx context.Context, id string) (Approval, error) {
	const op = "governance.Approval"
	if !approvalIDRE.MatchString(id) {
		return Approval{}, clawops.E(op, clawops.KindNotFound, clawops.ReasonApprovalNotFound,
			"no approval "+quoteShort(id))
	}
	var rows []approvalRow
	if err := g.db.WithContext(ctx).Where("id = ?", id).Limit(1).Find(&rows).Error; err != nil {
		return Approval{}, fmt.Errorf("load approval %s: %w", id, err)
	}
	if len(rows) == 0 {
		return Approval{}, clawops.E(op, clawops.KindNotFound, clawops.ReasonApprovalNotFound, "no approval "+id)
	}
	return rows[0].approval()
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
		ApprovalID:          a.ID,
		Title:               fmt.Sprintf("%s asks to run %s", a.Requester.String(), a.Tool),
		Summary:             a.Plan.Summary,
		Actions:             actions,
		Risk:                a.Risk,
		RiskFlags:           riskFlags(a.Risk, a.Plan),
		UsersAffected:       a.Plan.UsersAffected,
		CostDeltaMonthlyUSD: a.Plan.CostDeltaMonthlyUSD,
		ExpectedDuration:    a.Plan.ExpectedDuration,
		PlanHash:            a.PlanHash,
		Requester:           a.Requester.String(),
		ExpiresAt:           a.ExpiresAt,
		State:               a.State,
		DecidedBy:           a.DecidedBy,
		DecidedAt:           a.DecidedAt,
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

// Migrate creates or updates the governance tables (audit log and approvals) in db.
func Migrate(db *gorm.DB) error {
	if err := db.AutoMigrate(&auditRow{}, &approvalRow{}); err != nil {
		return fmt.Errorf("migrate governance: %w", err)
	}
	return nil
}
