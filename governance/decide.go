package governance

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
)

// gateActor names the gate itself in audit rows it writes on its own (expiry).
const gateActor = "system:gate"

// decideAttempts bounds how often a decision is retried when another decision on the same
// approval was written between our read and our write.
const decideAttempts = 4

// decideRequest is one human decision on an approval.
type decideRequest struct {
	decider clawops.Actor
	id      string
	approve bool
	reason  string
	factor  string      // a second factor code; "" when none was given
	scope   *GrantScope // approve, and grant this scope for later calls
}

// Decide records a human decision on a pending approval and, once it has all the approvals
// it needs, applies the plan.
//
// The decider must hold a role that can approve and, when an approver set is configured,
// be in it (NOT_APPROVER); must not be the requester (SELF_APPROVAL) nor have approved this
// approval already (DUPLICATE_APPROVER). The approval must exist (APPROVAL_NOT_FOUND), be
// pending (APPROVAL_ALREADY_DECIDED) and unexpired (APPROVAL_EXPIRED; it is then marked
// expired). An approval that requires a second factor cannot be approved here
// (SECOND_FACTOR_REQUIRED; use DecideWithFactor); it can be denied. Every refused attempt is
// audited as a "violation".
//
// A critical approval needs two distinct approvers (four-eyes): the first approval is
// recorded and audited, the approval stays pending, and Decide returns NeedsApproval with
// reason AWAITING_SECOND_APPROVER and a nil error; the second applies the plan. Decisions
// are written with a conditional UPDATE on the approval's version, so of concurrent
// deciders exactly one completes the approval and the plan runs once. A single denial ends
// the approval.
//
// Before applying, the requester's permission and scope are checked again, the tool plans
// the stored (canonical) arguments again, and if the new plan's hash differs from the
// approved one (the fleet changed) nothing runs (PLAN_MISMATCH). Invariants and the hard
// budget limit are checked again too. The approval ends executed or failed.
//
// As for Invoke, the error is nil exactly when the plan ran to success (or, four-eyes, the
// first approval was recorded); a denial by the approver is reported as Decision Deny with
// reason DENIED_BY_APPROVER and a KindDenied error.
func (g *Gate) Decide(ctx context.Context, decider clawops.Actor, approvalID string, approve bool, reason string) (Outcome, error) {
	return g.decide(ctx, decideRequest{decider: decider, id: approvalID, approve: approve, reason: reason})
}

// DecideWithFactor is Decide with a second factor (a TOTP code) verified for the decider
// by the gate's SecondFactorVerifier. A wrong or reused code is refused
// (SECOND_FACTOR_INVALID) and audited; nothing is recorded.
func (g *Gate) DecideWithFactor(ctx context.Context, decider clawops.Actor, approvalID string, approve bool, reason, code string) (Outcome, error) {
	if code == "" {
		code = " " // an empty code is a wrong code, not "no factor given"
	}
	return g.decide(ctx, decideRequest{decider: decider, id: approvalID, approve: approve, reason: reason, factor: code})
}

// ApproveForScope approves like Decide and also creates a scoped grant: for scope.TTL (at
// most 24 h), later calls of the same tool by the same requester whose targets all lie
// within the selector, up to scope.MaxUsers users in total, run without a new approval
// (each use audited grant.used). Critical approvals and approvals needing a second factor
// cannot be widened into a grant (GRANT_INVALID).
func (g *Gate) ApproveForScope(ctx context.Context, decider clawops.Actor, approvalID string, scope GrantScope, reason string) (Outcome, error) {
	return g.decide(ctx, decideRequest{decider: decider, id: approvalID, approve: true, reason: reason, scope: &scope})
}

