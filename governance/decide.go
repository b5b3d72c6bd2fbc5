package governance

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gatewayforge/clawops"
)

// gateActor names the gate itself in audit rows it writes on its own (expiry).
const gateActor = "system:gate"

// Decide records a human decision on a pending approval and, when approved, applies the plan.
//
// The decider must hold a role that can approve (NOT_APPROVER), must not be the requester
// (SELF_APPROVAL), and the approval must exist (APPROVAL_NOT_FOUND), be pending
// (APPROVAL_ALREADY_DECIDED) and unexpired (APPROVAL_EXPIRED; it is then marked expired).
// Every refused attempt is audited as a "violation". Approving moves the approval from
// pending to approved with one conditional UPDATE, so of two concurrent approvals exactly one
// goes on to execute. The requester's permission is checked again, and the tool plans the
// stored (canonical) arguments again; if the new plan's hash differs from the approved one
// (the fleet changed) nothing runs (PLAN_MISMATCH). Otherwise the approved plan is applied
// and the approval ends executed or failed.
//
// As for Invoke, the error is nil exactly when the plan ran to success; a denial by the
// approver is reported as Decision Deny with reason DENIED_BY_APPROVER and a KindDenied error.
func (g *Gate) Decide(ctx context.Context, decider clawops.Actor, approvalID string, approve bool, reason string) (Outcome, error) {
	reason = cleanText(reason, 1024)
	a, err := g.loadApproval(ctx, approvalID)
	if err != nil {
		if clawops.ReasonOf(err) == clawops.ReasonApprovalNotFound {
			return g.violation(ctx, decider, nil, approvalID, clawops.KindNotFound, clawops.ReasonApprovalNotFound, innerMessage(err))
		}
		return Outcome{Decision: clawops.Deny, Reason: clawops.ReasonInternal, ApprovalID: approvalID},
			clawops.E("governance.Decide", clawops.ReasonInternal, err)
	}
	switch {
	case decider.Identity == "" || !decider.Role.CanApprove():
		return g.violation(ctx, decider, &a, a.ID, clawops.KindDenied, clawops.ReasonNotApprover,
			fmt.Sprintf("role %q may not decide approvals", decider.Role))
	case decider.Identity == a.Requester.Identity:
		return g.violation(ctx, decider, &a, a.ID, clawops.KindDenied, clawops.ReasonSelfApproval,
			"the requester may not decide their own request")
	case a.State == ApprovalExpired:
		return g.violation(ctx, decider, &a, a.ID, clawops.KindExpired, clawops.ReasonApprovalExpired,
			"approval expired at "+formatTime(a.ExpiresAt))
	case a.State != ApprovalPending:
		return g.violation(ctx, decider, &a, a.ID, clawops.KindDenied, clawops.ReasonAlreadyDecided,
			"approval is already "+string(a.State))
	}
	now := g.clock.Now().UTC().Truncate(time.Microsecond)
	if now.After(a.ExpiresAt) {
		if _, err := g.expireOne(ctx, a, now, decider.String()); err != nil {
			return Outcome{Decision: clawops.Deny, Reason: clawops.ReasonInternal, ApprovalID: a.ID},
				clawops.E("governance.Decide", clawops.ReasonInternal, err)
		}
		return decidedOutcome(a, clawops.Deny, clawops.ReasonApprovalExpired, "approval expired at "+formatTime(a.ExpiresAt)),
			clawops.E("governance.Decide "+a.ID, clawops.KindExpired, clawops.ReasonApprovalExpired, "approval expired")
	}
	to := ApprovalDenied
	if approve {
		to = ApprovalApproved
	}
	won, err := g.transition(ctx, a.ID, ApprovalPending, to, map[string]any{
		"decided_by": cleanText(decider.Identity, 256), "decided_at": formatTime(now), "decision_reason": reason,
	}, &now)
	if err != nil {
		return Outcome{Decision: clawops.Deny, Reason: clawops.ReasonInternal, ApprovalID: a.ID},
			clawops.E("governance.Decide", clawops.ReasonInternal, err)
	}
	if !won {
		// Someone else decided (or it expired) between our read and our write.
		return g.violation(ctx, decider, &a, a.ID, clawops.KindDenied, clawops.ReasonAlreadyDecided,
			"approval was decided concurrently")
	}
	a.State, a.DecidedBy, a.DecidedAt, a.Reason = to, decider.Identity, &now, reason
	c := &call{actor: decider, name: a.Tool, spec: ToolSpec{Risk: a.Risk}, plan: &a.Plan}
	if !approve {
		g.appendOrLog(ctx, c.entry(EventRejected, clawops.Deny, clawops.ReasonDenied, approvalDetail(a.ID, reason)))
		g.notify(ctx, a)
		g.log.InfoContext(ctx, "approval denied", "approval", a.ID, "by", decider.String())
		return decidedOutcome(a, clawops.Deny, clawops.ReasonDenied, reason),
			clawops.E("governance.Decide "+a.ID, clawops.KindDenied, clawops.ReasonDenied, "denied by "+decider.Identity)
	}
	if _, err := g.audit.Append(ctx, c.entry(EventApproved, clawops.Allow, clawops.ReasonApproved, approvalDetail(a.ID, reason))); err != nil {
		return g.finishFailed(ctx, a, clawops.KindOther, clawops.ReasonInternal, "audit approval: "+err.Error())
	}
	g.notify(ctx, a)
	g.log.InfoContext(ctx, "approval approved", "approval", a.ID, "by", decider.String())
	return g.executeApproved(ctx, a)
}

