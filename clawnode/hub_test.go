package clawnode

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/daemon"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

func invoke(t testing.TB, h *Hub, n clawops.NodeID, cmd string, params any) (json.RawMessage, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.Invoke(ctx, n, cmd, params)
}

func TestEnrollAndInvoke(t *testing.T) {
	e := newEnv(t)
	tok := e.mint("demo1-pri")
	state := t.TempDir()
	n := e.startNode(state, tok, nil)
	e.waitConnected(n.id())

	// Enrollment bound the device to the token's instance and stored only hashes.
	if got, ok := e.hub.NodeForInstance(context.Background(), "demo1-pri"); !ok || got != n.id() {
		t.Errorf("NodeForInstance = %q, %v; want %q", got, ok, n.id())
	}
	devs, err := e.hub.Devices(context.Background())
	if err != nil || len(devs) != 1 {
		t.Fatalf("Devices = %v, %v; want one", devs, err)
	}
	if devs[0].Instance != "demo1-pri" || devs[0].ID != string(n.id()) {
		t.Errorf("device = %+v, want instance demo1-pri id %s", devs[0], n.id())
	}
	devTok := readToken(t, state)
	var jts []JoinToken
	e.db.Find(&jts)
	for _, jt := range jts {
		if jt.Hash == tok || strings.Contains(jt.Hash, tok) || jt.UsedBy != string(n.id()) {
			t.Errorf("join token row %+v: want a hash, used by the node", jt)
		}
	}
	if devs[0].TokenHash == devTok {
		t.Error("device token stored raw")
	}
	for _, f := range []string{daemon.DeviceKeyFile, daemon.DeviceTokenFile} {
		st, err := os.Stat(filepath.Join(state, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v (%v), want 0600", f, st.Mode().Perm(), err)
		}
	}
	if s := e.hub.Nodes(); len(s) != 1 || !s[0].Connected || s[0].Instance != "demo1-pri" || len(s[0].Commands) != 10 {
		t.Errorf("Nodes = %+v, want one connected node with 10 commands", s)
	}

	// Every standard command round-trips.
	raw, err := invoke(t, e.hub, n.id(), daemon.CmdMetrics, nil)
	if err != nil {
		t.Fatalf("vps.metrics: %v", err)
	}
	var m proto.Metrics
	if err := proto.UnmarshalStrict(raw, &m); err != nil || m.MemTotalBytes == 0 || m.DiskTotalBytes == 0 {
		t.Errorf("vps.metrics = %s (%v), want real numbers", raw, err)
	}
	raw, err = invoke(t, e.hub, n.id(), daemon.CmdHealth, map[string]any{})
	var hl proto.Health
	if err != nil || json.Unmarshal(raw, &hl) != nil || !hl.OK || hl.Status != 200 {
		t.Errorf("openclaw.health = %s, %v; want ok 200", raw, err)
	}
	raw, err = invoke(t, e.hub, n.id(), daemon.CmdLogs, map[string]int{"tail": 2})
	if err != nil || string(raw) != `{"lines":["l2","l3"]}` {
		t.Errorf("openclaw.logs = %s, %v; want the last 2 lines", raw, err)
	}
	raw, err = invoke(t, e.hub, n.id(), daemon.CmdRestart, nil)
	if err != nil || string(raw) != `{"restarted":true,"container":"running"}` {
		t.Errorf("openclaw.restart = %s, %v", raw, err)
	}
	if r, l := n.rt.counts(); r != 1 || l != 1 {
		t.Errorf("runtime calls = %d restarts, %d logs; want 1, 1", r, l)
	}

	// A restarted daemon reconnects with its stored device token, without the join token.
	n.stop()
	waitFor(t, "hub to see the node leave", func() bool { return !e.hub.Connected(n.id()) })
	n2 := e.startNode(state, "", nil)
	if n2.id() != n.id() {
		t.Fatalf("restarted daemon has id %s, want %s", n2.id(), n.id())
	}
	e.waitConnected(n2.id())
}

func TestEnrollmentRefusals(t *testing.T) {
	e := newEnv(t)
	tok := e.mint("demo1-pri")
	state := t.TempDir()
	n := e.startNode(state, tok, nil)
	e.waitConnected(n.id())
	deviceToken := readToken(t, state)
	nodeKey := loadKey(t, state)

	t.Run("reused join token", func(t *testing.T) {
		f := dialRaw(t, e.url).connect(t, newKey(), nodeParams(tok), nil)
		wantRefused(t, f, proto.CodeNotPaired, proto.DetailBootstrapTokenInvalid)
	})
	t.Run("unknown key without token", func(t *testing.T) {
		f := dialRaw(t, e.url).connect(t, newKey(), nodeParams(""), nil)
		wantRefused(t, f, proto.CodeNotPaired, proto.DetailPairingRequired)
	})
	t.Run("unknown key with made-up token", func(t *testing.T) {
		f := dialRaw(t, e.url).connect(t, newKey(), nodeParams("gfj_nonsense"), nil)
		wantRefused(t, f, proto.CodeNotPaired, proto.DetailBootstrapTokenInvalid)
	})
	t.Run("unknown key with a device token", func(t *testing.T) {
		f := dialRaw(t, e.url).connect(t, newKey(), nodeParams(deviceToken), nil)
		wantRefused(t, f, proto.CodeNotPaired, proto.DetailBootstrapTokenInvalid)
	})
	t.Run("right key, wrong signature", func(t *testing.T) {
		f := dialRaw(t, e.url).connect(t, nodeKey, nodeParams(deviceToken), func(p *proto.ConnectParams) {
			p.Device.Signature = proto.EncodeB64(make([]byte, 64))
		})
		wantRefused(t, f, proto.CodeInvalidRequest, proto.DetailSignatureInvalid)
	})
	t.Run("right key, signature over other fields", func(t *testing.T) {
		f := dialRaw(t, e.url).connect(t, nodeKey, nodeParams(deviceToken), func(p *proto.ConnectParams) {
			p.Client.Platform = "darwin"
		})
		wantRefused(t, f, proto.CodeInvalidRequest, proto.DetailSignatureInvalid)
	})
	t.Run("right key, wrong device token", func(t *testing.T) {
		f := dialRaw(t, e.url).connect(t, nodeKey, nodeParams("gfd_wrong"), nil)
		wantRefused(t, f, proto.CodeInvalidRequest, proto.DetailDeviceTokenMismatch)
	})
	t.Run("right key, no token", func(t *testing.T) {
		f := dialRaw(t, e.url).connect(t, nodeKey, nodeParams(""), nil)
		wantRefused(t, f, proto.CodeInvalidRequest, proto.DetailDeviceTokenMismatch)
	})
	t.Run("expired join token", func(t *testing.T) {
		tok2, err := e.hub.MintJoinToken(context.Background(), "demo2-pri", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(2 * time.Minute)
		defer e.clock.Advance(-2 * time.Minute)
		f := dialRaw(t, e.url).connect(t, newKey(), nodeParams(tok2), nil)
		wantRefused(t, f, proto.CodeNotPaired, proto.DetailBootstrapTokenInvalid)
	})
	t.Run("same key may repeat its own enrollment", func(t *testing.T) {
		// Covers a node that lost the hello-ok carrying its device token.
		f := dialRaw(t, e.url).connect(t, nodeKey, nodeParams(tok), nil)
		if f.Type != proto.TypeRes || !*f.OK {
			t.Fatalf("re-enrollment = %+v, want hello-ok", f)
		}
		var hello proto.HelloOK
		if err := json.Unmarshal(f.Payload, &hello); err != nil || hello.Auth.DeviceToken == "" || hello.Auth.DeviceToken == deviceToken {
			t.Errorf("re-enrollment hello auth = %+v, want a fresh device token", hello.Auth)
		}
	})
}

func TestHandshakeRejects(t *testing.T) {
	e := newEnv(t)
	tok := e.mint("demo1-pri")
	for _, tc := range []struct {
		name         string
		before       func(*proto.ConnectParams)
		after        func(*proto.ConnectParams)
		code, detail string
	}{
		{"protocol 3 only", func(p *proto.ConnectParams) { p.MinProtocol, p.MaxProtocol = 3, 3 }, nil,
			proto.CodeInvalidRequest, proto.DetailProtocolMismatch},
		{"operator role", func(p *proto.ConnectParams) { p.Role = "operator" }, nil,
			proto.CodeInvalidRequest, proto.DetailRoleNotNode},
		{"no device", nil, func(p *proto.ConnectParams) { p.Device = nil },
			proto.CodeInvalidRequest, proto.DetailDeviceIdentityRequired},
		{"stale nonce", nil, func(p *proto.ConnectParams) { p.Device.Nonce = "other" },
			proto.CodeInvalidRequest, proto.DetailNonceMismatch},
		{"id not the key's", nil, func(p *proto.ConnectParams) { p.Device.ID = strings.Repeat("0", 64) },
			proto.CodeInvalidRequest, proto.DetailDeviceIDMismatch},
		{"bad public key", nil, func(p *proto.ConnectParams) { p.Device.PublicKey = "AAAA" },
			proto.CodeInvalidRequest, proto.DetailPublicKeyInvalid},
		{"old signedAt", nil, func(p *proto.ConnectParams) { p.Device.SignedAt -= proto.MaxSignatureSkewMs + 1000 },
			proto.CodeInvalidRequest, proto.DetailSignatureExpired},
		{"empty platform", func(p *proto.ConnectParams) { p.Client.Platform = "" }, nil,
			proto.CodeInvalidRequest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := nodeParams(tok)
			if tc.before != nil {
				tc.before(&p)
			}
			f := dialRaw(t, e.url).connect(t, newKey(), p, tc.after)
			wantRefused(t, f, tc.code, tc.detail)
		})
	}
	t.Run("unknown connect field", func(t *testing.T) {
		c := dialRaw(t, e.url)
		p := nodeParams(tok)
		proto.SignConnect(newKey(), &p, c.ch)
		b, _ := json.Marshal(p)
		params := strings.Replace(string(b), `"minProtocol"`, `"extra":1,"minProtocol"`, 1)
		f := c.sendRaw(t, []byte(`{"type":"req","id":"c1","method":"connect","params":`+params+`}`), "c1")
		wantRefused(t, f, proto.CodeInvalidRequest, "")
	})
	t.Run("first request not connect", func(t *testing.T) {
		req, _ := proto.NewRequest("x1", proto.MethodNodeEvent, proto.NodeEventParams{Event: "e"})
		f := dialRaw(t, e.url).roundTrip(t, req)
		wantRefused(t, f, proto.CodeInvalidRequest, "")
	})
	t.Run("garbage frame", func(t *testing.T) {
		f := dialRaw(t, e.url).sendRaw(t, []byte(`{"type":"req","id":`), "")
		if f.Type != "closed" {
			t.Errorf("answer to garbage = %+v, want the connection closed", f)
		}
	})
	// None of these enrolled anything; the token is still good.
	if devs, _ := e.hub.Devices(context.Background()); len(devs) != 0 {
		t.Errorf("refused handshakes enrolled %d devices", len(devs))
	}
	n := e.startNode(t.TempDir(), tok, nil)
	e.waitConnected(n.id())
}

func TestMintJoinTokenRejects(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		instance clawops.InstanceID
		ttl      time.Duration
	}{
		{"", time.Hour}, {"a b", time.Hour}, {"a|b", time.Hour}, {clawops.InstanceID(strings.Repeat("a", 129)), time.Hour},
		{"ok", 0}, {"ok", -time.Second}, {"ok", MaxJoinTokenTTL + time.Second},
	} {
		_, err := e.hub.MintJoinToken(context.Background(), tc.instance, tc.ttl)
		if clawops.KindOf(err) != clawops.KindInvalid || clawops.ReasonOf(err) != clawops.ReasonBadArguments {
			t.Errorf("MintJoinToken(%q, %s) = %v, want invalid BAD_ARGUMENTS", tc.instance, tc.ttl, err)
		}
	}
}

