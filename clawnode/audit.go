package clawnode

import (
	"context"
	"fmt"
	"time"

	"github.com/gatewayforge/clawops"
)

// Reason codes of the node plane's pairing decisions.
const (
	ReasonUnknownDevice      clawops.ReasonCode = "UNKNOWN_DEVICE"
	ReasonPairingNotFound    clawops.ReasonCode = "PAIRING_NOT_FOUND"
	ReasonPairingExpired     clawops.ReasonCode = "PAIRING_EXPIRED"
	ReasonJoinTokenInvalid   clawops.ReasonCode = "JOIN_TOKEN_INVALID"
	ReasonTailnetRefused     clawops.ReasonCode = "TAILNET_IDENTITY_REFUSED"
	ReasonTooManyPairings    clawops.ReasonCode = "TOO_MANY_PAIRING_REQUESTS"
	ReasonPairingRejected    clawops.ReasonCode = "PAIRING_REJECTED"
	ReasonRotationRefused    clawops.ReasonCode = "KEY_ROTATION_REFUSED"
	ReasonRotationNotPending clawops.ReasonCode = "KEY_ROTATION_NOT_PENDING"
)

// Actions of PairingEvent.
const (
	EventPairingRequested = "pairing.requested"     // an unknown device asked to be paired
	EventAutoApproved     = "pairing.auto_approved" // a join token for a known instance paired a device
	EventApproved         = "pairing.approved"      // an operator approved a request
	EventRejected         = "pairing.rejected"      // an operator rejected a request
	EventRefused          = "pairing.refused"       // an enrollment attempt failed (join token, tailnet)
	EventTokenIssued      = "device.token_issued"   // a manually approved device got its device token
	EventRevoked          = "device.revoked"        // an operator revoked a device
	EventReplaced         = "device.replaced"       // a newer pairing for the instance retired a device
	EventRotated          = "device.key_rotated"    // a device's new key took over from its old one
	EventTailnetRefused   = "tailnet.refused"       // a connection's tailnet identity was refused
)

// HubActor is the actor of the decisions the hub makes on its own.
const HubActor = "clawnode.hub"

// PairingEvent is one pairing decision, for the audit log. The hub calls
// HubOptions.Audit with it before the decision takes effect; an error from Audit stops
// the decision (a connect is refused, an approval fails), so nothing is decided that is
// not recorded.
type PairingEvent struct {
	Action   string             `json:"action"`
	Node     clawops.NodeID     `json:"node,omitempty"`
	Instance clawops.InstanceID `json:"instance,omitempty"`
	Request  string             `json:"request,omitempty"` // pairing request id
	Actor    string             `json:"actor"`             // operator identity, or HubActor
	Decision clawops.Decision   `json:"decision,omitempty"`
	Reason   clawops.ReasonCode `json:"reason,omitempty"`
	Remote   string             `json:"remote,omitempty"`  // peer address
	Tailnet  string             `json:"tailnet,omitempty"` // tailnet node name and tags
	Detail   string             `json:"detail,omitempty"`
	At       time.Time          `json:"at"`
}

// String renders the event for a log line or an audit entry's detail.
func (e PairingEvent) String() string {
	s := fmt.Sprintf("%s node=%s instance=%s actor=%s", e.Action, short(e.Node), e.Instance, e.Actor)
	if e.Request != "" {
		s += " request=" + e.Request
	}
	if e.Reason != "" {
		s += " reason=" + string(e.Reason)
	}
	if e.Remote != "" {
		s += " remote=" + e.Remote
	}
	if e.Tailnet != "" {
		s += " tailnet=" + e.Tailnet
	}
	if e.Detail != "" {
		s += " detail=" + e.Detail
	}
	return s
}

// audit records ev (logging it always, and passing it to HubOptions.Audit when set).
func (h *Hub) audit(ctx context.Context, ev PairingEvent) error {
	if ev.At.IsZero() {
		ev.At = h.clock.Now()
	}
	if ev.Actor == "" {
		ev.Actor = HubActor
	}
	ev.Detail = clip(ev.Detail, 500)
	h.log.Info("pairing decision", "event", ev.String())
	if h.opts.Audit == nil {
		return nil
	}
	if err := h.opts.Audit(ctx, ev); err != nil {
		h.log.Error("audit pairing decision; refusing it", "action", ev.Action, "err", err)
		return fmt.Errorf("audit %s: %w", ev.Action, err)
	}
	return nil
}

func actorOr(by string) string {
	if by == "" {
		return HubActor
	}
	return by
}