// executeApproved re-plans an approved request, checks the plan did not drift, and applies it.
func (g *Gate) executeApproved(ctx context.Context, a Approval) (Outcome, error) {
	tool, ok := g.tool(a.Tool)
	if !ok {
		return g.finishFailed(ctx, a, clawops.KindNotFound, clawops.ReasonUnknownTool, "tool "+quoteShort(a.Tool)+" is no longer registered")
	}
	spec := tool.Spec()
	// The role table may have changed (a restart with new config) since the request.
	if _, err := g.roles.permit(a.Requester, spec.Action); err != nil {
		return g.finishFailed(ctx, a, clawops.KindOf(err), clawops.ReasonOf(err), innerMessage(err))
	}
	if h, err := HashPlan(a.Plan); err != nil || h != a.PlanHash {
		return g.finishFailed(ctx, a, clawops.KindDenied, clawops.ReasonPlanMismatch, errApprovalCorrupt.Error())
	}
	fresh, err := tool.Plan(ctx, a.Requester, a.Plan.Args)
	if err == nil {
		fresh, err = sealPlan(fresh, spec.Name, a.Plan.Args)
	}
	if err != nil {
		kind, reason := clawops.KindOf(err), clawops.ReasonOf(err)
		if reason == "" {
			kind, reason = clawops.KindOther, clawops.ReasonInternal
		}
		return g.finishFailed(ctx, a, kind, reason, "re-plan: "+err.Error())
	}
	if fresh.Hash != a.PlanHash {
		return g.finishFailed(ctx, a, clawops.KindDenied, clawops.ReasonPlanMismatch, fmt.Sprintf(
			"the plan changed since it was approved (approved %.12s, now %.12s): request it again", a.PlanHash, fresh.Hash))
	}
	if v := checkInvariants(spec, a.Plan); v != nil {
		return g.finishFailed(ctx, a, clawops.KindDenied, v.reason, v.msg)
	}
	c := &call{actor: a.Requester, name: a.Tool, spec: spec, plan: &a.Plan}
	rq, err := g.audit.Append(ctx, c.entry(EventRequested, "", "", approvalDetail(a.ID, "approved by "+a.DecidedBy)))
	if err != nil {
		return g.finishFailed(ctx, a, clawops.KindOther, clawops.ReasonInternal, "audit: "+err.Error())
	}
	out := decidedOutcome(a, clawops.Allow, clawops.ReasonApproved, "")
	out, runErr := g.execute(ctx, c, tool, rq, out)
	to, set := ApprovalExecuted, map[string]any{}
	if runErr != nil {
		to, set["error"] = ApprovalFailed, cleanText(runErr.Error(), maxAuditLong)
	}
	if out.Result != nil {
		if b, err := json.Marshal(out.Result); err == nil {
			set["result"] = string(b)
		}
	}
	if _, err := g.transition(ctx, a.ID, ApprovalApproved, to, set, nil); err != nil {
		g.log.ErrorContext(ctx, "record approval outcome", "approval", a.ID, "err", err)
	}
	if fresh, err := g.loadApproval(ctx, a.ID); err == nil {
		g.notify(ctx, fresh)
	}
	return out, runErr
}

