//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// rampResult is the -ramp mode's outcome: how many nodes one gateway process held.
type rampResult struct {
	Steps           []rampStep `json:"steps"`
	LargestHeld     int64      `json:"largestHeld"`     // most nodes connected at once that one fan-out reached
	LargestFullStep int        `json:"largestFullStep"` // last step whose nodes all connected
	StopReason      string     `json:"stopReason"`
}

// rampStep is one step: nodes added, how they connected, the gateway after.
type rampStep struct {
	Step           int     `json:"step"`
	Target         int     `json:"target"`
	Connected      int64   `json:"connected"` // sessions held by all sims after the step
	Seconds        float64 `json:"seconds"`
	PerSec         float64 `json:"perSec"`
	RSSMB          float64 `json:"rssMB"`
	KBPerNode      float64 `json:"kbPerNode"`
	FanoutTargets  int     `json:"fanoutTargets"`
	FanoutOK       int     `json:"fanoutOK"`
	FanoutWallMs   float64 `json:"fanoutWallMs"`
	FanoutP99Ms    float64 `json:"fanoutP99Ms"`
	FailedAttempts int64   `json:"failedAttempts"`
	LastError      string  `json:"lastError,omitempty"`
}

// runRamp grows N by -ramp-step on one gateway process until a step's connects do not all
// succeed, a fan-out does not reach every node, the RSS budget or -ramp-max is reached, or
// the run's budget ends. Each step starts new sim processes for its nodes.
func runRamp(ctx context.Context, cfg config, cs *children, res *results, out io.Writer) error {
	gw, err := startGateway(ctx, cfg, cs)
	if err != nil {
		return err
	}
	rr := &rampResult{}
	res.Ramp = rr
	var groups []*clientGroup
	held := func() int64 {
		var n int64
		for _, g := range groups {
			n += g.sum().Connected
		}
		return n
	}
	sims, total := 0, 0
	for step := 1; ; step++ {
		if total >= cfg.RampMax {
			rr.StopReason = fmt.Sprintf("reached -ramp-max %d", cfg.RampMax)
			return nil
		}
		if ctx.Err() != nil {
			rr.StopReason = "run budget (-budget) exhausted"
			return nil
		}
		add := min(cfg.RampStep, cfg.RampMax-total)
		target := total + add
		fmt.Fprintf(out, "· ramp step %d: %d → %d nodes\n", step, total, target)
		nodes, err := gw.ctl.mint(ctx, total, add)
		if err != nil {
			rr.StopReason = fmt.Sprintf("step %d: %v", step, err)
			return nil
		}
		g, err := startSims(ctx, cfg, cs, gw, nodes, 0, sims)
		if err != nil {
			return err
		}
		sims += len(g.kids)
		groups = append(groups, g)
		if err := g.goAll(); err != nil {
			return err
		}
		conn, err := waitConnected(ctx, g, add, cfg.RampStepTimeout)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				rr.StopReason = "run budget (-budget) exhausted"
				return nil
			}
			return err
		}
		s := rampStep{Step: step, Target: target, Connected: held(), Seconds: conn.Seconds, PerSec: conn.PerSec,
			FailedAttempts: conn.FailedAttempts, LastError: conn.LastError}
		if p, err := sampleProc(gw.c.pid); err == nil {
			s.RSSMB = mb(p.RSS)
			if s.Connected > 0 {
				s.KBPerNode = float64(p.RSS) / 1024 / float64(s.Connected)
			}
		}
		req := fanoutRequest{Command: cfg.Command, Concurrency: cfg.Concurrency, TimeoutMs: cfg.InvokeTimeout.Milliseconds()}
		fo, ferr := fanoutRounds(ctx, gw, g.pids(), req, 1, cfg.InvokeTimeout)
		s.FanoutTargets, s.FanoutOK, s.FanoutWallMs, s.FanoutP99Ms = fo.Targets, fo.OK, fo.RoundWallMaxMs, fo.Latency.P99Ms
		rr.Steps = append(rr.Steps, s)
		fmt.Fprintf(out, "  held %d, RSS %.1f MB, fan-out %d/%d in %.0f ms\n", s.Connected, s.RSSMB, s.FanoutOK, s.FanoutTargets, s.FanoutWallMs)
		if ferr == nil && fo.OK == fo.Targets {
			rr.LargestHeld = max(rr.LargestHeld, int64(fo.OK))
		}
		switch {
		case conn.Connected < int64(add):
			rr.StopReason = fmt.Sprintf("step %d: %d of %d new nodes connected within %s (last error: %s)",
				step, conn.Connected, add, cfg.RampStepTimeout, conn.LastError)
			return nil
		case ferr != nil:
			rr.StopReason = fmt.Sprintf("step %d: fan-out failed: %v", step, ferr)
			return nil
		case fo.OK < fo.Targets:
			rr.StopReason = fmt.Sprintf("step %d: fan-out reached %d of %d nodes (errors %v)", step, fo.OK, fo.Targets, fo.Errors)
			return nil
		case cfg.RampRSSMB > 0 && s.RSSMB > float64(cfg.RampRSSMB):
			rr.LargestFullStep = target
			rr.StopReason = fmt.Sprintf("gateway RSS %.0f MB passed -ramp-rss-mb %d", s.RSSMB, cfg.RampRSSMB)
			return nil
		}
		rr.LargestFullStep = target
		total = target
		_ = sleepCtx(ctx, 200*time.Millisecond)
	}
}
