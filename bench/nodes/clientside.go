//go:build linux

package main

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// clientPool holds what the client processes (sims and echo clients) share: one HTTP
// client per source address, so each WebSocket is dialled from 127.0.0.2…127.0.0.x
// (spreading the ephemeral ports over several addresses), and the dial semaphore that
// bounds handshakes in flight.
type clientPool struct {
	clients []*http.Client
	slots   chan struct{}
}

func newClientPool(sourceIPs, dialConcurrency int) *clientPool {
	p := &clientPool{slots: make(chan struct{}, dialConcurrency)}
	for i := range sourceIPs {
		ip := net.ParseIP(sourceIP(i, sourceIPs))
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 30 * time.Second}
		p.clients = append(p.clients, &http.Client{Transport: &http.Transport{
			DialContext: d.DialContext, ForceAttemptHTTP2: false, MaxIdleConns: 1, IdleConnTimeout: time.Second}})
	}
	return p
}

// client returns the HTTP client whose connections come from node index i's address.
func (p *clientPool) client(i int) *http.Client { return p.clients[i%len(p.clients)] }

// acquire takes a handshake slot; the returned release is idempotent.
func (p *clientPool) acquire(ctx context.Context) (release func(), err error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() { once.Do(func() { <-p.slots }) }, nil
}

// counters are a client process's cumulative statistics.
type counters struct {
	nodes          int
	connected      atomic.Int64
	everConnected  atomic.Int64
	failedAttempts atomic.Int64
	disconnects    atomic.Int64
	invokes        atomic.Int64
	refusals       atomic.Int64
	rejects        atomic.Int64
	heartbeats     atomic.Int64
	reqFrames      atomic.Int64
	reqBytes       atomic.Int64
	resFrames      atomic.Int64
	resBytes       atomic.Int64
	allConnectedMs atomic.Int64
	goAt           time.Time
	lastErr        atomic.Pointer[string]
}

func (c *counters) setErr(err error) {
	if err != nil {
		s := err.Error()
		c.lastErr.Store(&s)
	}
}

// firstConnect records that one more node got hello-ok for the first time.
func (c *counters) firstConnect() {
	if c.everConnected.Add(1) == int64(c.nodes) {
		c.allConnectedMs.Store(max(time.Since(c.goAt).Milliseconds(), 1))
	}
}

func (c *counters) snapshot() simStatus {
	s := simStatus{Nodes: c.nodes, Connected: c.connected.Load(), EverConnected: c.everConnected.Load(),
		FailedAttempts: c.failedAttempts.Load(), Disconnects: c.disconnects.Load(), Invokes: c.invokes.Load(),
		Refusals: c.refusals.Load(), Rejects: c.rejects.Load(), Heartbeats: c.heartbeats.Load(),
		ReqFrames: c.reqFrames.Load(), ReqBytes: c.reqBytes.Load(), ResFrames: c.resFrames.Load(),
		ResBytes: c.resBytes.Load(), AllConnectedMs: c.allConnectedMs.Load()}
	if p := c.lastErr.Load(); p != nil {
		s.LastError = clipString(*p, 300)
	}
	return s
}

// keepConnected runs session until ctx ends, reconnecting after each end with gf-clawnode's
// backoff: jittered exponential from 1 s doubling to 30 s, reset after a session that got
// hello-ok.
func keepConnected(ctx context.Context, c *counters, session func(context.Context) (bool, error)) {
	const minBackoff, maxBackoff = time.Second, 30 * time.Second
	backoff := minBackoff
	for ctx.Err() == nil {
		connected, err := session(ctx)
		if ctx.Err() != nil {
			return
		}
		c.setErr(err)
		if connected {
			c.disconnects.Add(1)
			backoff = minBackoff
		} else {
			c.failedAttempts.Add(1)
		}
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// runStatusLoop emits the counters every period until ctx ends or stop fires, then once more.
func runStatusLoop(ctx context.Context, out *lineWriter, c *counters, every time.Duration, cmds <-chan command) {
	t := time.NewTicker(every)
	defer t.Stop()
	emit := func() { st := c.snapshot(); _ = out.emit(event{Ev: eventStatus, Status: &st}) }
	for {
		select {
		case <-ctx.Done():
			emit()
			return
		case cmd, ok := <-cmds:
			if !ok || cmd.Cmd == cmdStop {
				emit()
				return
			}
		case <-t.C:
			emit()
		}
	}
}

// waitGo blocks until the driver says go; false when it says stop, closes stdin or ctx ends.
func waitGo(ctx context.Context, cmds <-chan command) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case c, ok := <-cmds:
			if !ok || c.Cmd == cmdStop {
				return false
			}
			if c.Cmd == cmdGo {
				return true
			}
		}
	}
}

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
