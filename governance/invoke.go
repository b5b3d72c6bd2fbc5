package governance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gatewayforge/clawops"
)

// Invoke runs one tool call through the gate:
//
//  1. the tool must exist (UNKNOWN_TOOL) and the arguments be one JSON object (BAD_ARGUMENTS);
//  2. the actor's roles must permit the action at all (ROLE_NOT_PERMITTED): the autonomy
//     table for the actor's agent, a human with no agent counting as the Commander, and the
//     human's own role (viewers and approvers only read);
//  3. the tool plans the call (a dry run); the plan is sealed with its hash;
//  4. a scoped actor may only touch instances in its scope (OUT_OF_SCOPE);
//  5. invariants may deny it outright (STANDBY_NOT_ACTIVE, ROLLING_REQUIRED);
//  6. the risk rubric scores it (AssessRisk; the tool's class is a floor);
//  7. the budget forecast may deny it (BUDGET_EXCEEDED) or warn (soft limit);
//  8. it needs approval when the role table says so, when it affects more than
//     MaxUsersWithoutApproval users (TOO_MANY_USERS), when Forge's provisioning exceeds its
//     limit, or when its risk class is high or critical, whatever the role; critical needs
//     two distinct approvers. An active break-glass override in ctx (WithBreakGlass) or a
//     scoped grant that covers the call answers that need instead;
//  9. otherwise it is allowed and applied, with the Grant that allowed it.
//
// The audit log gets "requested" before anything else happens, then the decision, then
// "completed" or "failed". If the audit log cannot be written, nothing runs. When ctx
// carries a trace (WithTrace), the call is recorded as a span of it.
func (g *Gate) Invoke(ctx context.Context, actor clawops.Actor, toolName string, args json.RawMessage) (Outcome, error) {
	start := g.clock.Now()
	ev := g.evaluate(ctx, actor, toolName, args)
	out, err := g.act(ctx, ev)
	g.traceCall(ctx, actor, ev.c.name, args, out, err, start)
	return out, err
}

// act records an evaluation in the audit log and carries it out.
func (g *Gate) act(ctx context.Context, ev *evaluation) (Outcome, error) {
	for _, gr := range ev.expiredGrants {
		g.expireGrant(ctx, gr)
	}
	switch ev.decision {
	case clawops.Deny:
		return g.refuse(ctx, ev.c, ev.kind, ev.reason, ev.msg)
	case clawops.NeedsApproval:
		return g.requestApproval(ctx, ev)
	}
	c := ev.c
	now := g.clock.Now().UTC()
	grant := Grant{Kind: GrantPolicy, At: now}
	decided := c.entry(EventAllowed, clawops.Allow, clawops.ReasonRolePermits, "")
	switch {
	case ev.breakGlass != nil:
		bg := ev.breakGlass
		grant = Grant{Kind: GrantBreakGlass, ID: bg.ID, By: []string{bg.Admin}, At: now}
		decided = c.entry(EventOverride, clawops.Allow, ReasonBreakGlass,
			fmt.Sprintf("break-glass %s (%s) by %s bypasses approval: %s", bg.ID, bg.Reason, bg.Admin, ev.why))
	case ev.grant != nil:
		gr := ev.grant
		won, err := g.useGrant(ctx, *gr, c.plan.UsersAffected)
		if err != nil {
			return g.refuse(ctx, c, clawops.KindOther, clawops.ReasonInternal, "use grant: "+err.Error())
		}
		if !won {
			// Used up or expired since we looked: fall back to asking a human.
			ev.decision, ev.reason, ev.msg, ev.grant = clawops.NeedsApproval, ev.needs[0], ev.why, nil
			return g.requestApproval(ctx, ev)
		}
		grant = Grant{Kind: GrantScoped, ID: gr.ID, By: []string{gr.CreatedBy}, At: now}
		decided = c.entry(EventGrantUsed, clawops.Allow, ReasonGrantScope,
			fmt.Sprintf("grant %s (by %s, %d/%d users used): %s", gr.ID, gr.CreatedBy,
				gr.UsersUsed+c.plan.UsersAffected, gr.MaxUsers, ev.why))
	}
	entries := []AuditEntry{c.entry(EventRequested, "", "", c.plan.Summary), decided}
	for _, w := range ev.warnings {
		entries = append(entries, c.entry(EventBudgetWarning, clawops.Allow, ReasonBudgetSoftLimit, w))
	}
	stored, err := g.audit.AppendBatch(ctx, entries...)
	if err != nil {
		return g.auditFailed(c, err)
	}
	out := c.outcome(clawops.Allow, ev.reason, ev.msg)
	out.Warnings, out.ApprovalsRequired = ev.warnings, 0
	if ev.breakGlass != nil {
		g.log.WarnContext(ctx, "break-glass override used", "break_glass", ev.breakGlass.ID,
			"actor", c.actor.String(), "tool", c.name)
	}
	return g.execute(ctx, c, ev.tool, stored[0], out, grant)
}

