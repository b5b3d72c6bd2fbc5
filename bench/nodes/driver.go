//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// run is the driver: it starts every process, measures, stops them all (also on ctx's end
// or an error) and reports. It returns the results even when it also returns an error, so a
// partial run still prints what it measured.
func run(ctx context.Context, cfg config, out io.Writer) (*results, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Budget)
	defer cancel()
	dir, err := os.MkdirTemp("", "clawops-bench-nodes-*")
	if err != nil {
		return nil, fmt.Errorf("working folder: %w", err)
	}
	if cfg.Keep {
		fmt.Fprintf(out, "working folder (kept): %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if cfg.PprofDir != "" {
		if err := os.MkdirAll(cfg.PprofDir, 0o755); err != nil {
			return nil, fmt.Errorf("pprof folder: %w", err)
		}
	}
	cs, err := newChildren(dir, cfg.Verbose)
	if err != nil {
		return nil, err
	}
	defer cs.stopAll()

	res := newResults(cfg)
	start := time.Now()
	if cfg.Ramp {
		err = runRamp(ctx, cfg, cs, res, out)
	} else {
		err = runFixed(ctx, cfg, cs, res, out)
	}
	cs.stopAll()
	res.ElapsedS = time.Since(start).Seconds()
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled):
		res.Error = "interrupted; the figures above are what was measured before"
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		res.Error = fmt.Sprintf("run budget (-budget %s) exhausted: %v", cfg.Budget, err)
	default:
		res.Error = err.Error()
	}
	printSummary(out, res)
	if cfg.JSONPath != "" {
		if werr := res.writeJSON(cfg.JSONPath); werr != nil {
			err = errors.Join(err, werr)
		} else {
			fmt.Fprintf(out, "results written to %s\n", cfg.JSONPath)
		}
	}
	return res, err
}

// server is a started server child (gateway or echo server).
type server struct {
	c   *child
	ctl *control
	url string // where clients connect
	key string // the gateway's public key (gateway only)
}

func startServer(ctx context.Context, cs *children, name, role string, cfg any, env ...string) (*server, error) {
	c, err := cs.start(name, role, cfg, env...)
	if err != nil {
		return nil, err
	}
	ev, err := c.waitReady(ctx, time.Minute)
	if err != nil {
		return nil, err
	}
	if err := checkLoopbackURL(name+" client URL", ev.NodeURL); err != nil {
		return nil, err
	}
	ctl, err := newControl(ev.ControlURL)
	if err != nil {
		return nil, err
	}
	return &server{c: c, ctl: ctl, url: ev.NodeURL, key: ev.GatewayKey}, nil
}

func startGateway(ctx context.Context, cfg config, cs *children) (*server, error) {
	return startServer(ctx, cs, "gateway", roleGateway, gatewayConfig{
		Dir: filepath.Join(cs.dir, "gateway-data"), Listen: "127.0.0.1:0", TickMs: cfg.Tick.Milliseconds(),
		MaxHandshakes: cfg.MaxHandshakes, LogLevel: "warn"}, cfg.gatewayEnv()...)
}

