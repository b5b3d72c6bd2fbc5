//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// The baseline: the same fan-out over bare WebSockets. The echo server (its own process,
// like the gateway) holds N connections with one reader goroutine each, as the hub does;
// a round writes one frame of the size of an invoke request to every connection, at most
// `concurrency` at once, and waits for the client's reply, a frame of the size of an
// invoke result. No JSON, no signatures, no database: what remains is the transport.

// echoServerConfig is the echo server child's config line.
type echoServerConfig struct {
	Listen string `json:"listen"`
}

// echoClientConfig is an echo client child's config line.
type echoClientConfig struct {
	Name               string `json:"name"`
	URL                string `json:"url"`
	SourceIPs          int    `json:"sourceIPs"`
	FirstIndex         int    `json:"firstIndex"` // global index of this process's first connection
	Count              int    `json:"count"`
	ResBytes           int    `json:"resBytes"`
	DialConcurrency    int    `json:"dialConcurrency"`
	HandshakeTimeoutMs int64  `json:"handshakeTimeoutMs"`
	StatusEveryMs      int64  `json:"statusEveryMs"`
}

func (c echoClientConfig) validate() error {
	if err := checkLoopbackURL("echo client config: url", c.URL); err != nil {
		return err
	}
	if c.FirstIndex < 0 || c.FirstIndex >= maxNodes {
		return fmt.Errorf("echo client config: firstIndex %d: want 0..%d", c.FirstIndex, maxNodes-1)
	}
	if c.ResBytes < 1 || c.ResBytes > maxFrameSize {
		return fmt.Errorf("echo client config: resBytes %d: want 1..%d", c.ResBytes, maxFrameSize)
	}
	return checkCommon("echo client config", c.Count, c.SourceIPs, c.DialConcurrency, c.HandshakeTimeoutMs, c.StatusEveryMs)
}

type echoServer struct {
	ctx   context.Context
	mu    sync.RWMutex
	conns map[*echoConn]struct{}
}

type echoConn struct {
	ws    *websocket.Conn
	reply chan struct{} // one outstanding frame per connection
}

// runEchoServer is the echo server role's main.
func runEchoServer(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	var cfg echoServerConfig
	cmds, err := stdinLines(stdin, &cfg)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return fmt.Errorf("echo config: listen %q: %w", cfg.Listen, err)
	}
	if _, err := checkLoopbackIP("echo config: listen host", host); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e := &echoServer{ctx: ctx, conns: make(map[*echoConn]struct{})}
	wsLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ctlLn, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return fmt.Errorf("listen for control: %w", err)
	}
	errLog := log.New(os.Stderr, "http: ", log.LstdFlags)
	wsMux := http.NewServeMux()
	wsMux.HandleFunc(echoPath, e.serveWS)
	ctlMux := http.NewServeMux()
	ctlMux.HandleFunc("POST "+apiFanout, e.handleFanout)
	ctlMux.HandleFunc("GET "+apiStats, e.handleStats)
	wsSrv := &http.Server{Handler: wsMux, ReadHeaderTimeout: 15 * time.Second, ErrorLog: errLog}
	ctlSrv := &http.Server{Handler: ctlMux, ReadHeaderTimeout: 15 * time.Second, ErrorLog: errLog}
	go wsSrv.Serve(wsLn)
	go ctlSrv.Serve(ctlLn)
	if err := newLineWriter(stdout).emit(event{Ev: eventReady, NodeURL: "ws://" + wsLn.Addr().String() + echoPath,
		ControlURL: "http://" + ctlLn.Addr().String()}); err != nil {
		return err
	}
	waitStop(ctx, cmds)
	ctlSrv.Close()
	wsSrv.Close()
	return nil
}

func (e *echoServer) serveWS(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(maxFrameSize + 1024)
	c := &echoConn{ws: ws, reply: make(chan struct{}, 1)}
	e.mu.Lock()
	e.conns[c] = struct{}{}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.conns, c)
		e.mu.Unlock()
	}()
	for {
		if _, _, err := ws.Read(e.ctx); err != nil {
			return
		}
		select {
		case c.reply <- struct{}{}:
		default:
		}
	}
}

func (e *echoServer) handleStats(w http.ResponseWriter, _ *http.Request) {
	e.mu.RLock()
	n := len(e.conns)
	e.mu.RUnlock()
	writeJSON(w, statsResponse{Connected: n})
}

func (e *echoServer) handleFanout(w http.ResponseWriter, r *http.Request) {
	var req fanoutRequest
	if err := decodeStrict(r.Body, &req); err != nil {
		httpError(w, http.StatusBadRequest, "fanout: "+err.Error())
		return
	}
	if err := req.validate(false); err != nil {
		httpError(w, http.StatusBadRequest, "fanout: "+err.Error())
		return
	}
	writeJSON(w, e.fanout(r.Context(), req))
}