func TestRevokeAndReplace(t *testing.T) {
	e := newEnv(t)
	a := e.startNode(t.TempDir(), e.mint("demo1-pri"), nil)
	e.waitConnected(a.id())

	// A new enrollment for the same instance retires the old device and drops it.
	b := e.startNode(t.TempDir(), e.mint("demo1-pri"), nil)
	e.waitConnected(b.id())
	waitFor(t, "old device dropped", func() bool { return !e.hub.Connected(a.id()) })
	if got, _ := e.hub.NodeForInstance(context.Background(), "demo1-pri"); got != b.id() {
		t.Errorf("NodeForInstance = %s, want the new device %s", got, b.id())
	}
	f := dialRaw(t, e.url).connect(t, loadKey(t, a.stateDir), nodeParams(readToken(t, a.stateDir)), nil)
	wantRefused(t, f, proto.CodeForbidden, proto.DetailDeviceRevoked)

	if err := e.hub.Revoke(context.Background(), b.id()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "revoked device dropped", func() bool { return !e.hub.Connected(b.id()) })
	if _, ok := e.hub.NodeForInstance(context.Background(), "demo1-pri"); ok {
		t.Error("NodeForInstance found a revoked device")
	}
	if _, err := invoke(t, e.hub, b.id(), daemon.CmdMetrics, nil); clawops.ReasonOf(err) != clawops.ReasonNodeOffline {
		t.Errorf("invoke on revoked node = %v, want NODE_OFFLINE", err)
	}
}