// runFixed is the default mode: N nodes, measure, then the bare baseline.
func runFixed(ctx context.Context, cfg config, cs *children, res *results, out io.Writer) error {
	progress := func(format string, args ...any) { fmt.Fprintf(out, "· "+format+"\n", args...) }
	gw, err := startGateway(ctx, cfg, cs)
	if err != nil {
		return err
	}
	progress("gateway pid %d on %s; minting %d join tokens", gw.c.pid, gw.url, cfg.N)
	nodes, err := gw.ctl.mint(ctx, 0, cfg.N)
	if err != nil {
		return err
	}
	base, err := sampleProc(gw.c.pid)
	if err != nil {
		return err
	}
	sims, err := startSims(ctx, cfg, cs, gw, nodes, cfg.M, 0)
	if err != nil {
		return err
	}
	progress("%d sim processes ready; connecting %d nodes", len(sims.kids), cfg.N)
	stopProfile := startCPUProfile(ctx, cfg, gw, "connect", res)
	if err := sims.goAll(); err != nil {
		return err
	}
	conn, err := waitConnected(ctx, sims, cfg.N, cfg.ConnectTimeout)
	stopProfile()
	res.Connect = &conn
	if err != nil {
		return err
	}
	if s, err := sampleProc(gw.c.pid); err == nil && conn.Connected > 0 {
		conn.ServerCPUUsPerNode = cpuSeconds(base, s) * 1e6 / float64(conn.Connected)
	}
	progress("connected %d/%d in %.1fs (%.0f nodes/s)", conn.Connected, cfg.N, conn.Seconds, conn.PerSec)
	if conn.Connected == 0 {
		return fmt.Errorf("no node connected; last error: %s", conn.LastError)
	}
	if conn.Connected < int64(cfg.N) {
		res.note("only %d of %d nodes connected within -connect-timeout %s; measuring those", conn.Connected, cfg.N, cfg.ConnectTimeout)
	}
	if cfg.PprofDir != "" {
		if err := gw.ctl.saveProfile(ctx, "heap", filepath.Join(cfg.PprofDir, "gateway-heap.pprof")); err != nil {
			res.note("heap profile: %v", err)
		}
	}
	if err := sleepCtx(ctx, cfg.Settle); err != nil {
		return err
	}

	progress("steady state for %s", cfg.Steady)
	gwRes, err := steadyState(ctx, gw, base, int(conn.Connected), cfg.Steady)
	if err != nil {
		return err
	}
	gwRes.Env = cfg.gatewayEnv()
	res.Gateway = gwRes

	progress("fan-out: %d rounds of %s to %d nodes, %d in flight", cfg.Rounds, cfg.Command, conn.Connected, cfg.Concurrency)
	stopProfile = startCPUProfile(ctx, cfg, gw, "fanout", res)
	req := fanoutRequest{Command: cfg.Command, Concurrency: cfg.Concurrency, TimeoutMs: cfg.InvokeTimeout.Milliseconds()}
	fo, err := fanoutRounds(ctx, gw, sims.pids(), req, cfg.Rounds, cfg.InvokeTimeout)
	stopProfile()
	// Wait for the sims' counters to include the last round (they report every -status-every).
	st := waitCounters(ctx, sims, func(s simStatus) bool { return s.ResFrames >= int64(fo.OK) }, 5*time.Second)
	fo.ReqFrameBytes, fo.ResFrameBytes = avg(st.ReqBytes, st.ReqFrames), avg(st.ResBytes, st.ResFrames)
	res.Fanout = &fo
	if err != nil {
		return err
	}
	if after, err := sampleProc(gw.c.pid); err == nil {
		gwRes.RSSAfterFanoutMB, gwRes.RSSPeakMB = mb(after.RSS), mb(after.HWM)
	}
	if st, err := gw.ctl.stats(ctx); err == nil {
		gwRes.StackAfterFanoutMB = mb(int64(st.StackInuse))
	}
	if st.Refusals > 0 || st.Rejects > 0 {
		res.note("nodes refused %d commands and the gateway rejected %d node requests; last error: %s", st.Refusals, st.Rejects, st.LastError)
	}
	progress("fan-out p50 %.1f ms, p99 %.1f ms, %.0f invokes/s", fo.Latency.P50Ms, fo.Latency.P99Ms, fo.ThroughputPerSec)
	cs.stopSome(append(sims.kids, gw.c))

	if !cfg.Bare {
		return nil
	}
	bare, err := runBare(ctx, cfg, cs, int(conn.Connected), fo.ReqFrameBytes, fo.ResFrameBytes, progress)
	res.Bare = bare
	if err != nil {
		return err
	}
	res.computeRatio()
	return nil
}

