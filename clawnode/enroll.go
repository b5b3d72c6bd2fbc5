package clawnode

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Device is an enrolled gf-clawnode: its public key, the instance it serves, and the hash
// of the device token the hub issued it. Raw tokens are never stored.
type Device struct {
	ID           string `gorm:"primaryKey;size:64"` // hex SHA-256 of PublicKey: the NodeID
	PublicKey    string `gorm:"size:64;not null"`   // base64url raw Ed25519 key
	Instance     string `gorm:"size:128;not null;index"`
	TokenHash    string `gorm:"size:64;not null"`
	Platform     string `gorm:"size:64"`
	Version      string `gorm:"size:64"`
	EnrolledAtMs int64  `gorm:"not null"`
	LastSeenAtMs int64
	RevokedAtMs  int64 `gorm:"index"` // 0 while the device may connect
}

// TableName keeps the node plane's tables under one prefix.
func (Device) TableName() string { return "clawnode_devices" }

// JoinToken is a one-time enrollment token bound to an instance, stored by hash.
type JoinToken struct {
	Hash        string `gorm:"primaryKey;size:64"`
	Instance    string `gorm:"size:128;not null;index"`
	CreatedAtMs int64  `gorm:"not null"`
	ExpiresAtMs int64  `gorm:"not null;index"`
	UsedAtMs    int64
	UsedBy      string `gorm:"size:64"`
}

// TableName keeps the node plane's tables under one prefix.
func (JoinToken) TableName() string { return "clawnode_join_tokens" }

// Migrate creates or updates the hub's tables. Call it once before NewHub.
func Migrate(db *gorm.DB) error {
	if err := db.AutoMigrate(&Device{}, &JoinToken{}); err != nil {
		return fmt.Errorf("migrate clawnode tables: %w", err)
	}
	return nil
}

// MaxJoinTokenTTL bounds how long a join token may stay valid.
const MaxJoinTokenTTL = 7 * 24 * time.Hour

var instancePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// MintJoinToken creates a one-time join token for instance, valid for ttl (at most
// MaxJoinTokenTTL). The token is returned once and stored only as a hash. It is a secret:
// hand it to the new node's bootstrap, never to a log.
func (h *Hub) MintJoinToken(ctx context.Context, instance clawops.InstanceID, ttl time.Duration) (string, error) {
	const op = "mint join token"
	if !instancePattern.MatchString(string(instance)) {
		return "", clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments,
			fmt.Sprintf("instance id %q: use 1-128 of [A-Za-z0-9._-]", instance))
	}
	if ttl <= 0 || ttl > MaxJoinTokenTTL {
		return "", clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments,
			fmt.Sprintf("ttl %s: must be positive and at most %s", ttl, MaxJoinTokenTTL))
	}
	tok := "gfj_" + randomToken()
	now := h.clock.Now()
	row := JoinToken{Hash: hashToken(tok), Instance: string(instance), CreatedAtMs: now.UnixMilli(),
		ExpiresAtMs: now.Add(ttl).UnixMilli()}
	db := h.db.WithContext(ctx)
	if err := db.Create(&row).Error; err != nil {
		return "", clawops.E(op, clawops.KindTransient, clawops.ReasonInternal, fmt.Errorf("store join token: %w", err))
	}
	// Forget tokens that expired long ago; a used token's row is the record of its use.
	db.Where("expires_at_ms < ? AND used_at_ms = 0", now.Add(-MaxJoinTokenTTL).UnixMilli()).Delete(&JoinToken{})
	h.log.Info("join token minted", "instance", instance, "expires", now.Add(ttl).UTC().Format(time.RFC3339))
	return tok, nil
}

// Revoke stops a node from connecting again and drops its connection if it has one.
func (h *Hub) Revoke(ctx context.Context, node clawops.NodeID) error {
	res := h.db.WithContext(ctx).Model(&Device{}).Where("id = ? AND revoked_at_ms = 0", string(node)).
		Update("revoked_at_ms", h.clock.Now().UnixMilli())
	if res.Error != nil {
		return fmt.Errorf("revoke node %s: %w", short(node), res.Error)
	}
	h.disconnect(node, "device revoked")
	return nil
}

// Devices lists every enrolled device, revoked ones included.
func (h *Hub) Devices(ctx context.Context) ([]Device, error) {
	var out []Device
	if err := h.db.WithContext(ctx).Order("id").Find(&out).Error; err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return out, nil
}

// authFailure is a refused connect: what goes into res.error.
type authFailure struct {
	code, detail, message string
}

func (f *authFailure) Error() string { return f.message }

// authResult is an accepted connect.
type authResult struct {
	device      Device
	deviceToken string // set when a new device token was issued (enrollment)
}

