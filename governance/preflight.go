package governance

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/gatewayforge/clawops"
)

// PreflightResult says what the gate would decide about a call, and what it would need.
type PreflightResult struct {
	Decision clawops.Decision   `json:"decision"`
	Reason   clawops.ReasonCode `json:"reason"`
	// Reasons lists every reason that applies (e.g. TOO_MANY_USERS and APPROVAL_REQUIRED);
	// Reason is the first, the one Invoke would report.
	Reasons []clawops.ReasonCode `json:"reasons,omitempty"`
	Message string               `json:"message,omitempty"`
	Tool    string               `json:"tool"`
	Plan    *Plan                `json:"plan,omitempty"`
	Risk    *RiskAssessment      `json:"risk,omitempty"`
	// ApprovalsRequired is how many distinct approvers a new approval would need (0 when
	// none is needed, or when a grant or break-glass answers the need).
	ApprovalsRequired    int  `json:"approvals_required,omitempty"`
	SecondFactorRequired bool `json:"second_factor_required,omitempty"`
	// GrantID is the scoped grant that would cover the call; BreakGlassID the override.
	GrantID      string          `json:"grant_id,omitempty"`
	BreakGlassID string          `json:"break_glass_id,omitempty"`
	Forecast     *BudgetForecast `json:"forecast,omitempty"`
	Warnings     []string        `json:"warnings,omitempty"`
}

// Preflight answers "would this call be allowed, and what would it need?" by running the
// same pipeline as Invoke — permission, plan (a dry run), scope, invariants, risk, budget,
// approval rules, grants, break-glass — with no side effect: nothing is applied, no
// approval is created, no grant is used or expired, and nothing is written to the audit
// log or the trace (a preflight is a question, not an action; see docs/governance.md).
//
// A policy answer, deny included, comes with a nil error. The error is non-nil only when
// the question could not be answered (the database failed): the result then says Deny with
// reason INTERNAL.
func (g *Gate) Preflight(ctx context.Context, actor clawops.Actor, toolName string, args json.RawMessage) (PreflightResult, error) {
	ev := g.evaluate(ctx, actor, toolName, args)
	r := PreflightResult{Decision: ev.decision, Reason: ev.reason, Message: ev.msg, Tool: ev.c.name, Plan: ev.c.plan,
		Risk: ev.risk, Forecast: ev.forecast, Warnings: ev.warnings}
	switch ev.decision {
	case clawops.Deny:
		r.Reasons = []clawops.ReasonCode{ev.reason}
		if ev.reason == clawops.ReasonInternal {
			return r, clawops.E("governance.Preflight "+ev.c.name, ev.kind, ev.reason, ev.msg)
		}
	case clawops.NeedsApproval:
		r.Reasons = slices.Clone(ev.needs)
		r.ApprovalsRequired, r.SecondFactorRequired = ev.approvals, ev.factor
	default:
		r.Reasons = []clawops.ReasonCode{ev.reason}
		if len(ev.needs) > 0 {
			r.Reasons = append(r.Reasons, ev.needs...)
		}
		if ev.grant != nil {
			r.GrantID = ev.grant.ID
		}
		if ev.breakGlass != nil {
			r.BreakGlassID = ev.breakGlass.ID
		}
	}
	return r, nil
}
