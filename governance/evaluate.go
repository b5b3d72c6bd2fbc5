package governance

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gatewayforge/clawops"
)

// evaluation is the gate's whole verdict on one tool call, reached without writing anything:
// Invoke records and acts on it, Preflight only reports it.
type evaluation struct {
	c    *call
	tool Tool
	rule Rule
	risk *RiskAssessment

	decision clawops.Decision
	kind     clawops.Kind // of a deny
	reason   clawops.ReasonCode
	msg      string

	// needs lists every reason the call needs a human (the first is the one reported).
	needs     []clawops.ReasonCode
	why       string
	approvals int  // distinct approvers needed
	factor    bool // approving needs a second factor

	grant         *ScopedGrant  // the scoped grant that covers the call, if any
	expiredGrants []ScopedGrant // grants found past their time (Invoke marks them)
	breakGlass    *BreakGlass   // the override the call runs under, if any
	forecast      *BudgetForecast
	warnings      []string
}

func (ev *evaluation) deny(kind clawops.Kind, reason clawops.ReasonCode, msg string) *evaluation {
	ev.decision, ev.kind, ev.reason, ev.msg = clawops.Deny, kind, reason, msg
	return ev
}

// evaluate runs the decision pipeline (see Invoke) with no side effect: it reads the tool's
// view of the fleet (Plan is a dry run), grants, break-glass sessions and budgets.
func (g *Gate) evaluate(ctx context.Context, actor clawops.Actor, toolName string, args json.RawMessage) *evaluation {
	ev := &evaluation{c: &call{actor: actor, name: cleanText(toolName, 64)}}
	tool, ok := g.tool(toolName)
	if !ok {
		return ev.deny(clawops.KindNotFound, clawops.ReasonUnknownTool, fmt.Sprintf("no tool named %q", ev.c.name))
	}
	ev.tool, ev.c.spec = tool, tool.Spec()
	canon, err := CanonicalArgs(args)
	if err != nil {
		return ev.deny(clawops.KindInvalid, clawops.ReasonBadArguments, err.Error())
	}
	if ev.rule, err = g.roleTable().permit(actor, ev.c.spec.Action); err != nil {
		return ev.deny(clawops.KindOf(err), clawops.ReasonOf(err), innerMessage(err))
	}
	plan, err := tool.Plan(ctx, actor, canon)
	if err != nil {
		kind, reason := clawops.KindOf(err), clawops.ReasonOf(err)
		if reason == "" {
			kind, reason = clawops.KindOther, clawops.ReasonInternal
		}
		return ev.deny(kind, reason, "plan: "+err.Error())
	}
	if plan, err = sealPlan(plan, ev.c.spec.Name, canon); err != nil {
		return ev.deny(clawops.KindOther, clawops.ReasonInternal, err.Error())
	}
	ev.c.plan = &plan
	if msg := outOfScope(actor, ev.c.spec, plan); msg != "" {
		return ev.deny(clawops.KindDenied, clawops.ReasonOutOfScope, msg)
	}
	if v := checkInvariants(ev.c.spec, plan); v != nil {
		return ev.deny(clawops.KindDenied, v.reason, v.msg)
	}
	risk := AssessRisk(ev.c.spec, plan, actor, g.env)
	ev.risk, ev.c.risk = &risk, &risk
	if fc, err := g.forecastPlan(ctx, plan); err != nil {
		return ev.deny(clawops.KindOther, clawops.ReasonInternal, "budget forecast: "+err.Error())
	} else if fc != nil {
		ev.forecast = fc
		ev.c.plan.Forecast = fc
		if fc.Exceeded() {
			return ev.deny(clawops.KindDenied, clawops.ReasonBudgetExceeded, fc.Summary())
		}
		ev.warnings = fc.Warnings()
	}
	ev.needs, ev.why = g.approvalNeeds(ev.c, ev.rule, risk)
	if len(ev.needs) == 0 {
		ev.decision, ev.reason = clawops.Allow, clawops.ReasonRolePermits
		return ev
	}
	ev.approvals = 1
	if risk.Class == clawops.RiskCritical {
		ev.approvals = 2
	}
	ev.factor = g.factorFrom != "" && riskRank(risk.Class) >= riskRank(g.factorFrom)
	// An explicit break-glass override in ctx answers the need for approval (only that).
	if id, ok := breakGlassFromContext(ctx); ok {
		bg, err := g.activeBreakGlass(ctx, actor, id)
		if err != nil {
			return ev.deny(clawops.KindOf(err), clawops.ReasonOf(err), innerMessage(err))
		}
		ev.breakGlass = &bg
		ev.decision, ev.reason, ev.msg = clawops.Allow, ReasonBreakGlass, "break-glass "+bg.ID+": "+ev.why
		return ev
	}
	if ev.approvals == 1 && !ev.factor {
		grant, expired, err := g.findGrant(ctx, actor, plan)
		if err != nil {
			return ev.deny(clawops.KindOther, clawops.ReasonInternal, "grants: "+err.Error())
		}
		ev.expiredGrants = expired
		if grant != nil {
			ev.grant = grant
			ev.decision, ev.reason, ev.msg = clawops.Allow, ReasonGrantScope, "within grant "+grant.ID+": "+ev.why
			return ev
		}
	}
	ev.decision, ev.reason, ev.msg = clawops.NeedsApproval, ev.needs[0], ev.why
	return ev
}

