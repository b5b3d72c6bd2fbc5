package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/gatewayforge/clawops/clawnode/keyfile"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// session is one authenticated connection to the gateway.
type session struct {
	ws      *websocket.Conn
	seq     atomic.Uint64
	writeTO time.Duration
	nodeID  string // the device id this session authenticated as
	connID  string // hello-ok server.connId

	mu      sync.Mutex
	waiters map[string]chan proto.Frame // responses someone waits for, by request id
	rotated atomic.Bool
}

func (s *session) send(ctx context.Context, f proto.Frame) error {
	data, err := proto.Encode(f)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.writeTO)
	defer cancel()
	return s.ws.Write(ctx, websocket.MessageText, data)
}

func (s *session) nextID() string { return "n" + strconv.FormatUint(s.seq.Add(1), 10) }

// request sends a req frame; its response is read (and only logged when it fails) by the
// session's reader.
func (s *session) request(ctx context.Context, method string, params any) error {
	f, err := proto.NewRequest(s.nextID(), method, params)
	if err != nil {
		return err
	}
	return s.send(ctx, f)
}

// call sends a req frame and waits for its response.
func (s *session) call(ctx context.Context, method string, params any) (proto.Frame, error) {
	f, err := proto.NewRequest(s.nextID(), method, params)
	if err != nil {
		return proto.Frame{}, err
	}
	ch := make(chan proto.Frame, 1)
	s.mu.Lock()
	if s.waiters == nil {
		s.waiters = make(map[string]chan proto.Frame)
	}
	s.waiters[f.ID] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiters, f.ID)
		s.mu.Unlock()
	}()
	if err := s.send(ctx, f); err != nil {
		return proto.Frame{}, err
	}
	select {
	case res := <-ch:
		return res, nil
	case <-ctx.Done():
		return proto.Frame{}, ctx.Err()
	}
}

// deliver hands a response to its waiter; false when nobody waits for it.
func (s *session) deliver(f proto.Frame) bool {
	s.mu.Lock()
	ch, ok := s.waiters[f.ID]
	s.mu.Unlock()
	if ok {
		ch <- f
	}
	return ok
}

