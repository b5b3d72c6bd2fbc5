package governance

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatewayforge/clawops"
)

// BreakGlassReason is why an admin breaks the glass; only the listed reasons are accepted.
type BreakGlassReason string

// Break-glass reasons.
const (
	BreakGlassIncident            BreakGlassReason = "INCIDENT_MITIGATION"
	BreakGlassSecurity            BreakGlassReason = "SECURITY_RESPONSE"
	BreakGlassDataRecovery        BreakGlassReason = "DATA_RECOVERY"
	BreakGlassApproverUnavailable BreakGlassReason = "APPROVER_UNAVAILABLE"
)

// BreakGlassReasons lists the accepted reasons.
func BreakGlassReasons() []BreakGlassReason {
	return []BreakGlassReason{BreakGlassIncident, BreakGlassSecurity, BreakGlassDataRecovery, BreakGlassApproverUnavailable}
}

// Break-glass limits.
const (
	MaxBreakGlass           = time.Hour
	MinBreakGlassJustifying = 20 // characters of justification, at least
)

// BreakGlassRequest asks for a break-glass override.
type BreakGlassRequest struct {
	Reason        BreakGlassReason `json:"reason"`
	Justification string           `json:"justification"`
	// Duration is how long the override lasts: (0, MaxBreakGlass]; 0 means MaxBreakGlass.
	Duration time.Duration `json:"duration"`
	// SecondFactor is the admin's one-time code; required when the gate is configured with
	// SecondFactorFrom.
	SecondFactor string `json:"second_factor,omitempty"`
}

// BreakGlass is an active or past override. While active, calls by its admin that carry its
// ID in their context (WithBreakGlass) skip the approval requirement — and only that: role
// "never" cells, scopes, invariants and hard budgets still hold. Each use is audited
// "override".
type BreakGlass struct {
	ID            string           `json:"id"`
	Admin         string           `json:"admin"`
	Reason        BreakGlassReason `json:"reason"`
	Justification string           `json:"justification"`
	CreatedAt     time.Time        `json:"created_at"`
	ExpiresAt     time.Time        `json:"expires_at"`
	EndedAt       *time.Time       `json:"ended_at,omitempty"`
	// NotifyAdmins is who the notice goes to (GateOptions.Admins).
	NotifyAdmins []string `json:"notify_admins,omitempty"`
}

// BreakGlassNotifier is an optional extension of Notifier: a notifier that has it is told
// when an admin breaks the glass, and should tell every admin (BreakGlass.NotifyAdmins).
type BreakGlassNotifier interface {
	BreakGlassActivated(ctx context.Context, bg BreakGlass)
}

type breakGlassRow struct {
	ID            string `gorm:"column:id;primaryKey;size:40"`
	Admin         string `gorm:"column:admin;size:256;not null"`
	Reason        string `gorm:"column:reason;size:32;not null"`
	Justification string `gorm:"column:justification;type:text;not null"`
	Created       string `gorm:"column:created_at;size:32;not null"`
	Expires       string `gorm:"column:expires_at;size:32;not null"`
	Ended         string `gorm:"column:ended_at;size:32;not null"`
}

// TableName names the break-glass table.
func (breakGlassRow) TableName() string { return "governance_break_glass" }

func (r breakGlassRow) breakGlass() (BreakGlass, error) {
	b := BreakGlass{ID: r.ID, Admin: r.Admin, Reason: BreakGlassReason(r.Reason), Justification: r.Justification}
	var err error
	if b.CreatedAt, err = parseTime(r.Created); err != nil {
		return BreakGlass{}, fmt.Errorf("break-glass %s: %w", r.ID, err)
	}
	if b.ExpiresAt, err = parseTime(r.Expires); err != nil {
		return BreakGlass{}, fmt.Errorf("break-glass %s: %w", r.ID, err)
	}
	if r.Ended != "" {
		t, err := parseTime(r.Ended)
		if err != nil {
			return BreakGlass{}, fmt.Errorf("break-glass %s: %w", r.ID, err)
		}
		b.EndedAt = &t
	}
	return b, nil
}

