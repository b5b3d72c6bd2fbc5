package governance

import (
	"context"
	"time"
)

// GrantKind says what allowed a plan to be applied.
type GrantKind string

// Grant kinds.
const (
	// GrantPolicy: the role table allowed the call alone.
	GrantPolicy GrantKind = "policy"
	// GrantApproval: one (or, four-eyes, two) human approvals of this very plan.
	GrantApproval GrantKind = "approval"
	// GrantScoped: a time-bound scoped grant created by an earlier approval.
	GrantScoped GrantKind = "scoped"
	// GrantBreakGlass: an admin's active break-glass override.
	GrantBreakGlass GrantKind = "break_glass"
)

// Grant is the authority under which the gate applies a plan. Tools receive it with the
// plan (never raw arguments): a tool may record it, or refuse a plan whose grant does not
// fit what it is about to do. PlanHash always equals the plan's Hash.
type Grant struct {
	Kind GrantKind `json:"kind"`
	// ID is the approval ID, scoped grant ID or break-glass ID; empty for policy.
	ID       string    `json:"id,omitempty"`
	PlanHash string    `json:"plan_hash"`
	By       []string  `json:"by,omitempty"` // who allowed it: approvers, grantor, admin
	At       time.Time `json:"at"`
}

// GrantedTool is implemented by tools that take the grant as an argument. The gate calls
// ApplyGranted instead of Apply when a tool has it; every other tool gets the grant in the
// context of Apply (GrantFromContext).
type GrantedTool interface {
	ApplyGranted(ctx context.Context, plan Plan, grant Grant) (Result, error)
}

type grantKey struct{}

// WithGrant returns ctx carrying g. The gate uses it to hand the grant to Apply.
func WithGrant(ctx context.Context, g Grant) context.Context {
	return context.WithValue(ctx, grantKey{}, g)
}

// GrantFromContext returns the grant under which the current Apply runs.
func GrantFromContext(ctx context.Context) (Grant, bool) {
	g, ok := ctx.Value(grantKey{}).(Grant)
	return g, ok
}

// applyWithGrant is the one place a tool's Apply is called.
func applyWithGrant(ctx context.Context, tool Tool, p Plan, g Grant) (Result, error) {
	g.PlanHash = p.Hash
	ctx = WithGrant(ctx, g)
	if gt, ok := tool.(GrantedTool); ok {
		return gt.ApplyGranted(ctx, p, g)
	}
	return tool.Apply(ctx, p)
}
