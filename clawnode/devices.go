package clawnode

import (
	"context"
	"fmt"
	"strings"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

// Device is a paired gf-clawnode (or stock node host): its public key, the instance it
// serves, the hash of the device token the hub issued it, how it was paired, and the
// tailnet identity it connected from. Raw tokens are never stored.
type Device struct {
	ID           string `gorm:"primaryKey;size:64"` // hex SHA-256 of PublicKey: the NodeID
	PublicKey    string `gorm:"size:64;not null"`   // base64url raw Ed25519 key
	Instance     string `gorm:"size:128;not null;index:idx_clawnode_devices_inst_rev,priority:1"`
	TokenHash    string `gorm:"size:64;not null"` // "" until the first connect after a manual approval
	Platform     string `gorm:"size:64"`
	Version      string `gorm:"size:64"`
	EnrolledAtMs int64  `gorm:"not null"`
	LastSeenAtMs int64
	// RevokedAtMs is 0 while the device may connect. It is indexed only together with
	// Instance: a single-column index on it makes SQLite scan every active device to find
	// an instance's (enrollment turned O(N)).
	RevokedAtMs int64 `gorm:"index:idx_clawnode_devices_inst_rev,priority:2"`

	DisplayName     string `gorm:"size:128"`
	PairedVia       string `gorm:"size:16"`  // join-token, manual or rotation
	ApprovedBy      string `gorm:"size:255"` // who approved a manual pairing
	RevokeReason    string `gorm:"size:32"`  // revoked, replaced or rotated
	RotatedFrom     string `gorm:"size:64"`  // the device this key replaced
	RotationPending bool   // a rotated key not yet used to connect; the old key still works

	TailnetNode string `gorm:"size:64"`  // tailnet stable node id the device connected from
	TailnetName string `gorm:"size:255"` // its MagicDNS name
	TailnetUser string `gorm:"size:255"` // the tailnet login owning it (tagged-devices for tagged nodes)
	TailnetTags string `gorm:"size:512"` // its ACL tags, comma-separated
}

// TableName keeps the node plane's tables under one prefix.
func (Device) TableName() string { return "clawnode_devices" }

// How a device was paired (Device.PairedVia).
const (
	PairedByJoinToken = "join-token"
	PairedManually    = "manual"
	PairedByRotation  = "rotation"
)

// Why a device was revoked (Device.RevokeReason).
const (
	RevokedByOperator  = "revoked"
	RevokedReplaced    = "replaced"
	RevokedKeyRotation = "rotated"
)

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
	if err := db.AutoMigrate(&Device{}, &JoinToken{}, &PairingRequest{}); err != nil {
		return fmt.Errorf("migrate clawnode tables: %w", err)
	}
	return nil
}

// Revoke stops a node from connecting again and drops its connection if it has one. The
// revocation is audited with the hub as the actor; use RevokeBy to name the operator.
func (h *Hub) Revoke(ctx context.Context, node clawops.NodeID) error {
	return h.RevokeBy(ctx, node, "", "")
}

// RevokeBy revokes node on behalf of by (an operator identity), recording why, and drops
// its connection at once. The audit entry is written before the revocation; if it cannot
// be written nothing changes.
func (h *Hub) RevokeBy(ctx context.Context, node clawops.NodeID, by, why string) error {
	op := "revoke node " + short(node)
	var dev Device
	if err := h.db.WithContext(ctx).Where("id = ?", string(node)).Take(&dev).Error; err != nil {
		return clawops.E(op, clawops.KindNotFound, ReasonUnknownDevice, "no such device")
	}
	if dev.RevokedAtMs != 0 {
		h.disconnect(node, "device revoked")
		return nil
	}
	if err := h.audit(ctx, PairingEvent{Action: EventRevoked, Node: node, Instance: clawops.InstanceID(dev.Instance),
		Actor: actorOr(by), Decision: clawops.Deny, Detail: why}); err != nil {
		return clawops.E(op, clawops.KindTransient, clawops.ReasonInternal, err)
	}
	res := h.db.WithContext(ctx).Model(&Device{}).Where("id = ? AND revoked_at_ms = 0", string(node)).
		Updates(map[string]any{"revoked_at_ms": h.clock.Now().UnixMilli(), "revoke_reason": RevokedByOperator})
	if res.Error != nil {
		return clawops.E(op, clawops.KindTransient, clawops.ReasonInternal, res.Error)
	}
	h.disconnect(node, "device revoked")
	return nil
}

// Devices lists every paired device, revoked ones included.
func (h *Hub) Devices(ctx context.Context) ([]Device, error) {
	var out []Device
	if err := h.db.WithContext(ctx).Order("id").Find(&out).Error; err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return out, nil
}

// Device returns one device by id.
func (h *Hub) Device(ctx context.Context, node clawops.NodeID) (Device, error) {
	var dev Device
	if err := h.db.WithContext(ctx).Where("id = ?", string(node)).Take(&dev).Error; err != nil {
		return Device{}, clawops.E("device "+short(node), clawops.KindNotFound, ReasonUnknownDevice, "no such device")
	}
	return dev, nil
}

// instanceNode returns the newest active device paired for instance.
func (h *Hub) instanceNode(ctx context.Context, instance clawops.InstanceID) (clawops.NodeID, bool) {
	var dev Device
	err := h.db.WithContext(ctx).Where("instance = ? AND revoked_at_ms = 0 AND rotation_pending = ?", string(instance), false).
		Order("enrolled_at_ms DESC").Take(&dev).Error
	if err != nil {
		return "", false
	}
	return clawops.NodeID(dev.ID), true
}

// retireOthers revokes (as replaced) every other active device of instance, in tx.
func retireOthers(tx *gorm.DB, instance, keep string, nowMs int64) ([]string, error) {
	var ids []string
	if err := tx.Model(&Device{}).Where("instance = ? AND id <> ? AND revoked_at_ms = 0", instance, keep).
		Pluck("id", &ids).Error; err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	err := tx.Model(&Device{}).Where("id IN ?", ids).
		Updates(map[string]any{"revoked_at_ms": nowMs, "revoke_reason": RevokedReplaced}).Error
	return ids, err
}

// setTailnet copies a peer identity into the device's tailnet fields.
func (d *Device) setTailnet(p PeerIdentity) {
	d.TailnetNode, d.TailnetName = clip(p.Node, 64), clip(p.Name, 255)
	d.TailnetUser, d.TailnetTags = clip(p.User, 255), clip(strings.Join(p.Tags, ","), 512)
}
