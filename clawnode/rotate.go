package clawnode

import (
	"context"
	"errors"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Key rotation, on the hub's side. A connected node sends clawops.device.rotate with a
// new public key signed over (old id, new id, this connection's id). The hub stores the
// new key as a device of the same instance with RotationPending set and answers with its
// device token; the old key keeps working. When the new key first connects with that
// token, the old device is revoked (reason "rotated"), the rotation is audited and the
// new device takes over. A rotation whose answer was lost is simply asked for again.

// RequestKeyRotation asks a connected node to rotate its device key now.
func (h *Hub) RequestKeyRotation(ctx context.Context, node clawops.NodeID) error {
	op := "request key rotation of " + short(node)
	c := h.conn(node)
	if c == nil {
		return clawops.E(op, clawops.KindTransient, clawops.ReasonNodeOffline, "node is not connected")
	}
	f, err := proto.NewEvent(proto.EventRotateRequest, struct{}{})
	if err != nil {
		return err
	}
	if err := c.send(ctx, f); err != nil {
		return clawops.E(op, clawops.KindTransient, clawops.ReasonNodeOffline, err)
	}
	return nil
}

// rotateKey handles a node's clawops.device.rotate request.
func (h *Hub) rotateKey(ctx context.Context, c *nodeConn, params []byte) (proto.RotateResult, error) {
	var p proto.RotateParams
	if err := proto.UnmarshalStrict(params, &p); err != nil {
		return proto.RotateResult{}, errors.New("invalid rotate params: " + err.Error())
	}
	pub, err := proto.VerifyRotate(p, string(c.node), c.connID)
	if err != nil {
		return proto.RotateResult{}, err
	}
	newID := proto.DeviceID(pub)
	tok := DeviceTokenPrefix + randomToken()
	now := h.clock.Now().UnixMilli()
	err = h.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var old Device
		if err := tx.Where("id = ? AND revoked_at_ms = 0", string(c.node)).Take(&old).Error; err != nil {
			return errors.New("this device is no longer active")
		}
		var existing Device
		if err := tx.Where("id = ?", newID).Take(&existing).Error; err == nil &&
			!(existing.RotationPending && existing.RotatedFrom == old.ID) {
			return errors.New("the new key belongs to another device")
		}
		// An earlier rotation of this device that never connected is superseded.
		if err := tx.Where("rotated_from = ? AND rotation_pending = ?", old.ID, true).Delete(&Device{}).Error; err != nil {
			return err
		}
		dev := Device{ID: newID, PublicKey: proto.EncodePublicKey(pub), Instance: old.Instance, TokenHash: hashToken(tok),
			Platform: old.Platform, Version: old.Version, EnrolledAtMs: now, DisplayName: old.DisplayName,
			PairedVia: PairedByRotation, ApprovedBy: old.ApprovedBy, RotatedFrom: old.ID, RotationPending: true,
			TailnetNode: old.TailnetNode, TailnetName: old.TailnetName, TailnetUser: old.TailnetUser, TailnetTags: old.TailnetTags}
		return tx.Save(&dev).Error
	})
	if err != nil {
		return proto.RotateResult{}, err
	}
	h.log.Info("key rotation registered; waiting for the new key", "node", short(c.node), "new", short(clawops.NodeID(newID)))
	return proto.RotateResult{DeviceID: newID, DeviceToken: tok}, nil
}

// completeRotation accepts the first connect of a rotated key: the old device is revoked
// and the new one becomes the instance's device.
func (h *Hub) completeRotation(ctx context.Context, dev Device, p proto.ConnectParams, peer PeerIdentity) (authResult, error) {
	if err := h.audit(ctx, PairingEvent{Action: EventRotated, Node: clawops.NodeID(dev.ID), Instance: clawops.InstanceID(dev.Instance),
		Decision: clawops.Allow, Tailnet: peer.String(), Detail: "replaces key " + short(clawops.NodeID(dev.RotatedFrom))}); err != nil {
		return authResult{}, &authFailure{code: proto.CodeUnavailable, message: "audit unavailable"}
	}
	now := h.clock.Now().UnixMilli()
	err := h.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Model(&Device{}).Where("id = ? AND revoked_at_ms = 0", dev.RotatedFrom).
			Updates(map[string]any{"revoked_at_ms": now, "revoke_reason": RevokedKeyRotation}).Error; err != nil {
			return err
		}
		return tx.Model(&Device{}).Where("id = ?", dev.ID).
			Updates(map[string]any{"rotation_pending": false, "enrolled_at_ms": now}).Error
	})
	if err != nil {
		return authResult{}, &authFailure{code: proto.CodeUnavailable, message: "device store unavailable"}
	}
	h.disconnect(clawops.NodeID(dev.RotatedFrom), "key rotated")
	h.touchDevice(ctx, dev.ID, p, peer)
	dev.RotationPending = false
	return authResult{device: dev, method: "device-token"}, nil
}
