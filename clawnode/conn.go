package clawnode

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// nodeConn is one authenticated node connection. Its only goroutine is the HTTP handler's,
// which reads; writers share the websocket's own write lock, each with a deadline.
type nodeConn struct {
	ws          *websocket.Conn
	node        clawops.NodeID
	instance    clawops.InstanceID
	connID      string
	remote      string
	platform    string
	version     string
	commands    []string
	connectedAt time.Time
	writeTO     time.Duration

	tailnet PeerIdentity

	lastSeen atomic.Int64 // unix ms of the last frame (or pong) received
	stale    atomic.Bool  // silent for StaleAfter; cleared by the next frame
	tickBusy atomic.Bool
	done     chan struct{} // closed when the connection is gone

	mu      sync.Mutex
	pending map[string]chan proto.InvokeResult
	gone    bool
}

func (c *nodeConn) status(connected bool) NodeStatus {
	state := StateOffline
	switch {
	case connected && c.stale.Load():
		state = StateStale
	case connected:
		state = StateOnline
	}
	return NodeStatus{Node: c.node, Instance: c.instance, State: state, Connected: connected, ConnectedAt: c.connectedAt,
		LastSeen: time.UnixMilli(c.lastSeen.Load()), Platform: c.platform, Version: c.version,
		RemoteAddr: c.remote, Commands: c.commands, Tailnet: c.tailnet}
}

// seen records that the node was heard from at ms.
func (c *nodeConn) seen(ms int64) {
	c.lastSeen.Store(ms)
	c.stale.Store(false)
}

func (c *nodeConn) closeNow() { c.ws.CloseNow() }

func (c *nodeConn) writeRaw(ctx context.Context, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, c.writeTO)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, data)
}

// Answers to node requests that carry no data.
var (
	ackOK      = []byte(`{"ok":true}`)
	ackIgnored = []byte(`{"ok":true,"ignored":true}`)
)

// sendRaw writes an encoded frame, logging nothing: a failed write ends the session anyway.
func (c *nodeConn) sendRaw(ctx context.Context, data []byte) { _ = c.writeRaw(ctx, data) }

func (c *nodeConn) send(ctx context.Context, f proto.Frame) error {
	data, err := proto.Encode(f)
	if err != nil {
		return err
	}
	return c.writeRaw(ctx, data)
}

// addPending registers a waiter for an invoke id; false when the connection is gone.
func (c *nodeConn) addPending(id string, ch chan proto.InvokeResult) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		return false
	}
	if c.pending == nil {
		c.pending = make(map[string]chan proto.InvokeResult)
	}
	c.pending[id] = ch
	return true
}

func (c *nodeConn) removePending(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// deliver hands a result to its waiter; false when nobody waits for it (late or unknown).
func (c *nodeConn) deliver(r proto.InvokeResult) bool {
	c.mu.Lock()
	ch, ok := c.pending[r.ID]
	delete(c.pending, r.ID)
	c.mu.Unlock()
	if ok {
		ch <- r // buffered, one result per id
	}
	return ok
}

func (c *nodeConn) markGone() {
	c.mu.Lock()
	c.gone = true
	c.pending = nil
	c.mu.Unlock()
	close(c.done)
}

// ServeHTTP accepts a node's WebSocket and runs its session until it ends.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.RLock()
	closed := h.closed
	if !closed {
		h.wg.Add(1)
	}
	h.mu.RUnlock()
	if closed {
		http.Error(w, "hub is closing", http.StatusServiceUnavailable)
		return
	}
	handedOff := false
	defer func() {
		if !handedOff {
			h.wg.Done()
		}
	}()
	select {
	case h.slots <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many handshakes in flight", http.StatusServiceUnavailable)
		return
	}
	held := true
	release := func() {
		if held {
			<-h.slots
			held = false
		}
	}
	defer release()

	var peer PeerIdentity
	if h.opts.Peers != nil {
		vctx, cancel := context.WithTimeout(r.Context(), h.opts.HandshakeTimeout)
		var err error
		peer, err = h.opts.Peers.VerifyPeer(vctx, r.RemoteAddr)
		cancel()
		if err != nil {
			_ = h.audit(r.Context(), PairingEvent{Action: EventTailnetRefused, Decision: clawops.Deny,
				Reason: ReasonTailnetRefused, Remote: r.RemoteAddr, Detail: err.Error()})
			http.Error(w, "connection refused: peer identity not allowed", http.StatusForbidden)
			return
		}
	}

	ws, err := websocket.Accept(smallBuffers{w}, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		h.log.Debug("websocket accept", "remote", r.RemoteAddr, "err", err)
		return
	}
	ws.SetReadLimit(proto.MaxPreAuthFrameBytes)
	c, err := h.handshake(h.ctx, ws, r.RemoteAddr, peer)
	release()
	if err != nil {
		h.log.Info("node handshake refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	ws.SetReadLimit(proto.MaxFrameBytes)
	// The session gets a goroutine of its own and this handler returns: the HTTP server's
	// connection goroutine, with its grown stack, the request and its buffers are freed.
	// At 10,000 nodes that is most of the memory an idle node costs.
	handedOff = true
	go func() {
		defer h.wg.Done()
		// h.ctx ends the session when the hub closes; closeNow ends it otherwise.
		h.readLoop(h.ctx, c)
	}()
}

// smallBuffers hands coder/websocket 1 KiB read and write buffers instead of the HTTP
// server's 4 KiB ones, which a connection would otherwise keep for its whole life. Frames
// larger than a buffer pass through it in pieces.
type smallBuffers struct{ http.ResponseWriter }

const connBufferSize = 1 << 10

// Hijack takes over the connection, keeping any bytes the server had already read.
func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	var r io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		r = io.MultiReader(bytes.NewReader(bytes.Clone(b)), conn)
	}
	return conn, bufio.NewReadWriter(bufio.NewReaderSize(r, connBufferSize), bufio.NewWriterSize(conn, connBufferSize)), nil
}

