package clawnode

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// MaxJoinTokenTTL bounds how long a join token may stay valid.
const MaxJoinTokenTTL = 7 * 24 * time.Hour

// Token prefixes. A connect token without JoinTokenPrefix is not treated as a join token
// (a stock node host may present its gateway's shared token there).
const (
	JoinTokenPrefix   = "gfj_"
	DeviceTokenPrefix = "gfd_"
)

var instancePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// MintJoinToken creates a one-time join token for instance, valid for ttl (at most
// MaxJoinTokenTTL). The token is returned once and stored only as a hash. It is a secret:
// hand it to the new node's bootstrap, never to a log. A node that presents it is paired
// with the instance at once (automatic approval: the token was minted for a known instance).
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
	tok := JoinTokenPrefix + randomToken()
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

// authFailure is a refused connect: what goes into res.error.
type authFailure struct {
	code, detail, message string
	details               json.RawMessage // replaces {"code":detail} when set
}

func (f *authFailure) Error() string { return f.message }

// authResult is an accepted connect.
type authResult struct {
	device      Device
	deviceToken string // set when a new device token was issued
	method      string // hello-ok auth.method
}

// presented returns the tokens a node offered: auth.token and auth.deviceToken. A stock
// node host sends its gateway's shared token in auth.token and, once paired, the device
// token the hub issued in auth.deviceToken.
func presented(p proto.ConnectParams) []string {
	if p.Auth == nil {
		return nil
	}
	var out []string
	for _, t := range []string{p.Auth.Token, p.Auth.DeviceToken, p.Auth.BootstrapToken} {
		if t != "" {
			out = append(out, t)
		}
	}
	return out
}

func joinTokenOf(p proto.ConnectParams) string {
	for _, t := range presented(p) {
		if strings.HasPrefix(t, JoinTokenPrefix) {
			return t
		}
	}
	return ""
}

// authenticate decides a connect whose device signature already verified:
//   - a known device must present its device token (in auth.token or auth.deviceToken);
//     a manually approved device that has none yet gets one now;
//   - an unknown device with a join token is enrolled with the token's instance (a device
//     whose enrollment answer was lost may present the same join token again until it
//     expires and gets a fresh device token; any other key is refused);
//   - an unknown device without one becomes a pairing request for an operator.
func (h *Hub) authenticate(ctx context.Context, p proto.ConnectParams, pub ed25519.PublicKey, peer PeerIdentity, remote string) (authResult, error) {
	id := proto.DeviceID(pub)
	db := h.db.WithContext(ctx)
	var dev Device
	err := db.Where("id = ?", id).Take(&dev).Error
	found := err == nil
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return authResult{}, &authFailure{code: proto.CodeUnavailable, message: "device store unavailable"}
	}
	if found && dev.RevokedAtMs != 0 {
		return authResult{}, &authFailure{code: proto.CodeForbidden, detail: proto.DetailDeviceRevoked, message: "device is revoked"}
	}
	if found && dev.TailnetNode != "" && peer.Node != "" && dev.TailnetNode != peer.Node {
		_ = h.audit(ctx, PairingEvent{Action: EventTailnetRefused, Node: clawops.NodeID(id), Instance: clawops.InstanceID(dev.Instance),
			Decision: clawops.Deny, Reason: ReasonTailnetRefused, Remote: remote, Tailnet: peer.String(),
			Detail: "device was paired from tailnet node " + dev.TailnetNode})
		return authResult{}, &authFailure{code: proto.CodeForbidden, detail: proto.DetailTailnetRefused,
			message: "device key presented from another tailnet node than the one it was paired from"}
	}
	if found {
		if dev.TokenHash == "" {
			return h.issueToken(ctx, dev, p, peer)
		}
		for _, tok := range presented(p) {
			if subtle.ConstantTimeCompare([]byte(hashToken(tok)), []byte(dev.TokenHash)) == 1 {
				if dev.RotationPending {
					return h.completeRotation(ctx, dev, p, peer)
				}
				h.touchDevice(ctx, id, p, peer)
				return authResult{device: dev, method: "device-token"}, nil
			}
		}
	}
	if jt := joinTokenOf(p); jt != "" {
		return h.enroll(ctx, id, pub, jt, p, found, peer, remote)
	}
	if found {
		return authResult{}, &authFailure{code: proto.CodeInvalidRequest, detail: proto.DetailDeviceTokenMismatch,
			message: "device token missing or wrong"}
	}
	for _, t := range presented(p) {
		if strings.HasPrefix(t, DeviceTokenPrefix) {
			// Another device's token, or a node that lost its key: never a pairing request.
			_ = h.audit(ctx, PairingEvent{Action: EventRefused, Node: clawops.NodeID(id), Decision: clawops.Deny,
				Reason: ReasonJoinTokenInvalid, Remote: remote, Tailnet: peer.String(), Detail: "device token presented by an unknown key"})
			return authResult{}, &authFailure{code: proto.CodeNotPaired, detail: proto.DetailBootstrapTokenInvalid,
				message: "device token presented by an unknown key"}
		}
	}
	return authResult{}, h.requestPairing(ctx, p, pub, peer, remote)
}

