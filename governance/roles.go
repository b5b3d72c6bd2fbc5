package governance

import (
	"fmt"
	"strings"

	"github.com/gatewayforge/clawops"
)

// Mode is how much autonomy an agent has for one action.
type Mode int

// Autonomy modes. The zero value is Never, so a cell nobody wrote denies.
const (
	Never        Mode = iota // the agent may not do this at all
	Alone                    // the agent may do this without a human
	WithApproval             // the agent may ask; a human approver must say yes
)

// String names the mode as the autonomy table does.
func (m Mode) String() string {
	switch m {
	case Alone:
		return "alone"
	case WithApproval:
		return "needs approval"
	}
	return "never"
}

// Rule is one cell of the autonomy table.
type Rule struct {
	Mode Mode
	// MaxTargets bounds an Alone rule: a plan with more targets than this needs approval
	// instead. Zero means no bound. (Forge provisions up to five instances alone.)
	MaxTargets int
}

// RoleTable is the autonomy table: for each agent role and action, what the agent may do.
// A missing agent or action is Never (deny by default).
type RoleTable map[clawops.AgentRole]map[Action]Rule

// ForgeProvisionLimit is how many instances (plan targets) Forge may provision in one plan
// without approval.
const ForgeProvisionLimit = 5

// DefaultRoles returns the autonomy table of DESIGN.md as a fresh value the caller may change.
//
// The design table leaves some cells open; they are decided here, always toward less
// autonomy:
//   - Commander: failover, config push and provision need approval (a human asked for them
//     through the Commander, but they change many things at once).
//   - Guardian: its "needs approval" column is empty, so everything not listed as alone
//     (recommend, upgrade, config push, send message, and the listed never cells) is never.
//   - Ledger, Triage, Forge, Briefer: every cell not named alone or needs approval is never.
//     In particular only the Commander upgrades and pushes config, and only the Commander
//     and the Briefer send messages.
//   - Halt (pause or abort a rolling push), an action the design table does not name:
//     the Commander and the Guardian alone, because stopping a change must never wait for
//     a second person; resuming one is a config push again.
func DefaultRoles() RoleTable {
	alone := Rule{Mode: Alone}
	ask := Rule{Mode: WithApproval}
	return RoleTable{
		clawops.Commander: {
			ActionRead: alone, ActionRecommend: alone, ActionHeal: alone, ActionRestart: alone,
			ActionUpgrade: alone, ActionSendMessage: alone, ActionHalt: alone,
			ActionTierChange: ask, ActionTeardown: ask, ActionConfigPush: ask,
			ActionProvision: ask, ActionFailover: ask,
		},
		clawops.Guardian: {
			ActionRead: alone, ActionHeal: alone, ActionRestart: alone, ActionFailover: alone,
			ActionHalt: alone,
		},
		clawops.Ledger: {
			ActionRead: alone, ActionRecommend: alone,
			ActionTierChange: ask,
		},
		clawops.Triage: {
			ActionRead: alone,
		},
		clawops.Forge: {
			ActionRead:       alone,
			ActionProvision:  {Mode: Alone, MaxTargets: ForgeProvisionLimit},
			ActionTeardown:   ask,
			ActionTierChange: ask,
		},
		clawops.Briefer: {
			ActionRead: alone, ActionSendMessage: alone,
		},
	}
}

// Lookup returns the rule for agent and action; a missing cell is Never.
func (t RoleTable) Lookup(agent clawops.AgentRole, action Action) Rule {
	return t[agent][action]
}

// Clone returns a deep copy of t, so a gate is not affected by later changes to the table
// it was built with.
func (t RoleTable) Clone() RoleTable {
	out := make(RoleTable, len(t))
	for agent, cells := range t {
		c := make(map[Action]Rule, len(cells))
		for a, r := range cells {
			c[a] = r
		}
		out[agent] = c
	}
	return out
}

// humanMayRequest reports whether a human with role r may have an agent do action.
// Viewers and approvers only read: an approver decides on approvals but does not start
// changes (so nobody approves a change they asked for through a second identity of the
// same role). Operators and admins may request anything their agent may.
func humanMayRequest(r clawops.HumanRole, action Action) bool {
	switch r {
	case clawops.RoleAdmin, clawops.RoleOperator:
		return true
	case clawops.RoleViewer, clawops.RoleApprover:
		return action == ActionRead
	}
	return false
}

// effectiveAgent returns the agent whose autonomy applies to actor. A human with no agent
// (a slash command in the console, a direct API call) is treated as the Commander acting
// for that human: the Commander is the agent every operator message goes to first.
func effectiveAgent(actor clawops.Actor) clawops.AgentRole {
	if actor.Agent == "" {
		return clawops.Commander
	}
	return actor.Agent
}

// permit decides, before any planning, whether actor may ask for action at all, and returns
// the rule that applies. A refusal is a *clawops.Error with reason ROLE_NOT_PERMITTED (or
// UNAUTHENTICATED for an actor that names nobody).
func (t RoleTable) permit(actor clawops.Actor, action Action) (Rule, error) {
	const op = "governance.permit"
	if actor.Identity == "" && actor.Agent == "" {
		return Rule{}, clawops.E(op, clawops.KindUnauthorized, clawops.ReasonUnauthenticated,
			"actor has neither an identity nor an agent")
	}
	if actor.Agent != "" && !actor.Agent.Valid() {
		return Rule{}, clawops.E(op, clawops.KindDenied, clawops.ReasonRoleNotPermitted,
			fmt.Sprintf("unknown agent %q", actor.Agent))
	}
	if actor.Role == "" {
		// An autonomous agent run (schedule, event). A human identity without a role is a
		// wiring mistake; fail closed rather than give it the agent's full autonomy.
		if actor.Agent == "" || (actor.Identity != "" && !strings.HasPrefix(actor.Identity, "agent:")) {
			return Rule{}, clawops.E(op, clawops.KindDenied, clawops.ReasonRoleNotPermitted,
				fmt.Sprintf("identity %q has no human role", actor.Identity))
		}
	} else if !actor.Role.Valid() {
		return Rule{}, clawops.E(op, clawops.KindDenied, clawops.ReasonRoleNotPermitted,
			fmt.Sprintf("unknown human role %q", actor.Role))
	} else if !humanMayRequest(actor.Role, action) {
		return Rule{}, clawops.E(op, clawops.KindDenied, clawops.ReasonRoleNotPermitted,
			fmt.Sprintf("a %s may not request %s", actor.Role, action))
	}
	agent := effectiveAgent(actor)
	rule := t.Lookup(agent, action)
	if rule.Mode == Never {
		return Rule{}, clawops.E(op, clawops.KindDenied, clawops.ReasonRoleNotPermitted,
			fmt.Sprintf("%s may never %s", agent, action))
	}
	return rule, nil
}

// AllActions returns every action of the autonomy table in a stable order.
func AllActions() []Action {
	return []Action{
		ActionRead, ActionRecommend, ActionRestart, ActionHeal, ActionUpgrade, ActionFailover,
		ActionProvision, ActionTeardown, ActionTierChange, ActionConfigPush, ActionSendMessage, ActionHalt,
	}
}

func validAction(a Action) bool {
	for _, x := range AllActions() {
		if a == x {
			return true
		}
	}
	return false
}