// refuse audits a denied call ("requested", then "denied") and returns the deny outcome.
func (g *Gate) refuse(ctx context.Context, c *call, kind clawops.Kind, reason clawops.ReasonCode, msg string) (Outcome, error) {
	out := c.outcome(clawops.Deny, reason, msg)
	g.log.InfoContext(ctx, "tool call denied", "actor", c.actor.String(), "tool", c.name, "reason", reason)
	summary := ""
	if c.plan != nil {
		summary = c.plan.Summary
	}
	if _, err := g.audit.AppendBatch(ctx, c.entry(EventRequested, "", "", summary),
		c.entry(EventDenied, clawops.Deny, reason, msg)); err != nil {
		g.log.ErrorContext(ctx, "audit denied call", "tool", c.name, "err", err)
	}
	return out, clawops.E("governance.Invoke "+c.name, kind, reason, msg)
}

// auditFailed is the answer when the audit log cannot be written: nothing runs.
func (g *Gate) auditFailed(c *call, err error) (Outcome, error) {
	g.log.Error("audit log unavailable; refusing tool call", "tool", c.name, "err", err)
	out := c.outcome(clawops.Deny, clawops.ReasonInternal, "audit log unavailable")
	return out, clawops.E("governance.Invoke "+c.name, clawops.KindOther, clawops.ReasonInternal,
		fmt.Errorf("%w: %w", errAuditUnavailable, err))
}

// execute applies c.plan under grant. rq must be the "requested" entry already in the
// audit log for this very plan: this is the only place a tool's Apply is called, so no side
// effect (a provider delete above all) can happen before its audit entry exists.
func (g *Gate) execute(ctx context.Context, c *call, tool Tool, rq AuditEntry, out Outcome, grant Grant) (Outcome, error) {
	if rq.Seq < 1 || rq.Event != EventRequested || rq.PlanHash == "" || rq.PlanHash != c.plan.Hash {
		return g.auditFailed(c, errors.New("no requested entry for this plan"))
	}
	grant.PlanHash = c.plan.Hash
	out.Grant = &grant
	res, err := applyWithGrant(ctx, tool, *c.plan, grant)
	if err != nil {
		kind, reason := clawops.KindOf(err), clawops.ReasonOf(err)
		if reason == "" {
			reason = clawops.ReasonExecutionFailed
		}
		out.Reason, out.Message = reason, err.Error()
		if _, aerr := g.audit.Append(ctx, c.entry(EventFailed, out.Decision, reason, err.Error())); aerr != nil {
			g.log.ErrorContext(ctx, "audit failed call", "tool", c.name, "err", aerr)
		}
		g.log.WarnContext(ctx, "tool call failed", "actor", c.actor.String(), "tool", c.name, "reason", reason, "err", err)
		return out, clawops.E("governance.apply "+c.name, kind, reason, err)
	}
	out.Result = &res
	if _, aerr := g.audit.Append(ctx, c.entry(EventCompleted, out.Decision, clawops.ReasonOK, res.Summary)); aerr != nil {
		// The side effect happened; say so to the caller, but the log gap must be seen.
		g.log.ErrorContext(ctx, "audit completed call", "tool", c.name, "seq_requested", rq.Seq, "err", aerr)
	}
	g.log.InfoContext(ctx, "tool call completed", "actor", c.actor.String(), "tool", c.name, "plan", c.plan.Hash,
		"grant", grant.Kind)
	return out, nil
}

// innerMessage returns the words of a *clawops.Error without its op and reason prefix.
func innerMessage(err error) string {
	var ce *clawops.Error
	if errors.As(err, &ce) && ce.Err != nil {
		return ce.Err.Error()
	}
	return err.Error()
}

// now returns the gate's time, UTC, at the precision stored in the database.
func (g *Gate) now() time.Time { return g.clock.Now().UTC().Truncate(time.Microsecond) }
