package api

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

// fakeGov is the state behind the fake gate's governance abilities.
type fakeGov struct {
	preflights  []invokeCall
	grants      []governance.ScopedGrant
	revoked     []string
	breakGlass  map[string]governance.BreakGlass
	bgRequests  []governance.BreakGlassRequest
	budgets     []governance.Budget
	roles       governance.RoleTable
	roleReasons []string
	traceCalls  []string
}

// Every ability the API looks for, on the fake gate too.
var (
	_ Preflighter      = (*fakeGate)(nil)
	_ TraceReader      = (*fakeGate)(nil)
	_ FactorDecider    = (*fakeGate)(nil)
	_ GrantKeeper      = (*fakeGate)(nil)
	_ BreakGlasser     = (*fakeGate)(nil)
	_ BudgetKeeper     = (*fakeGate)(nil)
	_ PolicyKeeper     = (*fakeGate)(nil)
	_ CheckpointLister = (*fakeAudit)(nil)
)

// addGovApprovals adds the approvals the governance tests decide: a critical four-eyes
// approval that needs a second factor and already has one approval (ap-crit), and a high
// one on inst-7 of account acme that may be approved for a scope (ap-scope).
func (g *fakeGate) addGovApprovals() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.add(governance.Approval{ID: "ap-crit", Tool: "gf_teardown", Requester: clawops.Actor{Identity: "olga", Role: clawops.RoleOperator, Agent: clawops.Commander},
		Plan: governance.Plan{Tool: "gf_teardown", Summary: "Tear down 20 servers", UsersAffected: 20, ProviderDelete: true,
			Targets: []governance.Target{{Instance: "inst-20", Account: "acme", Users: 20}}},
		Risk: clawops.RiskCritical, RiskScore: 100, ApprovalsRequired: 2, SecondFactor: true,
		Decisions: []governance.ApprovalDecision{{By: "ada", Role: clawops.RoleAdmin, Channel: "slack", Approve: true, At: t0, SecondFactor: true}},
		State:     governance.ApprovalPending, CreatedAt: t0, ExpiresAt: t0.Add(30 * time.Minute)})
	g.add(governance.Approval{ID: "ap-scope", Tool: "gf_teardown", Requester: clawops.Actor{Identity: "olga", Role: clawops.RoleOperator, Agent: clawops.Commander},
		Plan: governance.Plan{Tool: "gf_teardown", Summary: "Tear down inst-7", UsersAffected: 3,
			Targets: []governance.Target{{Instance: "inst-7", Account: "acme", Users: 3}}},
		Risk: clawops.RiskHigh, RiskScore: 60, ApprovalsRequired: 1,
		State: governance.ApprovalPending, CreatedAt: t0, ExpiresAt: t0.Add(30 * time.Minute)})
}

func (g *fakeGate) Preflight(_ context.Context, actor clawops.Actor, tool string, args json.RawMessage) (governance.PreflightResult, error) {
	g.mu.Lock()
	g.gov.preflights = append(g.gov.preflights, invokeCall{actor, tool, string(args)})
	g.mu.Unlock()
	switch tool {
	case "gf_fleet_status":
		return governance.PreflightResult{Decision: clawops.Allow, Reason: clawops.ReasonRolePermits,
			Reasons: []clawops.ReasonCode{clawops.ReasonRolePermits}, Tool: tool}, nil
	case "gf_teardown":
		return governance.PreflightResult{Decision: clawops.NeedsApproval, Reason: clawops.ReasonApprovalRequired,
			Reasons: []clawops.ReasonCode{clawops.ReasonApprovalRequired}, Tool: tool, ApprovalsRequired: 1,
			Risk: &governance.RiskAssessment{Score: 60, Class: clawops.RiskHigh}}, nil
	case "gf_boom":
		return governance.PreflightResult{Decision: clawops.Deny, Reason: clawops.ReasonInternal, Tool: tool},
			clawops.E("governance.Preflight", clawops.ReasonInternal, errors.New("database /var/lib/clawops.db is locked"))
	}
	return governance.PreflightResult{Decision: clawops.Deny, Reason: clawops.ReasonUnknownTool,
		Reasons: []clawops.ReasonCode{clawops.ReasonUnknownTool}, Message: "no tool named " + tool, Tool: tool}, nil
}

func fakeTrace() governance.Trace {
	ended := t0.Add(2 * time.Second)
	return governance.Trace{ID: "trc_" + strings.Repeat("a", 32), Actor: clawops.Actor{Identity: "olga", Role: clawops.RoleOperator, Agent: clawops.Commander},
		Intent: "tear down inst-2", Status: governance.TraceOK, StartedAt: t0, EndedAt: &ended,
		Spans: []governance.ToolCallSpan{{Seq: 1, At: t0, Tool: "gf_teardown", Args: json.RawMessage(`{"instance":"inst-2"}`),
			Decision: clawops.NeedsApproval, Reason: clawops.ReasonApprovalRequired, Risk: clawops.RiskHigh, RiskScore: 60}}}
}