// refuse answers the connect request with an error and closes the socket.
func refuse(ctx context.Context, ws *websocket.Conn, id string, f *authFailure, closeCode websocket.StatusCode, details any) error {
	if id != "" {
		res := proto.NewErrorResult(id, f.code, f.message, f.detail)
		if f.details != nil {
			res.Error.Details = f.details
			res.Error.Retryable = true
		}
		if details != nil {
			res.Error.Details, _ = json.Marshal(details)
		}
		if data, err := proto.Encode(res); err == nil {
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_ = ws.Write(wctx, websocket.MessageText, data)
			cancel()
		}
	}
	_ = ws.Close(closeCode, clip(f.message, 120))
	return f
}

func (h *Hub) handshake(ctx context.Context, ws *websocket.Conn, remote string, peer PeerIdentity) (*nodeConn, error) {
	hctx, cancel := context.WithTimeout(ctx, h.opts.HandshakeTimeout)
	defer cancel()
	ch := proto.Challenge{Nonce: randomToken(), Ts: h.clock.Now().UnixMilli()}
	proto.SignChallenge(h.key, &ch)
	f, _ := proto.NewEvent(proto.EventConnectChallenge, ch)
	data, err := proto.Encode(f)
	if err != nil {
		ws.CloseNow()
		return nil, err
	}
	if err := ws.Write(hctx, websocket.MessageText, data); err != nil {
		ws.CloseNow()
		return nil, err
	}
	_, data, err = ws.Read(hctx)
	if err != nil {
		ws.CloseNow()
		return nil, err
	}
	fr, err := proto.DecodeFrame(data)
	if err != nil {
		return nil, refuse(ctx, ws, "", &authFailure{code: proto.CodeInvalidRequest, message: "invalid frame"}, websocket.StatusPolicyViolation, nil)
	}
	if fr.Type != proto.TypeReq || fr.Method != proto.MethodConnect {
		return nil, refuse(ctx, ws, fr.ID, &authFailure{code: proto.CodeInvalidRequest, message: "first request must be connect"},
			websocket.StatusPolicyViolation, nil)
	}
	var p proto.ConnectParams
	if err := proto.UnmarshalStrict(fr.Params, &p); err != nil {
		return nil, refuse(ctx, ws, fr.ID, &authFailure{code: proto.CodeInvalidRequest, message: "invalid connect params: " + err.Error()},
			websocket.StatusPolicyViolation, nil)
	}
	if err := p.Validate(); err != nil {
		return nil, refuse(ctx, ws, fr.ID, &authFailure{code: proto.CodeInvalidRequest, message: "invalid connect params: " + err.Error()},
			websocket.StatusPolicyViolation, nil)
	}
	if !p.SupportsVersion(proto.ProtocolVersion) {
		f := &authFailure{code: proto.CodeInvalidRequest, detail: proto.DetailProtocolMismatch, message: "protocol mismatch"}
		return nil, refuse(ctx, ws, fr.ID, f, websocket.StatusProtocolError, map[string]any{
			"code": proto.DetailProtocolMismatch, "clientMinProtocol": p.MinProtocol,
			"clientMaxProtocol": p.MaxProtocol, "expectedProtocol": proto.ProtocolVersion})
	}
	if p.Role != proto.RoleNode || p.Client.Mode != proto.ModeNode {
		return nil, refuse(ctx, ws, fr.ID, &authFailure{code: proto.CodeInvalidRequest, detail: proto.DetailRoleNotNode,
			message: "this endpoint serves nodes: role and client.mode must be \"node\""}, websocket.StatusPolicyViolation, nil)
	}
	pub, err := proto.VerifyConnect(p, ch.Nonce, h.clock.Now().UnixMilli())
	if err != nil {
		return nil, refuse(ctx, ws, fr.ID, &authFailure{code: proto.CodeInvalidRequest, detail: proto.DeviceErrorDetail(err), message: err.Error()},
			websocket.StatusPolicyViolation, nil)
	}
	auth, err := h.authenticate(hctx, p, pub, peer, remote)
	if err != nil {
		var f *authFailure
		if !errors.As(err, &f) {
			f = &authFailure{code: proto.CodeUnavailable, message: "authentication failed"}
		}
		return nil, refuse(ctx, ws, fr.ID, f, websocket.StatusPolicyViolation, nil)
	}

	now := h.clock.Now()
	c := &nodeConn{ws: ws, node: clawops.NodeID(auth.device.ID), instance: clawops.InstanceID(auth.device.Instance),
		connID: randomToken()[:16], remote: remote, platform: p.Client.Platform, version: p.Client.Version,
		commands: p.Commands, connectedAt: now, writeTO: h.opts.WriteTimeout, done: make(chan struct{}), tailnet: peer}
	c.lastSeen.Store(now.UnixMilli())
	hello := proto.HelloOK{
		Type: "hello-ok", Protocol: proto.ProtocolVersion,
		Server: proto.ServerInfo{Version: h.opts.Version, ConnID: c.connID},
		Features: proto.Features{Methods: []string{proto.MethodInvokeResult, proto.MethodNodeEvent},
			Events: []string{proto.EventTick, proto.EventInvokeRequest}},
		Snapshot: proto.Snapshot{Presence: []json.RawMessage{}, Health: json.RawMessage(`{}`),
			UptimeMs: now.Sub(h.start).Milliseconds()},
		Auth: proto.HelloAuth{Method: "device-token", Role: proto.RoleNode, Scopes: []string{}},
		Policy: proto.Policy{MaxPayload: proto.MaxFrameBytes, MaxBufferedBytes: 2 * proto.MaxFrameBytes, TickIntervalMs: h.opts.TickInterval.Milliseconds(),
			HeartbeatIntervalMs: h.opts.HeartbeatInterval.Milliseconds()},
	}
	if auth.method != "" {
		hello.Auth.Method = auth.method
	}
	if auth.deviceToken != "" {
		hello.Auth.DeviceToken = auth.deviceToken
		hello.Auth.IssuedAtMs = now.UnixMilli()
	}
	res, err := proto.NewResult(fr.ID, hello)
	if err != nil {
		ws.CloseNow()
		return nil, err
	}
	if err := c.send(hctx, res); err != nil {
		ws.CloseNow()
		return nil, err
	}
	if !h.register(c) {
		ws.Close(websocket.StatusGoingAway, "hub closing")
		return nil, errors.New("hub closing")
	}
	return c, nil
}