func (g *Gate) decide(ctx context.Context, r decideRequest) (Outcome, error) {
	r.reason = cleanText(r.reason, 1024)
	factorOK := false
	for attempt := 1; ; attempt++ {
		a, version, err := g.loadApprovalVersion(ctx, r.id)
		if err != nil {
			if clawops.ReasonOf(err) == clawops.ReasonApprovalNotFound {
				return g.violation(ctx, r.decider, nil, r.id, clawops.KindNotFound, clawops.ReasonApprovalNotFound, innerMessage(err))
			}
			return Outcome{Decision: clawops.Deny, Reason: clawops.ReasonInternal, ApprovalID: r.id},
				clawops.E("governance.Decide", clawops.ReasonInternal, err)
		}
		if kind, reason, msg := g.checkDecider(r, a); reason != "" {
			return g.violation(ctx, r.decider, &a, a.ID, kind, reason, msg)
		}
		now := g.now()
		if now.After(a.ExpiresAt) {
			if _, err := g.expireOne(ctx, a, now, r.decider.String()); err != nil {
				return Outcome{Decision: clawops.Deny, Reason: clawops.ReasonInternal, ApprovalID: a.ID},
					clawops.E("governance.Decide", clawops.ReasonInternal, err)
			}
			return decidedOutcome(a, clawops.Deny, clawops.ReasonApprovalExpired, "approval expired at "+formatTime(a.ExpiresAt)),
				clawops.E("governance.Decide "+a.ID, clawops.KindExpired, clawops.ReasonApprovalExpired, "approval expired")
		}
		if attempt == 1 {
			if kind, reason, msg := g.checkFactorAndScope(ctx, r, a); reason != "" {
				return g.violation(ctx, r.decider, &a, a.ID, kind, reason, msg)
			}
			factorOK = r.factor != ""
		}
		d := ApprovalDecision{By: cleanText(r.decider.Identity, 256), Role: r.decider.Role,
			Channel: cleanText(r.decider.Channel, 64), Approve: r.approve, At: now, Reason: r.reason, SecondFactor: factorOK}
		decisions := append(slices.Clone(a.Decisions), d)
		to := ApprovalDenied
		if r.approve {
			to = ApprovalPending
			if approvalsIn(decisions) >= a.ApprovalsRequired {
				to = ApprovalApproved
			}
		}
		set := map[string]any{"decisions": mustJSON(decisions), "version": version + 1}
		if to != ApprovalPending {
			set["decided_by"], set["decided_at"], set["decision_reason"] = d.By, formatTime(now), r.reason
		}
		won, err := g.recordDecision(ctx, a.ID, version, to, set, now)
		if err != nil {
			return Outcome{Decision: clawops.Deny, Reason: clawops.ReasonInternal, ApprovalID: a.ID},
				clawops.E("governance.Decide", clawops.ReasonInternal, err)
		}
		if !won {
			if attempt < decideAttempts {
				continue // another decision landed first: read again and re-check
			}
			return g.violation(ctx, r.decider, &a, a.ID, clawops.KindDenied, clawops.ReasonAlreadyDecided,
				"approval was decided concurrently")
		}
		a.State, a.Decisions = to, decisions
		if to != ApprovalPending {
			a.DecidedBy, a.DecidedAt, a.Reason = d.By, &now, r.reason
		}
		return g.afterDecision(ctx, r, a, now)
	}
}

// checkDecider returns why r.decider may not decide a, or an empty reason.
func (g *Gate) checkDecider(r decideRequest, a Approval) (clawops.Kind, clawops.ReasonCode, string) {
	if ok, why := g.isApprover(r.decider); !ok {
		return clawops.KindDenied, clawops.ReasonNotApprover, why
	}
	switch {
	case r.decider.Identity == a.Requester.Identity:
		return clawops.KindDenied, clawops.ReasonSelfApproval, "the requester may not decide their own request"
	case a.State == ApprovalExpired:
		return clawops.KindExpired, clawops.ReasonApprovalExpired, "approval expired at " + formatTime(a.ExpiresAt)
	case a.State != ApprovalPending:
		return clawops.KindDenied, clawops.ReasonAlreadyDecided, "approval is already " + string(a.State)
	}
	for _, d := range a.Decisions {
		if d.By == r.decider.Identity {
			return clawops.KindDenied, ReasonDuplicateApprover, fmt.Sprintf(
				"%s already approved; a second, different approver must decide", quoteShort(d.By))
		}
	}
	return 0, "", ""
}

// checkFactorAndScope verifies a second factor (required to approve when a.SecondFactor,
// checked whenever one is given) and the shape of a requested grant scope.
func (g *Gate) checkFactorAndScope(ctx context.Context, r decideRequest, a Approval) (clawops.Kind, clawops.ReasonCode, string) {
	if r.approve && a.SecondFactor && r.factor == "" {
		return clawops.KindDenied, ReasonSecondFactorRequired,
			"this approval must be approved with a second factor (one-time code), not a chat button"
	}
	if r.factor != "" {
		if g.factor == nil {
			return clawops.KindDenied, ReasonSecondFactorInvalid, "no second factor is configured"
		}
		if err := g.factor.VerifySecondFactor(ctx, r.decider.Identity, strings.TrimSpace(r.factor)); err != nil {
			return clawops.KindDenied, ReasonSecondFactorInvalid, innerMessage(err)
		}
	}
	if r.scope != nil {
		if err := r.scope.validate(a); err != nil {
			return clawops.KindInvalid, ReasonGrantInvalid, err.Error()
		}
	}
	return 0, "", ""
}

func approvalsIn(ds []ApprovalDecision) int {
	n := 0
	for _, d := range ds {
		if d.Approve {
			n++
		}
	}
	return n
}

