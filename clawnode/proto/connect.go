package proto

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Challenge is the payload of the connect.challenge event the gateway sends on accept.
// ClawOpsProof is the ClawOps extension: the gateway's Ed25519 signature over
// ChallengeProofString(nonce, ts), so that a node presents its credentials only to the
// gateway whose key it pinned. The stock node host ignores the field.
type Challenge struct {
	Nonce        string   `json:"nonce"`
	Ts           int64    `json:"ts"`
	Capabilities []string `json:"capabilities,omitempty"`
	ClawOpsProof string   `json:"clawopsProof,omitempty"`
}

// ChallengeProofString is the string the gateway signs for Challenge.ClawOpsProof.
func ChallengeProofString(nonce string, ts int64) string {
	return "clawops-challenge-v1|" + nonce + "|" + strconv.FormatInt(ts, 10)
}

// SignChallenge fills c.ClawOpsProof with the gateway key's signature.
func SignChallenge(key ed25519.PrivateKey, c *Challenge) {
	c.ClawOpsProof = EncodeB64(ed25519.Sign(key, []byte(ChallengeProofString(c.Nonce, c.Ts))))
}

// VerifyChallenge checks c.ClawOpsProof against the pinned gateway key.
func VerifyChallenge(gatewayKey ed25519.PublicKey, c Challenge) error {
	if c.ClawOpsProof == "" {
		return errors.New("challenge carries no gateway proof")
	}
	sig, err := DecodeB64(c.ClawOpsProof)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return errors.New("challenge gateway proof is malformed")
	}
	if len(gatewayKey) != ed25519.PublicKeySize ||
		!ed25519.Verify(gatewayKey, []byte(ChallengeProofString(c.Nonce, c.Ts)), sig) {
		return errors.New("challenge gateway proof does not verify with the pinned gateway key")
	}
	return nil
}

// Validate checks the challenge fields a node relies on.
func (c Challenge) Validate() error {
	if c.Nonce == "" || len(c.Nonce) > 256 {
		return errors.New("challenge nonce is empty or too long")
	}
	if c.Ts < 0 {
		return errors.New("challenge ts is negative")
	}
	return nil
}

// ClientInfo is connect.params.client.
type ClientInfo struct {
	ID              string `json:"id"`
	DisplayName     string `json:"displayName,omitempty"`
	Version         string `json:"version"`
	BuildID         string `json:"buildId,omitempty"`
	Platform        string `json:"platform"`
	DeviceFamily    string `json:"deviceFamily,omitempty"`
	ModelIdentifier string `json:"modelIdentifier,omitempty"`
	TimeZone        string `json:"timeZone,omitempty"`
	Mode            string `json:"mode"`
	InstanceID      string `json:"instanceId,omitempty"`
}

// DeviceAuth is connect.params.device: the device's public key and its signature over the
// challenge (see DevicePayload).
type DeviceAuth struct {
	ID        string `json:"id"`
	PublicKey string `json:"publicKey"`
	Signature string `json:"signature"`
	SignedAt  int64  `json:"signedAt"`
	Nonce     string `json:"nonce"`
}

// ConnectAuth is connect.params.auth. A node sends its join token on first contact and its
// device token afterwards, both in Token.
type ConnectAuth struct {
	Token          string `json:"token,omitempty"`
	BootstrapToken string `json:"bootstrapToken,omitempty"`
	DeviceToken    string `json:"deviceToken,omitempty"`
	Password       string `json:"password,omitempty"`
}

// ConnectParams is the params object of the connect request. The field set is the stock
// gateway's closed set (minus fields nodes never send); unknown keys are rejected.
type ConnectParams struct {
	MinProtocol int             `json:"minProtocol"`
	MaxProtocol int             `json:"maxProtocol"`
	Client      ClientInfo      `json:"client"`
	Caps        []string        `json:"caps,omitempty"`
	Commands    []string        `json:"commands,omitempty"`
	Permissions map[string]bool `json:"permissions,omitempty"`
	PathEnv     string          `json:"pathEnv,omitempty"`
	Role        string          `json:"role,omitempty"`
	Scopes      []string        `json:"scopes"`
	Device      *DeviceAuth     `json:"device,omitempty"`
	Auth        *ConnectAuth    `json:"auth,omitempty"`
	Locale      string          `json:"locale,omitempty"`
	UserAgent   string          `json:"userAgent,omitempty"`
}

// Token returns the credential the node presented: auth.token, else auth.deviceToken, else
// auth.bootstrapToken. It is also the token bound into the device signature.
func (p ConnectParams) Token() string {
	if p.Auth == nil {
		return ""
	}
	switch {
	case p.Auth.Token != "":
		return p.Auth.Token
	case p.Auth.DeviceToken != "":
		return p.Auth.DeviceToken
	}
	return p.Auth.BootstrapToken
}

