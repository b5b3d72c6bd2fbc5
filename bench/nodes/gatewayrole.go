//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	runpprof "runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode"
	"github.com/gatewayforge/clawops/clawnode/proto"
	"github.com/gatewayforge/clawops/store"
)

// gatewayConfig is the gateway child's config line.
type gatewayConfig struct {
	Dir           string `json:"dir"`           // SQLite database folder
	Listen        string `json:"listen"`        // node endpoint address, 127.x.y.z:port (port 0 = any)
	TickMs        int64  `json:"tickMs"`        // hub tick interval
	MaxHandshakes int    `json:"maxHandshakes"` // hub handshake slots (0 = hub default)
	LogLevel      string `json:"logLevel"`      // debug, info, warn (default), error
}

func (c gatewayConfig) validate() error {
	if c.Dir == "" || !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("gateway config: dir %q must be an absolute path", c.Dir)
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("gateway config: listen %q: %w", c.Listen, err)
	}
	if _, err := checkLoopbackIP("gateway config: listen host", host); err != nil {
		return err
	}
	if c.TickMs < 10 || c.TickMs > 600_000 {
		return fmt.Errorf("gateway config: tickMs %d: want 10..600000", c.TickMs)
	}
	if c.MaxHandshakes < 0 || c.MaxHandshakes > 100_000 {
		return fmt.Errorf("gateway config: maxHandshakes %d: want 0..100000", c.MaxHandshakes)
	}
	return nil
}

// gateway is the gateway child: a real clawnode.Hub on SQLite, serving nodes on one
// loopback port and the driver's control API (plus net/http/pprof) on another.
type gateway struct {
	hub        *clawnode.Hub
	log        *slog.Logger
	heartbeats atomic.Int64
	refusals   atomic.Int64

	profMu   sync.Mutex
	profFile *os.File
}

// runGateway is the gateway role's main.
func runGateway(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	var cfg gatewayConfig
	cmds, err := stdinLines(stdin, &cfg)
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: parseLevel(cfg.LogLevel)}))
	db, err := store.Open(ctx, store.Options{DataDir: cfg.Dir})
	if err != nil {
		return err
	}
	if err := clawnode.Migrate(db); err != nil {
		return err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("gateway key: %w", err)
	}
	g := &gateway{log: logger}
	g.hub, err = clawnode.NewHub(clawnode.HubOptions{
		DB: db, Key: key, TickInterval: time.Duration(cfg.TickMs) * time.Millisecond,
		MaxHandshakes: cfg.MaxHandshakes, Logger: logger, Version: "clawops-bench",
		OnHeartbeat: func(context.Context, proto.Heartbeat) { g.heartbeats.Add(1) },
		OnRefused:   func(context.Context, clawnode.Refusal) { g.refusals.Add(1) },
	})
	if err != nil {
		return err
	}
	nodeLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen for nodes: %w", err)
	}
	host, _, _ := net.SplitHostPort(cfg.Listen)
	ctlLn, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return fmt.Errorf("listen for control: %w", err)
	}
	errLog := log.New(os.Stderr, "http: ", log.LstdFlags)
	nodeMux := http.NewServeMux()
	nodeMux.Handle(wsPath, g.hub)
	nodeSrv := &http.Server{Handler: nodeMux, ReadHeaderTimeout: 15 * time.Second, ErrorLog: errLog}
	ctlSrv := &http.Server{Handler: g.controlMux(), ReadHeaderTimeout: 15 * time.Second, ErrorLog: errLog}
	go nodeSrv.Serve(nodeLn)
	go ctlSrv.Serve(ctlLn)

	out := newLineWriter(stdout)
	if err := out.emit(event{Ev: eventReady, NodeURL: "ws://" + nodeLn.Addr().String() + wsPath,
		ControlURL: "http://" + ctlLn.Addr().String(), GatewayKey: proto.EncodePublicKey(g.hub.PublicKey())}); err != nil {
		return err
	}
	waitStop(ctx, cmds)
	// Exit promptly: the process ending closes every socket. A graceful hub.Close would
	// write each node's last-seen row first, which only slows the benchmark's teardown.
	ctlSrv.Close()
	nodeSrv.Close()
	g.stopProfile()
	return nil
}

