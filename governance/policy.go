package governance

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/gatewayforge/clawops"
)

// policyTool names the pseudo-tool of policy audit rows.
const policyTool = "governance.policy"

// roleTable returns the autonomy table in force. The returned map is never mutated: a
// change replaces it whole.
func (g *Gate) roleTable() RoleTable {
	g.policyMu.RLock()
	defer g.policyMu.RUnlock()
	return g.roles
}

// RoleTable returns a copy of the autonomy table in force.
func (g *Gate) RoleTable() RoleTable { return g.roleTable().Clone() }

// Approvers returns the approver set; nil means anyone whose role can approve.
func (g *Gate) Approvers() []string {
	g.policyMu.RLock()
	defer g.policyMu.RUnlock()
	return slices.Clone(g.approvers)
}

// mayChangePolicy refuses anyone but a human admin acting directly: no agent may widen its
// own (or any) autonomy, whoever it acts for.
func mayChangePolicy(actor clawops.Actor) error {
	const op = "governance.policy"
	switch {
	case actor.Identity == "" || strings.HasPrefix(actor.Identity, "agent:"):
		return clawops.E(op, clawops.KindDenied, clawops.ReasonRoleNotPermitted, "only a human admin may change policy")
	case actor.Agent != "":
		return clawops.E(op, clawops.KindDenied, clawops.ReasonRoleNotPermitted,
			fmt.Sprintf("policy changes may not come through an agent (%s)", actor.Agent))
	case actor.Role != clawops.RoleAdmin:
		return clawops.E(op, clawops.KindDenied, clawops.ReasonRoleNotPermitted,
			fmt.Sprintf("a %q may not change policy; an admin may", actor.Role))
	}
	return nil
}

// policyRefused audits a refused policy change as a violation and returns err.
func (g *Gate) policyRefused(ctx context.Context, actor clawops.Actor, what string, err error) error {
	g.appendOrLog(ctx, AuditEntry{Actor: actor.String(), Tool: policyTool, Target: what, Event: EventViolation,
		Decision: clawops.Deny, Reason: clawops.ReasonOf(err), Detail: innerMessage(err)})
	g.log.WarnContext(ctx, "policy change refused", "actor", actor.String(), "what", what, "reason", clawops.ReasonOf(err))
	return err
}

// SetRoleTable replaces the autonomy table. Only a human admin acting directly (no agent)
// may; anyone else is refused with ROLE_NOT_PERMITTED and the attempt is audited as a
// violation. The change is audited as policy.changed, listing every cell that changed.
// It holds until the gate is rebuilt; the caller persists it in configuration.
func (g *Gate) SetRoleTable(ctx context.Context, actor clawops.Actor, t RoleTable, reason string) error {
	if err := mayChangePolicy(actor); err != nil {
		return g.policyRefused(ctx, actor, "roles", err)
	}
	for agent, cells := range t {
		if !agent.Valid() {
			return clawops.E("governance.SetRoleTable", clawops.KindInvalid, clawops.ReasonBadArguments,
				fmt.Sprintf("unknown agent %q", agent))
		}
		for a, r := range cells {
			if !validAction(a) || r.Mode < Never || r.Mode > WithApproval || r.MaxTargets < 0 {
				return clawops.E("governance.SetRoleTable", clawops.KindInvalid, clawops.ReasonBadArguments,
					fmt.Sprintf("bad cell %s/%s: %+v", agent, a, r))
			}
		}
	}
	next := t.Clone()
	g.policyMu.Lock()
	diff := diffRoles(g.roles, next)
	g.roles = next
	g.policyMu.Unlock()
	detail := "no change"
	if len(diff) > 0 {
		detail = strings.Join(diff, "; ")
	}
	if reason = cleanText(reason, 512); reason != "" {
		detail += " — " + reason
	}
	_, err := g.audit.Append(ctx, AuditEntry{Actor: actor.String(), Tool: policyTool, Target: "roles",
		Event: EventPolicyChanged, Decision: clawops.Allow, Reason: ReasonPolicyChanged, Detail: detail})
	g.log.InfoContext(ctx, "role table changed", "actor", actor.String(), "cells", len(diff))
	if err != nil {
		return fmt.Errorf("set role table: audit: %w", err)
	}
	return nil
}

// diffRoles lists the cells that differ, as "agent/action: old → new".
func diffRoles(old, next RoleTable) []string {
	var out []string
	for _, agent := range clawops.AgentRoles {
		for _, a := range AllActions() {
			o, n := old.Lookup(agent, a), next.Lookup(agent, a)
			if o != n {
				out = append(out, fmt.Sprintf("%s/%s: %s → %s", agent, a, ruleString(o), ruleString(n)))
			}
		}
	}
	return out
}

func ruleString(r Rule) string {
	if r.MaxTargets > 0 {
		return fmt.Sprintf("%s (≤%d)", r.Mode, r.MaxTargets)
	}
	return r.Mode.String()
}

// SetApprovers replaces the approver set (nil: anyone whose role can approve). Admin only,
// as SetRoleTable; audited as policy.changed.
func (g *Gate) SetApprovers(ctx context.Context, actor clawops.Actor, approvers []string, reason string) error {
	if err := mayChangePolicy(actor); err != nil {
		return g.policyRefused(ctx, actor, "approvers", err)
	}
	next := cleanIdentities(approvers)
	if approvers != nil && next == nil {
		next = []string{}
	}
	g.policyMu.Lock()
	old := g.approvers
	g.approvers = next
	g.policyMu.Unlock()
	detail := fmt.Sprintf("approvers %s → %s", identitySet(old), identitySet(next))
	if reason = cleanText(reason, 512); reason != "" {
		detail += " — " + reason
	}
	if _, err := g.audit.Append(ctx, AuditEntry{Actor: actor.String(), Tool: policyTool, Target: "approvers",
		Event: EventPolicyChanged, Decision: clawops.Allow, Reason: ReasonPolicyChanged, Detail: detail}); err != nil {
		return fmt.Errorf("set approvers: audit: %w", err)
	}
	return nil
}

func identitySet(ids []string) string {
	if ids == nil {
		return "(any approver role)"
	}
	return "[" + strings.Join(ids, ", ") + "]"
}

// RecordConfigChange audits a configuration change (a reload with different values) as
// config.changed. what names the part (e.g. "channels.slack"), detail says what changed and
// must hold no secret (it is redacted all the same).
func (g *Gate) RecordConfigChange(ctx context.Context, actor clawops.Actor, what, detail string) error {
	if _, err := g.audit.Append(ctx, AuditEntry{Actor: actor.String(), Tool: "governance.config", Target: what,
		Event: EventConfigChanged, Decision: clawops.Allow, Reason: ReasonConfigChanged, Detail: detail}); err != nil {
		return fmt.Errorf("record config change: %w", err)
	}
	return nil
}

// isApprover reports whether decider may decide approvals: a role that can approve and, when
// an approver set is configured, membership in it.
func (g *Gate) isApprover(decider clawops.Actor) (bool, string) {
	if decider.Identity == "" || !decider.Role.CanApprove() {
		return false, fmt.Sprintf("role %q may not decide approvals", decider.Role)
	}
	if decider.Agent != "" {
		return false, fmt.Sprintf("an agent (%s) may not decide approvals", decider.Agent)
	}
	set := g.Approvers()
	if set != nil && !slices.Contains(set, decider.Identity) {
		return false, fmt.Sprintf("%s is not in the approver set", quoteShort(decider.Identity))
	}
	return true, ""
}
