package clawnode

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// PairingRequest is an unknown device waiting for an operator: a node that connected
// without a ClawOps join token (a stock OpenClaw node host, or a gf-clawnode installed by
// hand). The node keeps reconnecting; each attempt refreshes the request. An operator
// approves it for an instance (ApprovePairing) or rejects it (RejectPairing).
type PairingRequest struct {
	ID           string `gorm:"primaryKey;size:32" json:"id"`
	DeviceID     string `gorm:"size:64;not null;index" json:"deviceId"`
	PublicKey    string `gorm:"size:64;not null" json:"publicKey"`
	DisplayName  string `gorm:"size:128" json:"displayName,omitempty"`
	ClientID     string `gorm:"size:64" json:"clientId,omitempty"`
	Platform     string `gorm:"size:64" json:"platform,omitempty"`
	Version      string `gorm:"size:64" json:"version,omitempty"`
	Commands     string `gorm:"size:4096" json:"commands,omitempty"` // JSON array the node declared
	Remote       string `gorm:"size:128" json:"remote,omitempty"`
	TailnetNode  string `gorm:"size:64" json:"tailnetNode,omitempty"`
	TailnetName  string `gorm:"size:255" json:"tailnetName,omitempty"`
	TailnetUser  string `gorm:"size:255" json:"tailnetUser,omitempty"`
	TailnetTags  string `gorm:"size:512" json:"tailnetTags,omitempty"`
	Status       string `gorm:"size:16;not null;index" json:"status"`
	CreatedAtMs  int64  `gorm:"not null" json:"createdAtMs"`
	LastSeenAtMs int64  `json:"lastSeenAtMs"`
	ExpiresAtMs  int64  `gorm:"not null" json:"expiresAtMs"`
	Instance     string `gorm:"size:128" json:"instance,omitempty"` // set on approval
	DecidedBy    string `gorm:"size:255" json:"decidedBy,omitempty"`
	DecidedAtMs  int64  `json:"decidedAtMs,omitempty"`
}

// TableName keeps the node plane's tables under one prefix.
func (PairingRequest) TableName() string { return "clawnode_pairing_requests" }

// Pairing request states.
const (
	PairingPending  = "pending"
	PairingApproved = "approved"
	PairingRejected = "rejected"
)