var breakGlassIDRE = regexp.MustCompile(`^bg_[0-9a-f]{32}$`)

type breakGlassKey struct{}

// WithBreakGlass returns ctx carrying a break-glass ID: Invoke calls made with it run under
// that override (if it is active and the caller is its admin).
func WithBreakGlass(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, breakGlassKey{}, id)
}

func breakGlassFromContext(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(breakGlassKey{}).(string)
	return id, ok
}

// BreakGlass activates an override for admin. Only a human admin acting directly may; the
// reason must be one of BreakGlassReasons, the justification at least
// MinBreakGlassJustifying characters, the duration at most MaxBreakGlass, and a second
// factor is needed when the gate requires them. A refusal is BREAK_GLASS_INVALID (or
// SECOND_FACTOR_INVALID), audited as a violation. Activation is audited "override" and
// every admin is notified.
func (g *Gate) BreakGlass(ctx context.Context, admin clawops.Actor, req BreakGlassRequest) (BreakGlass, error) {
	const op = "governance.BreakGlass"
	refuse := func(reason clawops.ReasonCode, msg string) (BreakGlass, error) {
		g.appendOrLog(ctx, AuditEntry{Actor: admin.String(), Tool: "governance.break_glass", Target: "-",
			Event: EventViolation, Decision: clawops.Deny, Reason: reason, Detail: msg})
		g.log.WarnContext(ctx, "break-glass refused", "actor", admin.String(), "reason", reason)
		return BreakGlass{}, clawops.E(op, clawops.KindDenied, reason, msg)
	}
	just := strings.TrimSpace(cleanText(req.Justification, 2048))
	switch {
	case admin.Identity == "" || admin.Role != clawops.RoleAdmin || admin.Agent != "" || strings.HasPrefix(admin.Identity, "agent:"):
		return refuse(ReasonBreakGlassInvalid, "only a human admin, acting directly, may break the glass")
	case !slices.Contains(BreakGlassReasons(), req.Reason):
		return refuse(ReasonBreakGlassInvalid, fmt.Sprintf("reason %s is not one of %v", quoteShort(string(req.Reason)), BreakGlassReasons()))
	case utf8.RuneCountInString(just) < MinBreakGlassJustifying:
		return refuse(ReasonBreakGlassInvalid, fmt.Sprintf("the justification must be at least %d characters", MinBreakGlassJustifying))
	case req.Duration < 0 || req.Duration > MaxBreakGlass:
		return refuse(ReasonBreakGlassInvalid, fmt.Sprintf("duration %s is outside (0, %s]", req.Duration, MaxBreakGlass))
	}
	if g.factorFrom != "" {
		if req.SecondFactor == "" {
			return refuse(ReasonSecondFactorRequired, "breaking the glass needs a second factor")
		}
		if err := g.factor.VerifySecondFactor(ctx, admin.Identity, strings.TrimSpace(req.SecondFactor)); err != nil {
			return refuse(ReasonSecondFactorInvalid, innerMessage(err))
		}
	}
	if req.Duration == 0 {
		req.Duration = MaxBreakGlass
	}
	id, err := g.newID("bg_")
	if err != nil {
		return BreakGlass{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	now := g.now()
	row := breakGlassRow{ID: id, Admin: cleanText(admin.Identity, 256), Reason: string(req.Reason), Justification: just,
		Created: formatTime(now), Expires: formatTime(now.Add(req.Duration))}
	// The override is on record before it exists.
	if _, err := g.audit.Append(ctx, AuditEntry{Actor: admin.String(), Tool: "governance.break_glass", Target: id,
		Event: EventOverride, Decision: clawops.Allow, Reason: ReasonBreakGlass, Detail: fmt.Sprintf(
			"break-glass %s activated until %s (%s): %s", id, formatTime(now.Add(req.Duration)), req.Reason, just)}); err != nil {
		return BreakGlass{}, clawops.E(op, clawops.ReasonInternal, fmt.Errorf("%w: %w", errAuditUnavailable, err))
	}
	if err := g.db.WithContext(ctx).Create(&row).Error; err != nil {
		return BreakGlass{}, clawops.E(op, clawops.ReasonInternal, fmt.Errorf("store break-glass: %w", err))
	}
	bg, err := row.breakGlass()
	if err != nil {
		return BreakGlass{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	bg.NotifyAdmins = slices.Clone(g.admins)
	g.log.WarnContext(ctx, "break-glass activated", "id", id, "admin", admin.String(), "reason", req.Reason, "until", bg.ExpiresAt)
	if n, ok := g.notifier.(BreakGlassNotifier); ok {
		n.BreakGlassActivated(ctx, bg)
	}
	return bg, nil
}

// EndBreakGlass ends an active override early. Only its admin (or another admin) may.
func (g *Gate) EndBreakGlass(ctx context.Context, admin clawops.Actor, id string) error {
	const op = "governance.EndBreakGlass"
	if admin.Role != clawops.RoleAdmin || admin.Identity == "" || admin.Agent != "" {
		return clawops.E(op, clawops.KindDenied, ReasonBreakGlassInvalid, "only an admin may end a break-glass")
	}
	now := g.now()
	res := g.db.WithContext(ctx).Model(&breakGlassRow{}).Where("id = ? AND ended_at = ''", cleanText(id, 64)).
		Update("ended_at", formatTime(now))
	if res.Error != nil {
		return fmt.Errorf("end break-glass: %w", res.Error)
	}
	if res.RowsAffected != 1 {
		return clawops.E(op, clawops.KindNotFound, ReasonBreakGlassInvalid, "no open break-glass "+quoteShort(id))
	}
	g.appendOrLog(ctx, AuditEntry{Actor: admin.String(), Tool: "governance.break_glass", Target: id,
		Event: EventOverride, Decision: clawops.Deny, Reason: ReasonBreakGlass, Detail: "break-glass " + id + " ended"})
	return nil
}

// activeBreakGlass returns the override id if it is active and belongs to actor, else a
// BREAK_GLASS_INVALID error saying why.
func (g *Gate) activeBreakGlass(ctx context.Context, actor clawops.Actor, id string) (BreakGlass, error) {
	const op = "governance.breakglass"
	if !breakGlassIDRE.MatchString(id) {
		return BreakGlass{}, clawops.E(op, clawops.KindDenied, ReasonBreakGlassInvalid, "no break-glass "+quoteShort(id))
	}
	var rows []breakGlassRow
	if err := g.db.WithContext(ctx).Where("id = ?", id).Limit(1).Find(&rows).Error; err != nil {
		return BreakGlass{}, clawops.E(op, clawops.ReasonInternal, fmt.Errorf("load break-glass: %w", err))
	}
	if len(rows) == 0 {
		return BreakGlass{}, clawops.E(op, clawops.KindDenied, ReasonBreakGlassInvalid, "no break-glass "+id)
	}
	bg, err := rows[0].breakGlass()
	if err != nil {
		return BreakGlass{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	switch now := g.now(); {
	case actor.Identity != bg.Admin || actor.Role != clawops.RoleAdmin:
		return BreakGlass{}, clawops.E(op, clawops.KindDenied, ReasonBreakGlassInvalid, "break-glass "+id+" belongs to another admin")
	case bg.EndedAt != nil:
		return BreakGlass{}, clawops.E(op, clawops.KindExpired, ReasonBreakGlassInvalid, "break-glass "+id+" was ended")
	case now.After(bg.ExpiresAt):
		return BreakGlass{}, clawops.E(op, clawops.KindExpired, ReasonBreakGlassInvalid, "break-glass "+id+" expired at "+formatTime(bg.ExpiresAt))
	}
	return bg, nil
}
