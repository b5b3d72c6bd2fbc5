package governance

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/gatewayforge/clawops"
)

// executeApproved re-checks an approved request against the fleet and policy of now —
// permission, scope, a fresh plan with the same hash, invariants, the hard budget — and
// applies the approved plan under grant. The approval ends executed or failed.
func (g *Gate) executeApproved(ctx context.Context, a Approval, grant Grant) (Outcome, error) {
	start := g.clock.Now()
	tool, ok := g.tool(a.Tool)
	if !ok {
		return g.finishFailed(ctx, a, clawops.KindNotFound, clawops.ReasonUnknownTool, "tool "+quoteShort(a.Tool)+" is no longer registered")
	}
	spec := tool.Spec()
	// The role table may have changed (a restart with new config) since the request.
	if _, err := g.roleTable().permit(a.Requester, spec.Action); err != nil {
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
	if msg := outOfScope(a.Requester, spec, a.Plan); msg != "" {
		return g.finishFailed(ctx, a, clawops.KindDenied, clawops.ReasonOutOfScope, msg)
	}
	if v := checkInvariants(spec, a.Plan); v != nil {
		return g.finishFailed(ctx, a, clawops.KindDenied, v.reason, v.msg)
	}
	if fc, err := g.forecastPlan(ctx, a.Plan); err != nil {
		return g.finishFailed(ctx, a, clawops.KindOther, clawops.ReasonInternal, "budget forecast: "+err.Error())
	} else if fc != nil && fc.Exceeded() {
		return g.finishFailed(ctx, a, clawops.KindDenied, clawops.ReasonBudgetExceeded, fc.Summary())
	}
	risk := RiskAssessment{Score: a.RiskScore, Class: a.Risk, Factors: a.RiskFactors}
	c := &call{actor: a.Requester, name: a.Tool, spec: spec, plan: &a.Plan, risk: &risk}
	rq, err := g.audit.Append(ctx, c.entry(EventRequested, "", "", approvalDetail(a.ID, "approved by "+a.DecidedBy)))
	if err != nil {
		return g.finishFailed(ctx, a, clawops.KindOther, clawops.ReasonInternal, "audit: "+err.Error())
	}
	out := decidedOutcome(a, clawops.Allow, clawops.ReasonApproved, "")
	out, runErr := g.execute(ctx, c, tool, rq, out, grant)
	to, set := ApprovalExecuted, map[string]any{}
	if runErr != nil {
		to, set["error"] = ApprovalFailed, cleanText(runErr.Error(), maxAuditLong)
	}
	if out.Result != nil {
		if b, err := json.Marshal(out.Result); err == nil {
			set["result"] = string(b)
		}
	}
	if a.GrantID != "" {
		set["grant_id"] = a.GrantID
	}
	if _, err := g.transition(ctx, a.ID, ApprovalApproved, to, set, nil); err != nil {
		g.log.ErrorContext(ctx, "record approval outcome", "approval", a.ID, "err", err)
	}
	if fresh, err := g.loadApproval(ctx, a.ID); err == nil {
		g.notify(ctx, fresh)
	}
	if a.TraceID != "" {
		g.traceCall(WithTrace(ctx, a.TraceID), a.Requester, a.Tool, a.Plan.Args, out, runErr, start)
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
