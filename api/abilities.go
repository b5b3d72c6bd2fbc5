package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

// The governance routes need more of the gate than Gate says. Each ability is a small
// interface of its own, found on Options.Gate with a type assertion (as http.Flusher is on a
// ResponseWriter): *governance.Gate has them all, so main needs no extra wiring. A gate
// without one answers its routes with 501 NOT_IMPLEMENTED and does nothing.

// Preflighter answers "what would the gate decide?" without side effects.
type Preflighter interface {
	Preflight(ctx context.Context, actor clawops.Actor, tool string, args json.RawMessage) (governance.PreflightResult, error)
}

// TraceReader reads recorded agent runs and replays them against today's policy.
type TraceReader interface {
	ListTraces(ctx context.Context, f governance.TraceFilter) ([]governance.Trace, error)
	Trace(ctx context.Context, id string) (governance.Trace, error)
	Replay(ctx context.Context, id string) (governance.ReplayReport, error)
}

// FactorDecider decides approvals with a second factor, or approves them for a scope.
type FactorDecider interface {
	DecideWithFactor(ctx context.Context, decider clawops.Actor, approvalID string, approve bool, reason, code string) (governance.Outcome, error)
	ApproveForScope(ctx context.Context, decider clawops.Actor, approvalID string, scope governance.GrantScope, reason string) (governance.Outcome, error)
}

// GrantKeeper lists and revokes scoped grants.
type GrantKeeper interface {
	ListGrants(ctx context.Context, activeOnly bool) ([]governance.ScopedGrant, error)
	RevokeGrant(ctx context.Context, actor clawops.Actor, id, reason string) error
}

// BreakGlasser opens and ends break-glass overrides.
type BreakGlasser interface {
	BreakGlass(ctx context.Context, admin clawops.Actor, req governance.BreakGlassRequest) (governance.BreakGlass, error)
	EndBreakGlass(ctx context.Context, admin clawops.Actor, id string) error
}

// BudgetKeeper reads and sets monthly budgets and reads month-to-date spend.
type BudgetKeeper interface {
	Budgets(ctx context.Context) ([]governance.Budget, error)
	SetBudget(ctx context.Context, actor clawops.Actor, b governance.Budget) error
	MonthToDate(ctx context.Context, kind governance.BudgetKind, account string) (float64, error)
}

// PolicyKeeper reads and replaces the role autonomy table.
type PolicyKeeper interface {
	RoleTable() governance.RoleTable
	SetRoleTable(ctx context.Context, actor clawops.Actor, t governance.RoleTable, reason string) error
	Approvers() []string
}

// CheckpointLister lists the signed checkpoints of the audit log; found on Options.Audit
// (*governance.AuditLog has it).
type CheckpointLister interface {
	Checkpoints(ctx context.Context) ([]governance.Checkpoint, error)
}

// The abilities this package looks for, checked against the real gate.
var (
	_ Preflighter      = (*governance.Gate)(nil)
	_ TraceReader      = (*governance.Gate)(nil)
	_ FactorDecider    = (*governance.Gate)(nil)
	_ GrantKeeper      = (*governance.Gate)(nil)
	_ BreakGlasser     = (*governance.Gate)(nil)
	_ BudgetKeeper     = (*governance.Gate)(nil)
	_ PolicyKeeper     = (*governance.Gate)(nil)
	_ CheckpointLister = (*governance.AuditLog)(nil)
)

// ability returns the gate's (or audit log's) implementation of T, or answers 501
// NOT_IMPLEMENTED and reports false.
func ability[T any](w http.ResponseWriter, of any, what string) (T, bool) {
	v, ok := of.(T)
	if !ok {
		writeError(w, http.StatusNotImplemented, clawops.ReasonNotImplemented, what+" is not available on this gateway")
	}
	return v, ok
}

// requireAdmin refuses anyone but an admin with 403 FORBIDDEN, for the routes whose gate
// call would let more roles through than the API does.
func requireAdmin(actor clawops.Actor) error {
	if actor.Role != clawops.RoleAdmin {
		return clawops.E("api", clawops.KindDenied, clawops.ReasonForbidden, "only an admin may do this; you are "+string(actor.Role))
	}
	return nil
}