func (g *fakeGate) ListTraces(_ context.Context, f governance.TraceFilter) ([]governance.Trace, error) {
	g.mu.Lock()
	g.gov.traceCalls = append(g.gov.traceCalls, fmt.Sprintf("list limit=%d since=%s identity=%s", f.Limit, f.Since.Format(time.RFC3339), f.Identity))
	g.mu.Unlock()
	t := fakeTrace()
	t.Spans = nil
	if f.Identity != "" && f.Identity != t.Actor.Identity {
		return nil, nil
	}
	return []governance.Trace{t}, nil
}

func (g *fakeGate) Trace(_ context.Context, id string) (governance.Trace, error) {
	if t := fakeTrace(); id == t.ID {
		return t, nil
	}
	return governance.Trace{}, clawops.E("governance.Trace", clawops.KindNotFound, clawops.ReasonBadArguments, "no trace "+id)
}

func (g *fakeGate) Replay(ctx context.Context, id string) (governance.ReplayReport, error) {
	t, err := g.Trace(ctx, id)
	if err != nil {
		return governance.ReplayReport{}, err
	}
	now := governance.PreflightResult{Decision: clawops.Deny, Reason: clawops.ReasonRoleNotPermitted, Tool: "gf_teardown"}
	return governance.ReplayReport{TraceID: t.ID, Changed: 1, Steps: []governance.ReplayStep{{Span: t.Spans[0], Now: &now, Changed: true,
		Note: "then needs_approval/APPROVAL_REQUIRED, now deny/ROLE_NOT_PERMITTED"}}}, nil
}

func (g *fakeGate) DecideWithFactor(_ context.Context, decider clawops.Actor, id string, approve bool, reason, code string) (governance.Outcome, error) {
	return g.decide(decideCall{decider: decider, id: id, approve: approve, reason: reason, factor: &code})
}

func (g *fakeGate) ApproveForScope(_ context.Context, decider clawops.Actor, id string, scope governance.GrantScope, reason string) (governance.Outcome, error) {
	return g.decide(decideCall{decider: decider, id: id, approve: true, reason: reason, scope: &scope})
}

// addGrantLocked stores the grant an approval for scope creates; g.mu is held.
func (g *fakeGate) addGrantLocked(a governance.Approval, by clawops.Actor, s governance.GrantScope) string {
	id := fmt.Sprintf("grt-%d", len(g.gov.grants)+1)
	g.gov.grants = append(g.gov.grants, governance.ScopedGrant{ID: id, Tool: a.Tool, Grantee: a.Requester.Identity, Agent: a.Requester.Agent,
		Accounts: s.Accounts, Instances: s.Instances, MaxUsers: s.MaxUsers, CreatedBy: by.Identity, ApprovalID: a.ID,
		CreatedAt: t0, ExpiresAt: t0.Add(s.TTL), State: governance.GrantActive})
	return id
}

func (g *fakeGate) ListGrants(_ context.Context, activeOnly bool) ([]governance.ScopedGrant, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []governance.ScopedGrant
	for i := len(g.gov.grants) - 1; i >= 0; i-- {
		if gr := g.gov.grants[i]; !activeOnly || gr.State == governance.GrantActive {
			out = append(out, gr)
		}
	}
	return out, nil
}

func (g *fakeGate) RevokeGrant(_ context.Context, actor clawops.Actor, id, reason string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !actor.Role.CanApprove() {
		return clawops.E("governance.RevokeGrant", clawops.KindDenied, clawops.ReasonNotApprover, "not an approver")
	}
	for i, gr := range g.gov.grants {
		if gr.ID == id && gr.State == governance.GrantActive {
			g.gov.grants[i].State = governance.GrantRevoked
			g.gov.revoked = append(g.gov.revoked, id+":"+reason)
			return nil
		}
	}
	return clawops.E("governance.RevokeGrant", clawops.KindNotFound, governance.ReasonGrantInvalid, "no active grant "+id)
}

