//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
)

// The driver and its children talk in JSON lines: the child reads one config object from
// stdin, then command lines ({"cmd":"go"}, {"cmd":"stop"}); it writes event lines to
// stdout ({"ev":"ready",...}, {"ev":"status",...}). Secrets (join tokens) travel only on
// stdin, never in argv or logs. A child that reads EOF on stdin exits: when the driver
// dies, its children follow.

// roleEnv names the environment variable that makes the binary (or the test binary) run
// as a child role instead of the driver.
const roleEnv = "CLAWOPS_BENCH_ROLE"

// Child roles.
const (
	roleGateway  = "gateway" // one clawnode.Hub on SQLite, plus its control endpoint
	roleSim      = "sim"     // up to maxPerSim simulated nodes
	roleEcho     = "echo"    // a bare coder/websocket server, the baseline
	roleEchoSim  = "echosim" // clients of the echo server
	maxPerSim    = 4000      // connections per client process (each process has 20,000 files at most)
	maxNodes     = 200_000   // sanity bound on -n and the ramp
	maxFrameSize = 1 << 20   // bound on bare-echo frame sizes
	eventReady   = "ready"   // child is up (and, for sims, has its keys)
	eventStatus  = "status"  // periodic counters
	cmdGo        = "go"      // sims: start connecting
	cmdStop      = "stop"    // any child: exit now
	instanceFmt  = "%s%06d"  // instance ids: prefix + node index
	apiTokens    = "/v1/tokens"
	apiFanout    = "/v1/fanout"
	apiStats     = "/v1/stats"
	apiProfile   = "/v1/profile"
	wsPath       = "/v1/nodes/ws"
	echoPath     = "/ws"
	jsonMaxBytes = 64 << 20 // bound on any JSON line or body we read
)

// event is one line a child writes to stdout.
type event struct {
	Ev string `json:"ev"`

	// ready (gateway and echo server)
	NodeURL    string `json:"nodeURL,omitempty"`
	ControlURL string `json:"controlURL,omitempty"`
	GatewayKey string `json:"gatewayKey,omitempty"`

	// status (sims and echo clients)
	Status *simStatus `json:"status,omitempty"`
}

// simStatus are a client process's counters, cumulative since it started.
type simStatus struct {
	Nodes          int    `json:"nodes"`          // nodes this process simulates
	Connected      int64  `json:"connected"`      // live sessions now
	EverConnected  int64  `json:"everConnected"`  // nodes that got hello-ok at least once
	FailedAttempts int64  `json:"failedAttempts"` // dials or handshakes that failed (then retried)
	Disconnects    int64  `json:"disconnects"`    // sessions that ended after hello-ok
	Invokes        int64  `json:"invokes"`        // commands answered with a result
	Refusals       int64  `json:"refusals"`       // commands refused (bad signature, replay, ...)
	Rejects        int64  `json:"rejects"`        // requests the gateway answered with an error
	Heartbeats     int64  `json:"heartbeats"`     // heartbeats sent
	ReqFrames      int64  `json:"reqFrames"`      // invoke requests received
	ReqBytes       int64  `json:"reqBytes"`       // their total size
	ResFrames      int64  `json:"resFrames"`      // invoke results sent
	ResBytes       int64  `json:"resBytes"`       // their total size
	AllConnectedMs int64  `json:"allConnectedMs"` // ms from "go" until every node had hello-ok (0 = not yet)
	LastError      string `json:"lastError,omitempty"`
}

// command is one line the driver writes to a child after its config.
type command struct {
	Cmd string `json:"cmd"`
}

// tokensRequest asks the gateway to mint Count join tokens for instances
// fmt.Sprintf(instanceFmt, Prefix, Start+i).
type tokensRequest struct {
	Prefix     string `json:"prefix"`
	Start      int    `json:"start"`
	Count      int    `json:"count"`
	TTLSeconds int    `json:"ttlSeconds"`
}

// tokensResponse carries the minted tokens, in instance order.
type tokensResponse struct {
	Instances []string `json:"instances"`
	Tokens    []string `json:"tokens"`
}