// issueToken gives a manually approved device its device token on its first connect.
func (h *Hub) issueToken(ctx context.Context, dev Device, p proto.ConnectParams, peer PeerIdentity) (authResult, error) {
	tok := DeviceTokenPrefix + randomToken()
	if err := h.audit(ctx, PairingEvent{Action: EventTokenIssued, Node: clawops.NodeID(dev.ID), Instance: clawops.InstanceID(dev.Instance),
		Decision: clawops.Allow, Tailnet: peer.String(), Detail: "first connect after approval by " + dev.ApprovedBy}); err != nil {
		return authResult{}, &authFailure{code: proto.CodeUnavailable, message: "audit unavailable"}
	}
	res := h.db.WithContext(ctx).Model(&Device{}).Where("id = ? AND token_hash = ''", dev.ID).
		Updates(map[string]any{"token_hash": hashToken(tok), "last_seen_at_ms": h.clock.Now().UnixMilli()})
	if res.Error != nil || res.RowsAffected != 1 {
		return authResult{}, &authFailure{code: proto.CodeUnavailable, message: "device store unavailable"}
	}
	h.touchDevice(ctx, dev.ID, p, peer)
	return authResult{device: dev, deviceToken: tok, method: "pairing"}, nil
}

func (h *Hub) enroll(ctx context.Context, id string, pub ed25519.PublicKey, tok string, p proto.ConnectParams, known bool,
	peer PeerIdentity, remote string) (authResult, error) {
	now := h.clock.Now().UnixMilli()
	refuse := func(instance, why string) error {
		_ = h.audit(ctx, PairingEvent{Action: EventRefused, Node: clawops.NodeID(id), Instance: clawops.InstanceID(instance),
			Decision: clawops.Deny, Reason: ReasonJoinTokenInvalid, Remote: remote, Tailnet: peer.String(), Detail: why})
		return &authFailure{code: proto.CodeNotPaired, detail: proto.DetailBootstrapTokenInvalid, message: why}
	}
	unavailable := &authFailure{code: proto.CodeUnavailable, message: "device store unavailable"}
	// Decide and audit outside the transaction: the audit log may live in the same
	// database, and a write transaction holds its only write lock.
	var jt JoinToken
	if err := h.db.WithContext(ctx).Where("hash = ?", hashToken(tok)).Take(&jt).Error; err != nil {
		if !errors.Is(err, gorm.ErrRecordNotFound) {
			return authResult{}, unavailable
		}
		if known {
			return authResult{}, &authFailure{code: proto.CodeInvalidRequest, detail: proto.DetailDeviceTokenMismatch, message: "device token does not match"}
		}
		return authResult{}, refuse("", "join token is not valid")
	}
	switch {
	case jt.ExpiresAtMs <= now:
		return authResult{}, refuse(jt.Instance, "join token expired")
	case jt.UsedAtMs != 0 && jt.UsedBy != id:
		return authResult{}, refuse(jt.Instance, "join token already used")
	}
	if err := h.audit(ctx, PairingEvent{Action: EventAutoApproved, Node: clawops.NodeID(id), Instance: clawops.InstanceID(jt.Instance),
		Decision: clawops.Allow, Remote: remote, Tailnet: peer.String(), Detail: "join token minted for the instance"}); err != nil {
		return authResult{}, &authFailure{code: proto.CodeUnavailable, message: "audit unavailable"}
	}
	deviceToken := DeviceTokenPrefix + randomToken()
	errUsed := errors.New("join token already used")
	var out authResult
	var retired []string
	err := h.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Model(&JoinToken{}).Where("hash = ? AND (used_at_ms = 0 OR used_by = ?)", jt.Hash, id).
			Updates(map[string]any{"used_at_ms": now, "used_by": id})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 {
			return errUsed
		}
		// One node per instance: a new enrollment retires the previous device.
		var err error
		if retired, err = retireOthers(tx, jt.Instance, id, now); err != nil {
			return err
		}
		dev := Device{ID: id, PublicKey: proto.EncodePublicKey(pub), Instance: jt.Instance,
			TokenHash: hashToken(deviceToken), Platform: clip(p.Client.Platform, 64), Version: clip(p.Client.Version, 64),
			EnrolledAtMs: now, LastSeenAtMs: now, DisplayName: clip(p.Client.DisplayName, 128), PairedVia: PairedByJoinToken}
		dev.setTailnet(peer)
		if err := tx.Save(&dev).Error; err != nil {
			return err
		}
		out = authResult{device: dev, deviceToken: deviceToken, method: "bootstrap-token"}
		return nil
	})
	if errors.Is(err, errUsed) {
		return authResult{}, refuse(jt.Instance, "join token already used")
	}
	if err != nil {
		h.log.Error("enroll device", "node", short(clawops.NodeID(id)), "err", err)
		return authResult{}, unavailable
	}
	h.dropRetired(ctx, retired, clawops.InstanceID(out.device.Instance), clawops.NodeID(id))
	return out, nil
}

func (h *Hub) touchDevice(ctx context.Context, id string, p proto.ConnectParams, peer PeerIdentity) {
	upd := map[string]any{
		"last_seen_at_ms": h.clock.Now().UnixMilli(),
		"platform":        clip(p.Client.Platform, 64),
		"version":         clip(p.Client.Version, 64),
	}
	if peer.Node != "" {
		var d Device
		d.setTailnet(peer)
		upd["tailnet_node"], upd["tailnet_name"], upd["tailnet_user"], upd["tailnet_tags"] =
			d.TailnetNode, d.TailnetName, d.TailnetUser, d.TailnetTags
	}
	if err := h.db.WithContext(ctx).Model(&Device{}).Where("id = ?", id).Updates(upd).Error; err != nil {
		h.log.Warn("update device", "node", short(clawops.NodeID(id)), "err", err)
	}
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
