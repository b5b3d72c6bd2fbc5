package governance

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

// Limits of a scoped grant.
const (
	MaxGrantTTL      = 24 * time.Hour
	MaxGrantUsers    = 10000
	maxGrantSelector = 1000
)

// EventGrantRevoked is audited when someone revokes a scoped grant before it expires.
const EventGrantRevoked = "grant.revoked"

// GrantScope is what an approver allows beyond the one plan in front of them: later calls
// of the same tool, by the same requester, on targets within the selector (instances named
// in Instances or belonging to accounts in Accounts), touching at most MaxUsers users in
// total, for TTL (at most MaxGrantTTL).
type GrantScope struct {
	Accounts  []string             `json:"accounts,omitempty"`
	Instances []clawops.InstanceID `json:"instances,omitempty"`
	MaxUsers  int                  `json:"max_users"`
	TTL       time.Duration        `json:"ttl"`
}

func (s GrantScope) validate(a Approval) error {
	switch {
	case a.ApprovalsRequired > 1 || a.Risk == clawops.RiskCritical:
		return errors.New("a critical (four-eyes) approval cannot be widened into a grant")
	case a.SecondFactor:
		return errors.New("an approval that needs a second factor cannot be widened into a grant")
	case len(s.Accounts) == 0 && len(s.Instances) == 0:
		return errors.New("a grant needs a target selector: accounts or instances")
	case len(s.Accounts)+len(s.Instances) > maxGrantSelector:
		return fmt.Errorf("a grant selector names at most %d accounts and instances", maxGrantSelector)
	case s.MaxUsers < 1 || s.MaxUsers > MaxGrantUsers:
		return fmt.Errorf("max users %d is outside 1..%d", s.MaxUsers, MaxGrantUsers)
	case s.TTL <= 0 || s.TTL > MaxGrantTTL:
		return fmt.Errorf("grant duration %s is outside (0, %s]", s.TTL, MaxGrantTTL)
	}
	for _, x := range s.Accounts {
		if x == "" || len(x) > 128 {
			return fmt.Errorf("account %s in the selector is empty or too long", quoteShort(x))
		}
	}
	for _, x := range s.Instances {
		if x == "" || len(x) > 128 {
			return fmt.Errorf("instance %s in the selector is empty or too long", quoteShort(string(x)))
		}
	}
	return nil
}

// GrantState is where a scoped grant is in its life.
type GrantState string

// Grant states.
const (
	GrantActive  GrantState = "active"
	GrantExpired GrantState = "expired"
	GrantRevoked GrantState = "revoked"
)

// ScopedGrant is a stored, time-bound permission created by ApproveForScope.
type ScopedGrant struct {
	ID         string               `json:"id"`
	Tool       string               `json:"tool"`
	Grantee    string               `json:"grantee"` // the requester's identity
	Agent      clawops.AgentRole    `json:"agent,omitempty"`
	Accounts   []string             `json:"accounts,omitempty"`
	Instances  []clawops.InstanceID `json:"instances,omitempty"`
	MaxUsers   int                  `json:"max_users"`
	UsersUsed  int                  `json:"users_used"`
	Uses       int                  `json:"uses"`
	CreatedBy  string               `json:"created_by"`
	ApprovalID string               `json:"approval_id"`
	CreatedAt  time.Time            `json:"created_at"`
	ExpiresAt  time.Time            `json:"expires_at"`
	State      GrantState           `json:"state"`
}

// covers reports whether every target of p lies within the grant's selector.
func (s ScopedGrant) covers(p Plan) bool {
	if len(p.Targets) == 0 {
		return false
	}
	scope := &clawops.Scope{Accounts: s.Accounts, Instances: s.Instances}
	for _, t := range p.Targets {
		if !scope.Covers(t.Account, t.Instance) {
			return false
		}
	}
	return true
}

// grantRow is the stored form of a ScopedGrant.
type grantRow struct {
	ID         string `gorm:"column:id;primaryKey;size:40"`
	Tool       string `gorm:"column:tool;size:64;not null;index:idx_governance_grants_lookup,priority:1"`
	Grantee    string `gorm:"column:grantee;size:256;not null;index:idx_governance_grants_lookup,priority:2"`
	Agent      string `gorm:"column:agent;size:32;not null"`
	Selector   string `gorm:"column:selector;type:text;not null"` // GrantScope as JSON (accounts, instances)
	MaxUsers   int    `gorm:"column:max_users;not null"`
	UsersUsed  int    `gorm:"column:users_used;not null"`
	Uses       int    `gorm:"column:uses;not null"`
	CreatedBy  string `gorm:"column:created_by;size:256;not null"`
	ApprovalID string `gorm:"column:approval_id;size:40;not null"`
	Created    string `gorm:"column:created_at;size:32;not null"`
	Expires    string `gorm:"column:expires_at;size:32;not null"`
	State      string `gorm:"column:state;size:16;not null;index"`
}

