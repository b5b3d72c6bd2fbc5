package proto

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
)

func key(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed([]byte(strings.Repeat(string(rune('a'+seed)), ed25519.SeedSize)))
}

func TestDevicePayloadString(t *testing.T) {
	p := DevicePayload{DeviceID: "dev", ClientID: "node-host", ClientMode: "node", Role: "node",
		Scopes: nil, SignedAtMs: 1737264000000, Token: "tok", Nonce: "non", Platform: " Linux ", DeviceFamily: "ÄServer"}
	want := "v3|dev|node-host|node|node||1737264000000|tok|non|linux|Äserver"
	if got := p.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	p.Scopes = []string{"a", "b"}
	if got := p.String(); !strings.Contains(got, "|node|a,b|") {
		t.Errorf("String() = %q, want scopes joined by ','", got)
	}
}

func TestDeviceIDVector(t *testing.T) {
	// SHA-256 of 32 zero bytes.
	got := DeviceID(make(ed25519.PublicKey, 32))
	want := "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
	if got != want {
		t.Errorf("DeviceID(zero key) = %s, want %s", got, want)
	}
}

func connectParams() ConnectParams {
	return ConnectParams{MinProtocol: 4, MaxProtocol: 4, Role: RoleNode, Scopes: []string{},
		Client: ClientInfo{ID: ClientIDNodeHost, Version: "1.0", Platform: "linux", Mode: ModeNode},
		Auth:   &ConnectAuth{Token: "join-token"}}
}

func TestConnectSignVerify(t *testing.T) {
	priv := key(1)
	ch := Challenge{Nonce: "nonce-1", Ts: 1_000_000}
	p := connectParams()
	SignConnect(priv, &p, ch)
	pub, err := VerifyConnect(p, ch.Nonce, ch.Ts+1000)
	if err != nil {
		t.Fatalf("VerifyConnect: %v", err)
	}
	if !pub.Equal(priv.Public()) {
		t.Errorf("VerifyConnect returned another key")
	}

	other := key(2)
	for _, tc := range []struct {
		name   string
		mutate func(*ConnectParams)
		nonce  string
		now    int64
		want   error
	}{
		{"no device", func(p *ConnectParams) { p.Device = nil }, ch.Nonce, ch.Ts, ErrDeviceMissing},
		{"bad key", func(p *ConnectParams) { p.Device.PublicKey = "!!" }, ch.Nonce, ch.Ts, ErrDevicePublicKey},
		{"short key", func(p *ConnectParams) { p.Device.PublicKey = EncodeB64([]byte("short")) }, ch.Nonce, ch.Ts, ErrDevicePublicKey},
		{"id mismatch", func(p *ConnectParams) { p.Device.ID = DeviceID(other.Public().(ed25519.PublicKey)) }, ch.Nonce, ch.Ts, ErrDeviceIDMismatch},
		{"other nonce", func(*ConnectParams) {}, "nonce-2", ch.Ts, ErrDeviceNonce},
		{"stale", func(*ConnectParams) {}, ch.Nonce, ch.Ts + MaxSignatureSkewMs + 1, ErrDeviceSignedAt},
		{"future", func(*ConnectParams) {}, ch.Nonce, ch.Ts - MaxSignatureSkewMs - 1, ErrDeviceSignedAt},
		{"tampered token", func(p *ConnectParams) { p.Auth.Token = "other" }, ch.Nonce, ch.Ts, ErrDeviceSignature},
		{"tampered role", func(p *ConnectParams) { p.Role = "operator" }, ch.Nonce, ch.Ts, ErrDeviceSignature},
		{"tampered scopes", func(p *ConnectParams) { p.Scopes = []string{"operator.admin"} }, ch.Nonce, ch.Ts, ErrDeviceSignature},
		{"tampered platform", func(p *ConnectParams) { p.Client.Platform = "darwin" }, ch.Nonce, ch.Ts, ErrDeviceSignature},
		{"tampered client id", func(p *ConnectParams) { p.Client.ID = "cli" }, ch.Nonce, ch.Ts, ErrDeviceSignature},
		{"tampered signedAt", func(p *ConnectParams) { p.Device.SignedAt++ }, ch.Nonce, ch.Ts, ErrDeviceSignature},
		{"garbage signature", func(p *ConnectParams) { p.Device.Signature = "AAAA" }, ch.Nonce, ch.Ts, ErrDeviceSignature},
		{"signed by other key", func(p *ConnectParams) {
			q := *p
			SignConnect(other, &q, ch)
			p.Device.Signature = q.Device.Signature
		}, ch.Nonce, ch.Ts, ErrDeviceSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := connectParams()
			SignConnect(priv, &q, ch)
			tc.mutate(&q)
			_, err := VerifyConnect(q, tc.nonce, tc.now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyConnect = %v, want %v", err, tc.want)
			}
			if DeviceErrorDetail(err) == "" {
				t.Errorf("DeviceErrorDetail(%v) is empty", err)
			}
		})
	}
}