// authenticate decides a connect whose device signature already verified: a known device
// must present its device token; an unknown device must present an unused, unexpired join
// token, which enrolls it. A device whose enrollment answer was lost may present the same
// join token again until it expires and gets a fresh device token; any other key is refused.
func (h *Hub) authenticate(ctx context.Context, p proto.ConnectParams, pub ed25519.PublicKey) (authResult, error) {
	id := proto.DeviceID(pub)
	tok := p.Token()
	db := h.db.WithContext(ctx)
	var dev Device
	err := db.Where("id = ?", id).Take(&dev).Error
	found := err == nil
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return authResult{}, &authFailure{proto.CodeUnavailable, "", "device store unavailable"}
	}
	if found && dev.RevokedAtMs != 0 {
		return authResult{}, &authFailure{proto.CodeForbidden, proto.DetailDeviceRevoked, "device is revoked"}
	}
	if found && tok != "" && subtle.ConstantTimeCompare([]byte(hashToken(tok)), []byte(dev.TokenHash)) == 1 {
		h.touchDevice(ctx, id, p)
		return authResult{device: dev}, nil
	}
	if tok == "" {
		if found {
			return authResult{}, &authFailure{proto.CodeInvalidRequest, proto.DetailDeviceTokenMismatch, "device token required"}
		}
		return authResult{}, &authFailure{proto.CodeNotPaired, proto.DetailPairingRequired, "unknown device: present a join token"}
	}
	return h.enroll(ctx, id, pub, tok, p, found)
}

func (h *Hub) enroll(ctx context.Context, id string, pub ed25519.PublicKey, tok string, p proto.ConnectParams, known bool) (authResult, error) {
	now := h.clock.Now().UnixMilli()
	deviceToken := "gfd_" + randomToken()
	var out authResult
	err := h.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var jt JoinToken
		if err := tx.Where("hash = ?", hashToken(tok)).Take(&jt).Error; err != nil {
			if !errors.Is(err, gorm.ErrRecordNotFound) {
				return err
			}
			if known {
				return &authFailure{proto.CodeInvalidRequest, proto.DetailDeviceTokenMismatch, "device token does not match"}
			}
			return &authFailure{proto.CodeNotPaired, proto.DetailBootstrapTokenInvalid, "join token is not valid"}
		}
		if jt.ExpiresAtMs <= now {
			return &authFailure{proto.CodeNotPaired, proto.DetailBootstrapTokenInvalid, "join token expired"}
		}
		switch {
		case jt.UsedAtMs != 0 && jt.UsedBy != id:
			return &authFailure{proto.CodeNotPaired, proto.DetailBootstrapTokenInvalid, "join token already used"}
		case jt.UsedAtMs == 0:
			res := tx.Model(&JoinToken{}).Where("hash = ? AND used_at_ms = 0", jt.Hash).
				Updates(map[string]any{"used_at_ms": now, "used_by": id})
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected != 1 {
				return &authFailure{proto.CodeNotPaired, proto.DetailBootstrapTokenInvalid, "join token already used"}
			}
		}
		// One node per instance: a new enrollment retires the previous device.
		if err := tx.Model(&Device{}).Where("instance = ? AND id <> ? AND revoked_at_ms = 0", jt.Instance, id).
			Update("revoked_at_ms", now).Error; err != nil {
			return err
		}
		dev := Device{ID: id, PublicKey: proto.EncodePublicKey(pub), Instance: jt.Instance,
			TokenHash: hashToken(deviceToken), Platform: clip(p.Client.Platform, 64), Version: clip(p.Client.Version, 64),
			EnrolledAtMs: now, LastSeenAtMs: now}
		if err := tx.Save(&dev).Error; err != nil {
			return err
		}
		out = authResult{device: dev, deviceToken: deviceToken}
		return nil
	})
	if err != nil {
		var f *authFailure
		if errors.As(err, &f) {
			return authResult{}, f
		}
		h.log.Error("enroll device", "node", short(clawops.NodeID(id)), "err", err)
		return authResult{}, &authFailure{proto.CodeUnavailable, "", "device store unavailable"}
	}
	// Drop a connection of a device this enrollment retired.
	h.mu.RLock()
	old, ok := h.byInstance[clawops.InstanceID(out.device.Instance)]
	h.mu.RUnlock()
	if ok && old != clawops.NodeID(id) {
		h.disconnect(old, "replaced by a newly enrolled device")
	}
	h.log.Info("device enrolled", "node", short(clawops.NodeID(id)), "instance", out.device.Instance)
	return out, nil
}

func (h *Hub) touchDevice(ctx context.Context, id string, p proto.ConnectParams) {
	err := h.db.WithContext(ctx).Model(&Device{}).Where("id = ?", id).Updates(map[string]any{
		"last_seen_at_ms": h.clock.Now().UnixMilli(),
		"platform":        clip(p.Client.Platform, 64),
		"version":         clip(p.Client.Version, 64),
	}).Error
	if err != nil {
		h.log.Warn("update device", "node", short(clawops.NodeID(id)), "err", err)
	}
}

// instanceNode returns the newest active device enrolled for instance.
func (h *Hub) instanceNode(ctx context.Context, instance clawops.InstanceID) (clawops.NodeID, bool) {
	var dev Device
	err := h.db.WithContext(ctx).Where("instance = ? AND revoked_at_ms = 0", string(instance)).
		Order("enrolled_at_ms DESC").Take(&dev).Error
	if err != nil {
		return "", false
	}
	return clawops.NodeID(dev.ID), true
}

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return proto.EncodeB64(b)
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// short abbreviates a node id for logs.
func short(n clawops.NodeID) string {
	if len(n) > 12 {
		return string(n[:12])
	}
	return string(n)
}