func (g *fakeGate) BreakGlass(_ context.Context, admin clawops.Actor, req governance.BreakGlassRequest) (governance.BreakGlass, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gov.bgRequests = append(g.gov.bgRequests, req)
	refuse := func(msg string) (governance.BreakGlass, error) {
		return governance.BreakGlass{}, clawops.E("governance.BreakGlass", clawops.KindDenied, governance.ReasonBreakGlassInvalid, msg)
	}
	switch {
	case admin.Role != clawops.RoleAdmin || admin.Agent != "":
		return refuse("only a human admin, acting directly, may break the glass")
	case !slices.Contains(governance.BreakGlassReasons(), req.Reason):
		return refuse("reason is not on the list")
	case len(strings.TrimSpace(req.Justification)) < governance.MinBreakGlassJustifying:
		return refuse("the justification is too short")
	case req.Duration < 0 || req.Duration > governance.MaxBreakGlass:
		return refuse("duration is outside (0, 1h]")
	}
	if req.Duration == 0 {
		req.Duration = governance.MaxBreakGlass
	}
	if g.gov.breakGlass == nil {
		g.gov.breakGlass = map[string]governance.BreakGlass{}
	}
	id := "bg_" + hex.EncodeToString([]byte(fmt.Sprintf("%016d", len(g.gov.breakGlass)+1)))
	bg := governance.BreakGlass{ID: id, Admin: admin.Identity, Reason: req.Reason, Justification: req.Justification,
		CreatedAt: t0, ExpiresAt: t0.Add(req.Duration)}
	g.gov.breakGlass[id] = bg
	return bg, nil
}

func (g *fakeGate) EndBreakGlass(_ context.Context, admin clawops.Actor, id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if admin.Role != clawops.RoleAdmin {
		return clawops.E("governance.EndBreakGlass", clawops.KindDenied, governance.ReasonBreakGlassInvalid, "only an admin may end a break-glass")
	}
	bg, ok := g.gov.breakGlass[id]
	if !ok || bg.EndedAt != nil {
		return clawops.E("governance.EndBreakGlass", clawops.KindNotFound, governance.ReasonBreakGlassInvalid, "no open break-glass "+id)
	}
	now := t0
	bg.EndedAt = &now
	g.gov.breakGlass[id] = bg
	return nil
}

func (g *fakeGate) Budgets(context.Context) ([]governance.Budget, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.gov.budgets), nil
}

func (g *fakeGate) SetBudget(_ context.Context, actor clawops.Actor, b governance.Budget) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case actor.Role != clawops.RoleAdmin || actor.Agent != "":
		return clawops.E("governance.policy", clawops.KindDenied, clawops.ReasonRoleNotPermitted, "only a human admin may change policy")
	case b.Kind != governance.BudgetInfra && b.Kind != governance.BudgetLLM:
		return clawops.E("governance.SetBudget", clawops.KindInvalid, clawops.ReasonBadArguments, "use infra or llm")
	case b.Scope != governance.GlobalScope && !strings.HasPrefix(b.Scope, "account:"):
		return clawops.E("governance.SetBudget", clawops.KindInvalid, clawops.ReasonBadArguments, "use global or account:<id>")
	case b.SoftUSD < 0 || b.HardUSD < 0 || (b.HardUSD > 0 && b.SoftUSD > b.HardUSD):
		return clawops.E("governance.SetBudget", clawops.KindInvalid, clawops.ReasonBadArguments, "bad limits")
	}
	g.gov.budgets = slices.DeleteFunc(g.gov.budgets, func(x governance.Budget) bool { return x.Scope == b.Scope && x.Kind == b.Kind })
	if b.SoftUSD != 0 || b.HardUSD != 0 {
		g.gov.budgets = append(g.gov.budgets, b)
	}
	return nil
}

// MonthToDate: the fleet spent $12.50 on infrastructure ($3 of it for acme) and $0.75 on
// LLMs this month.
func (g *fakeGate) MonthToDate(_ context.Context, kind governance.BudgetKind, account string) (float64, error) {
	switch {
	case kind == governance.BudgetInfra && account == "":
		return 12.5, nil
	case kind == governance.BudgetInfra && account == "acme":
		return 3, nil
	case kind == governance.BudgetLLM && account == "":
		return 0.75, nil
	}
	return 0, nil
}

func (g *fakeGate) RoleTable() governance.RoleTable {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gov.roles == nil {
		return governance.DefaultRoles()
	}
	return g.gov.roles.Clone()
}

func (g *fakeGate) SetRoleTable(_ context.Context, actor clawops.Actor, t governance.RoleTable, reason string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if actor.Role != clawops.RoleAdmin || actor.Agent != "" {
		return clawops.E("governance.policy", clawops.KindDenied, clawops.ReasonRoleNotPermitted, "only a human admin may change policy")
	}
	g.gov.roles, g.gov.roleReasons = t.Clone(), append(g.gov.roleReasons, reason)
	return nil
}

func (g *fakeGate) Approvers() []string { return nil }

func (f *fakeAudit) Checkpoints(context.Context) ([]governance.Checkpoint, error) {
	return []governance.Checkpoint{{Seq: f.n, HeadHash: strings.Repeat("b", 64), Time: t0, PublicKey: strings.Repeat("c", 64),
		Signature: strings.Repeat("d", 128)}}, nil
}