// afterDecision audits and acts on a decision that was written.
func (g *Gate) afterDecision(ctx context.Context, r decideRequest, a Approval, now time.Time) (Outcome, error) {
	c := &call{actor: r.decider, name: a.Tool, spec: ToolSpec{Risk: a.Risk}, plan: &a.Plan}
	switch a.State {
	case ApprovalDenied:
		g.appendOrLog(ctx, c.entry(EventRejected, clawops.Deny, clawops.ReasonDenied, approvalDetail(a.ID, r.reason)))
		g.notify(ctx, a)
		g.log.InfoContext(ctx, "approval denied", "approval", a.ID, "by", r.decider.String())
		return decidedOutcome(a, clawops.Deny, clawops.ReasonDenied, r.reason),
			clawops.E("governance.Decide "+a.ID, clawops.KindDenied, clawops.ReasonDenied, "denied by "+r.decider.Identity)
	case ApprovalPending:
		msg := fmt.Sprintf("%d of %d approvals", approvalsIn(a.Decisions), a.ApprovalsRequired)
		g.appendOrLog(ctx, c.entry(EventApproved, clawops.NeedsApproval, ReasonAwaitingSecondApprover,
			approvalDetail(a.ID, joinWords(msg, r.reason))))
		g.notify(ctx, a)
		g.log.InfoContext(ctx, "approval recorded; waiting for another approver", "approval", a.ID, "by", r.decider.String())
		out := decidedOutcome(a, clawops.NeedsApproval, ReasonAwaitingSecondApprover, msg+": a second, different approver must approve")
		return out, nil
	}
	detail := approvalDetail(a.ID, joinWords(r.reason, "approved by "+strings.Join(approverIDs(a.Decisions), " and ")))
	if _, err := g.audit.Append(ctx, c.entry(EventApproved, clawops.Allow, clawops.ReasonApproved, detail)); err != nil {
		return g.finishFailed(ctx, a, clawops.KindOther, clawops.ReasonInternal, "audit approval: "+err.Error())
	}
	if r.scope != nil {
		gr, err := g.createGrant(ctx, r.decider, a, *r.scope, now)
		if err != nil {
			return g.finishFailed(ctx, a, clawops.KindOther, clawops.ReasonInternal, "create grant: "+err.Error())
		}
		a.GrantID = gr.ID
	}
	g.notify(ctx, a)
	g.log.InfoContext(ctx, "approval approved", "approval", a.ID, "by", r.decider.String())
	return g.executeApproved(ctx, a, Grant{Kind: GrantApproval, ID: a.ID, By: approverIDs(a.Decisions), At: now})
}

func approverIDs(ds []ApprovalDecision) []string {
	var out []string
	for _, d := range ds {
		if d.Approve {
			out = append(out, d.By)
		}
	}
	return out
}

func joinWords(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// recordDecision writes a decision if the approval is still pending, unexpired and at the
// version it was read at; it reports whether it did.
func (g *Gate) recordDecision(ctx context.Context, id string, version int, to ApprovalState, set map[string]any, now time.Time) (bool, error) {
	cols := map[string]any{"state": string(to)}
	for k, v := range set {
		cols[k] = v
	}
	res := g.db.WithContext(ctx).Model(&approvalRow{}).
		Where("id = ? AND state = ? AND version = ? AND expires_at >= ?", id, string(ApprovalPending), version, formatTime(now)).
		Updates(cols)
	if res.Error != nil {
		return false, fmt.Errorf("record decision on %s: %w", id, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// violation audits a refused decision attempt and returns the refusal.
func (g *Gate) violation(ctx context.Context, decider clawops.Actor, a *Approval, id string, kind clawops.Kind, reason clawops.ReasonCode, msg string) (Outcome, error) {
	c := &call{actor: decider, name: "-"}
	out := Outcome{Decision: clawops.Deny, Reason: reason, Message: msg, ApprovalID: id}
	if a != nil {
		c.name, c.plan = a.Tool, &a.Plan
		out = decidedOutcome(*a, clawops.Deny, reason, msg)
	} else {
		id = quoteShort(id)
		out.ApprovalID = ""
	}
	g.appendOrLog(ctx, c.entry(EventViolation, clawops.Deny, reason, approvalDetail(id, msg)))
	g.log.WarnContext(ctx, "approval decision refused", "by", decider.String(), "reason", reason)
	return out, clawops.E("governance.Decide", kind, reason, msg)
}

func (g *Gate) appendOrLog(ctx context.Context, e AuditEntry) {
	if _, err := g.audit.Append(ctx, e); err != nil {
		g.log.ErrorContext(ctx, "audit append", "event", e.Event, "tool", e.Tool, "err", err)
	}
}

func approvalDetail(id, msg string) string {
	if msg == "" {
		return "approval " + id
	}
	return "approval " + id + ": " + msg
}

func decidedOutcome(a Approval, d clawops.Decision, r clawops.ReasonCode, msg string) Outcome {
	p := a.Plan
	return Outcome{Decision: d, Reason: r, Message: msg, Tool: a.Tool, Risk: a.Risk, Plan: &p, ApprovalID: a.ID,
		RiskScore: a.RiskScore, ApprovalsRequired: a.ApprovalsRequired}
}