func TestChallengeProof(t *testing.T) {
	gw := key(3)
	c := Challenge{Nonce: "n", Ts: 5}
	SignChallenge(gw, &c)
	if err := VerifyChallenge(gw.Public().(ed25519.PublicKey), c); err != nil {
		t.Fatalf("VerifyChallenge: %v", err)
	}
	for name, mut := range map[string]func(*Challenge){
		"no proof":  func(c *Challenge) { c.ClawOpsProof = "" },
		"other ts":  func(c *Challenge) { c.Ts++ },
		"other key": func(c *Challenge) { SignChallenge(key(4), c) },
		"garbage":   func(c *Challenge) { c.ClawOpsProof = "%%" },
	} {
		d := c
		mut(&d)
		if err := VerifyChallenge(gw.Public().(ed25519.PublicKey), d); err == nil {
			t.Errorf("%s: VerifyChallenge = nil, want an error", name)
		}
	}
}

func TestInvokeSigningString(t *testing.T) {
	r := InvokeRequest{ID: "i", NodeID: "n", Command: "c", ParamsJSON: "", IdempotencyKey: "k"}
	want := "clawops-invoke-v1|i|n|c|e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855|k|99"
	if got := InvokeSigningString(r, 99); got != want {
		t.Errorf("InvokeSigningString = %q, want %q", got, want)
	}
}