// waitStop returns when ctx ends, stdin closes or a stop command arrives.
func waitStop(ctx context.Context, cmds <-chan command) {
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-cmds:
			if !ok || c.Cmd == cmdStop {
				return
			}
		}
	}
}

func parseLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "info":
		return slog.LevelInfo
	case "error":
		return slog.LevelError
	}
	return slog.LevelWarn
}

func (g *gateway) controlMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+apiTokens, g.handleTokens)
	mux.HandleFunc("POST "+apiFanout, g.handleFanout)
	mux.HandleFunc("GET "+apiStats, g.handleStats)
	mux.HandleFunc("POST "+apiProfile, g.handleProfile)
	// pprof on this private loopback mux only (never http.DefaultServeMux).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

var prefixPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

func (r tokensRequest) validate() error {
	switch {
	case !prefixPattern.MatchString(r.Prefix):
		return fmt.Errorf("prefix %q: want 1-32 of [a-z0-9-], starting with a letter", r.Prefix)
	case r.Start < 0 || r.Start >= maxNodes:
		return fmt.Errorf("start %d: want 0..%d", r.Start, maxNodes-1)
	case r.Count < 1 || r.Count > 5000:
		return fmt.Errorf("count %d: want 1..5000 per request", r.Count)
	case r.Start+r.Count > maxNodes:
		return fmt.Errorf("start+count %d: want at most %d", r.Start+r.Count, maxNodes)
	case r.TTLSeconds < 60 || r.TTLSeconds > 86400:
		return fmt.Errorf("ttlSeconds %d: want 60..86400", r.TTLSeconds)
	}
	return nil
}

// handleTokens mints join tokens in bulk. The answer holds secrets: it goes only to the
// driver over loopback, never to a log.
func (g *gateway) handleTokens(w http.ResponseWriter, r *http.Request) {
	var req tokensRequest
	if err := decodeStrict(r.Body, &req); err != nil {
		httpError(w, http.StatusBadRequest, "tokens: "+err.Error())
		return
	}
	if err := req.validate(); err != nil {
		httpError(w, http.StatusBadRequest, "tokens: "+err.Error())
		return
	}
	out := tokensResponse{Instances: make([]string, 0, req.Count), Tokens: make([]string, 0, req.Count)}
	for i := range req.Count {
		inst := fmt.Sprintf(instanceFmt, req.Prefix, req.Start+i)
		tok, err := g.hub.MintJoinToken(r.Context(), clawops.InstanceID(inst), time.Duration(req.TTLSeconds)*time.Second)
		if err != nil {
			httpError(w, http.StatusInternalServerError, fmt.Sprintf("tokens: mint %d of %d: %v", i+1, req.Count, err))
			return
		}
		out.Instances = append(out.Instances, inst)
		out.Tokens = append(out.Tokens, tok)
	}
	writeJSON(w, out)
}

func (r fanoutRequest) validate(needCommand bool) error {
	if needCommand {
		if len(r.Command) == 0 || len(r.Command) > proto.MaxIDLen {
			return fmt.Errorf("command %q: want 1-%d characters", r.Command, proto.MaxIDLen)
		}
		if r.ReqBytes != 0 {
			return errors.New("reqBytes is for the echo server")
		}
	} else {
		if r.Command != "" {
			return errors.New("command is for the gateway")
		}
		if r.ReqBytes < 1 || r.ReqBytes > maxFrameSize {
			return fmt.Errorf("reqBytes %d: want 1..%d", r.ReqBytes, maxFrameSize)
		}
	}
	if r.Concurrency < 1 || r.Concurrency > maxNodes {
		return fmt.Errorf("concurrency %d: want 1..%d", r.Concurrency, maxNodes)
	}
	if r.TimeoutMs < 1 || r.TimeoutMs > 300_000 {
		return fmt.Errorf("timeoutMs %d: want 1..300000", r.TimeoutMs)
	}
	return nil
}

func (g *gateway) handleFanout(w http.ResponseWriter, r *http.Request) {
	var req fanoutRequest
	if err := decodeStrict(r.Body, &req); err != nil {
		httpError(w, http.StatusBadRequest, "fanout: "+err.Error())
		return
	}
	if err := req.validate(true); err != nil {
		httpError(w, http.StatusBadRequest, "fanout: "+err.Error())
		return
	}
	writeJSON(w, g.fanout(r.Context(), req))
}

