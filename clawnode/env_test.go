package clawnode

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/daemon"
	"github.com/gatewayforge/clawops/clawnode/keyfile"
	"github.com/gatewayforge/clawops/clawnode/proto"
	"github.com/gatewayforge/clawops/clawnode/standin"
	"github.com/gatewayforge/clawops/store"
)

// testLogger sends logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// offsetClock is the system clock shifted by an adjustable offset.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// env is a hub served over real WebSocket on 127.0.0.1, with a SQLite file database.
type env struct {
	t          testing.TB
	db         *gorm.DB
	key        ed25519.PrivateKey
	clock      *offsetClock
	hub        *Hub
	srv        *httptest.Server
	url        string
	health     string // URL of a stand-in OpenClaw health endpoint
	heartbeats chan proto.Heartbeat
	refusals   chan Refusal
	audits     *auditRec
}

// auditRec records pairing decisions; fail makes it refuse them.
type auditRec struct {
	mu   sync.Mutex
	evs  []PairingEvent
	fail atomic.Bool
}

func (a *auditRec) record(_ context.Context, ev PairingEvent) error {
	if a.fail.Load() {
		return errors.New("audit store is down")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evs = append(a.evs, ev)
	return nil
}

// find returns the recorded events with action.
func (a *auditRec) find(action string) []PairingEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []PairingEvent
	for _, ev := range a.evs {
		if ev.Action == action {
			out = append(out, ev)
		}
	}
	return out
}

func newEnv(t testing.TB, mutate ...func(*HubOptions)) *env {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	if err := Migrate(db); err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	e := &env{t: t, db: db, key: key, clock: &offsetClock{},
		heartbeats: make(chan proto.Heartbeat, 100), refusals: make(chan Refusal, 100), audits: &auditRec{}}
	oc := httptest.NewServer(standin.Handler(tWriter{t}))
	t.Cleanup(oc.Close)
	e.health = oc.URL + "/health"
	e.startHub(nil, mutate...)
	return e
}