func TestInvokeSignVerify(t *testing.T) {
	gw := key(5)
	pub := gw.Public().(ed25519.PublicKey)
	now := time.UnixMilli(1_700_000_000_000)
	base := InvokeRequest{ID: "inv-1", NodeID: "node-1", Command: "openclaw.logs", ParamsJSON: `{"tail":10}`,
		TimeoutMs: 1000, IdempotencyKey: "key-1"}
	signed := base
	SignInvoke(gw, &signed, now.Add(time.Minute))
	if err := VerifyInvoke(pub, signed, now, 5*time.Minute); err != nil {
		t.Fatalf("VerifyInvoke(signed) = %v", err)
	}
	if err := signed.Validate(); err != nil {
		t.Fatalf("Validate(signed) = %v", err)
	}

	for _, tc := range []struct {
		name   string
		mutate func(*InvokeRequest)
		now    time.Time
		want   clawops.ReasonCode
	}{
		{"unsigned", func(r *InvokeRequest) { r.ClawOps = nil }, now, clawops.ReasonUnsignedCommand},
		{"empty signature", func(r *InvokeRequest) { r.ClawOps.Signature = "" }, now, clawops.ReasonUnsignedCommand},
		{"other key", func(r *InvokeRequest) { SignInvoke(key(6), r, now.Add(time.Minute)) }, now, clawops.ReasonBadSignature},
		{"tampered id", func(r *InvokeRequest) { r.ID = "inv-2" }, now, clawops.ReasonBadSignature},
		{"tampered node", func(r *InvokeRequest) { r.NodeID = "node-2" }, now, clawops.ReasonBadSignature},
		{"tampered command", func(r *InvokeRequest) { r.Command = "openclaw.restart" }, now, clawops.ReasonBadSignature},
		{"tampered params", func(r *InvokeRequest) { r.ParamsJSON = `{"tail":11}` }, now, clawops.ReasonBadSignature},
		{"tampered key", func(r *InvokeRequest) { r.IdempotencyKey = "key-2" }, now, clawops.ReasonBadSignature},
		{"tampered expiry", func(r *InvokeRequest) { r.ClawOps.ExpiresAtMs += 1000 }, now, clawops.ReasonBadSignature},
		{"wrong version", func(r *InvokeRequest) { r.ClawOps.V = 2 }, now, clawops.ReasonBadSignature},
		{"garbage signature", func(r *InvokeRequest) { r.ClawOps.Signature = "not-base64!" }, now, clawops.ReasonBadSignature},
		{"expired", func(*InvokeRequest) {}, now.Add(time.Minute), clawops.ReasonCommandExpired},
		{"too far ahead", func(r *InvokeRequest) { SignInvoke(gw, r, now.Add(time.Hour)) }, now, clawops.ReasonCommandExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := signed
			a := *signed.ClawOps
			r.ClawOps = &a
			tc.mutate(&r)
			err := VerifyInvoke(pub, r, tc.now, 5*time.Minute)
			if got := clawops.ReasonOf(err); got != tc.want {
				t.Fatalf("VerifyInvoke reason = %q (%v), want %q", got, err, tc.want)
			}
			if clawops.KindOf(err) != clawops.KindDenied {
				t.Errorf("kind = %v, want denied", clawops.KindOf(err))
			}
		})
	}
}

func TestInvokeRequestValidate(t *testing.T) {
	ok := InvokeRequest{ID: "i", NodeID: "n", Command: "c", IdempotencyKey: "k"}
	for name, mut := range map[string]func(*InvokeRequest){
		"empty id":       func(r *InvokeRequest) { r.ID = "" },
		"pipe in id":     func(r *InvokeRequest) { r.ID = "a|b" },
		"pipe in cmd":    func(r *InvokeRequest) { r.Command = "a|b" },
		"space in key":   func(r *InvokeRequest) { r.IdempotencyKey = "a b" },
		"long key":       func(r *InvokeRequest) { r.IdempotencyKey = strings.Repeat("k", MaxIDLen+1) },
		"neg timeout":    func(r *InvokeRequest) { r.TimeoutMs = -1 },
		"newline in cmd": func(r *InvokeRequest) { r.Command = "a\nb" },
	} {
		r := ok
		mut(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: Validate = nil, want an error", name)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(ok) = %v", err)
	}
}

func TestInvokeResult(t *testing.T) {
	for _, tc := range []struct {
		r    InvokeResult
		want string
	}{
		{InvokeResult{ID: "i", NodeID: "n", OK: true, PayloadJSON: `{"a":1}`}, `{"a":1}`},
		{InvokeResult{ID: "i", NodeID: "n", OK: true, Payload: []byte(`[1]`)}, `[1]`},
		{InvokeResult{ID: "i", NodeID: "n", OK: true}, `null`},
	} {
		if got := string(tc.r.Result()); got != tc.want {
			t.Errorf("Result() = %s, want %s", got, tc.want)
		}
	}
	if err := (InvokeResult{ID: "i", NodeID: "n", OK: false}).Validate(); err == nil {
		t.Error("failed result without error: Validate = nil")
	}
}

func TestIsRefusal(t *testing.T) {
	if !IsRefusal(clawops.ReasonCommandReplayed) || IsRefusal(clawops.ReasonExecutionFailed) {
		t.Error("IsRefusal misclassifies")
	}
}
