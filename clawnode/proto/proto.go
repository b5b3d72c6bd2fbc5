// Package proto is the wire protocol between the ClawOps gateway (the hub) and gf-clawnode:
// the OpenClaw gateway protocol v4 frame shapes (req/res/event over WebSocket text frames,
// connect.challenge → connect → hello-ok, tick, node.invoke.request / node.invoke.result,
// node.event), the v3 device-auth signature a node makes over the challenge, and the ClawOps
// extension that lets a node verify every command against a pinned gateway key.
//
// The package is pure: no I/O, no clocks (callers pass the time), no globals that change.
// docs/protocol.md is the human description of the same contract.
package proto

import "github.com/gatewayforge/clawops"

// ProtocolVersion is the OpenClaw gateway protocol version spoken here. Only v4 is spoken;
// the stock gateway's N-1 window for nodes (v3) is not offered.
const ProtocolVersion = 4

// Fixed identity strings of a node connection. They are part of the signed connect payload.
const (
	ClientIDNodeHost = "node-host" // client.id of a headless node host
	ModeNode         = "node"      // client.mode
	RoleNode         = "node"      // role
)

// Frame types.
const (
	TypeReq   = "req"
	TypeRes   = "res"
	TypeEvent = "event"
)

// Methods a node calls on the gateway.
const (
	MethodConnect      = "connect"
	MethodInvokeResult = "node.invoke.result"
	MethodNodeEvent    = "node.event"
)

// Events the gateway sends to a node.
const (
	EventConnectChallenge = "connect.challenge"
	EventTick             = "tick"
	EventInvokeRequest    = "node.invoke.request"
)

// Names carried in node.event params.event: the ClawOps events a node reports.
const (
	NodeEventHeartbeat      = "clawops.heartbeat"
	NodeEventCommandRefused = "clawops.command.refused"
)

// Top-level error codes in res.error.code. They are the stock gateway's codes; the precise
// cause is in error.details.code (see the Detail* constants).
const (
	CodeInvalidRequest = "INVALID_REQUEST" // malformed frame/params, failed device auth, protocol mismatch
	CodeNotPaired      = "NOT_PAIRED"      // unknown device and no valid join token
	CodeForbidden      = "FORBIDDEN"       // the device is known but not allowed (revoked)
	CodeUnavailable    = "UNAVAILABLE"     // hub closing or busy; retry
)

// Detail codes in res.error.details.code, named as the stock gateway names them.
const (
	DetailProtocolMismatch       = "PROTOCOL_MISMATCH"
	DetailDeviceIdentityRequired = "DEVICE_IDENTITY_REQUIRED"
	DetailDeviceIDMismatch       = "DEVICE_AUTH_DEVICE_ID_MISMATCH"
	DetailSignatureExpired       = "DEVICE_AUTH_SIGNATURE_EXPIRED"
	DetailNonceMismatch          = "DEVICE_AUTH_NONCE_MISMATCH"
	DetailSignatureInvalid       = "DEVICE_AUTH_SIGNATURE_INVALID"
	DetailPublicKeyInvalid       = "DEVICE_AUTH_PUBLIC_KEY_INVALID"
	DetailPairingRequired        = "PAIRING_REQUIRED"
	DetailBootstrapTokenInvalid  = "AUTH_BOOTSTRAP_TOKEN_INVALID"
	DetailDeviceTokenMismatch    = "AUTH_DEVICE_TOKEN_MISMATCH"
	DetailDeviceRevoked          = "DEVICE_REVOKED" // ClawOps addition
	DetailRoleNotNode            = "ROLE_NOT_NODE"  // ClawOps addition: this endpoint serves nodes only
)

// Invoke-result error codes beyond the refusal reason codes.
const (
	// InvokeErrUnavailable means the node could not start the command now (busy, shutting down).
	InvokeErrUnavailable = "UNAVAILABLE"
)

// Limits.
const (
	// MaxPreAuthFrameBytes caps frames before hello-ok, as the stock gateway does.
	MaxPreAuthFrameBytes = 64 << 10
	// MaxFrameBytes is the hub's policy.maxPayload: the largest frame after hello-ok.
	MaxFrameBytes = 8 << 20
	// MaxIDLen caps request ids, invoke ids, idempotency keys and command names.
	MaxIDLen = 128
	// MaxSignatureSkewMs is how far a connect signedAt may be from the gateway's clock.
	MaxSignatureSkewMs = 120_000
)

// IsRefusal reports whether code is one a node returns when it refused a command without
// running it (as opposed to a command that ran and failed).
func IsRefusal(code clawops.ReasonCode) bool {
	switch code {
	case clawops.ReasonUnsignedCommand, clawops.ReasonBadSignature, clawops.ReasonCommandExpired,
		clawops.ReasonCommandReplayed, clawops.ReasonNotAllowlisted, clawops.ReasonBadParams,
		clawops.ReasonShellMetachar, clawops.ReasonMalformedRequest, clawops.ReasonForbidden:
		return true
	}
	return false
}
