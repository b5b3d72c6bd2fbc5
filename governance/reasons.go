package governance

import "github.com/gatewayforge/clawops"

// Reason codes the gate adds to the shared ones in package clawops. Like those, they never
// change meaning once shipped; docs/governance.md has the full table.
const (
	// ReasonAwaitingSecondApprover: a four-eyes approval has its first approval and waits
	// for a second, distinct approver.
	ReasonAwaitingSecondApprover clawops.ReasonCode = "AWAITING_SECOND_APPROVER"
	// ReasonDuplicateApprover: the same identity tried to give both approvals of a
	// four-eyes approval.
	ReasonDuplicateApprover clawops.ReasonCode = "DUPLICATE_APPROVER"
	// ReasonSecondFactorRequired: this approval must be decided with a second factor
	// (DecideWithFactor), not a chat button.
	ReasonSecondFactorRequired clawops.ReasonCode = "SECOND_FACTOR_REQUIRED"
	// ReasonSecondFactorInvalid: the second factor did not verify (wrong, reused, or no
	// factor enrolled for the identity).
	ReasonSecondFactorInvalid clawops.ReasonCode = "SECOND_FACTOR_INVALID"
	// ReasonGrantScope: the call ran within a scoped grant instead of a new approval.
	ReasonGrantScope clawops.ReasonCode = "GRANT_SCOPE"
	// ReasonGrantExpired: a scoped grant's time ran out.
	ReasonGrantExpired clawops.ReasonCode = "GRANT_EXPIRED"
	// ReasonGrantInvalid: a requested grant scope is malformed or not allowed (too long,
	// no selector, a critical action).
	ReasonGrantInvalid clawops.ReasonCode = "GRANT_INVALID"
	// ReasonBreakGlass: the call ran under an active break-glass override.
	ReasonBreakGlass clawops.ReasonCode = "BREAK_GLASS"
	// ReasonBreakGlassInvalid: a break-glass request or use was refused (not an admin, a
	// reason not on the list, a short justification, too long, expired, someone else's).
	ReasonBreakGlassInvalid clawops.ReasonCode = "BREAK_GLASS_INVALID"
	// ReasonBudgetSoftLimit: a soft budget limit is crossed; the call still runs.
	ReasonBudgetSoftLimit clawops.ReasonCode = "BUDGET_SOFT_LIMIT"
	// ReasonPolicyChanged marks a policy.changed audit entry.
	ReasonPolicyChanged clawops.ReasonCode = "POLICY_CHANGED"
	// ReasonConfigChanged marks a config.changed audit entry.
	ReasonConfigChanged clawops.ReasonCode = "CONFIG_CHANGED"
)
