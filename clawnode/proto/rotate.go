package proto

import (
	"context"
	"crypto/ed25519"
	"errors"
)

// Key rotation and pairing: ClawOps extensions of the node protocol.
const (
	// MethodRotateKey is the request a connected node sends to replace its device key.
	MethodRotateKey = "clawops.device.rotate"
	// EventRotateRequest asks a node to rotate its device key now (payload {}).
	EventRotateRequest = "clawops.device.rotate.request"
)

// Detail codes of pairing refusals that the stock gateway has no name for.
const (
	DetailPairingRejected = "PAIRING_REJECTED" // an operator rejected this device's pairing request
	DetailTailnetRefused  = "TAILNET_IDENTITY_REFUSED"
)

// PairingDetails is error.details of a PAIRING_REQUIRED refusal while a pairing request
// waits for an operator, in the stock gateway's shape: the node keeps reconnecting.
type PairingDetails struct {
	Code                string `json:"code"`
	RequestID           string `json:"requestId,omitempty"`
	RecommendedNextStep string `json:"recommendedNextStep,omitempty"`
	Retryable           bool   `json:"retryable"`
	PauseReconnect      bool   `json:"pauseReconnect"`
}

// RotateParams are the params of clawops.device.rotate: the new public key and the new
// key's signature over RotateSigningString, proving the node holds it. The request travels
// on a connection authenticated with the old key, which proves the node held that one.
type RotateParams struct {
	PublicKey string `json:"publicKey"`
	Signature string `json:"signature"`
}

// RotateResult is the answer to clawops.device.rotate: the new device id and the device
// token that goes with the new key. The old key stays valid until the new one connects.
type RotateResult struct {
	DeviceID    string `json:"deviceId"`
	DeviceToken string `json:"deviceToken"`
}

// RotateSigningString binds a rotation to the old device, the new one and the connection
// (hello-ok server.connId) it is sent on.
func RotateSigningString(oldID, newID, connID string) string {
	return "clawops-rotate-v1|" + oldID + "|" + newID + "|" + connID
}

// SignRotate builds the rotate params for newKey on connection connID of device oldID.
func SignRotate(newKey ed25519.PrivateKey, oldID, connID string) RotateParams {
	pub := newKey.Public().(ed25519.PublicKey)
	msg := RotateSigningString(oldID, DeviceID(pub), connID)
	return RotateParams{PublicKey: EncodePublicKey(pub), Signature: EncodeB64(ed25519.Sign(newKey, []byte(msg)))}
}

// VerifyRotate checks the params and returns the new public key.
func VerifyRotate(p RotateParams, oldID, connID string) (ed25519.PublicKey, error) {
	pub, err := DecodePublicKey(p.PublicKey)
	if err != nil {
		return nil, err
	}
	newID := DeviceID(pub)
	if newID == oldID {
		return nil, errors.New("the new key is the old key")
	}
	sig, err := DecodeB64(p.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize ||
		!ed25519.Verify(pub, []byte(RotateSigningString(oldID, newID, connID)), sig) {
		return nil, errors.New("rotation signature does not verify with the new key")
	}
	return pub, nil
}

type idemKey struct{}

// WithIdempotencyKey returns a context that makes the hub's Invoke use key as the
// command's idempotency key instead of a fresh one, so that retrying a call with the same
// key (for example after a gateway restart) can never run the command twice: the node
// answers a retry with the first run's result. key must be 1-128 of [A-Za-z0-9._:-].
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idemKey{}, key)
}

// IdempotencyKeyFrom returns the key set by WithIdempotencyKey, or "".
func IdempotencyKeyFrom(ctx context.Context) string {
	k, _ := ctx.Value(idemKey{}).(string)
	return k
}
