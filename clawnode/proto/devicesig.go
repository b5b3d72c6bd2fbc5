package proto

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
)

// EncodeB64 encodes b as unpadded base64url, the encoding of keys and signatures on the wire.
func EncodeB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// DecodeB64 decodes base64url, with or without padding.
func DecodeB64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// EncodePublicKey renders an Ed25519 public key as base64url of its raw 32 bytes.
func EncodePublicKey(pub ed25519.PublicKey) string { return EncodeB64(pub) }

// DecodePublicKey parses base64url of a raw 32-byte Ed25519 public key.
func DecodePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := DecodeB64(s)
	if err != nil {
		return nil, errors.New("public key is not base64url")
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, errors.New("public key is not 32 bytes")
	}
	return ed25519.PublicKey(b), nil
}

// DeviceID is a device's identity: the lower-case hex SHA-256 of its raw public key. For a
// node it is also its clawops.NodeID.
func DeviceID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// DevicePayload is what a device signs in connect: the v3 device-auth payload of the
// OpenClaw gateway protocol.
type DevicePayload struct {
	DeviceID     string
	ClientID     string
	ClientMode   string
	Role         string
	Scopes       []string
	SignedAtMs   int64
	Token        string
	Nonce        string
	Platform     string
	DeviceFamily string
}

// String renders the payload:
// v3|deviceId|clientId|clientMode|role|scopes,joined|signedAtMs|token|nonce|platform|deviceFamily
// with platform and deviceFamily trimmed and ASCII-lower-cased, as the stock client does.
func (p DevicePayload) String() string {
	return strings.Join([]string{
		"v3", p.DeviceID, p.ClientID, p.ClientMode, p.Role, strings.Join(p.Scopes, ","),
		strconv.FormatInt(p.SignedAtMs, 10), p.Token, p.Nonce,
		normalizeMetadata(p.Platform), normalizeMetadata(p.DeviceFamily),
	}, "|")
}

// normalizeMetadata lower-cases A-Z only (not other letters), after trimming space.
func normalizeMetadata(s string) string {
	b := []byte(strings.TrimSpace(s))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// DevicePayloadFor builds the payload a node signs for the given connect params; the
// token bound in is params.Token().
func DevicePayloadFor(p ConnectParams, deviceID string, signedAtMs int64, nonce string) DevicePayload {
	return DevicePayload{
		DeviceID: deviceID, ClientID: p.Client.ID, ClientMode: p.Client.Mode, Role: p.Role,
		Scopes: p.Scopes, SignedAtMs: signedAtMs, Token: p.Token(), Nonce: nonce,
		Platform: p.Client.Platform, DeviceFamily: p.Client.DeviceFamily,
	}
}

// SignConnect fills p.Device for the device key priv, answering the challenge.
func SignConnect(priv ed25519.PrivateKey, p *ConnectParams, ch Challenge) {
	pub := priv.Public().(ed25519.PublicKey)
	id := DeviceID(pub)
	payload := DevicePayloadFor(*p, id, ch.Ts, ch.Nonce)
	p.Device = &DeviceAuth{
		ID:        id,
		PublicKey: EncodePublicKey(pub),
		Signature: EncodeB64(ed25519.Sign(priv, []byte(payload.String()))),
		SignedAt:  ch.Ts,
		Nonce:     ch.Nonce,
	}
}

// Device-auth failures returned by VerifyConnect; DeviceErrorDetail maps each to its
// stock details.code.
var (
	ErrDeviceMissing    = errors.New("device identity required")
	ErrDevicePublicKey  = errors.New("device public key invalid")
	ErrDeviceIDMismatch = errors.New("device identity mismatch")
	ErrDeviceNonce      = errors.New("device nonce mismatch")
	ErrDeviceSignedAt   = errors.New("device signature expired")
	ErrDeviceSignature  = errors.New("device signature invalid")
)

// DeviceErrorDetail returns the stock details.code for a VerifyConnect error.
func DeviceErrorDetail(err error) string {
	switch {
	case errors.Is(err, ErrDeviceMissing):
		return DetailDeviceIdentityRequired
	case errors.Is(err, ErrDevicePublicKey):
		return DetailPublicKeyInvalid
	case errors.Is(err, ErrDeviceIDMismatch):
		return DetailDeviceIDMismatch
	case errors.Is(err, ErrDeviceNonce):
		return DetailNonceMismatch
	case errors.Is(err, ErrDeviceSignedAt):
		return DetailSignatureExpired
	case errors.Is(err, ErrDeviceSignature):
		return DetailSignatureInvalid
	}
	return ""
}

// VerifyConnect checks the device block of p against the challenge the gateway sent
// (nonce) and the gateway's clock (nowMs): the key parses, the id is its fingerprint, the
// nonce is ours, signedAt is within MaxSignatureSkewMs, and the signature verifies. It
// returns the device's public key.
func VerifyConnect(p ConnectParams, nonce string, nowMs int64) (ed25519.PublicKey, error) {
	d := p.Device
	if d == nil {
		return nil, ErrDeviceMissing
	}
	pub, err := DecodePublicKey(d.PublicKey)
	if err != nil {
		return nil, ErrDevicePublicKey
	}
	if DeviceID(pub) != d.ID {
		return nil, ErrDeviceIDMismatch
	}
	if d.Nonce != nonce {
		return nil, ErrDeviceNonce
	}
	if skew := nowMs - d.SignedAt; skew > MaxSignatureSkewMs || skew < -MaxSignatureSkewMs {
		return nil, ErrDeviceSignedAt
	}
	sig, err := DecodeB64(d.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, ErrDeviceSignature
	}
	payload := DevicePayloadFor(p, d.ID, d.SignedAt, d.Nonce)
	if !ed25519.Verify(pub, []byte(payload.String()), sig) {
		return nil, ErrDeviceSignature
	}
	return pub, nil
}
