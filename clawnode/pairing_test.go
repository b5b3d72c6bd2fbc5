package clawnode

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// pairingRequestID reads requestId from a PAIRING_REQUIRED refusal and checks that it
// tells the node to keep retrying, in the stock gateway's shape.
func pairingRequestID(t *testing.T, f proto.Frame) string {
	t.Helper()
	wantRefused(t, f, proto.CodeNotPaired, proto.DetailPairingRequired)
	var d proto.PairingDetails
	if err := json.Unmarshal(f.Error.Details, &d); err != nil {
		t.Fatalf("details %s: %v", f.Error.Details, err)
	}
	if d.RequestID == "" || d.RecommendedNextStep != "wait_then_retry" || !d.Retryable || d.PauseReconnect {
		t.Errorf("details = %+v, want a request id and wait_then_retry, retryable, no pause", d)
	}
	if !f.Error.Retryable {
		t.Error("error.retryable = false, want true while a request waits")
	}
	return d.RequestID
}

func TestManualPairing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	key := newKey()
	node := clawops.NodeID(proto.DeviceID(key.Public().(ed25519.PublicKey)))
	p := nodeParams("")
	p.Client.DisplayName = "hand-installed"
	p.Commands = []string{"system.which"}

	// An unknown device without a join token becomes a pairing request; retries reuse it.
	id := pairingRequestID(t, dialRaw(t, e.url).connect(t, key, p, nil))
	if again := pairingRequestID(t, dialRaw(t, e.url).connect(t, key, p, nil)); again != id {
		t.Errorf("retry made request %s, want the same %s", again, id)
	}
	// A stock node host presents its gateway's shared token: still a pairing request.
	ps := p
	ps.Auth = &proto.ConnectAuth{Token: "shared-secret"}
	if shared := pairingRequestID(t, dialRaw(t, e.url).connect(t, key, ps, nil)); shared != id {
		t.Errorf("shared-token retry made request %s, want %s", shared, id)
	}
	pending, err := e.hub.PendingPairings(ctx)
	if err != nil || len(pending) != 1 {
		t.Fatalf("PendingPairings = %+v, %v; want one", pending, err)
	}
	if r := pending[0]; r.ID != id || r.DeviceID != string(node) || r.DisplayName != "hand-installed" ||
		r.Commands != `["system.which"]` || r.Status != PairingPending {
		t.Errorf("request = %+v", r)
	}
	if got := e.audits.find(EventPairingRequested); len(got) != 1 || got[0].Node != node || got[0].Request != id {
		t.Errorf("requested audits = %+v, want one for %s", got, short(node))
	}

	// Approval binds it to an instance; the next connect gets a device token.
	dev, err := e.hub.ApprovePairing(ctx, id, "manual-1", "alice@example.com")
	if err != nil {
		t.Fatalf("ApprovePairing: %v", err)
	}
	if dev.ID != string(node) || dev.Instance != "manual-1" || dev.PairedVia != PairedManually || dev.ApprovedBy != "alice@example.com" {
		t.Errorf("device = %+v", dev)
	}
	if got := e.audits.find(EventApproved); len(got) != 1 || got[0].Actor != "alice@example.com" || got[0].Decision != clawops.Allow {
		t.Errorf("approved audits = %+v", got)
	}
	c := dialRaw(t, e.url)
	f := c.connect(t, key, p, nil)
	if !*f.OK {
		t.Fatalf("connect after approval: %+v", f.Error)
	}
	var hello proto.HelloOK
	json.Unmarshal(f.Payload, &hello)
	if hello.Auth.DeviceToken == "" || hello.Auth.Method != "pairing" {
		t.Fatalf("hello auth = %+v, want a device token issued by pairing", hello.Auth)
	}
	e.waitConnected(node)
	if got, _ := e.hub.NodeForInstance(ctx, "manual-1"); got != node {
		t.Errorf("NodeForInstance = %s, want %s", got, node)
	}
	c.ws.CloseNow()
	waitFor(t, "node gone", func() bool { return !e.hub.Connected(node) })

	// From now on the device token is required: in auth.deviceToken beside a shared
	// token (the stock node host's way), or in auth.token.
	withShared := nodeParams("shared-secret")
	withShared.Auth.DeviceToken = hello.Auth.DeviceToken
	if f := dialRaw(t, e.url).connect(t, key, withShared, nil); !*f.OK {
		t.Errorf("connect with deviceToken beside a shared token: %+v", f.Error)
	}
	if f := dialRaw(t, e.url).connect(t, key, nodeParams(hello.Auth.DeviceToken), nil); !*f.OK {
		t.Errorf("connect with the device token: %+v", f.Error)
	}
	wantRefused(t, dialRaw(t, e.url).connect(t, key, nodeParams(""), nil), proto.CodeInvalidRequest, proto.DetailDeviceTokenMismatch)
	wantRefused(t, dialRaw(t, e.url).connect(t, key, nodeParams("shared-secret"), nil), proto.CodeInvalidRequest, proto.DetailDeviceTokenMismatch)
	if got := e.audits.find(EventTokenIssued); len(got) != 1 {
		t.Errorf("token-issued audits = %d, want 1", len(got))
	}
}

