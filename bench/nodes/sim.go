//go:build linux

package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// simConfig is a sim child's config line: the nodes it plays and how.
type simConfig struct {
	Name               string          `json:"name"`
	GatewayURL         string          `json:"gatewayURL"`
	GatewayKey         string          `json:"gatewayKey"` // pinned, base64url
	SourceIPs          int             `json:"sourceIPs"`  // node i dials from sourceIP(i, SourceIPs)
	Nodes              []simNodeConfig `json:"nodes"`
	HeartbeatMs        int64           `json:"heartbeatMs"`
	DialConcurrency    int             `json:"dialConcurrency"`
	HandshakeTimeoutMs int64           `json:"handshakeTimeoutMs"`
	StatusEveryMs      int64           `json:"statusEveryMs"`
}

// simNodeConfig is one simulated node: its global index, its instance and join token.
type simNodeConfig struct {
	Index    int    `json:"index"`
	Instance string `json:"instance"`
	Token    string `json:"token"`
}

var instanceIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func (c simConfig) validate() (ed25519.PublicKey, error) {
	if err := checkLoopbackURL("sim config: gatewayURL", c.GatewayURL); err != nil {
		return nil, err
	}
	key, err := proto.DecodePublicKey(c.GatewayKey)
	if err != nil {
		return nil, fmt.Errorf("sim config: gatewayKey: %w", err)
	}
	if err := checkCommon("sim config", len(c.Nodes), c.SourceIPs, c.DialConcurrency, c.HandshakeTimeoutMs, c.StatusEveryMs); err != nil {
		return nil, err
	}
	if c.HeartbeatMs < 10 || c.HeartbeatMs > 600_000 {
		return nil, fmt.Errorf("sim config: heartbeatMs %d: want 10..600000", c.HeartbeatMs)
	}
	for i, n := range c.Nodes {
		if n.Index < 0 || n.Index >= maxNodes {
			return nil, fmt.Errorf("sim config: nodes[%d].index %d: want 0..%d", i, n.Index, maxNodes-1)
		}
		if !instanceIDPattern.MatchString(n.Instance) {
			return nil, fmt.Errorf("sim config: nodes[%d].instance %q: use 1-128 of [A-Za-z0-9._-]", i, n.Instance)
		}
		if n.Token == "" || len(n.Token) > 256 {
			return nil, fmt.Errorf("sim config: nodes[%d].token: want 1-256 characters", i)
		}
	}
	return key, nil
}

// checkCommon validates the settings sims and echo clients share.
func checkCommon(what string, nodes, sourceIPs, dials int, handshakeMs, statusMs int64) error {
	switch {
	case nodes < 1 || nodes > maxPerSim:
		return fmt.Errorf("%s: %d nodes: want 1..%d per process", what, nodes, maxPerSim)
	case sourceIPs < 1 || sourceIPs > 250:
		return fmt.Errorf("%s: sourceIPs %d: want 1..250", what, sourceIPs)
	case dials < 1 || dials > maxPerSim:
		return fmt.Errorf("%s: dialConcurrency %d: want 1..%d", what, dials, maxPerSim)
	case handshakeMs < 100 || handshakeMs > 120_000:
		return fmt.Errorf("%s: handshakeTimeoutMs %d: want 100..120000", what, handshakeMs)
	case statusMs < 10 || statusMs > 10_000:
		return fmt.Errorf("%s: statusEveryMs %d: want 10..10000", what, statusMs)
	}
	return nil
}

// sim plays many nodes in one process. Each node is what gf-clawnode is on the wire: its
// own Ed25519 device key, the challenge-signed connect, enrollment with its join token
// (then its device token on reconnect), heartbeats, and commands checked as the daemon
// checks them (strict decoding, addressed to it, signed by the pinned key, not expired, not
// replayed, allowlisted, params valid). It differs from gf-clawnode where that would
// measure this machine instead of the gateway: heartbeats and vps.metrics carry canned
// numbers instead of /proc samples, and the replay window is kept in memory, not fsynced.
type sim struct {
	cfg   simConfig
	gwKey ed25519.PublicKey
	pool  *clientPool
	st    *counters
	hbTO  time.Duration
	hsTO  time.Duration
}

// simNode is one simulated node. Only its own goroutine touches its fields.
type simNode struct {
	cfg         simNodeConfig
	key         ed25519.PrivateKey
	id          string
	deviceToken string
	replay      map[string]int64 // idempotency key → expiry (ms)
}

