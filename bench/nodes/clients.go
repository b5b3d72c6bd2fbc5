//go:build linux

package main

import (
	"context"
	"fmt"
	"time"
)

// clientGroup is a set of client processes (sims or echo clients) the driver drives together.
type clientGroup struct {
	kids  []*child
	goAt  time.Time
	total int
}

func (g *clientGroup) pids() []int {
	out := make([]int, len(g.kids))
	for i, c := range g.kids {
		out[i] = c.pid
	}
	return out
}

// goAll tells every process to start connecting.
func (g *clientGroup) goAll() error {
	g.goAt = time.Now()
	for _, c := range g.kids {
		if err := c.send(cmdGo); err != nil {
			return fmt.Errorf("%s: send go: %w", c.name, err)
		}
	}
	return nil
}

// alive returns why a process of the group stopped, or nil.
func (g *clientGroup) alive() error {
	for _, c := range g.kids {
		if err := c.alive(); err != nil {
			return err
		}
	}
	return nil
}

// sum adds the processes' newest counters. AllConnectedMs is the slowest process's, and 0
// until every process has connected all its nodes.
func (g *clientGroup) sum() simStatus {
	var s simStatus
	all := true
	for _, c := range g.kids {
		st, ok := c.lastStatus()
		if !ok {
			all = false
			continue
		}
		s.Nodes += st.Nodes
		s.Connected += st.Connected
		s.EverConnected += st.EverConnected
		s.FailedAttempts += st.FailedAttempts
		s.Disconnects += st.Disconnects
		s.Invokes += st.Invokes
		s.Refusals += st.Refusals
		s.Rejects += st.Rejects
		s.Heartbeats += st.Heartbeats
		s.ReqFrames += st.ReqFrames
		s.ReqBytes += st.ReqBytes
		s.ResFrames += st.ResFrames
		s.ResBytes += st.ResBytes
		if st.AllConnectedMs == 0 {
			all = false
		}
		s.AllConnectedMs = max(s.AllConnectedMs, st.AllConnectedMs)
		if st.LastError != "" {
			s.LastError = c.name + ": " + st.LastError
		}
	}
	if !all {
		s.AllConnectedMs = 0
	}
	return s
}

// startSims starts m sim processes sharing nodes, named sim-<first>…, and waits until each
// has made its device keys.
func startSims(ctx context.Context, cfg config, cs *children, gw *server, nodes []simNodeConfig, m, first int) (*clientGroup, error) {
	m = max(m, (len(nodes)+cfg.PerSim-1)/cfg.PerSim)
	g := &clientGroup{total: len(nodes)}
	off := 0
	for i, size := range split(len(nodes), m) {
		sc := simConfig{Name: fmt.Sprintf("sim-%02d", first+i), GatewayURL: gw.url, GatewayKey: gw.key,
			SourceIPs: cfg.SourceIPs, Nodes: nodes[off : off+size], HeartbeatMs: cfg.Heartbeat.Milliseconds(),
			DialConcurrency: max(1, cfg.Dials/m), HandshakeTimeoutMs: cfg.HandshakeTimeout.Milliseconds(),
			StatusEveryMs: cfg.StatusEvery.Milliseconds()}
		off += size
		c, err := cs.start(sc.Name, roleSim, sc)
		if err != nil {
			return g, err
		}
		g.kids = append(g.kids, c)
	}
	for _, c := range g.kids {
		if _, err := c.waitReady(ctx, 2*time.Minute); err != nil {
			return g, err
		}
	}
	return g, nil
}

// startEchoClients starts the bare baseline's clients: n connections over as many
// processes as the sims used.
func startEchoClients(ctx context.Context, cfg config, cs *children, url string, n, resBytes int) (*clientGroup, error) {
	m := max(cfg.M, (n+cfg.PerSim-1)/cfg.PerSim)
	g := &clientGroup{total: n}
	off := 0
	for i, size := range split(n, m) {
		ec := echoClientConfig{Name: fmt.Sprintf("echoc-%02d", i), URL: url, SourceIPs: cfg.SourceIPs,
			FirstIndex: off, Count: size, ResBytes: resBytes, DialConcurrency: max(1, cfg.Dials/m),
			HandshakeTimeoutMs: cfg.HandshakeTimeout.Milliseconds(), StatusEveryMs: cfg.StatusEvery.Milliseconds()}
		off += size
		c, err := cs.start(ec.Name, roleEchoSim, ec)
		if err != nil {
			return g, err
		}
		g.kids = append(g.kids, c)
	}
	for _, c := range g.kids {
		if _, err := c.waitReady(ctx, time.Minute); err != nil {
			return g, err
		}
	}
	return g, nil
}

// waitConnected polls the group's counters until want nodes hold a session, a process
// stops, or timeout passes. Connect time is the slowest process's, measured from its "go".
func waitConnected(ctx context.Context, g *clientGroup, want int, timeout time.Duration) (connectResult, error) {
	deadline := time.Now().Add(timeout)
	r := connectResult{Target: want}
	for {
		if err := g.alive(); err != nil {
			return r, err
		}
		st := g.sum()
		r.Connected, r.FailedAttempts, r.Disconnects, r.LastError = st.Connected, st.FailedAttempts, st.Disconnects, st.LastError
		done := st.EverConnected >= int64(want) && st.Connected >= int64(want) && st.AllConnectedMs > 0
		if done || time.Now().After(deadline) {
			if done {
				r.Seconds = float64(st.AllConnectedMs) / 1000
			} else {
				r.Seconds = time.Since(g.goAt).Seconds()
			}
			if r.Seconds > 0 {
				r.PerSec = float64(st.EverConnected) / r.Seconds
			}
			return r, nil
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return r, err
		}
	}
}