// approvalNeeds returns every reason c needs a human, and words for the first; none when it
// may run alone.
func (g *Gate) approvalNeeds(c *call, rule Rule, risk RiskAssessment) ([]clawops.ReasonCode, string) {
	p := c.plan
	var needs []clawops.ReasonCode
	var whys []string
	add := func(r clawops.ReasonCode, why string) {
		if len(needs) == 0 || needs[len(needs)-1] != r {
			needs = append(needs, r)
		}
		whys = append(whys, why)
	}
	if p.UsersAffected > MaxUsersWithoutApproval {
		add(clawops.ReasonTooManyUsers, fmt.Sprintf("affects %d users (more than %d)", p.UsersAffected, MaxUsersWithoutApproval))
	}
	if rule.Mode == WithApproval {
		add(clawops.ReasonApprovalRequired, fmt.Sprintf("%s needs approval to %s", effectiveAgent(c.actor), c.spec.Action))
	}
	if rule.MaxTargets > 0 && len(p.Targets) > rule.MaxTargets {
		add(clawops.ReasonApprovalRequired, fmt.Sprintf("%s may %s at most %d instances alone; plan has %d",
			effectiveAgent(c.actor), c.spec.Action, rule.MaxTargets, len(p.Targets)))
	}
	if risk.Class == clawops.RiskHigh || risk.Class == clawops.RiskCritical {
		why := fmt.Sprintf("%s risk always needs approval", risk.Class)
		if risk.Class != risk.Floor {
			why = fmt.Sprintf("%s risk (score %d) always needs approval", risk.Class, risk.Score)
		}
		add(clawops.ReasonApprovalRequired, why)
	}
	if len(whys) == 0 {
		return nil, ""
	}
	return needs, whys[0]
}

// outOfScope returns why plan p reaches outside the actor's scope, or "" when it does not.
// A scoped actor may read freely, but a change with no instance target cannot be shown to
// stay in scope, so it is refused too.
func outOfScope(actor clawops.Actor, spec ToolSpec, p Plan) string {
	if actor.Scope == nil {
		return ""
	}
	if len(p.Targets) == 0 {
		if readOnly(spec.Action) {
			return ""
		}
		return fmt.Sprintf("%s is limited to a scope and %s names no instance in it", actor.String(), spec.Name)
	}
	var outside []string
	for _, t := range p.Targets {
		if !actor.Scope.Covers(t.Account, t.Instance) {
			outside = append(outside, string(t.Instance))
		}
	}
	if len(outside) == 0 {
		return ""
	}
	if len(outside) > 5 {
		outside = append(outside[:5], fmt.Sprintf("and %d more", len(outside)-5))
	}
	return fmt.Sprintf("%s may not act on %s (outside its scope)", actor.String(), strings.Join(outside, ", "))
}