// requestPairing records (or refreshes) the pairing request of an unknown device and
// returns the refusal that tells the node to wait and retry.
func (h *Hub) requestPairing(ctx context.Context, p proto.ConnectParams, pub ed25519.PublicKey, peer PeerIdentity, remote string) error {
	if h.opts.DisableManualPairing {
		return &authFailure{code: proto.CodeNotPaired, detail: proto.DetailPairingRequired, message: "unknown device: present a join token"}
	}
	id := proto.DeviceID(pub)
	now := h.clock.Now()
	nowMs := now.UnixMilli()
	cmds, _ := json.Marshal(p.Commands)
	var created *PairingRequest
	var reqID string
	// No transaction: the audit log may share this database, and a write transaction
	// holds its only write lock. Two racing attempts of one device at worst leave two
	// requests, both naming the same key.
	err := func() error {
		db := h.db.WithContext(ctx)
		var last PairingRequest
		err := db.Where("device_id = ?", id).Order("created_at_ms DESC").Take(&last).Error
		if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
			return err
		}
		found := err == nil
		if found && last.Status == PairingRejected && nowMs-last.DecidedAtMs < h.opts.RejectCooldown.Milliseconds() {
			return &authFailure{code: proto.CodeForbidden, detail: proto.DetailPairingRejected, message: "pairing request was rejected by an operator"}
		}
		if found && last.Status == PairingPending && last.ExpiresAtMs > nowMs {
			reqID = last.ID
			return db.Model(&PairingRequest{}).Where("id = ? AND status = ?", last.ID, PairingPending).Updates(map[string]any{
				"last_seen_at_ms": nowMs, "expires_at_ms": now.Add(h.opts.PairingTTL).UnixMilli(),
				"remote": clip(remote, 128), "commands": clip(string(cmds), 4096),
			}).Error
		}
		var pending int64
		if err := db.Model(&PairingRequest{}).Where("status = ? AND expires_at_ms > ?", PairingPending, nowMs).
			Count(&pending).Error; err != nil {
			return err
		}
		if pending >= int64(h.opts.MaxPendingPairings) {
			return &authFailure{code: proto.CodeUnavailable, message: "too many pairing requests are waiting for an operator"}
		}
		r := PairingRequest{ID: "pr_" + randomToken()[:20], DeviceID: id, PublicKey: proto.EncodePublicKey(pub),
			DisplayName: clip(p.Client.DisplayName, 128), ClientID: clip(p.Client.ID, 64), Platform: clip(p.Client.Platform, 64),
			Version: clip(p.Client.Version, 64), Commands: clip(string(cmds), 4096), Remote: clip(remote, 128),
			Status: PairingPending, CreatedAtMs: nowMs, LastSeenAtMs: nowMs, ExpiresAtMs: now.Add(h.opts.PairingTTL).UnixMilli()}
		var d Device
		d.setTailnet(peer)
		r.TailnetNode, r.TailnetName, r.TailnetUser, r.TailnetTags = d.TailnetNode, d.TailnetName, d.TailnetUser, d.TailnetTags
		if err := h.audit(ctx, PairingEvent{Action: EventPairingRequested, Node: clawops.NodeID(id), Request: r.ID,
			Remote: remote, Tailnet: peer.String(), Detail: "display name " + r.DisplayName}); err != nil {
			return &authFailure{code: proto.CodeUnavailable, message: "audit unavailable"}
		}
		if err := db.Create(&r).Error; err != nil {
			return err
		}
		created, reqID = &r, r.ID
		return nil
	}()
	if err != nil {
		var f *authFailure
		if errors.As(err, &f) {
			return f
		}
		h.log.Error("record pairing request", "node", short(clawops.NodeID(id)), "err", err)
		return &authFailure{code: proto.CodeUnavailable, message: "device store unavailable"}
	}
	if created != nil && h.opts.OnPairingRequest != nil {
		h.opts.OnPairingRequest(ctx, *created)
	}
	details, _ := json.Marshal(proto.PairingDetails{Code: proto.DetailPairingRequired, RequestID: reqID,
		RecommendedNextStep: "wait_then_retry", Retryable: true})
	return &authFailure{code: proto.CodeNotPaired, detail: proto.DetailPairingRequired,
		message: "pairing required: waiting for an operator to approve request " + reqID, details: details}
}

// PendingPairings lists the pairing requests waiting for an operator, oldest first.
func (h *Hub) PendingPairings(ctx context.Context) ([]PairingRequest, error) {
	var out []PairingRequest
	err := h.db.WithContext(ctx).Where("status = ? AND expires_at_ms > ?", PairingPending, h.clock.Now().UnixMilli()).
		Order("created_at_ms").Find(&out).Error
	if err != nil {
		return nil, fmt.Errorf("list pairing requests: %w", err)
	}
	return out, nil
}

// ApprovePairing pairs the device of request requestID with instance, on behalf of by
// (the operator's identity). The approval is audited first; the device gets its device
// token the next time it connects. As with a join token, the instance's previous device is
// retired and disconnected.
func (h *Hub) ApprovePairing(ctx context.Context, requestID string, instance clawops.InstanceID, by string) (Device, error) {
	const op = "approve pairing"
	if !instancePattern.MatchString(string(instance)) {
		return Device{}, clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments,
			fmt.Sprintf("instance id %q: use 1-128 of [A-Za-z0-9._-]", instance))
	}
	if by == "" {
		return Device{}, clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, "the approver's identity is required")
	}
	now := h.clock.Now().UnixMilli()
	r, err := h.pendingRequest(h.db.WithContext(ctx), requestID, now)
	if err != nil {
		return Device{}, pairingError(op, err)
	}
	if err := h.audit(ctx, PairingEvent{Action: EventApproved, Node: clawops.NodeID(r.DeviceID), Instance: instance,
		Request: r.ID, Actor: by, Decision: clawops.Allow, Remote: r.Remote, Tailnet: r.TailnetName}); err != nil {
		return Device{}, clawops.E(op, clawops.KindTransient, clawops.ReasonInternal, err)
	}
	var dev Device
	var retired []string
	err = h.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if _, err := h.pendingRequest(tx, requestID, now); err != nil {
			return err
		}
		var err error
		if retired, err = retireOthers(tx, string(instance), r.DeviceID, now); err != nil {
			return err
		}
		dev = Device{ID: r.DeviceID, PublicKey: r.PublicKey, Instance: string(instance), Platform: r.Platform,
			Version: r.Version, EnrolledAtMs: now, DisplayName: r.DisplayName, PairedVia: PairedManually, ApprovedBy: clip(by, 255),
			TailnetNode: r.TailnetNode, TailnetName: r.TailnetName, TailnetUser: r.TailnetUser, TailnetTags: r.TailnetTags}
		if err := tx.Save(&dev).Error; err != nil {
			return err
		}
		return tx.Model(&PairingRequest{}).Where("id = ?", r.ID).Updates(map[string]any{
			"status": PairingApproved, "instance": string(instance), "decided_by": clip(by, 255), "decided_at_ms": now}).Error
	})
	if err != nil {
		return Device{}, pairingError(op, err)
	}
	h.dropRetired(ctx, retired, instance, clawops.NodeID(dev.ID))
	return dev, nil
}

