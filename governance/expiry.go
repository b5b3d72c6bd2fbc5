package governance

import (
	"context"
	"fmt"
	"time"

	"github.com/gatewayforge/clawops"
)

// ExpireDue marks every pending approval whose time is up as expired, audits each and tells
// the Notifier. It returns how many approvals it expired. Scoped grants past their time are
// expired too (ExpireDueGrants), each audited grant.expired.
func (g *Gate) ExpireDue(ctx context.Context) (int, error) {
	if _, err := g.ExpireDueGrants(ctx); err != nil {
		return 0, err
	}
	now := g.clock.Now().UTC().Truncate(time.Microsecond)
	var rows []approvalRow
	err := g.db.WithContext(ctx).Where("state = ? AND expires_at < ?", string(ApprovalPending), formatTime(now)).
		Order("expires_at ASC").Limit(maxListApprovals).Find(&rows).Error
	if err != nil {
		return 0, fmt.Errorf("expire approvals: %w", err)
	}
	n := 0
	for _, r := range rows {
		a, err := r.approval()
		if err != nil {
			return n, fmt.Errorf("expire approvals: %w", err)
		}
		won, err := g.expireOne(ctx, a, now, gateActor)
		if err != nil {
			return n, fmt.Errorf("expire approvals: %w", err)
		}
		if won {
			n++
		}
	}
	return n, nil
}

// expireOne moves a pending approval to expired, audits it and notifies; false when
// another writer changed its state first.
func (g *Gate) expireOne(ctx context.Context, a Approval, now time.Time, by string) (bool, error) {
	won, err := g.transition(ctx, a.ID, ApprovalPending, ApprovalExpired, map[string]any{"decided_at": formatTime(now)}, nil)
	if err != nil || !won {
		return false, err
	}
	a.State, a.DecidedAt = ApprovalExpired, &now
	c := &call{name: a.Tool, plan: &a.Plan}
	e := c.entry(EventExpired, clawops.Deny, clawops.ReasonApprovalExpired,
		approvalDetail(a.ID, "expired at "+formatTime(a.ExpiresAt)))
	e.Actor = by
	g.appendOrLog(ctx, e)
	g.notify(ctx, a)
	return true, nil
}

// RunExpiry calls ExpireDue every interval until ctx ends, so pending approvals expire (and
// their cards update) even when nobody tries to decide them. It returns nil when ctx ends.
func (g *Gate) RunExpiry(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		return fmt.Errorf("run expiry: interval %s must be positive", every)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if n, err := g.ExpireDue(ctx); err != nil && ctx.Err() == nil {
				g.log.ErrorContext(ctx, "expire approvals", "err", err)
			} else if n > 0 {
				g.log.InfoContext(ctx, "approvals expired", "count", n)
			}
		}
	}
}