func (h *Hub) readLoop(ctx context.Context, c *nodeConn) {
	log := h.log.With("node", short(c.node), "instance", c.instance)
	log.Info("node connected", "remote", c.remote, "version", c.version)
	if h.opts.OnConnect != nil {
		h.opts.OnConnect(ctx, c.status(true))
	}
	for {
		_, data, err := c.ws.Read(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Info("node disconnected", "err", err)
			}
			break
		}
		c.seen(h.clock.Now().UnixMilli())
		f, err := proto.DecodeFrame(data)
		if err != nil {
			log.Warn("invalid frame from node; closing", "err", err)
			c.ws.Close(websocket.StatusInvalidFramePayloadData, "invalid frame")
			break
		}
		if f.Type == proto.TypeReq {
			h.handleRequest(ctx, c, f)
		}
		// A node has no business sending res or event frames to the gateway; ignore them.
	}
	h.unregister(c)
	c.markGone()
	c.closeNow()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	h.db.WithContext(dctx).Model(&Device{}).Where("id = ?", string(c.node)).
		Update("last_seen_at_ms", c.lastSeen.Load())
	if h.opts.OnDisconnect != nil {
		h.opts.OnDisconnect(dctx, c.status(false))
	}
}

func (h *Hub) handleRequest(ctx context.Context, c *nodeConn, f proto.Frame) {
	reply := func(payload any) {
		res, err := proto.NewResult(f.ID, payload)
		if err == nil {
			_ = c.send(ctx, res)
		}
	}
	fail := func(msg string) {
		_ = c.send(ctx, proto.NewErrorResult(f.ID, proto.CodeInvalidRequest, msg, ""))
	}
	switch f.Method {
	case proto.MethodInvokeResult:
		var r proto.InvokeResult
		if err := proto.UnmarshalStrict(f.Params, &r); err != nil {
			fail("invalid node.invoke.result params: " + err.Error())
			return
		}
		if err := r.Validate(); err != nil {
			fail("invalid node.invoke.result params: " + err.Error())
			return
		}
		if r.NodeID != string(c.node) {
			fail("nodeId mismatch")
			return
		}
		if !c.deliver(r) {
			c.sendRaw(ctx, proto.EncodeResult(f.ID, ackIgnored))
			return
		}
		c.sendRaw(ctx, proto.EncodeResult(f.ID, ackOK))
	case proto.MethodNodeEvent:
		var p proto.NodeEventParams
		if err := proto.UnmarshalStrict(f.Params, &p); err != nil || p.Event == "" {
			fail("invalid node.event params")
			return
		}
		if err := h.nodeEvent(ctx, c, p); err != nil {
			fail(err.Error())
			return
		}
		c.sendRaw(ctx, proto.EncodeResult(f.ID, ackOK))
	case proto.MethodRotateKey:
		res, err := h.rotateKey(ctx, c, f.Params)
		if err != nil {
			_ = c.send(ctx, proto.NewErrorResult(f.ID, proto.CodeInvalidRequest, "key rotation refused: "+err.Error(),
				string(ReasonRotationRefused)))
			return
		}
		reply(res)
	case proto.MethodConnect:
		fail("already connected")
	case "node.skills.update", "node.pluginTools.update", "node.runnerInventory.update":
		// A stock node host publishes these after connecting; ClawOps has no use for them.
		c.sendRaw(ctx, proto.EncodeResult(f.ID, ackIgnored))
	default:
		fail("unknown method " + clip(f.Method, 64))
	}
}