// runBare measures the same fan-out through the bare echo server: same connection count,
// same client process count, same concurrency, frames of the sizes the nodes saw.
func runBare(ctx context.Context, cfg config, cs *children, n, reqBytes, resBytes int, progress func(string, ...any)) (*bareResult, error) {
	if reqBytes < 1 || resBytes < 1 {
		return nil, fmt.Errorf("bare baseline: no frame sizes measured (req %d, res %d)", reqBytes, resBytes)
	}
	echo, err := startServer(ctx, cs, "echo", roleEcho, echoServerConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		return nil, err
	}
	base, err := sampleProc(echo.c.pid)
	if err != nil {
		return nil, err
	}
	clients, err := startEchoClients(ctx, cfg, cs, echo.url, n, resBytes)
	if err != nil {
		return nil, err
	}
	progress("bare echo: %d connections from %d processes", n, len(clients.kids))
	if err := clients.goAll(); err != nil {
		return nil, err
	}
	conn, err := waitConnected(ctx, clients, n, cfg.ConnectTimeout)
	b := &bareResult{Connect: &conn}
	if err != nil {
		return b, err
	}
	if err := sleepCtx(ctx, cfg.Settle); err != nil {
		return b, err
	}
	if s, err := sampleProc(echo.c.pid); err == nil && conn.Connected > 0 {
		b.RSSMB = mb(s.RSS)
		b.RSSPerConnKB = float64(s.RSS-base.RSS) / 1024 / float64(conn.Connected)
	}
	req := fanoutRequest{ReqBytes: reqBytes, Concurrency: cfg.Concurrency, TimeoutMs: cfg.InvokeTimeout.Milliseconds()}
	fo, err := fanoutRounds(ctx, echo, clients.pids(), req, cfg.Rounds, cfg.InvokeTimeout)
	fo.ReqFrameBytes, fo.ResFrameBytes = reqBytes, resBytes
	b.Fanout = &fo
	progress("bare fan-out p50 %.1f ms, p99 %.1f ms, %.0f frames/s", fo.Latency.P50Ms, fo.Latency.P99Ms, fo.ThroughputPerSec)
	cs.stopSome(append(clients.kids, echo.c))
	return b, err
}

// startCPUProfile starts a gateway CPU profile named after phase when -pprof is set, and
// returns the function that stops it.
func startCPUProfile(ctx context.Context, cfg config, gw *server, phase string, res *results) (stop func()) {
	if cfg.PprofDir == "" {
		return func() {}
	}
	path := filepath.Join(cfg.PprofDir, fmt.Sprintf("gateway-cpu-%s-%s.pprof", phase, time.Now().Format("150405")))
	if err := gw.ctl.profile(ctx, path); err != nil {
		res.note("cpu profile (%s): %v", phase, err)
		return func() {}
	}
	return func() {
		if err := gw.ctl.profile(ctx, ""); err != nil {
			res.note("cpu profile (%s): %v", phase, err)
		}
	}
}

// steadyState samples the gateway over window: CPU share, RSS, heartbeats received.
func steadyState(ctx context.Context, gw *server, base procSample, n int, window time.Duration) (*serverResult, error) {
	r := &serverResult{RSSBaselineMB: mb(base.RSS), SteadyWindowS: window.Seconds()}
	st0, err := gw.ctl.stats(ctx)
	if err != nil {
		return nil, err
	}
	a, err := sampleProc(gw.c.pid)
	if err != nil {
		return nil, err
	}
	peak := a.RSS
	every := min(time.Second, window/4)
	for end := time.Now().Add(window); time.Now().Before(end); {
		if err := sleepCtx(ctx, min(every, time.Until(end))); err != nil {
			return nil, err
		}
		if s, err := sampleProc(gw.c.pid); err == nil {
			peak = max(peak, s.RSS)
		}
	}
	b, err := sampleProc(gw.c.pid)
	if err != nil {
		return nil, err
	}
	st1, err := gw.ctl.stats(ctx)
	if err != nil {
		return nil, err
	}
	d := b.At.Sub(a.At).Seconds()
	r.SteadyCPUPercent = cpuPercent(a, b)
	r.HeartbeatsPerSec = float64(st1.Heartbeats-st0.Heartbeats) / d
	r.RSSMB = mb(b.RSS)
	r.RSSWindowPeakMB = mb(peak)
	r.Threads = b.Threads
	r.Goroutines = st1.Goroutines
	r.HeapAllocMB = mb(int64(st1.HeapAlloc))
	r.HeapInuseMB, r.StackInuseMB = mb(int64(st1.HeapInuse)), mb(int64(st1.StackInuse))
	r.GoSysMB, r.NextGCMB, r.GCCPUFraction = mb(int64(st1.Sys)), mb(int64(st1.NextGC)), st1.GCCPU
	r.Nodes = n
	if n > 0 {
		r.RSSPerNodeKB = float64(b.RSS) / 1024 / float64(n)
		r.RSSPerNodeOverBaselineKB = float64(b.RSS-base.RSS) / 1024 / float64(n)
	}
	return r, nil
}

