package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gatewayforge/clawops/clawnode/proto"
)

// fakeGateway speaks just enough of the gateway side to accept any node, answer hello-ok
// with a short tick interval, and then never tick.
type fakeGateway struct {
	key      ed25519.PrivateKey
	prove    bool
	accepts  atomic.Int32 // WebSocket connections
	connects atomic.Int32 // connect requests received
	events   atomic.Int32 // node.event requests received after hello
	protocol int          // hello-ok protocol (0 means 4)
	tokens   chan string
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer ws.CloseNow()
	g.accepts.Add(1)
	ctx := r.Context()
	ch := proto.Challenge{Nonce: "nonce-" + time.Now().String(), Ts: time.Now().UnixMilli()}
	if g.prove {
		proto.SignChallenge(g.key, &ch)
	}
	f, _ := proto.NewEvent(proto.EventConnectChallenge, ch)
	b, _ := proto.Encode(f)
	if ws.Write(ctx, websocket.MessageText, b) != nil {
		return
	}
	_, data, err := ws.Read(ctx)
	if err != nil {
		return
	}
	req, err := proto.DecodeFrame(data)
	if err != nil || req.Method != proto.MethodConnect {
		return
	}
	var p proto.ConnectParams
	if proto.UnmarshalStrict(req.Params, &p) != nil {
		return
	}
	g.connects.Add(1)
	select {
	case g.tokens <- p.Token():
	default:
	}
	protocol := g.protocol
	if protocol == 0 {
		protocol = 4
	}
	hello := proto.HelloOK{Type: "hello-ok", Protocol: protocol, Server: proto.ServerInfo{Version: "fake", ConnID: "c"},
		Auth:   proto.HelloAuth{Role: "node", Scopes: []string{}},
		Policy: proto.Policy{MaxPayload: 1 << 20, MaxBufferedBytes: 1 << 20, TickIntervalMs: 40}}
	res, _ := proto.NewResult(req.ID, hello)
	b, _ = proto.Encode(res)
	if ws.Write(ctx, websocket.MessageText, b) != nil {
		return
	}
	for { // read heartbeats, send nothing
		_, data, err := ws.Read(ctx)
		if err != nil {
			return
		}
		if f, err := proto.DecodeFrame(data); err == nil && f.Method == proto.MethodNodeEvent {
			g.events.Add(1)
		}
	}
}

func startFake(t *testing.T, prove bool, protocol int) (*fakeGateway, string) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	g := &fakeGateway{key: key, prove: prove, protocol: protocol, tokens: make(chan string, 100)}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, "ws" + strings.TrimPrefix(srv.URL, "http")
}

func runDaemon(t *testing.T, cfg Config) {
	t.Helper()
	cfg.Runtime = &fakeRuntime{}
	cfg.StateDir = t.TempDir()
	cfg.JoinToken = "gfj_test"
	cfg.BackoffMin, cfg.BackoffMax = 10*time.Millisecond, 40*time.Millisecond
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	})
}

func TestDaemonReconnectsWhenTicksStop(t *testing.T) {
	g, url := startFake(t, true, 0)
	runDaemon(t, Config{GatewayURL: url, GatewayKey: g.key.Public().(ed25519.PublicKey)})
	// Each session gets hello-ok then silence; after two missed ticks the daemon must drop
	// it and connect again.
	waitFor(t, "three sessions", func() bool { return g.connects.Load() >= 3 })
	if tok := <-g.tokens; tok != "gfj_test" {
		t.Errorf("presented token %q, want the join token", tok)
	}
}

func TestDaemonRejectsBadHello(t *testing.T) {
	g, url := startFake(t, true, 3)
	runDaemon(t, Config{GatewayURL: url, GatewayKey: g.key.Public().(ed25519.PublicKey), HeartbeatInterval: time.Millisecond})
	waitFor(t, "several attempts", func() bool { return g.connects.Load() >= 3 })
	if n := g.events.Load(); n != 0 {
		t.Errorf("daemon sent %d node events after a protocol-3 hello, want none", n)
	}
}

func TestDaemonRequiresGatewayProof(t *testing.T) {
	g, url := startFake(t, false, 0)
	runDaemon(t, Config{GatewayURL: url, GatewayKey: g.key.Public().(ed25519.PublicKey)})
	waitFor(t, "several attempts", func() bool { return g.accepts.Load() >= 3 })
	if n := g.connects.Load(); n != 0 {
		t.Errorf("daemon sent %d connect requests (with its credentials) to an unproven gateway", n)
	}

	// A gateway proving another key is no better.
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	g2, url2 := startFake(t, true, 0)
	runDaemon(t, Config{GatewayURL: url2, GatewayKey: otherKey.Public().(ed25519.PublicKey)})
	waitFor(t, "several attempts", func() bool { return g2.accepts.Load() >= 3 })
	if n := g2.connects.Load(); n != 0 {
		t.Errorf("daemon sent %d connect requests to a gateway proving the wrong key", n)
	}

	g3, url3 := startFake(t, false, 0)
	runDaemon(t, Config{GatewayURL: url3, GatewayKey: g3.key.Public().(ed25519.PublicKey), AllowUnprovenGateway: true})
	waitFor(t, "a connect when allowed", func() bool { return g3.connects.Load() >= 1 })
}

func TestNewRejectsBadConfig(t *testing.T) {
	pub := make(ed25519.PublicKey, 32)
	good := Config{GatewayURL: "ws://127.0.0.1:1/v1/nodes/ws", GatewayKey: pub, StateDir: t.TempDir(), Runtime: &fakeRuntime{}}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"http url", func(c *Config) { c.GatewayURL = "http://x/y" }, "gateway URL"},
		{"no host", func(c *Config) { c.GatewayURL = "ws:///y" }, "gateway URL"},
		{"no key", func(c *Config) { c.GatewayKey = nil }, "gateway key"},
		{"no state", func(c *Config) { c.StateDir = "" }, "state dir"},
		{"no runtime", func(c *Config) { c.Runtime = nil }, "runtime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mutate(&c)
			if _, err := New(c); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want error containing %q", err, tc.want)
			}
		})
	}
	d, err := New(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.NodeID()) != 64 {
		t.Errorf("NodeID = %q, want 64 hex characters", d.NodeID())
	}
	// The same state dir keeps the same identity.
	d2, err := New(good)
	if err != nil || d2.NodeID() != d.NodeID() {
		t.Errorf("second New: id %s, %v; want %s", d2.NodeID(), err, d.NodeID())
	}
}