// RejectPairing refuses the device of request requestID on behalf of by. The device is
// refused (PAIRING_REJECTED) for RejectCooldown; after that it may ask again.
func (h *Hub) RejectPairing(ctx context.Context, requestID, by, why string) error {
	const op = "reject pairing"
	if by == "" {
		return clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, "the rejecter's identity is required")
	}
	now := h.clock.Now().UnixMilli()
	r, err := h.pendingRequest(h.db.WithContext(ctx), requestID, now)
	if err != nil {
		return pairingError(op, err)
	}
	if err := h.audit(ctx, PairingEvent{Action: EventRejected, Node: clawops.NodeID(r.DeviceID), Request: r.ID,
		Actor: by, Decision: clawops.Deny, Reason: ReasonPairingRejected, Remote: r.Remote, Detail: why}); err != nil {
		return clawops.E(op, clawops.KindTransient, clawops.ReasonInternal, err)
	}
	res := h.db.WithContext(ctx).Model(&PairingRequest{}).Where("id = ? AND status = ?", r.ID, PairingPending).Updates(map[string]any{
		"status": PairingRejected, "decided_by": clip(by, 255), "decided_at_ms": now})
	if res.Error != nil {
		err = clawops.E(clawops.KindTransient, clawops.ReasonInternal, res.Error)
	} else if res.RowsAffected != 1 {
		err = clawops.E(clawops.KindDenied, clawops.ReasonAlreadyDecided, errors.New("request was decided meanwhile"))
	}
	return pairingError(op, err)
}

// pendingRequest loads a request that can still be decided.
func (h *Hub) pendingRequest(tx *gorm.DB, id string, nowMs int64) (PairingRequest, error) {
	var r PairingRequest
	if err := tx.Where("id = ?", id).Take(&r).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return r, clawops.E(clawops.KindNotFound, ReasonPairingNotFound, fmt.Errorf("no pairing request %q", clip(id, 40)))
		}
		return r, err
	}
	switch {
	case r.Status != PairingPending:
		return r, clawops.E(clawops.KindDenied, clawops.ReasonAlreadyDecided, errors.New("request was already "+r.Status))
	case r.ExpiresAtMs <= nowMs:
		return r, clawops.E(clawops.KindExpired, ReasonPairingExpired, errors.New("request expired: the node stopped asking"))
	}
	return r, nil
}

// pairingError turns a transaction error into a *clawops.Error.
func pairingError(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *clawops.Error
	if errors.As(err, &ce) {
		return clawops.E(op, ce.Kind, ce.Reason, ce.Err)
	}
	return clawops.E(op, clawops.KindTransient, clawops.ReasonInternal, err)
}

// dropRetired audits and disconnects the devices a new pairing of instance retired.
func (h *Hub) dropRetired(ctx context.Context, retired []string, instance clawops.InstanceID, by clawops.NodeID) {
	for _, old := range retired {
		_ = h.audit(ctx, PairingEvent{Action: EventReplaced, Node: clawops.NodeID(old), Instance: instance,
			Decision: clawops.Deny, Detail: "replaced by " + short(by)})
		h.disconnect(clawops.NodeID(old), "replaced by a newly paired device")
	}
}

// defaultPairingTTL is how long a pending request lives after the node's last attempt.
const defaultPairingTTL = 10 * time.Minute