// TableName names the grants table.
func (grantRow) TableName() string { return "governance_grants" }

func (r grantRow) grant() (ScopedGrant, error) {
	s := ScopedGrant{ID: r.ID, Tool: r.Tool, Grantee: r.Grantee, Agent: clawops.AgentRole(r.Agent),
		MaxUsers: r.MaxUsers, UsersUsed: r.UsersUsed, Uses: r.Uses, CreatedBy: r.CreatedBy,
		ApprovalID: r.ApprovalID, State: GrantState(r.State)}
	var sel GrantScope
	if err := jsonUnmarshal(r.Selector, &sel); err != nil {
		return ScopedGrant{}, fmt.Errorf("grant %s: selector: %w", r.ID, err)
	}
	s.Accounts, s.Instances = sel.Accounts, sel.Instances
	var err error
	if s.CreatedAt, err = parseTime(r.Created); err != nil {
		return ScopedGrant{}, fmt.Errorf("grant %s: created_at: %w", r.ID, err)
	}
	if s.ExpiresAt, err = parseTime(r.Expires); err != nil {
		return ScopedGrant{}, fmt.Errorf("grant %s: expires_at: %w", r.ID, err)
	}
	return s, nil
}

// newID returns prefix and 32 random hex digits.
func (g *Gate) newID(prefix string) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(g.rand, b[:]); err != nil {
		return "", fmt.Errorf("%s id: %w", strings.TrimSuffix(prefix, "_"), err)
	}
	return prefix + hex.EncodeToString(b[:]), nil
}

// createGrant stores the grant an approver gave with an approval and audits grant.created.
func (g *Gate) createGrant(ctx context.Context, by clawops.Actor, a Approval, s GrantScope, now time.Time) (ScopedGrant, error) {
	id, err := g.newID("grt_")
	if err != nil {
		return ScopedGrant{}, err
	}
	row := grantRow{ID: id, Tool: a.Tool, Grantee: cleanText(a.Requester.Identity, 256), Agent: string(a.Requester.Agent),
		Selector: mustJSON(GrantScope{Accounts: s.Accounts, Instances: s.Instances}), MaxUsers: s.MaxUsers,
		CreatedBy: cleanText(by.Identity, 256), ApprovalID: a.ID, Created: formatTime(now),
		Expires: formatTime(now.Add(s.TTL)), State: string(GrantActive)}
	if err := g.db.WithContext(ctx).Create(&row).Error; err != nil {
		return ScopedGrant{}, fmt.Errorf("store grant: %w", err)
	}
	gr, err := row.grant()
	if err != nil {
		return ScopedGrant{}, err
	}
	g.appendOrLog(ctx, AuditEntry{Actor: by.String(), Tool: a.Tool, Target: selectorString(gr), Event: EventGrantCreated,
		Decision: clawops.Allow, Reason: ReasonGrantScope, PlanHash: a.PlanHash, Detail: fmt.Sprintf(
			"grant %s from approval %s for %s: %s on %s, at most %d users, until %s", gr.ID, a.ID, a.Requester.String(),
			a.Tool, selectorString(gr), gr.MaxUsers, formatTime(gr.ExpiresAt))})
	g.log.InfoContext(ctx, "scoped grant created", "grant", gr.ID, "approval", a.ID, "by", by.String())
	return gr, nil
}

func selectorString(s ScopedGrant) string {
	parts := make([]string, 0, len(s.Accounts)+len(s.Instances))
	for _, a := range s.Accounts {
		parts = append(parts, "account:"+a)
	}
	for _, i := range s.Instances {
		parts = append(parts, string(i))
	}
	return strings.Join(parts, ",")
}

// findGrant returns an active grant that covers plan p for actor, and the grants it found
// past their time (for the caller to expire). It writes nothing.
func (g *Gate) findGrant(ctx context.Context, actor clawops.Actor, p Plan) (*ScopedGrant, []ScopedGrant, error) {
	if actor.Identity == "" || len(p.Targets) == 0 {
		return nil, nil, nil
	}
	var rows []grantRow
	if err := g.db.WithContext(ctx).Where("tool = ? AND grantee = ? AND state = ?", p.Tool, actor.Identity, string(GrantActive)).
		Order("created_at ASC").Limit(100).Find(&rows).Error; err != nil {
		return nil, nil, fmt.Errorf("find grants: %w", err)
	}
	now := g.now()
	var found *ScopedGrant
	var expired []ScopedGrant
	for _, r := range rows {
		gr, err := r.grant()
		if err != nil {
			return nil, nil, err
		}
		switch {
		case now.After(gr.ExpiresAt):
			expired = append(expired, gr)
		case found == nil && gr.Agent == actor.Agent && gr.covers(p) && gr.UsersUsed+p.UsersAffected <= gr.MaxUsers:
			found = &gr
		}
	}
	return found, expired, nil
}