func (h *Hub) nodeEvent(ctx context.Context, c *nodeConn, p proto.NodeEventParams) error {
	switch p.Event {
	case proto.NodeEventHeartbeat:
		var ev proto.HeartbeatEvent
		if err := proto.UnmarshalStrict(p.Data(), &ev); err != nil {
			return errors.New("invalid heartbeat payload: " + err.Error())
		}
		if h.opts.OnHeartbeat != nil {
			h.queueHeartbeat(proto.Heartbeat{Node: c.node, Instance: c.instance, At: h.clock.Now(),
				Metrics: ev.Metrics, OpenClaw: ev.OpenClaw, Container: ev.Container})
		}
	case proto.NodeEventCommandRefused:
		var ev proto.CommandRefused
		if err := proto.UnmarshalStrict(p.Data(), &ev); err != nil {
			return errors.New("invalid refusal payload: " + err.Error())
		}
		h.log.Warn("node refused a command", "node", short(c.node), "instance", c.instance,
			"command", clip(ev.Command, 64), "code", clip(string(ev.Code), 64), "message", clip(ev.Message, 200))
		if h.opts.OnRefused != nil {
			h.opts.OnRefused(ctx, Refusal{Node: c.node, Instance: c.instance, At: h.clock.Now(), CommandRefused: ev})
		}
	default:
		// Other node events (the stock node host sends several) are accepted and ignored.
	}
	return nil
}