// session dials, authenticates and serves one connection. connected reports whether the
// gateway accepted the connect (so the caller can reset its backoff).
func (d *Daemon) session(ctx context.Context) (connected bool, err error) {
	c, err := d.loadCreds()
	if err != nil {
		return false, err
	}
	hctx, cancel := context.WithTimeout(ctx, d.cfg.HandshakeTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(hctx, d.cfg.GatewayURL, &websocket.DialOptions{
		CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return false, fmt.Errorf("dial gateway: %w", err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(proto.MaxPreAuthFrameBytes)
	s := &session{ws: ws, writeTO: d.cfg.WriteTimeout, nodeID: c.id}

	hello, err := d.handshake(hctx, s, c)
	if err != nil {
		var ce *ConnectError
		if c.next && errors.As(err, &ce) {
			d.log.Warn("gateway refused the rotated key; keeping the current one", "err", err)
			d.dropNext()
		}
		return false, err
	}
	if err := d.promote(c); err != nil {
		return true, err
	}
	if hello.Auth.DeviceToken != "" {
		if err := keyfile.WriteSecret(d.deviceTokenPath(), []byte(hello.Auth.DeviceToken+"\n")); err != nil {
			// Without the token this node cannot reconnect; its join token stays usable by
			// this key until it expires, so the next attempt can enroll again.
			return false, fmt.Errorf("store device token: %w", err)
		}
		d.log.Info("device token issued by the gateway", "instance", d.cfg.Instance)
	}
	s.connID = hello.Server.ConnID
	d.log.Info("connected to the gateway", "server", hello.Server.Version, "conn", hello.Server.ConnID)
	ws.SetReadLimit(hello.Policy.MaxPayload)

	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	every := d.cfg.HeartbeatInterval
	if ms := hello.Policy.HeartbeatIntervalMs; ms >= proto.MinHeartbeatMs && ms <= proto.MaxHeartbeatMs {
		every = time.Duration(ms) * time.Millisecond
	}
	go d.heartbeats(sctx, s, every)
	if d.keyDue() {
		go d.startRotation(sctx, s)
	}

	tick := time.Duration(hello.Policy.TickIntervalMs) * time.Millisecond
	silence := 2*tick + tick/2 // two missed ticks
	for {
		rctx, rcancel := context.WithTimeout(sctx, silence)
		_, data, err := ws.Read(rctx)
		timedOut := rctx.Err() != nil && sctx.Err() == nil
		rcancel()
		if err != nil {
			if s.rotated.Load() {
				return true, errRotated
			}
			if timedOut {
				return true, fmt.Errorf("no frame from the gateway for %s (two ticks missed)", silence)
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
			d.handleInvoke(ctx, s, f.Payload)
		case f.Type == proto.TypeEvent && f.Event == proto.EventRotateRequest:
			go d.startRotation(sctx, s)
		case f.Type == proto.TypeRes && s.deliver(f):
		case f.Type == proto.TypeRes && !*f.OK:
			d.log.Warn("gateway rejected a request", "id", f.ID, "code", f.Error.Code, "message", clipString(f.Error.Message, 200))
		}
		// tick and other events only prove the gateway is alive.
	}
}

// startRotation rotates the key and, when the gateway took the new one, closes the
// session so the node reconnects with it.
func (d *Daemon) startRotation(ctx context.Context, s *session) {
	if !d.rotating.CompareAndSwap(false, true) {
		return
	}
	defer d.rotating.Store(false)
	err := d.rotate(ctx, s)
	if errors.Is(err, errRotated) {
		s.rotated.Store(true)
		s.ws.Close(websocket.StatusNormalClosure, "key rotated")
		return
	}
	if ctx.Err() == nil {
		d.log.Warn("key rotation failed; keeping the current key", "err", err)
	}
}

// handshake waits for the challenge, checks the gateway's proof of its key, sends connect
// and waits for hello-ok.
func (d *Daemon) handshake(ctx context.Context, s *session, c creds) (proto.HelloOK, error) {
	var ch proto.Challenge
	for {
		f, err := readFrame(ctx, s.ws)
		if err != nil {
			return proto.HelloOK{}, fmt.Errorf("wait for challenge: %w", err)
		}
		if f.Type == proto.TypeEvent && f.Event == proto.EventConnectChallenge {
			if err := json.Unmarshal(f.Payload, &ch); err != nil {
				return proto.HelloOK{}, fmt.Errorf("challenge payload: %w", err)
			}
			break
		}
	}
	if err := ch.Validate(); err != nil {
		return proto.HelloOK{}, err
	}
	if err := proto.VerifyChallenge(d.cfg.GatewayKey, ch); err != nil {
		if !d.cfg.AllowUnprovenGateway {
			return proto.HelloOK{}, fmt.Errorf("refusing to authenticate to this gateway: %w", err)
		}
		d.log.Warn("gateway did not prove the pinned key; continuing as configured", "err", err)
	}
	tok := c.token
	p := proto.ConnectParams{
		MinProtocol: proto.ProtocolVersion, MaxProtocol: proto.ProtocolVersion,
		Client: proto.ClientInfo{ID: proto.ClientIDNodeHost, DisplayName: string(d.cfg.Instance),
			Version: d.cfg.Version, Platform: d.cfg.Platform, Mode: proto.ModeNode},
		Role: proto.RoleNode, Scopes: []string{}, Caps: []string{}, Commands: d.commands.Names(),
		Auth: &proto.ConnectAuth{Token: tok}, UserAgent: "gf-clawnode/" + d.cfg.Version,
	}
	proto.SignConnect(c.key, &p, ch)
	req, err := proto.NewRequest("connect-1", proto.MethodConnect, p)
	if err != nil {
		return proto.HelloOK{}, err
	}
	if err := s.send(ctx, req); err != nil {
		return proto.HelloOK{}, fmt.Errorf("send connect: %w", err)
	}
	for {
		f, err := readFrame(ctx, s.ws)
		if err != nil {
			return proto.HelloOK{}, fmt.Errorf("wait for hello: %w", err)
		}
		if f.Type != proto.TypeRes || f.ID != req.ID {
			continue
		}
		if !*f.OK {
			return proto.HelloOK{}, &ConnectError{Code: f.Error.Code, Detail: f.Error.DetailCode(), Message: f.Error.Message}
		}
		var hello proto.HelloOK
		if err := json.Unmarshal(f.Payload, &hello); err != nil {
			return proto.HelloOK{}, fmt.Errorf("hello-ok payload: %w", err)
		}
		if err := hello.Validate(); err != nil {
			return proto.HelloOK{}, err
		}
		return hello, nil
	}
}

func readFrame(ctx context.Context, ws *websocket.Conn) (proto.Frame, error) {
	_, data, err := ws.Read(ctx)
	if err != nil {
		return proto.Frame{}, err
	}
	return proto.DecodeFrame(data)
}

// heartbeats sends a clawops.heartbeat node event now and every interval: the gateway's
// policy.heartbeatIntervalMs when it sent one, else HeartbeatInterval.
func (d *Daemon) heartbeats(ctx context.Context, s *session, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.request(ctx, proto.MethodNodeEvent, proto.NodeEventParams{
			Event: proto.NodeEventHeartbeat, PayloadJSON: d.heartbeat(ctx, every)}); err != nil {
			if ctx.Err() == nil {
				d.log.Warn("send heartbeat", "err", err)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// heartbeat collects one heartbeat payload. Failures of a part are logged and leave that
// part zero; the heartbeat itself always goes out.
func (d *Daemon) heartbeat(ctx context.Context, every time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, max(every/2, time.Second))
	defer cancel()
	ev := proto.HeartbeatEvent{SentAtMs: d.clock.Now().UnixMilli(), Container: StateUnknown}
	m, err := d.metrics.Sample(ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		d.log.Warn("sample metrics", "err", err)
	}
	ev.Metrics = m
	ev.OpenClaw = d.health.Check(ctx)
	if d.cfg.Runtime != nil {
		if st, err := d.cfg.Runtime.Status(ctx); err == nil {
			ev.Container = st
		} else {
			d.log.Warn("container status", "err", err)
		}
	}
	b, _ := json.Marshal(ev)
	return string(b)
}