// useGrant counts one use of gr for users users, if it is still active, in time and has
// room; it reports whether it did.
func (g *Gate) useGrant(ctx context.Context, gr ScopedGrant, users int) (bool, error) {
	res := g.db.WithContext(ctx).Model(&grantRow{}).
		Where("id = ? AND state = ? AND users_used + ? <= max_users AND expires_at >= ?", gr.ID, string(GrantActive), users, formatTime(g.now())).
		Updates(map[string]any{"users_used": gorm.Expr("users_used + ?", users), "uses": gorm.Expr("uses + ?", 1)})
	if res.Error != nil {
		return false, fmt.Errorf("use grant %s: %w", gr.ID, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// expireGrant marks gr expired and audits grant.expired, once.
func (g *Gate) expireGrant(ctx context.Context, gr ScopedGrant) {
	res := g.db.WithContext(ctx).Model(&grantRow{}).Where("id = ? AND state = ?", gr.ID, string(GrantActive)).
		Update("state", string(GrantExpired))
	if res.Error != nil {
		g.log.ErrorContext(ctx, "expire grant", "grant", gr.ID, "err", res.Error)
		return
	}
	if res.RowsAffected != 1 {
		return
	}
	g.appendOrLog(ctx, AuditEntry{Actor: gateActor, Tool: gr.Tool, Target: selectorString(gr), Event: EventGrantExpired,
		Decision: clawops.Deny, Reason: ReasonGrantExpired, Detail: fmt.Sprintf("grant %s expired at %s after %d uses (%d/%d users)",
			gr.ID, formatTime(gr.ExpiresAt), gr.Uses, gr.UsersUsed, gr.MaxUsers)})
}

// ExpireDueGrants expires every active grant whose time is up (each audited grant.expired)
// and returns how many. ExpireDue calls it.
func (g *Gate) ExpireDueGrants(ctx context.Context) (int, error) {
	var rows []grantRow
	if err := g.db.WithContext(ctx).Where("state = ? AND expires_at < ?", string(GrantActive), formatTime(g.now())).
		Limit(maxListApprovals).Find(&rows).Error; err != nil {
		return 0, fmt.Errorf("expire grants: %w", err)
	}
	for _, r := range rows {
		gr, err := r.grant()
		if err != nil {
			return 0, fmt.Errorf("expire grants: %w", err)
		}
		g.expireGrant(ctx, gr)
	}
	return len(rows), nil
}

// ListGrants returns scoped grants, newest first (only active ones when activeOnly), at
// most 1000.
func (g *Gate) ListGrants(ctx context.Context, activeOnly bool) ([]ScopedGrant, error) {
	q := g.db.WithContext(ctx).Order("created_at DESC").Order("id DESC").Limit(maxListApprovals)
	if activeOnly {
		q = q.Where("state = ?", string(GrantActive))
	}
	var rows []grantRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list grants: %w", err)
	}
	out := make([]ScopedGrant, 0, len(rows))
	for _, r := range rows {
		gr, err := r.grant()
		if err != nil {
			return nil, fmt.Errorf("list grants: %w", err)
		}
		out = append(out, gr)
	}
	return out, nil
}

// RevokeGrant ends an active grant now. Any approver may (NOT_APPROVER otherwise); the
// revocation is audited grant.revoked.
func (g *Gate) RevokeGrant(ctx context.Context, actor clawops.Actor, id, reason string) error {
	if ok, why := g.isApprover(actor); !ok {
		g.appendOrLog(ctx, AuditEntry{Actor: actor.String(), Tool: "-", Target: quoteShort(id), Event: EventViolation,
			Decision: clawops.Deny, Reason: clawops.ReasonNotApprover, Detail: "revoke grant: " + why})
		return clawops.E("governance.RevokeGrant", clawops.KindDenied, clawops.ReasonNotApprover, why)
	}
	var rows []grantRow
	if err := g.db.WithContext(ctx).Where("id = ?", cleanText(id, 64)).Limit(1).Find(&rows).Error; err != nil {
		return fmt.Errorf("revoke grant: %w", err)
	}
	if len(rows) == 0 || !slices.Contains([]string{string(GrantActive)}, rows[0].State) {
		return clawops.E("governance.RevokeGrant", clawops.KindNotFound, ReasonGrantInvalid, "no active grant "+quoteShort(id))
	}
	res := g.db.WithContext(ctx).Model(&grantRow{}).Where("id = ? AND state = ?", rows[0].ID, string(GrantActive)).
		Update("state", string(GrantRevoked))
	if res.Error != nil {
		return fmt.Errorf("revoke grant: %w", res.Error)
	}
	gr, _ := rows[0].grant()
	g.appendOrLog(ctx, AuditEntry{Actor: actor.String(), Tool: gr.Tool, Target: selectorString(gr), Event: EventGrantRevoked,
		Decision: clawops.Deny, Reason: ReasonGrantInvalid, Detail: joinWords("grant "+gr.ID+" revoked", cleanText(reason, 512))})
	return nil
}