// finishFailed ends an approved request that could not be executed: state failed, audited,
// nothing run.
func (g *Gate) finishFailed(ctx context.Context, a Approval, kind clawops.Kind, reason clawops.ReasonCode, msg string) (Outcome, error) {
	msg = cleanText(msg, maxAuditLong)
	if _, err := g.transition(ctx, a.ID, ApprovalApproved, ApprovalFailed, map[string]any{"error": msg}, nil); err != nil {
		g.log.ErrorContext(ctx, "record approval failure", "approval", a.ID, "err", err)
	}
	c := &call{actor: a.Requester, name: a.Tool, plan: &a.Plan}
	g.appendOrLog(ctx, c.entry(EventDenied, clawops.Deny, reason, approvalDetail(a.ID, msg)))
	g.log.WarnContext(ctx, "approved plan not executed", "approval", a.ID, "reason", reason)
	a.State, a.Error = ApprovalFailed, msg
	g.notify(ctx, a)
	return decidedOutcome(a, clawops.Deny, reason, msg), clawops.E("governance.Decide "+a.ID, kind, reason, msg)
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

// ExpireDue marks every pending approval whose time is up as expired, audits each and tells
// the Notifier. It returns how many it expired.
func (g *Gate) ExpireDue(ctx context.Context) (int, error) {
	now := g.clock.Now().UTC().Truncate(time.Microsecond)
	var rows []approvalRow
	err := g.db.WithContext(ctx).Where("state = ? AND expires_at < ?", string(ApprovalPending), formatTime(now)).
		Order("expires_at ASC").Limit(maxListApprovals).Find(&rows).Error
	if err != nil {
		return 0, fmt.Errorf("expire approvals: %w", err)
	}
	n := 0
	for _, r := range rows {
		a, err := r.approval()
		if err != nil {
			return n, fmt.Errorf("expire approvals: %w", err)
		}
		won, err := g.expireOne(ctx, a, now, gateActor)
		if err != nil {
			return n, fmt.Errorf("expire approvals: %w", err)
		}
		if won {
			n++
		}
	}
	return n, nil
}

// expireOne moves a pending approval to expired, audits it and notifies; false when
// another writer changed its state first.
func (g *Gate) expireOne(ctx context.Context, a Approval, now time.Time, by string) (bool, error) {
	won, err := g.transition(ctx, a.ID, ApprovalPending, ApprovalExpired, map[string]any{"decided_at": formatTime(now)}, nil)
	if err != nil || !won {
		return false, err
	}
	a.State, a.DecidedAt = ApprovalExpired, &now
	c := &call{name: a.Tool, plan: &a.Plan}
	e := c.entry(EventExpired, clawops.Deny, clawops.ReasonApprovalExpired,
		approvalDetail(a.ID, "expired at "+formatTime(a.ExpiresAt)))
	e.Actor = by
	g.appendOrLog(ctx, e)
	g.notify(ctx, a)
	return true, nil
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
	return Outcome{Decision: d, Reason: r, Message: msg, Tool: a.Tool, Risk: a.Risk, Plan: &p, ApprovalID: a.ID}
}

// RunExpiry calls ExpireDue every interval until ctx ends, so pending approvals expire (and
// their cards update) even when nobody tries to decide them. It returns nil when ctx ends.
func (g *Gate) RunExpiry(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		return fmt.Errorf("run expiry: interval %s must be positive", every)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if n, err := g.ExpireDue(ctx); err != nil && ctx.Err() == nil {
				g.log.ErrorContext(ctx, "expire approvals", "err", err)
			} else if n > 0 {
				g.log.InfoContext(ctx, "approvals expired", "count", n)
			}
		}
	}
}