// fanoutRounds runs rounds fan-outs on srv, measuring the server's and the clients' CPU.
func fanoutRounds(ctx context.Context, srv *server, clientPids []int, req fanoutRequest, rounds int, invokeTO time.Duration) (fanoutSummary, error) {
	s := fanoutSummary{Command: req.Command, Rounds: rounds, Concurrency: req.Concurrency}
	var lat []int64
	var wall, serverCPU, clientCPU, otherCPU, span float64
	budget := 2*invokeTO + time.Minute
	self := os.Getpid()
	for range rounds {
		a, err := sampleProc(srv.c.pid)
		if err != nil {
			return s, err
		}
		ca, da := sumCPU(clientPids), sumCPU([]int{self})
		mStart, merr := machineBusyTicks()
		fr, err := srv.ctl.fanout(ctx, req, budget)
		if err != nil {
			return s, err
		}
		b, err := sampleProc(srv.c.pid)
		if err != nil {
			return s, err
		}
		mEnd, merr2 := machineBusyTicks()
		dc, dd := sumCPU(clientPids)-ca, sumCPU([]int{self})-da
		clientCPU += float64(dc) / clockTicks
		serverCPU += cpuSeconds(a, b)
		span += b.At.Sub(a.At).Seconds()
		if merr == nil && merr2 == nil {
			otherCPU += float64(max(0, (mEnd-mStart)-(b.CPUTicks-a.CPUTicks)-dc-dd)) / clockTicks
		}
		s.Via = fr.Via
		s.Targets += fr.Targets
		s.OK += fr.OK
		for code, n := range fr.Errors {
			if s.Errors == nil {
				s.Errors = make(map[string]int)
			}
			s.Errors[code] += n
		}
		w := float64(fr.WallUs) / 1e6
		wall += w
		s.RoundWallMs = append(s.RoundWallMs, w*1000)
		lat = append(lat, fr.LatUs...)
	}
	s.Latency = summarise(lat)
	walls := make([]int64, len(s.RoundWallMs))
	for i, w := range s.RoundWallMs {
		walls[i] = int64(w * 1000)
	}
	ws := summarise(walls)
	s.RoundWallP50Ms, s.RoundWallMaxMs = ws.P50Ms, ws.MaxMs
	if wall > 0 {
		s.ThroughputPerSec = float64(s.OK) / wall
	}
	if span > 0 {
		s.ServerCores, s.ClientCores, s.OtherCores = serverCPU/span, clientCPU/span, otherCPU/span
	}
	if s.OK > 0 {
		s.ServerCPUUsPerOp = serverCPU * 1e6 / float64(s.OK)
		s.ClientCPUUsPerOp = clientCPU * 1e6 / float64(s.OK)
	}
	return s, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func avg(total, n int64) int {
	if n == 0 {
		return 0
	}
	return int(total / n)
}

func writeFile(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// waitCounters polls the group's summed counters until cond holds or timeout passes, and
// returns the last sum.
func waitCounters(ctx context.Context, g *clientGroup, cond func(simStatus) bool, timeout time.Duration) simStatus {
	deadline := time.Now().Add(timeout)
	for {
		st := g.sum()
		if cond(st) || time.Now().After(deadline) || sleepCtx(ctx, 20*time.Millisecond) != nil {
			return st
		}
	}
}
