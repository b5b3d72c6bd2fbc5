package clawnode

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/daemon"
	"github.com/gatewayforge/clawops/clawnode/keyfile"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

func TestKeyRotation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	state := t.TempDir()
	n := e.startNode(state, e.mint("demo1-pri"), nil)
	old := n.id()
	e.waitConnected(old)
	oldKey, oldTok := loadKey(t, state), readToken(t, state)

	if err := e.hub.RequestKeyRotation(ctx, old); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the node to come back with a new key", func() bool {
		id := n.d.NodeID()
		return id != old && e.hub.Connected(id)
	})
	fresh := n.d.NodeID()
	if _, err := invoke(t, e.hub, fresh, daemon.CmdHealth, nil); err != nil {
		t.Errorf("invoke with the new key: %v", err)
	}
	if got, _ := e.hub.NodeForInstance(ctx, "demo1-pri"); got != fresh {
		t.Errorf("NodeForInstance = %s, want the rotated device %s", short(got), short(fresh))
	}
	olddev, _ := e.hub.Device(ctx, old)
	newdev, _ := e.hub.Device(ctx, fresh)
	if olddev.RevokedAtMs == 0 || olddev.RevokeReason != RevokedKeyRotation {
		t.Errorf("old device = revoked %d reason %q, want revoked as rotated", olddev.RevokedAtMs, olddev.RevokeReason)
	}
	if newdev.RotatedFrom != string(old) || newdev.RotationPending || newdev.Instance != "demo1-pri" || newdev.PairedVia != PairedByRotation {
		t.Errorf("new device = %+v", newdev)
	}
	// The old key is refused; the files on disk are the new pair, promoted.
	wantRefused(t, dialRaw(t, e.url).connect(t, oldKey, nodeParams(oldTok), nil), proto.CodeForbidden, proto.DetailDeviceRevoked)
	if k := loadKey(t, state); proto.DeviceID(k.Public().(ed25519.PublicKey)) != string(fresh) {
		t.Error("device.key on disk is not the rotated key")
	}
	for _, f := range []string{daemon.DeviceKeyFile + ".next", daemon.DeviceTokenFile + ".next"} {
		if _, err := os.Stat(filepath.Join(state, f)); !os.IsNotExist(err) {
			t.Errorf("%s still exists after promotion (%v)", f, err)
		}
	}
	if got := e.audits.find(EventRotated); len(got) != 1 || got[0].Node != fresh {
		t.Errorf("rotation audits = %+v", got)
	}
	if err := e.hub.RequestKeyRotation(ctx, old); clawops.ReasonOf(err) != clawops.ReasonNodeOffline {
		t.Errorf("RequestKeyRotation(revoked node) = %v, want NODE_OFFLINE", err)
	}
}

func TestKeyRotationRefusals(t *testing.T) {
	e := newEnv(t)
	key := newKey()
	c := dialRaw(t, e.url)
	f := c.connect(t, key, nodeParams(e.mint("demo1-pri")), nil)
	if !*f.OK {
		t.Fatalf("connect: %+v", f.Error)
	}
	var hello proto.HelloOK
	proto.UnmarshalStrict(f.Payload, &hello)
	self := proto.DeviceID(key.Public().(ed25519.PublicKey))
	next := newKey()
	for _, tc := range []struct {
		name   string
		params any
	}{
		{"signed for another connection", proto.SignRotate(next, self, "other-conn")},
		{"signed for another device", proto.SignRotate(next, "someone-else", hello.Server.ConnID)},
		{"same key", proto.SignRotate(key, self, hello.Server.ConnID)},
		{"unknown field", map[string]string{"publicKey": "x", "signature": "y", "extra": "z"}},
		{"bad key", proto.RotateParams{PublicKey: "short", Signature: "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := proto.NewRequest("rot", proto.MethodRotateKey, tc.params)
			res := c.roundTrip(t, req)
			if res.Type != proto.TypeRes || *res.OK {
				t.Fatalf("answer = %+v, want a refusal", res)
			}
			if res.Error.DetailCode() != string(ReasonRotationRefused) {
				t.Errorf("detail = %q, want %s", res.Error.DetailCode(), ReasonRotationRefused)
			}
		})
	}
	devs, _ := e.hub.Devices(context.Background())
	if len(devs) != 1 {
		t.Errorf("%d devices after refused rotations, want 1", len(devs))
	}
}

// TestRotationCrashStates starts a daemon over state folders left by a rotation cut short
// at each step and checks that it connects with the right key.
func TestRotationCrashStates(t *testing.T) {
	e := newEnv(t)
	state := t.TempDir()
	n := e.startNode(state, e.mint("demo1-pri"), nil)
	e.waitConnected(n.id())
	old := n.id()
	readToken(t, state)
	n.stop()
	waitFor(t, "node gone", func() bool { return !e.hub.Connected(old) })

	// key.next without its token: the answer never came. The node keeps its old key.
	stray := newKey()
	if err := keyfile.Save(filepath.Join(state, daemon.DeviceKeyFile+".next"), stray); err != nil {
		t.Fatal(err)
	}
	n2 := e.startNode(state, "", nil)
	e.waitConnected(old)
	if _, err := os.Stat(filepath.Join(state, daemon.DeviceKeyFile+".next")); !os.IsNotExist(err) {
		t.Errorf("unanswered key.next kept (%v)", err)
	}
	n2.stop()
	waitFor(t, "node gone", func() bool { return !e.hub.Connected(old) })

	// key.next and token.next that the gateway does not know: refused, dropped, old pair used.
	keyfile.Save(filepath.Join(state, daemon.DeviceKeyFile+".next"), stray)
	keyfile.WriteSecret(filepath.Join(state, daemon.DeviceTokenFile+".next"), []byte("gfd_unknown\n"))
	n3 := e.startNode(state, "", nil)
	e.waitConnected(old)
	if n3.d.NodeID() != old {
		t.Errorf("node id = %s, want the old %s", short(n3.d.NodeID()), short(old))
	}
}