// fanout writes one frame to every connection and times each until its reply.
func (e *echoServer) fanout(ctx context.Context, req fanoutRequest) fanoutResult {
	e.mu.RLock()
	conns := make([]*echoConn, 0, len(e.conns))
	for c := range e.conns {
		conns = append(conns, c)
	}
	e.mu.RUnlock()
	frame := []byte(paddedFrame("bench.echo", req.ReqBytes))
	lat := make([]int64, len(conns))
	codes := make([]string, len(conns))
	timeout := time.Duration(req.TimeoutMs) * time.Millisecond
	sem := make(chan struct{}, req.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
launch:
	for i, c := range conns {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			for j := i; j < len(conns); j++ {
				codes[j] = "NOT_STARTED"
			}
			break launch
		}
		wg.Go(func() {
			defer func() { <-sem }()
			select { // drop a late reply from an earlier round
			case <-c.reply:
			default:
			}
			ictx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			t0 := time.Now()
			if err := c.ws.Write(ictx, websocket.MessageText, frame); err != nil {
				codes[i] = "WRITE_FAILED"
				return
			}
			select {
			case <-c.reply:
				lat[i] = time.Since(t0).Microseconds()
			case <-ictx.Done():
				codes[i] = "TIMEOUT"
			}
		})
	}
	wg.Wait()
	res := fanoutResult{Targets: len(conns), WallUs: time.Since(start).Microseconds(),
		Via: "bare coder/websocket write + reply, bounded by a semaphore", LatUs: make([]int64, 0, len(conns))}
	for i := range conns {
		if codes[i] != "" {
			if res.Errors == nil {
				res.Errors = make(map[string]int)
			}
			res.Errors[codes[i]]++
			continue
		}
		res.OK++
		res.LatUs = append(res.LatUs, lat[i])
	}
	return res
}

// paddedFrame is a JSON text frame of exactly size bytes (at least its fixed part).
func paddedFrame(name string, size int) string {
	head := `{"type":"event","event":"` + name + `","payload":"`
	tail := `"}`
	return head + strings.Repeat("x", max(0, size-len(head)-len(tail))) + tail
}

// runEchoClients is the echo client role's main: Count connections that answer every
// frame with one of ResBytes.
func runEchoClients(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	var cfg echoClientConfig
	cmds, err := stdinLines(stdin, &cfg)
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	pool := newClientPool(cfg.SourceIPs, cfg.DialConcurrency)
	st := &counters{nodes: cfg.Count}
	out := newLineWriter(stdout)
	if err := out.emit(event{Ev: eventReady}); err != nil {
		return err
	}
	if !waitGo(ctx, cmds) {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st.goAt = time.Now()
	reply := []byte(paddedFrame("bench.reply", cfg.ResBytes))
	hsTO := time.Duration(cfg.HandshakeTimeoutMs) * time.Millisecond
	var wg sync.WaitGroup
	for i := range cfg.Count {
		idx := cfg.FirstIndex + i
		first := true
		wg.Go(func() {
			keepConnected(ctx, st, func(ctx context.Context) (bool, error) {
				return echoSession(ctx, pool, st, cfg.URL, idx, hsTO, reply, &first)
			})
		})
	}
	runStatusLoop(ctx, out, st, time.Duration(cfg.StatusEveryMs)*time.Millisecond, cmds)
	cancel()
	wg.Wait()
	return nil
}

func echoSession(ctx context.Context, pool *clientPool, st *counters, url string, idx int, hsTO time.Duration, reply []byte, first *bool) (bool, error) {
	release, err := pool.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	hctx, cancel := context.WithTimeout(ctx, hsTO)
	defer cancel()
	ws, _, err := websocket.Dial(hctx, url, &websocket.DialOptions{HTTPClient: pool.client(idx),
		CompressionMode: websocket.CompressionDisabled})
	release()
	if err != nil {
		return false, fmt.Errorf("dial echo server: %w", err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(maxFrameSize + 1024)
	if *first {
		*first = false
		st.firstConnect()
	}
	st.connected.Add(1)
	defer st.connected.Add(-1)
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return true, fmt.Errorf("read: %w", err)
		}
		st.reqFrames.Add(1)
		st.reqBytes.Add(int64(len(data)))
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		err = ws.Write(wctx, websocket.MessageText, reply)
		wcancel()
		if err != nil {
			return true, fmt.Errorf("write: %w", err)
		}
		st.invokes.Add(1)
		st.resFrames.Add(1)
		st.resBytes.Add(int64(len(reply)))
	}
}
