package proto

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
)

// CommandSignatureVersion is the version of the ClawOps command signature.
const CommandSignatureVersion = 1

// InvokeRequest is the payload of the node.invoke.request event. The first seven fields are
// the stock gateway's; ClawOps is the ClawOps extension, which the stock node host ignores.
type InvokeRequest struct {
	ID             string       `json:"id"`
	NodeID         string       `json:"nodeId"`
	Command        string       `json:"command"`
	ParamsJSON     string       `json:"paramsJSON,omitempty"`
	TimeoutMs      int64        `json:"timeoutMs,omitempty"`
	IdempotencyKey string       `json:"idempotencyKey,omitempty"`
	SessionKey     string       `json:"sessionKey,omitempty"`
	ClawOps        *CommandAuth `json:"clawops,omitempty"`
}

// CommandAuth is the ClawOps extension of an invoke request: when the command stops being
// valid and the gateway key's signature over InvokeSigningString.
type CommandAuth struct {
	V           int    `json:"v"`
	ExpiresAtMs int64  `json:"expiresAtMs"`
	Signature   string `json:"signature"`
}

// Validate checks the envelope fields a node needs before it can verify anything.
func (r InvokeRequest) Validate() error {
	for _, f := range []struct{ name, v string }{{"id", r.ID}, {"nodeId", r.NodeID}, {"command", r.Command}} {
		if err := checkName(f.name, f.v); err != nil {
			return err
		}
		if strings.Contains(f.v, "|") {
			return fmt.Errorf("%s contains '|'", f.name)
		}
	}
	if r.IdempotencyKey != "" && !ValidIdempotencyKey(r.IdempotencyKey) {
		return fmt.Errorf("idempotencyKey must be 1-%d of [A-Za-z0-9._:-]", MaxIDLen)
	}
	if r.TimeoutMs < 0 {
		return fmt.Errorf("timeoutMs is negative")
	}
	return nil
}

// ValidIdempotencyKey reports whether k is 1..MaxIDLen characters of [A-Za-z0-9._:-].
func ValidIdempotencyKey(k string) bool {
	if k == "" || len(k) > MaxIDLen {
		return false
	}
	for _, c := range []byte(k) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// InvokeSigningString is the canonical string the gateway signs for a command:
//
//	clawops-invoke-v1|<id>|<nodeId>|<command>|<hex sha256(paramsJSON)>|<idempotencyKey>|<expiresAtMs>
//
// Validate guarantees that no field but the hashed params can contain '|'.
func InvokeSigningString(r InvokeRequest, expiresAtMs int64) string {
	sum := sha256.Sum256([]byte(r.ParamsJSON))
	return strings.Join([]string{
		"clawops-invoke-v1", r.ID, r.NodeID, r.Command, hex.EncodeToString(sum[:]),
		r.IdempotencyKey, strconv.FormatInt(expiresAtMs, 10),
	}, "|")
}

// SignInvoke sets r.ClawOps: the expiry and the gateway key's signature.
func SignInvoke(key ed25519.PrivateKey, r *InvokeRequest, expiresAt time.Time) {
	ms := expiresAt.UnixMilli()
	r.ClawOps = &CommandAuth{
		V:           CommandSignatureVersion,
		ExpiresAtMs: ms,
		Signature:   EncodeB64(ed25519.Sign(key, []byte(InvokeSigningString(*r, ms)))),
	}
}

// VerifyInvoke checks a command against the pinned gateway key at time now. It refuses, as
// a *clawops.Error of KindDenied: no signature (UNSIGNED_COMMAND), a signature that does not
// verify (BAD_SIGNATURE), an expiry in the past or more than maxTTL ahead (COMMAND_EXPIRED).
// Replay and allowlist checks are the node's, since they need its state.
func VerifyInvoke(gatewayKey ed25519.PublicKey, r InvokeRequest, now time.Time, maxTTL time.Duration) error {
	const op = "verify command"
	a := r.ClawOps
	if a == nil || a.Signature == "" {
		return clawops.E(op, clawops.KindDenied, clawops.ReasonUnsignedCommand, "command carries no gateway signature")
	}
	if a.V != CommandSignatureVersion {
		return clawops.E(op, clawops.KindDenied, clawops.ReasonBadSignature,
			fmt.Sprintf("unsupported signature version %d", a.V))
	}
	sig, err := DecodeB64(a.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize || len(gatewayKey) != ed25519.PublicKeySize ||
		!ed25519.Verify(gatewayKey, []byte(InvokeSigningString(r, a.ExpiresAtMs)), sig) {
		return clawops.E(op, clawops.KindDenied, clawops.ReasonBadSignature, "signature does not verify with the pinned gateway key")
	}
	nowMs := now.UnixMilli()
	if nowMs >= a.ExpiresAtMs {
		return clawops.E(op, clawops.KindDenied, clawops.ReasonCommandExpired,
			fmt.Sprintf("command expired %d ms ago", nowMs-a.ExpiresAtMs))
	}
	if a.ExpiresAtMs-nowMs > maxTTL.Milliseconds() {
		return clawops.E(op, clawops.KindDenied, clawops.ReasonCommandExpired,
			fmt.Sprintf("command expiry is more than %s ahead", maxTTL))
	}
	return nil
}

// InvokeError is the error object of an invoke result.
type InvokeError struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// InvokeResult is the params of the node.invoke.result request a node sends when a command
// finishes or is refused. A node sets PayloadJSON; Payload is accepted from other nodes.
type InvokeResult struct {
	ID          string          `json:"id"`
	NodeID      string          `json:"nodeId"`
	OK          bool            `json:"ok"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	PayloadJSON string          `json:"payloadJSON,omitempty"`
	Error       *InvokeError    `json:"error,omitempty"`
}

// Validate checks the result envelope.
func (r InvokeResult) Validate() error {
	if err := checkName("id", r.ID); err != nil {
		return err
	}
	if err := checkName("nodeId", r.NodeID); err != nil {
		return err
	}
	if !r.OK && (r.Error == nil || r.Error.Code == "") {
		return fmt.Errorf("failed result needs error.code")
	}
	return nil
}

// Result returns the JSON payload of a successful result.
func (r InvokeResult) Result() json.RawMessage {
	if r.PayloadJSON != "" {
		return json.RawMessage(r.PayloadJSON)
	}
	if len(r.Payload) > 0 {
		return r.Payload
	}
	return json.RawMessage("null")
}

// NodeEventParams is the params of the node.event request.
type NodeEventParams struct {
	Event       string          `json:"event"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	PayloadJSON string          `json:"payloadJSON,omitempty"`
}

// Data returns the event's JSON payload, from PayloadJSON or Payload.
func (p NodeEventParams) Data() []byte {
	if p.PayloadJSON != "" {
		return []byte(p.PayloadJSON)
	}
	return p.Payload
}

// CommandRefused is the payload of the clawops.command.refused node event: a command the
// node would not run, and why.
type CommandRefused struct {
	ID             string             `json:"id,omitempty"`
	Command        string             `json:"command,omitempty"`
	IdempotencyKey string             `json:"idempotencyKey,omitempty"`
	Code           clawops.ReasonCode `json:"code"`
	Message        string             `json:"message"`
}

// HeartbeatEvent is the payload of the clawops.heartbeat node event. The hub turns it into a
// Heartbeat, taking the node and instance from the authenticated connection, not the wire.
type HeartbeatEvent struct {
	SentAtMs  int64   `json:"sentAtMs"`
	Metrics   Metrics `json:"metrics"`
	OpenClaw  Health  `json:"openclaw"`
	Container string  `json:"container,omitempty"`
}