// runSim is the sim role's main.
func runSim(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	var cfg simConfig
	cmds, err := stdinLines(stdin, &cfg)
	if err != nil {
		return err
	}
	key, err := cfg.validate()
	if err != nil {
		return err
	}
	s := &sim{cfg: cfg, gwKey: key, pool: newClientPool(cfg.SourceIPs, cfg.DialConcurrency),
		st:   &counters{nodes: len(cfg.Nodes)},
		hbTO: time.Duration(cfg.HeartbeatMs) * time.Millisecond, hsTO: time.Duration(cfg.HandshakeTimeoutMs) * time.Millisecond}
	nodes := make([]*simNode, len(cfg.Nodes))
	for i, nc := range cfg.Nodes {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("device key: %w", err)
		}
		nodes[i] = &simNode{cfg: nc, key: k, id: proto.DeviceID(k.Public().(ed25519.PublicKey)), replay: make(map[string]int64)}
	}
	out := newLineWriter(stdout)
	if err := out.emit(event{Ev: eventReady}); err != nil {
		return err
	}
	if !waitGo(ctx, cmds) {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.st.goAt = time.Now()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { keepConnected(ctx, s.st, func(ctx context.Context) (bool, error) { return s.session(ctx, n) }) })
	}
	runStatusLoop(ctx, out, s.st, time.Duration(cfg.StatusEveryMs)*time.Millisecond, cmds)
	cancel()
	wg.Wait()
	return nil
}

// simConn is one live session of a node.
type simConn struct {
	ws  *websocket.Conn
	seq atomic.Uint64
}

func (c *simConn) send(ctx context.Context, f proto.Frame) (int, error) {
	data, err := proto.Encode(f)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return len(data), c.ws.Write(ctx, websocket.MessageText, data)
}

func (c *simConn) request(ctx context.Context, method string, params any) (int, error) {
	f, err := proto.NewRequest("n"+strconv.FormatUint(c.seq.Add(1), 10), method, params)
	if err != nil {
		return 0, err
	}
	return c.send(ctx, f)
}