func TestPairingDecisionsRefused(t *testing.T) {
	e := newEnv(t, func(o *HubOptions) { o.MaxPendingPairings = 2 })
	ctx := context.Background()
	request := func(t *testing.T, key ed25519.PrivateKey) string {
		t.Helper()
		return pairingRequestID(t, dialRaw(t, e.url).connect(t, key, nodeParams(""), nil))
	}
	a, b := newKey(), newKey()
	ida, idb := request(t, a), request(t, b)

	t.Run("cap on pending requests", func(t *testing.T) {
		wantRefused(t, dialRaw(t, e.url).connect(t, newKey(), nodeParams(""), nil), proto.CodeUnavailable, "")
	})
	t.Run("bad approvals", func(t *testing.T) {
		for _, tc := range []struct {
			name, id string
			instance clawops.InstanceID
			by       string
			reason   clawops.ReasonCode
		}{
			{"unknown request", "pr_nope", "i1", "alice", ReasonPairingNotFound},
			{"bad instance", ida, "a b", "alice", clawops.ReasonBadArguments},
			{"no approver", ida, "i1", "", clawops.ReasonBadArguments},
		} {
			_, err := e.hub.ApprovePairing(ctx, tc.id, tc.instance, tc.by)
			if clawops.ReasonOf(err) != tc.reason {
				t.Errorf("%s: ApprovePairing = %v, want %s", tc.name, err, tc.reason)
			}
		}
	})
	t.Run("reject", func(t *testing.T) {
		if err := e.hub.RejectPairing(ctx, idb, "bob", "not ours"); err != nil {
			t.Fatal(err)
		}
		wantRefused(t, dialRaw(t, e.url).connect(t, b, nodeParams(""), nil), proto.CodeForbidden, proto.DetailPairingRejected)
		if _, err := e.hub.ApprovePairing(ctx, idb, "i1", "alice"); clawops.ReasonOf(err) != clawops.ReasonAlreadyDecided {
			t.Errorf("approve after reject = %v, want APPROVAL_ALREADY_DECIDED", err)
		}
		if got := e.audits.find(EventRejected); len(got) != 1 || got[0].Actor != "bob" || got[0].Detail != "not ours" {
			t.Errorf("rejected audits = %+v", got)
		}
	})
	t.Run("audit down refuses the decision", func(t *testing.T) {
		e.audits.fail.Store(true)
		defer e.audits.fail.Store(false)
		if _, err := e.hub.ApprovePairing(ctx, ida, "i1", "alice"); clawops.KindOf(err) != clawops.KindTransient {
			t.Errorf("ApprovePairing with the audit down = %v, want a transient error", err)
		}
		if _, err := e.hub.Device(ctx, clawops.NodeID(proto.DeviceID(a.Public().(ed25519.PublicKey)))); err == nil {
			t.Error("device paired although its approval was not audited")
		}
		wantRefused(t, dialRaw(t, e.url).connect(t, newKey(), nodeParams(e.mint("audited-1")), nil), proto.CodeUnavailable, "")
	})
	t.Run("expired request", func(t *testing.T) {
		e.clock.Advance(defaultPairingTTL + time.Minute)
		defer e.clock.Advance(-defaultPairingTTL - time.Minute)
		if _, err := e.hub.ApprovePairing(ctx, ida, "i1", "alice"); clawops.ReasonOf(err) != ReasonPairingExpired {
			t.Errorf("approve of an expired request = %v, want PAIRING_EXPIRED", err)
		}
	})
}

func TestManualPairingDisabled(t *testing.T) {
	e := newEnv(t, func(o *HubOptions) { o.DisableManualPairing = true })
	f := dialRaw(t, e.url).connect(t, newKey(), nodeParams(""), nil)
	wantRefused(t, f, proto.CodeNotPaired, proto.DetailPairingRequired)
	if p, _ := e.hub.PendingPairings(context.Background()); len(p) != 0 {
		t.Errorf("PendingPairings = %d, want none when manual pairing is off", len(p))
	}
}

func TestEnrollmentIsAudited(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.startNode(t.TempDir(), e.mint("demo1-pri"), nil)
	e.waitConnected(a.id())
	b := e.startNode(t.TempDir(), e.mint("demo1-pri"), nil)
	e.waitConnected(b.id())
	waitFor(t, "old device dropped", func() bool { return !e.hub.Connected(a.id()) })
	f := dialRaw(t, e.url).connect(t, newKey(), nodeParams("gfj_forged"), nil)
	wantRefused(t, f, proto.CodeNotPaired, proto.DetailBootstrapTokenInvalid)
	if err := e.hub.RevokeBy(ctx, b.id(), "carol", "lost laptop"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "revoked device dropped", func() bool { return !e.hub.Connected(b.id()) })

	for _, tc := range []struct {
		action string
		node   clawops.NodeID
		actor  string
	}{
		{EventAutoApproved, a.id(), HubActor},
		{EventAutoApproved, b.id(), HubActor},
		{EventReplaced, a.id(), HubActor},
		{EventRevoked, b.id(), "carol"},
	} {
		found := false
		for _, ev := range e.audits.find(tc.action) {
			found = found || (ev.Node == tc.node && ev.Actor == tc.actor)
		}
		if !found {
			t.Errorf("no %s audit for %s by %s", tc.action, short(tc.node), tc.actor)
		}
	}
	if got := e.audits.find(EventRefused); len(got) != 1 || got[0].Reason != ReasonJoinTokenInvalid {
		t.Errorf("refused audits = %+v, want one JOIN_TOKEN_INVALID", got)
	}
	dev, _ := e.hub.Device(ctx, b.id())
	if dev.RevokeReason != RevokedByOperator {
		t.Errorf("revoke reason = %q, want %q", dev.RevokeReason, RevokedByOperator)
	}
	if err := e.hub.RevokeBy(ctx, "nope", "carol", ""); clawops.ReasonOf(err) != ReasonUnknownDevice {
		t.Errorf("RevokeBy(unknown) = %v, want UNKNOWN_DEVICE", err)
	}
}