// Validate checks shapes only (non-empty required strings, sane lengths). Authentication
// is the hub's job.
func (p ConnectParams) Validate() error {
	if p.MinProtocol < 1 || p.MaxProtocol < 1 {
		return errors.New("minProtocol and maxProtocol must be positive")
	}
	for name, v := range map[string]string{"client.id": p.Client.ID, "client.version": p.Client.Version,
		"client.platform": p.Client.Platform, "client.mode": p.Client.Mode} {
		if err := checkName(name, v); err != nil {
			return err
		}
	}
	for _, c := range p.Commands {
		if err := checkName("commands[]", c); err != nil {
			return err
		}
	}
	if len(p.Commands) > 256 || len(p.Caps) > 64 || len(p.Scopes) > 64 {
		return errors.New("too many commands, caps or scopes")
	}
	if p.Device != nil {
		if p.Device.ID == "" || p.Device.PublicKey == "" || p.Device.Signature == "" || p.Device.Nonce == "" {
			return errors.New("device.id, publicKey, signature and nonce are required")
		}
		if p.Device.SignedAt < 0 {
			return errors.New("device.signedAt is negative")
		}
	}
	return nil
}

// SupportsVersion reports whether v is within [MinProtocol, MaxProtocol].
func (p ConnectParams) SupportsVersion(v int) bool { return p.MinProtocol <= v && v <= p.MaxProtocol }

// ServerInfo is hello-ok.server.
type ServerInfo struct {
	Version string `json:"version"`
	ConnID  string `json:"connId"`
}

// Features is hello-ok.features.
type Features struct {
	Methods      []string `json:"methods"`
	Events       []string `json:"events"`
	Capabilities []string `json:"capabilities,omitempty"`
}

// StateVersion is hello-ok.snapshot.stateVersion.
type StateVersion struct {
	Presence int64 `json:"presence"`
	Health   int64 `json:"health"`
}

// Snapshot is hello-ok.snapshot, reduced to the fields the stock schema requires.
type Snapshot struct {
	Presence     []json.RawMessage `json:"presence"`
	Health       json.RawMessage   `json:"health"`
	StateVersion StateVersion      `json:"stateVersion"`
	UptimeMs     int64             `json:"uptimeMs"`
}

// HelloAuth is hello-ok.auth.
type HelloAuth struct {
	Method      string   `json:"method,omitempty"`
	DeviceToken string   `json:"deviceToken,omitempty"`
	Role        string   `json:"role"`
	Scopes      []string `json:"scopes"`
	IssuedAtMs  int64    `json:"issuedAtMs,omitempty"`
}

// Policy is hello-ok.policy.
type Policy struct {
	MaxPayload       int64 `json:"maxPayload"`
	MaxBufferedBytes int64 `json:"maxBufferedBytes"`
	TickIntervalMs   int64 `json:"tickIntervalMs"`
	// HeartbeatIntervalMs is how often the gateway wants clawops.heartbeat events (a
	// ClawOps addition, absent from the stock gateway). A node uses it instead of its own
	// --heartbeat when it is within MinHeartbeatMs..MaxHeartbeatMs: the gateway measures
	// its offline timeout against it, so a config change reaches every node at its next
	// connect, however it was installed.
	HeartbeatIntervalMs int64 `json:"heartbeatIntervalMs,omitempty"`
}

// Bounds of Policy.HeartbeatIntervalMs a node accepts.
const (
	MinHeartbeatMs = 1_000
	MaxHeartbeatMs = 600_000
)

// HelloOK is the payload of the successful connect response.
type HelloOK struct {
	Type     string     `json:"type"`
	Protocol int        `json:"protocol"`
	Server   ServerInfo `json:"server"`
	Features Features   `json:"features"`
	Snapshot Snapshot   `json:"snapshot"`
	Auth     HelloAuth  `json:"auth"`
	Policy   Policy     `json:"policy"`
}

// Validate checks what a node needs from hello-ok.
func (h HelloOK) Validate() error {
	if h.Type != "hello-ok" {
		return fmt.Errorf("hello type %q, want hello-ok", h.Type)
	}
	if h.Protocol != ProtocolVersion {
		return fmt.Errorf("hello protocol %d, want %d", h.Protocol, ProtocolVersion)
	}
	if h.Policy.TickIntervalMs < 1 || h.Policy.MaxPayload < 1 {
		return errors.New("hello policy needs positive tickIntervalMs and maxPayload")
	}
	return nil
}

// Tick is the payload of the tick event.
type Tick struct {
	Ts int64 `json:"ts"`
}