// startHub starts a hub (again) on ln, or on a fresh loopback port when ln is nil.
func (e *env) startHub(ln net.Listener, mutate ...func(*HubOptions)) {
	e.t.Helper()
	opts := HubOptions{DB: e.db, Key: e.key, Clock: e.clock, Logger: testLogger(e.t),
		OnHeartbeat: func(_ context.Context, hb proto.Heartbeat) {
			select {
			case e.heartbeats <- hb:
			default:
			}
		},
		OnRefused: func(_ context.Context, r Refusal) { e.refusals <- r },
		Audit:     e.audits.record,
	}
	for _, m := range mutate {
		m(&opts)
	}
	h, err := NewHub(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.hub = h
	srv := httptest.NewUnstartedServer(h)
	if ln != nil {
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Start()
	e.srv = srv
	e.url = "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/nodes/ws"
	e.t.Cleanup(func() { h.Close(); srv.Close() })
}

func (e *env) mint(instance string) string {
	e.t.Helper()
	tok, err := e.hub.MintJoinToken(context.Background(), clawops.InstanceID(instance), time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// recRuntime is a daemon.Runtime that records calls instead of touching a container.
type recRuntime struct {
	mu       sync.Mutex
	restarts int
	logs     int
}

func (r *recRuntime) Restart(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.restarts++
	return nil
}

func (r *recRuntime) Logs(_ context.Context, n int) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs++
	lines := []string{"l1", "l2", "l3"}
	return lines[max(0, len(lines)-n):], nil
}

func (r *recRuntime) Status(context.Context) (string, error) { return daemon.StateRunning, nil }

func (r *recRuntime) counts() (restarts, logs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.restarts, r.logs
}

// node is a daemon running in-process against the env's hub.
type node struct {
	d        *daemon.Daemon
	rt       *recRuntime
	stateDir string
	cancel   context.CancelFunc
	done     chan error
	once     sync.Once
}

// startNode runs a daemon with the standard commands plus extra ones.
func (e *env) startNode(stateDir, joinToken string, extra map[string]daemon.Command, mutate ...func(*daemon.Config)) *node {
	e.t.Helper()
	rt := &recRuntime{}
	cmds := daemon.StandardCommands(rt, daemon.NewHealthChecker(e.health, nil, 2*time.Second, nil), daemon.NewSampler("", "/"))
	for name, c := range extra {
		cmds.Register(name, c)
	}
	cfg := daemon.Config{
		GatewayURL: e.url, GatewayKey: e.hub.PublicKey(), JoinToken: joinToken, StateDir: stateDir,
		Instance: "demo1-pri", HealthURL: e.health, Runtime: rt, Commands: cmds,
		HeartbeatInterval: time.Hour, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		Logger: testLogger(e.t),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	d, err := daemon.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{d: d, rt: rt, stateDir: stateDir, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- d.Run(ctx) }()
	e.t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.once.Do(func() {
		n.cancel()
		<-n.done
	})
}

func (n *node) id() clawops.NodeID { return n.d.NodeID() }

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) waitConnected(n clawops.NodeID) {
	e.t.Helper()
	waitFor(e.t, "node "+string(n)[:8]+" connected", func() bool { return e.hub.Connected(n) })
}

// rawClient speaks the protocol by hand, to send what a well-behaved daemon never would.
type rawClient struct {
	ws *websocket.Conn
	ch proto.Challenge
}

func dialRaw(t testing.TB, url string) *rawClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	_, data, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("read challenge: %v", err)
	}
	f, err := proto.DecodeFrame(data)
	if err != nil || f.Event != proto.EventConnectChallenge {
		t.Fatalf("first frame = %s, %v; want connect.challenge", data, err)
	}
	c := &rawClient{ws: ws}
	if err := proto.UnmarshalStrict(f.Payload, &c.ch); err != nil {
		t.Fatalf("challenge: %v", err)
	}
	return c
}

func nodeParams(token string) proto.ConnectParams {
	return proto.ConnectParams{MinProtocol: 4, MaxProtocol: 4, Role: proto.RoleNode, Scopes: []string{},
		Client: proto.ClientInfo{ID: proto.ClientIDNodeHost, Version: "test", Platform: "linux", Mode: proto.ModeNode},
		Auth:   &proto.ConnectAuth{Token: token}}
}

// connect signs params with key (after before), applies after, sends the connect request
// and returns the response frame.
func (c *rawClient) connect(t testing.TB, key ed25519.PrivateKey, p proto.ConnectParams, after func(*proto.ConnectParams)) proto.Frame {
	t.Helper()
	proto.SignConnect(key, &p, c.ch)
	if after != nil {
		after(&p)
	}
	req, err := proto.NewRequest("c1", proto.MethodConnect, p)
	if err != nil {
		t.Fatal(err)
	}
	return c.roundTrip(t, req)
}

func (c *rawClient) roundTrip(t testing.TB, req proto.Frame) proto.Frame {
	t.Helper()
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return c.sendRaw(t, data, req.ID)
}

// sendRaw writes data and reads frames until the response to id (or the close).
func (c *rawClient) sendRaw(t testing.TB, data []byte, id string) proto.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, data); err != nil {
		t.Fatalf("write: %v", err)
	}
	for {
		_, data, err := c.ws.Read(ctx)
		if err != nil {
			return proto.Frame{Type: "closed", Event: websocket.CloseStatus(err).String()}
		}
		f, err := proto.DecodeFrame(data)
		if err != nil {
			t.Fatalf("hub sent an invalid frame %s: %v", data, err)
		}
		if f.Type == proto.TypeRes && f.ID == id {
			return f
		}
	}
}

func newKey() ed25519.PrivateKey {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	return k
}

func loadKey(t testing.TB, stateDir string) ed25519.PrivateKey {
	t.Helper()
	k, err := keyfile.Load(filepath.Join(stateDir, daemon.DeviceKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// wantRefused checks a connect response's error code and detail code.
func wantRefused(t testing.TB, f proto.Frame, code, detail string) {
	t.Helper()
	if f.Type != proto.TypeRes || f.OK == nil || *f.OK {
		t.Fatalf("connect answer = %+v, want a refusal %s/%s", f, code, detail)
	}
	if f.Error.Code != code || f.Error.DetailCode() != detail {
		t.Errorf("refusal = %s/%s (%s), want %s/%s", f.Error.Code, f.Error.DetailCode(), f.Error.Message, code, detail)
	}
}