// session dials, authenticates and serves one connection of node n.
func (s *sim) session(ctx context.Context, n *simNode) (connected bool, err error) {
	release, err := s.pool.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	hctx, cancel := context.WithTimeout(ctx, s.hsTO)
	defer cancel()
	ws, _, err := websocket.Dial(hctx, s.cfg.GatewayURL, &websocket.DialOptions{
		HTTPClient: s.pool.client(n.cfg.Index), CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return false, fmt.Errorf("dial gateway: %w", err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(proto.MaxPreAuthFrameBytes)
	c := &simConn{ws: ws}
	hello, err := s.handshake(hctx, c, n)
	release()
	if err != nil {
		return false, err
	}
	if hello.Auth.DeviceToken != "" {
		first := n.deviceToken == ""
		n.deviceToken = hello.Auth.DeviceToken
		if first {
			s.st.firstConnect()
		}
	}
	ws.SetReadLimit(hello.Policy.MaxPayload)
	s.st.connected.Add(1)
	defer s.st.connected.Add(-1)

	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	go s.heartbeats(sctx, c, n)
	tick := time.Duration(hello.Policy.TickIntervalMs) * time.Millisecond
	silence := 2*tick + tick/2
	for {
		rctx, rcancel := context.WithTimeout(sctx, silence)
		_, data, err := ws.Read(rctx)
		timedOut := rctx.Err() != nil && sctx.Err() == nil
		rcancel()
		if err != nil {
			if timedOut {
				return true, fmt.Errorf("no frame from the gateway for %s", silence)
			}
			return true, fmt.Errorf("read: %w", err)
		}
		f, err := proto.DecodeFrame(data)
		if err != nil {
			ws.Close(websocket.StatusInvalidFramePayloadData, "invalid frame")
			return true, fmt.Errorf("gateway sent an invalid frame: %w", err)
		}
		switch {
		case f.Type == proto.TypeEvent && f.Event == proto.EventInvokeRequest:
			s.st.reqFrames.Add(1)
			s.st.reqBytes.Add(int64(len(data)))
			s.handleInvoke(sctx, c, n, f.Payload)
		case f.Type == proto.TypeRes && !*f.OK:
			s.st.rejects.Add(1)
			s.st.setErr(fmt.Errorf("gateway rejected request %s: %s", f.ID, f.Error.Error()))
		}
	}
}

// handshake answers the challenge (after checking the gateway's proof of the pinned key)
// with a signed connect and waits for hello-ok.
func (s *sim) handshake(ctx context.Context, c *simConn, n *simNode) (proto.HelloOK, error) {
	var ch proto.Challenge
	for ch.Nonce == "" {
		f, err := readFrame(ctx, c.ws)
		if err != nil {
			return proto.HelloOK{}, fmt.Errorf("wait for challenge: %w", err)
		}
		if f.Type == proto.TypeEvent && f.Event == proto.EventConnectChallenge {
			if err := proto.UnmarshalStrict(f.Payload, &ch); err != nil {
				return proto.HelloOK{}, fmt.Errorf("challenge payload: %w", err)
			}
			if err := ch.Validate(); err != nil {
				return proto.HelloOK{}, err
			}
		}
	}
	if err := proto.VerifyChallenge(s.gwKey, ch); err != nil {
		return proto.HelloOK{}, fmt.Errorf("refusing to authenticate to this gateway: %w", err)
	}
	tok := n.deviceToken
	if tok == "" {
		tok = n.cfg.Token
	}
	p := proto.ConnectParams{
		MinProtocol: proto.ProtocolVersion, MaxProtocol: proto.ProtocolVersion,
		Client: proto.ClientInfo{ID: proto.ClientIDNodeHost, DisplayName: n.cfg.Instance,
			Version: "bench-sim", Platform: "linux", Mode: proto.ModeNode},
		Role: proto.RoleNode, Scopes: []string{}, Caps: []string{}, Commands: simCommandNames,
		Auth: &proto.ConnectAuth{Token: tok}, UserAgent: "gf-clawnode-sim/bench",
	}
	proto.SignConnect(n.key, &p, ch)
	req, err := proto.NewRequest("connect-1", proto.MethodConnect, p)
	if err != nil {
		return proto.HelloOK{}, err
	}
	if _, err := c.send(ctx, req); err != nil {
		return proto.HelloOK{}, fmt.Errorf("send connect: %w", err)
	}
	for {
		f, err := readFrame(ctx, c.ws)
		if err != nil {
			return proto.HelloOK{}, fmt.Errorf("wait for hello: %w", err)
		}
		if f.Type != proto.TypeRes || f.ID != req.ID {
			continue
		}
		if !*f.OK {
			return proto.HelloOK{}, fmt.Errorf("gateway refused connect: %s/%s: %s", f.Error.Code, f.Error.DetailCode(), f.Error.Message)
		}
		var hello proto.HelloOK
		if err := json.Unmarshal(f.Payload, &hello); err != nil {
			return proto.HelloOK{}, fmt.Errorf("hello-ok payload: %w", err)
		}
		return hello, hello.Validate()
	}
}

func readFrame(ctx context.Context, ws *websocket.Conn) (proto.Frame, error) {
	_, data, err := ws.Read(ctx)
	if err != nil {
		return proto.Frame{}, err
	}
	return proto.DecodeFrame(data)
}

// heartbeats sends a clawops.heartbeat node event now and every heartbeat interval, as
// gf-clawnode does, with canned numbers.
func (s *sim) heartbeats(ctx context.Context, c *simConn, n *simNode) {
	t := time.NewTicker(s.hbTO)
	defer t.Stop()
	for {
		now := time.Now().UnixMilli()
		ev, _ := json.Marshal(proto.HeartbeatEvent{SentAtMs: now, Metrics: cannedMetrics(n.cfg.Index),
			OpenClaw: cannedHealth(now), Container: "running"})
		if _, err := c.request(ctx, proto.MethodNodeEvent, proto.NodeEventParams{
			Event: proto.NodeEventHeartbeat, PayloadJSON: string(ev)}); err != nil {
			return
		}
		s.st.heartbeats.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// maxCommandTTL is how far ahead a command's expiry may be (gf-clawnode's default).
const maxCommandTTL = 10 * time.Minute

// simCommandNames is the allowlist a simulated node declares: the read commands.
var simCommandNames = []string{"openclaw.health", "vps.metrics"}

// checkInvoke runs gf-clawnode's checks on one node.invoke.request, in its order, and
// returns the request and the JSON result to send, or the refusal.
func checkInvoke(gwKey ed25519.PublicKey, n *simNode, payload []byte, now time.Time) (proto.InvokeRequest, string, error) {
	var r proto.InvokeRequest
	if err := proto.UnmarshalStrict(payload, &r); err != nil {
		return r, "", clawops.E("invoke", clawops.KindInvalid, clawops.ReasonMalformedRequest, err)
	}
	if err := r.Validate(); err != nil {
		return r, "", clawops.E("invoke", clawops.KindInvalid, clawops.ReasonMalformedRequest, err)
	}
	if r.NodeID != n.id {
		return r, "", clawops.E("invoke", clawops.KindDenied, clawops.ReasonForbidden, "command is addressed to another node")
	}
	if err := proto.VerifyInvoke(gwKey, r, now, maxCommandTTL); err != nil {
		return r, "", err
	}
	key := r.IdempotencyKey
	if key == "" {
		key = "id:" + r.ID
	}
	nowMs := now.UnixMilli()
	if _, seen := n.replay[key]; seen {
		return r, "", clawops.E("invoke", clawops.KindDenied, clawops.ReasonCommandReplayed, "idempotency key already used")
	}
	if len(n.replay) >= 1024 {
		for k, exp := range n.replay {
			if exp <= nowMs {
				delete(n.replay, k)
			}
		}
		if len(n.replay) >= 1024 {
			return r, "", clawops.E("invoke", clawops.KindTransient, clawops.ReasonCode(proto.InvokeErrUnavailable), "replay window full")
		}
	}
	n.replay[key] = r.ClawOps.ExpiresAtMs
	var result any
	switch r.Command {
	case "vps.metrics":
		result = cannedMetrics(n.cfg.Index)
	case "openclaw.health":
		result = cannedHealth(nowMs)
	default:
		return r, "", clawops.E("invoke", clawops.KindDenied, clawops.ReasonNotAllowlisted,
			fmt.Sprintf("command %q is not in this node's allowlist", clipString(r.Command, 64)))
	}
	if r.ParamsJSON != "" {
		var none struct{}
		if err := proto.UnmarshalStrict([]byte(r.ParamsJSON), &none); err != nil {
			return r, "", clawops.E("invoke", clawops.KindInvalid, clawops.ReasonBadParams, err)
		}
	}
	b, err := json.Marshal(result)
	if err != nil {
		return r, "", clawops.E("invoke", clawops.ReasonExecutionFailed, err)
	}
	return r, string(b), nil
}

// handleInvoke answers one command: its result, or the refusal as the result's error plus
// a clawops.command.refused node event, as gf-clawnode does.
func (s *sim) handleInvoke(ctx context.Context, c *simConn, n *simNode, payload []byte) {
	r, result, err := checkInvoke(s.gwKey, n, payload, time.Now())
	if err == nil {
		size, werr := c.request(ctx, proto.MethodInvokeResult, proto.InvokeResult{ID: r.ID, NodeID: n.id, OK: true, PayloadJSON: result})
		if werr == nil {
			s.st.invokes.Add(1)
			s.st.resFrames.Add(1)
			s.st.resBytes.Add(int64(size))
		}
		return
	}
	s.st.refusals.Add(1)
	s.st.setErr(err)
	code := clawops.ReasonOf(err)
	msg := err.Error()
	var ce *clawops.Error
	if errors.As(err, &ce) && ce.Err != nil {
		msg = ce.Err.Error()
	}
	msg = clipString(msg, 500)
	if r.ID != "" && len(r.ID) <= proto.MaxIDLen {
		_, _ = c.request(ctx, proto.MethodInvokeResult, proto.InvokeResult{ID: r.ID, NodeID: n.id, OK: false,
			Error: &proto.InvokeError{Code: string(code), Message: msg}})
	}
	if code == proto.InvokeErrUnavailable {
		return
	}
	ev, _ := json.Marshal(proto.CommandRefused{ID: clipString(r.ID, proto.MaxIDLen), Command: clipString(r.Command, proto.MaxIDLen),
		IdempotencyKey: clipString(r.IdempotencyKey, proto.MaxIDLen), Code: code, Message: msg})
	_, _ = c.request(ctx, proto.MethodNodeEvent, proto.NodeEventParams{Event: proto.NodeEventCommandRefused, PayloadJSON: string(ev)})
}

// cannedMetrics stands in for a /proc sample: plausible numbers of a 4 GB VPS.
func cannedMetrics(i int) proto.Metrics {
	return proto.Metrics{CPUPercent: float64(i%97) / 2, MemUsedBytes: 1_300_000_000 + uint64(i%1000)*1_000_000,
		MemTotalBytes: 4_100_000_000, DiskUsedBytes: 12_500_000_000, DiskTotalBytes: 80_000_000_000,
		Load1: 0.31, Load5: 0.27, Load15: 0.22}
}

// cannedHealth stands in for a GET of the OpenClaw health URL.
func cannedHealth(nowMs int64) proto.Health {
	return proto.Health{OK: true, Status: 200, LatencyMs: 3, CheckedAt: nowMs}
}
