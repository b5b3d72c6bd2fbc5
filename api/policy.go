package api

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

// Mode names of the role table on the wire.
const (
	ModeNever         = "never"
	ModeAlone         = "alone"
	ModeNeedsApproval = "needs_approval"
)

var modeNames = map[governance.Mode]string{
	governance.Never: ModeNever, governance.Alone: ModeAlone, governance.WithApproval: ModeNeedsApproval,
}

// RuleView is one cell of the role table on the wire.
type RuleView struct {
	Mode       string `json:"mode"`
	MaxTargets int    `json:"max_targets,omitempty"`
}

// RolesView is the answer of GET /v1/policy/roles: the autonomy table in force (every agent
// and action, "never" included), and the approver set (null: anyone whose role may approve).
type RolesView struct {
	Roles     map[clawops.AgentRole]map[governance.Action]RuleView `json:"roles"`
	Approvers []string                                             `json:"approvers"`
}

func rolesView(pk PolicyKeeper) RolesView {
	t := pk.RoleTable()
	v := RolesView{Roles: map[clawops.AgentRole]map[governance.Action]RuleView{}, Approvers: pk.Approvers()}
	for _, agent := range clawops.AgentRoles {
		cells := map[governance.Action]RuleView{}
		for _, a := range governance.AllActions() {
			r := t.Lookup(agent, a)
			cells[a] = RuleView{Mode: modeNames[r.Mode], MaxTargets: r.MaxTargets}
		}
		v.Roles[agent] = cells
	}
	return v
}

func (s *server) getRoles(w http.ResponseWriter, r *http.Request) {
	pk, ok := ability[PolicyKeeper](w, s.opts.Gate, "policy")
	if !ok {
		return
	}
	writeData(w, http.StatusOK, rolesView(pk))
}

type rolesRequest struct {
	Roles  map[clawops.AgentRole]map[governance.Action]RuleView `json:"roles"`
	Reason string                                               `json:"reason"`
}

// MaxRuleTargets bounds a cell's max_targets.
const MaxRuleTargets = 100000

// table turns the request into a role table. It replaces the table in force whole: an agent
// or action left out is "never".
func (req rolesRequest) table() (governance.RoleTable, error) {
	if req.Roles == nil {
		return nil, badRequest(`"roles" is required: the whole table, agent → action → {"mode","max_targets"}`)
	}
	t := governance.RoleTable{}
	for agent, cells := range req.Roles {
		if !agent.Valid() {
			return nil, badRequest(fmt.Sprintf("unknown agent %q; agents are %v", agent, clawops.AgentRoles))
		}
		t[agent] = map[governance.Action]governance.Rule{}
		for action, rv := range cells {
			if !slices.Contains(governance.AllActions(), action) {
				return nil, badRequest(fmt.Sprintf("unknown action %q for %s; actions are %v", action, agent, governance.AllActions()))
			}
			mode := governance.Mode(-1)
			for m, name := range modeNames {
				if name == rv.Mode {
					mode = m
				}
			}
			if mode < 0 {
				return nil, badRequest(fmt.Sprintf("%s/%s: mode %q must be never, alone or needs_approval", agent, action, rv.Mode))
			}
			if rv.MaxTargets < 0 || rv.MaxTargets > MaxRuleTargets {
				return nil, badRequest(fmt.Sprintf("%s/%s: max_targets must be 0 (no bound) to %d", agent, action, MaxRuleTargets))
			}
			t[agent][action] = governance.Rule{Mode: mode, MaxTargets: rv.MaxTargets}
		}
	}
	if len(req.Reason) > MaxReasonLength {
		return nil, badRequest("reason is longer than " + strconv.Itoa(MaxReasonLength) + " bytes")
	}
	return t, nil
}

// putRoles answers PUT /v1/policy/roles: replace the autonomy table. Only an admin acting
// directly may; the gate refuses anyone else (ROLE_NOT_PERMITTED) and audits both the
// refusal and the change (policy.changed, cell by cell). The answer is the new table.
func (s *server) putRoles(w http.ResponseWriter, r *http.Request) {
	pk, ok := ability[PolicyKeeper](w, s.opts.Gate, "policy")
	if !ok {
		return
	}
	var req rolesRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.fail(w, r, err, "")
		return
	}
	t, err := req.table()
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	actor := actorFrom(r.Context())
	actor.Channel = "api"
	if err := pk.SetRoleTable(r.Context(), actor, t, req.Reason); err != nil {
		s.fail(w, r, err, "")
		return
	}
	writeData(w, http.StatusOK, rolesView(pk))
}
