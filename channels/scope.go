package channels

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

// ScopePolicy says what an "Approve for scope" press grants: the same tool, for the same
// requester, on the approval's own instances (or, when its targets name no instances, its
// accounts), for TTL, up to MaxUsers users in total.
type ScopePolicy struct {
	TTL      time.Duration // default 4h; at most governance.MaxGrantTTL
	MaxUsers int           // default governance.MaxUsersWithoutApproval, never below the plan's own users
}

// ScopeGate is what a scoped decision needs of *governance.Gate.
type ScopeGate interface {
	Decider
	Approval(ctx context.Context, id string) (governance.Approval, error)
	ApproveForScope(ctx context.Context, decider clawops.Actor, approvalID string, scope governance.GrantScope, reason string) (governance.Outcome, error)
}

// WithScope returns a Decider over g that also approves for scope, with the grant p
// describes; pass it as Env.Decider. (A plain *governance.Gate as Env.Decider answers
// "Approve for scope" presses with NOT_IMPLEMENTED.)
func WithScope(g ScopeGate, p ScopePolicy) Decider {
	if p.TTL <= 0 {
		p.TTL = 4 * time.Hour
	}
	p.TTL = min(p.TTL, governance.MaxGrantTTL)
	if p.MaxUsers <= 0 {
		p.MaxUsers = governance.MaxUsersWithoutApproval
	}
	return &scopedGate{ScopeGate: g, policy: p}
}

type scopedGate struct {
	ScopeGate
	policy ScopePolicy
}

var _ ScopeDecider = (*scopedGate)(nil)

// DecideScope approves approvalID and grants the policy's scope around its plan. When the
// approval cannot be read, the gate is asked with an empty scope, so it refuses and audits
// the attempt with its own reason (APPROVAL_NOT_FOUND, NOT_APPROVER, ...).
func (s *scopedGate) DecideScope(ctx context.Context, decider clawops.Actor, approvalID string, reason string) (governance.Outcome, error) {
	var scope governance.GrantScope
	desc := ""
	if a, err := s.Approval(ctx, approvalID); err == nil {
		scope, desc = s.scopeFor(a)
	}
	out, err := s.ApproveForScope(ctx, decider, approvalID, scope, reason)
	if err == nil && out.Message == "" {
		out.Message = desc
	}
	return out, err
}

func (s *scopedGate) scopeFor(a governance.Approval) (governance.GrantScope, string) {
	scope := governance.GrantScope{TTL: s.policy.TTL, MaxUsers: max(s.policy.MaxUsers, a.Plan.UsersAffected, 1)}
	seenI, seenA := map[clawops.InstanceID]bool{}, map[string]bool{}
	for _, t := range a.Plan.Targets {
		if t.Instance != "" && !seenI[t.Instance] {
			seenI[t.Instance] = true
			scope.Instances = append(scope.Instances, t.Instance)
		}
		if t.Account != "" && !seenA[t.Account] {
			seenA[t.Account] = true
			scope.Accounts = append(scope.Accounts, t.Account)
		}
	}
	var on []string
	if len(scope.Instances) > 0 {
		scope.Accounts = nil
		for _, i := range scope.Instances {
			on = append(on, string(i))
		}
	} else {
		on = scope.Accounts
	}
	desc := fmt.Sprintf("%s on %s for %s, up to %d users", a.Tool, strings.Join(TruncateList(on, 5, 40), ", "),
		DurationText(scope.TTL), scope.MaxUsers)
	return scope, desc
}