// fanoutRequest asks for one fan-out round to every connected node (gateway) or every
// connection (echo server).
type fanoutRequest struct {
	Command     string `json:"command,omitempty"` // gateway: the node command
	ReqBytes    int    `json:"reqBytes,omitempty"`
	Concurrency int    `json:"concurrency"`
	TimeoutMs   int64  `json:"timeoutMs"`
}

// fanoutResult is one round: per-target latency of the successful ones, errors by code.
type fanoutResult struct {
	Targets int            `json:"targets"`
	OK      int            `json:"ok"`
	Errors  map[string]int `json:"errors,omitempty"`
	WallUs  int64          `json:"wallUs"`
	LatUs   []int64        `json:"latUs"`
	Via     string         `json:"via"` // how the round was driven (Hub.Invoke + semaphore, MultiInvoke, ...)
}

// statsResponse is the server process's own view.
type statsResponse struct {
	Connected  int     `json:"connected"`
	Heartbeats int64   `json:"heartbeats"`
	Refusals   int64   `json:"refusals"`
	Goroutines int     `json:"goroutines"`
	HeapAlloc  uint64  `json:"heapAlloc"`
	HeapInuse  uint64  `json:"heapInuse"`
	HeapSys    uint64  `json:"heapSys"`
	HeapIdle   uint64  `json:"heapIdle"`
	Released   uint64  `json:"heapReleased"`
	StackInuse uint64  `json:"stackInuse"`
	Sys        uint64  `json:"sys"`
	NextGC     uint64  `json:"nextGC"`
	NumGC      uint32  `json:"numGC"`
	GCCPU      float64 `json:"gcCPUFraction"`
}

// profileRequest starts (Path set) or stops (Path empty) a CPU profile in the gateway.
type profileRequest struct {
	Path string `json:"path"`
}

// decodeStrict decodes exactly one JSON value from r into v, refusing unknown fields and
// trailing data.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(io.LimitReader(r, jsonMaxBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// lineWriter writes JSON lines to stdout; its methods are safe for concurrent use only
// through the caller's own serialisation (each child emits from one goroutine).
type lineWriter struct{ enc *json.Encoder }

func newLineWriter(w io.Writer) *lineWriter { return &lineWriter{enc: json.NewEncoder(w)} }

func (w *lineWriter) emit(e event) error { return w.enc.Encode(e) }

// stdinLines reads the child's stdin: first its config, then commands on the returned
// channel, which is closed at EOF (the driver is gone or wants us to stop).
func stdinLines(r io.Reader, config any) (<-chan command, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), jsonMaxBytes)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		return nil, errors.New("read config: stdin closed before the config line")
	}
	dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(config); err != nil {
		return nil, fmt.Errorf("decode config: %w", err)
	}
	ch := make(chan command, 4)
	go func() {
		defer close(ch)
		for sc.Scan() {
			var c command
			if json.Unmarshal(sc.Bytes(), &c) == nil && c.Cmd != "" {
				ch <- c
			}
		}
	}()
	return ch, nil
}

// checkLoopbackURL accepts only ws/http URLs whose host is an IP literal in 127.0.0.0/8:
// this tool never contacts anything else.
func checkLoopbackURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s %q: %w", what, raw, err)
	}
	switch u.Scheme {
	case "ws", "http":
	default:
		return fmt.Errorf("%s %q: scheme must be ws or http", what, raw)
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return fmt.Errorf("%s %q: host must be an IPv4 address in 127.0.0.0/8", what, raw)
	}
	return nil
}

// checkLoopbackIP accepts an IPv4 address in 127.0.0.0/8.
func checkLoopbackIP(what, s string) (net.IP, error) {
	ip := net.ParseIP(s)
	if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%s %q: must be an IPv4 address in 127.0.0.0/8", what, s)
	}
	return ip.To4(), nil
}

// sourceIP is the client address of node index i: 127.0.0.2 … 127.0.0.(1+n), round robin,
// so no single address runs out of ephemeral ports.
func sourceIP(i, n int) string {
	return fmt.Sprintf("127.0.0.%d", 2+i%n)
}

// stderrf writes a diagnostic line to stderr (children's stderr goes to their log file).
func stderrf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}