// readToken returns the device token a node stored; the node writes it just after the hub
// registers the connection, so wait for it.
func readToken(t testing.TB, stateDir string) string {
	t.Helper()
	var tok string
	waitFor(t, "the device token file", func() bool {
		b, err := os.ReadFile(filepath.Join(stateDir, daemon.DeviceTokenFile))
		tok = strings.TrimSpace(string(b))
		return err == nil && tok != ""
	})
	return tok
}

func TestHeartbeatReachesHub(t *testing.T) {
	e := newEnv(t)
	n := e.startNode(t.TempDir(), e.mint("demo1-pri"), nil, func(c *daemon.Config) { c.HeartbeatInterval = 50 * time.Millisecond })
	for range 2 { // the first at connect, the next on the interval
		select {
		case hb := <-e.heartbeats:
			if hb.Node != n.id() || hb.Instance != "demo1-pri" || hb.At.IsZero() {
				t.Errorf("heartbeat identity = %s/%s at %v", hb.Node, hb.Instance, hb.At)
			}
			if hb.Metrics.MemTotalBytes == 0 || !hb.OpenClaw.OK || hb.OpenClaw.Status != 200 || hb.Container != daemon.StateRunning {
				t.Errorf("heartbeat = %+v, want metrics, healthy OpenClaw, running container", hb)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no heartbeat within 10s")
		}
	}
}

// TestHeartbeatIntervalFromHub: a node configured to beat hourly beats at the interval the
// hub's hello-ok asks for (policy.heartbeatIntervalMs), so the gateway's config reaches
// nodes however they were installed.
func TestHeartbeatIntervalFromHub(t *testing.T) {
	e := newEnv(t, func(o *HubOptions) { o.HeartbeatInterval = time.Second })
	e.startNode(t.TempDir(), e.mint("demo1-pri"), nil, func(c *daemon.Config) { c.HeartbeatInterval = time.Hour })
	for i := range 3 { // the first at connect, then one a second: never within an hour
		select {
		case <-e.heartbeats:
		case <-time.After(30 * time.Second):
			t.Fatalf("heartbeat %d not received within 30s: the node kept its hourly interval", i+1)
		}
	}
}

func TestInvokeOffline(t *testing.T) {
	e := newEnv(t)
	_, err := invoke(t, e.hub, "no-such-node", daemon.CmdMetrics, nil)
	if clawops.ReasonOf(err) != clawops.ReasonNodeOffline || clawops.KindOf(err) != clawops.KindTransient {
		t.Errorf("Invoke on unknown node = %v, want NODE_OFFLINE transient", err)
	}
	if _, err := invoke(t, e.hub, "n", "c", func() {}); clawops.KindOf(err) != clawops.KindInvalid {
		t.Errorf("Invoke with unencodable params = %v, want invalid", err)
	}
}

// blocker is a command that signals when it starts and blocks until released.
type blocker struct {
	started chan struct{}
	release chan struct{}
}

func newBlocker(t testing.TB) *blocker {
	b := &blocker{started: make(chan struct{}, 10), release: make(chan struct{})}
	t.Cleanup(func() { close(b.release) })
	return b
}

func (b *blocker) command() daemon.Command {
	return daemon.Handle(func(ctx context.Context, _ daemon.NoParams) (any, error) {
		b.started <- struct{}{}
		select {
		case <-b.release:
			return "released", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
}

func TestInvokeFailsFastWhenNodeDrops(t *testing.T) {
	e := newEnv(t)
	b := newBlocker(t)
	n := e.startNode(t.TempDir(), e.mint("demo1-pri"), map[string]daemon.Command{"test.block": b.command()})
	e.waitConnected(n.id())

	errc := make(chan error, 1)
	go func() {
		// A deadline far beyond the test's patience: only the drop can end this call.
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		_, err := e.hub.Invoke(ctx, n.id(), "test.block", nil)
		errc <- err
	}()
	<-b.started
	n.stop()
	select {
	case err := <-errc:
		if clawops.ReasonOf(err) != clawops.ReasonNodeOffline || clawops.KindOf(err) != clawops.KindTransient {
			t.Errorf("Invoke = %v, want NODE_OFFLINE transient", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Invoke still waiting 10s after the node dropped")
	}
}

func TestInvokeTimeoutAndFailure(t *testing.T) {
	e := newEnv(t)
	b := newBlocker(t)
	fails := daemon.Handle(func(context.Context, daemon.NoParams) (any, error) {
		return nil, errors.New("disk on fire")
	})
	n := e.startNode(t.TempDir(), e.mint("demo1-pri"),
		map[string]daemon.Command{"test.block": b.command(), "test.fail": fails})
	e.waitConnected(n.id())

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := e.hub.Invoke(ctx, n.id(), "test.block", nil)
	if clawops.ReasonOf(err) != clawops.ReasonNodeTimeout || clawops.KindOf(err) != clawops.KindTransient {
		t.Errorf("Invoke past its deadline = %v, want NODE_TIMEOUT transient", err)
	}
	_, err = invoke(t, e.hub, n.id(), "test.fail", nil)
	if clawops.ReasonOf(err) != clawops.ReasonExecutionFailed || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("failing command = %v, want EXECUTION_FAILED with the node's message", err)
	}
}

func TestDaemonReconnectsAfterHubRestart(t *testing.T) {
	e := newEnv(t)
	state := t.TempDir()
	n := e.startNode(state, e.mint("demo1-pri"), nil)
	e.waitConnected(n.id())
	addr := e.srv.Listener.Addr().String()

	// The hub goes away: its process stops, the port closes.
	e.hub.Close()
	e.srv.Close()

	var ln net.Listener
	waitFor(t, "port "+addr+" free again", func() bool {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	e.startHub(ln) // same database and key: a restarted gateway
	e.waitConnected(n.id())
	if _, err := invoke(t, e.hub, n.id(), daemon.CmdMetrics, nil); err != nil {
		t.Errorf("invoke after reconnect: %v", err)
	}
}

func TestHubRejectsBadNodeRequests(t *testing.T) {
	e := newEnv(t)
	c := dialRaw(t, e.url)
	key := newKey()
	if f := c.connect(t, key, nodeParams(e.mint("demo1-pri")), nil); !*f.OK {
		t.Fatalf("connect: %+v", f.Error)
	}
	self := proto.DeviceID(key.Public().(ed25519.PublicKey))
	for _, tc := range []struct {
		name, frame string
		ok          bool
	}{
		{"result for another node", `{"type":"req","id":"r1","method":"node.invoke.result","params":{"id":"x","nodeId":"other","ok":true}}`, false},
		{"result unknown field", `{"type":"req","id":"r2","method":"node.invoke.result","params":{"id":"x","nodeId":"` + self + `","ok":true,"extra":1}}`, false},
		{"failed result without code", `{"type":"req","id":"r3","method":"node.invoke.result","params":{"id":"x","nodeId":"` + self + `","ok":false}}`, false},
		{"late result", `{"type":"req","id":"r4","method":"node.invoke.result","params":{"id":"x","nodeId":"` + self + `","ok":true,"payloadJSON":"1"}}`, true},
		{"event without name", `{"type":"req","id":"r5","method":"node.event","params":{"payloadJSON":"{}"}}`, false},
		{"bad heartbeat", `{"type":"req","id":"r6","method":"node.event","params":{"event":"clawops.heartbeat","payloadJSON":"{\"metrics\":5}"}}`, false},
		{"heartbeat with unknown field", `{"type":"req","id":"r7","method":"node.event","params":{"event":"clawops.heartbeat","payloadJSON":"{\"node\":\"spoof\"}"}}`, false},
		{"bad refusal report", `{"type":"req","id":"r8","method":"node.event","params":{"event":"clawops.command.refused","payloadJSON":"[]"}}`, false},
		{"unknown event", `{"type":"req","id":"r9","method":"node.event","params":{"event":"node.presence.alive","payload":{}}}`, true},
		{"unknown method", `{"type":"req","id":"r10","method":"system.run","params":{}}`, false},
		{"second connect", `{"type":"req","id":"r11","method":"connect","params":{}}`, false},
		{"good heartbeat", `{"type":"req","id":"r12","method":"node.event","params":{"event":"clawops.heartbeat","payloadJSON":"{\"sentAtMs\":1,\"metrics\":{\"memTotalBytes\":7},\"openclaw\":{\"ok\":true,\"latencyMs\":1,\"checkedAt\":1}}"}}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var id struct{ ID string }
			json.Unmarshal([]byte(tc.frame), &id)
			f := c.sendRaw(t, []byte(tc.frame), id.ID)
			if f.Type != proto.TypeRes || *f.OK != tc.ok {
				t.Fatalf("answer = %+v (error %+v), want ok=%v", f, f.Error, tc.ok)
			}
			if !tc.ok && f.Error.Code != proto.CodeInvalidRequest {
				t.Errorf("code = %s, want INVALID_REQUEST", f.Error.Code)
			}
		})
	}
	select {
	case hb := <-e.heartbeats:
		if string(hb.Node) != self || hb.Instance != "demo1-pri" || hb.Metrics.MemTotalBytes != 7 {
			t.Errorf("heartbeat = %+v, want this connection's node and instance", hb)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("good heartbeat not delivered")
	}
	if len(e.heartbeats) != 0 {
		t.Errorf("%d extra heartbeats delivered from bad frames", len(e.heartbeats))
	}
	if !e.hub.Connected(clawops.NodeID(self)) {
		t.Error("bad requests disconnected the node; only undecodable frames should")
	}
}