// fanout runs one round through Hub.MultiInvoke: req.Command on every connected node, at
// most req.Concurrency at once, each bounded by req.TimeoutMs. MultiInvoke times each node
// from just before it signs the command until its result is back.
func (g *gateway) fanout(ctx context.Context, req fanoutRequest) fanoutResult {
	start := time.Now()
	mr, err := g.hub.MultiInvoke(ctx, req.Command, nil, clawnode.Selector{}, req.Concurrency,
		time.Duration(req.TimeoutMs)*time.Millisecond)
	res := fanoutResult{WallUs: time.Since(start).Microseconds(), Via: "Hub.MultiInvoke"}
	if err != nil {
		res.Errors = map[string]int{errorCode(err): 1}
		return res
	}
	res.Targets = len(mr.Results)
	res.LatUs = make([]int64, 0, len(mr.Results))
	for _, r := range mr.Results {
		code := ""
		switch {
		case r.Outcome != clawnode.OutcomeOK:
			code = string(r.Code)
			if code == "" {
				code = string(r.Outcome)
			}
		case !resultShapeOK(req.Command, r.Result):
			code = "BAD_RESULT"
		}
		if code != "" {
			if res.Errors == nil {
				res.Errors = make(map[string]int)
			}
			res.Errors[code]++
			continue
		}
		res.OK++
		res.LatUs = append(res.LatUs, r.Duration.Microseconds())
	}
	return res
}

// errorCode is the reason code of an invoke error, or a coarse fallback.
func errorCode(err error) string {
	if code := clawops.ReasonOf(err); code != "" {
		return string(code)
	}
	if errors.Is(err, context.Canceled) {
		return "CANCELLED"
	}
	return "ERROR"
}

// resultShapeOK checks that a read command's result is the simulated node's answer, so a
// round counts only answers that really came from a node. The check is a byte search, not a
// decode, to keep the tool's own work out of the gateway's CPU figures.
func resultShapeOK(command string, raw json.RawMessage) bool {
	switch command {
	case "vps.metrics":
		return bytes.Contains(raw, []byte(`"memTotalBytes":`))
	case "openclaw.health":
		return bytes.Contains(raw, []byte(`"checkedAt":`))
	}
	return len(raw) > 0
}

func (g *gateway) handleStats(w http.ResponseWriter, r *http.Request) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	n := 0
	for _, s := range g.hub.Nodes() {
		if s.Connected {
			n++
		}
	}
	writeJSON(w, statsResponse{Connected: n, Heartbeats: g.heartbeats.Load(), Refusals: g.refusals.Load(),
		Goroutines: runtime.NumGoroutine(), HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse, HeapSys: ms.HeapSys,
		HeapIdle: ms.HeapIdle, Released: ms.HeapReleased, StackInuse: ms.StackInuse, Sys: ms.Sys, NextGC: ms.NextGC,
		NumGC: ms.NumGC, GCCPU: ms.GCCPUFraction})
}

// handleProfile starts a CPU profile into req.Path (absolute, new file) or, with an empty
// path, stops the running one.
func (g *gateway) handleProfile(w http.ResponseWriter, r *http.Request) {
	var req profileRequest
	if err := decodeStrict(r.Body, &req); err != nil {
		httpError(w, http.StatusBadRequest, "profile: "+err.Error())
		return
	}
	if req.Path == "" {
		g.stopProfile()
		writeJSON(w, map[string]bool{"ok": true})
		return
	}
	if !filepath.IsAbs(req.Path) {
		httpError(w, http.StatusBadRequest, "profile: path must be absolute")
		return
	}
	g.profMu.Lock()
	defer g.profMu.Unlock()
	if g.profFile != nil {
		httpError(w, http.StatusConflict, "profile: one is already running")
		return
	}
	f, err := os.OpenFile(req.Path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		httpError(w, http.StatusBadRequest, "profile: "+err.Error())
		return
	}
	if err := runpprof.StartCPUProfile(f); err != nil {
		f.Close()
		httpError(w, http.StatusConflict, "profile: "+err.Error())
		return
	}
	g.profFile = f
	writeJSON(w, map[string]bool{"ok": true})
}

func (g *gateway) stopProfile() {
	g.profMu.Lock()
	defer g.profMu.Unlock()
	if g.profFile != nil {
		runpprof.StopCPUProfile()
		g.profFile.Close()
		g.profFile = nil
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
