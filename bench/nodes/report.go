//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// results is everything one run measured; it is printed as a table and written as JSON.
type results struct {
	Tool      string         `json:"tool"`
	StartedAt time.Time      `json:"startedAt"`
	Host      hostInfo       `json:"host"`
	Config    config         `json:"config"`
	Connect   *connectResult `json:"connect,omitempty"`
	Gateway   *serverResult  `json:"gateway,omitempty"`
	Fanout    *fanoutSummary `json:"fanout,omitempty"`
	Bare      *bareResult    `json:"bare,omitempty"`
	Ratio     *ratioResult   `json:"ratio,omitempty"`
	Ramp      *rampResult    `json:"ramp,omitempty"`
	Notes     []string       `json:"notes,omitempty"`
	ElapsedS  float64        `json:"elapsedS"`
	Error     string         `json:"error,omitempty"`
}

type hostInfo struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"goVersion"`
	Kernel    string `json:"kernel,omitempty"`
}

// connectResult is one connect phase: nodes until all had hello-ok.
type connectResult struct {
	Target         int     `json:"target"`
	Connected      int64   `json:"connected"`
	Seconds        float64 `json:"seconds"`
	PerSec         float64 `json:"perSec"`
	FailedAttempts int64   `json:"failedAttempts"`
	Disconnects    int64   `json:"disconnects"`
	LastError      string  `json:"lastError,omitempty"`
	// ServerCPUUsPerNode is the gateway's CPU time from before the first dial until every
	// node had hello-ok, per node (enrollment included).
	ServerCPUUsPerNode float64 `json:"serverCPUUsPerNode,omitempty"`
}

// serverResult is the gateway process's footprint with N nodes connected.
type serverResult struct {
	Nodes                    int      `json:"nodes"`
	RSSBaselineMB            float64  `json:"rssBaselineMB"` // after start and token minting, before nodes
	RSSMB                    float64  `json:"rssMB"`         // end of the steady window
	RSSWindowPeakMB          float64  `json:"rssWindowPeakMB"`
	RSSAfterFanoutMB         float64  `json:"rssAfterFanoutMB"`
	StackAfterFanoutMB       float64  `json:"stackAfterFanoutMB"`
	RSSPeakMB                float64  `json:"rssPeakMB"` // VmHWM over the process's life
	RSSPerNodeKB             float64  `json:"rssPerNodeKB"`
	RSSPerNodeOverBaselineKB float64  `json:"rssPerNodeOverBaselineKB"`
	SteadyCPUPercent         float64  `json:"steadyCPUPercent"` // of one core
	SteadyWindowS            float64  `json:"steadyWindowS"`
	HeartbeatsPerSec         float64  `json:"heartbeatsPerSec"`
	Goroutines               int      `json:"goroutines"`
	Threads                  int      `json:"threads"`
	HeapAllocMB              float64  `json:"heapAllocMB"`
	HeapInuseMB              float64  `json:"heapInuseMB"`
	StackInuseMB             float64  `json:"stackInuseMB"`
	GoSysMB                  float64  `json:"goSysMB"` // memory the Go runtime obtained from the OS
	NextGCMB                 float64  `json:"nextGCMB"`
	GCCPUFraction            float64  `json:"gcCPUFraction"`
	Env                      []string `json:"env,omitempty"` // GOGC / GOMEMLIMIT given to the gateway
}

// fanoutSummary is several fan-out rounds.
type fanoutSummary struct {
	Command          string         `json:"command,omitempty"`
	Via              string         `json:"via"`
	Rounds           int            `json:"rounds"`
	Concurrency      int            `json:"concurrency"`
	Targets          int            `json:"targets"`
	OK               int            `json:"ok"`
	Errors           map[string]int `json:"errors,omitempty"`
	Latency          latencyStats   `json:"latency"`
	RoundWallMs      []float64      `json:"roundWallMs"`
	RoundWallP50Ms   float64        `json:"roundWallP50Ms"`
	RoundWallMaxMs   float64        `json:"roundWallMaxMs"`
	ThroughputPerSec float64        `json:"throughputPerSec"`
	ServerCPUUsPerOp float64        `json:"serverCPUUsPerOp"`
	ClientCPUUsPerOp float64        `json:"clientCPUUsPerOp"`
	ServerCores      float64        `json:"serverCores"` // average cores used during the rounds
	ClientCores      float64        `json:"clientCores"`
	OtherCores       float64        `json:"otherCores"` // everything else on the machine (noise)
	ReqFrameBytes    int            `json:"reqFrameBytes"`
	ResFrameBytes    int            `json:"resFrameBytes"`
}

// bareResult is the same fan-out over the bare echo server.
type bareResult struct {
	Connect      *connectResult `json:"connect,omitempty"`
	RSSMB        float64        `json:"rssMB"`
	RSSPerConnKB float64        `json:"rssPerConnKB"`
	Fanout       *fanoutSummary `json:"fanout,omitempty"`
}

// ratioResult compares ClawOps with the bare baseline.
type ratioResult struct {
	Throughput float64 `json:"throughput"` // ClawOps invokes/s ÷ bare frames/s (wall clock, this machine)
	ServerCPU  float64 `json:"serverCPU"`  // bare server CPU per frame ÷ gateway CPU per invoke
	Target     float64 `json:"target"`
}

func newResults(cfg config) *results {
	r := &results{Tool: "clawops bench/nodes", StartedAt: time.Now().UTC(), Config: cfg,
		Host: hostInfo{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Host.Kernel = strings.TrimSpace(string(b))
	}
	return r
}

func (r *results) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *results) computeRatio() {
	if r.Fanout == nil || r.Bare == nil || r.Bare.Fanout == nil || r.Bare.Fanout.ThroughputPerSec == 0 {
		return
	}
	x := &ratioResult{Target: 0.8, Throughput: r.Fanout.ThroughputPerSec / r.Bare.Fanout.ThroughputPerSec}
	if r.Fanout.ServerCPUUsPerOp > 0 {
		x.ServerCPU = r.Bare.Fanout.ServerCPUUsPerOp / r.Fanout.ServerCPUUsPerOp
	}
	r.Ratio = x
}

func (r *results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	return writeFile(path, append(b, '\n'))
}

// printSummary renders the results as a table.
func printSummary(w io.Writer, r *results) {
	fmt.Fprintf(w, "\nClawOps node load — %d CPUs, %s, kernel %s\n", r.Host.CPUs, r.Host.GoVersion, r.Host.Kernel)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, args...)) }
	if c := r.Connect; c != nil {
		row("connect", "%d/%d nodes hello-ok in %.2f s → %.0f nodes/s; gateway CPU %.0f µs/node (failed attempts %d, disconnects %d)",
			c.Connected, c.Target, c.Seconds, c.PerSec, c.ServerCPUUsPerNode, c.FailedAttempts, c.Disconnects)
	}
	if g := r.Gateway; g != nil {
		row("gateway RSS", "%.1f MB with %d nodes (baseline %.1f MB): %.1f KB/node total, %.1f KB/node over baseline; peak %.1f MB, %.1f MB after the fan-outs",
			g.RSSMB, g.Nodes, g.RSSBaselineMB, g.RSSPerNodeKB, g.RSSPerNodeOverBaselineKB, max(g.RSSPeakMB, g.RSSWindowPeakMB), g.RSSAfterFanoutMB)
		row("gateway idle", "%.1f%% of one core over %.1f s (%.0f heartbeats/s in; %d goroutines, %d threads, heap %.1f MB)",
			g.SteadyCPUPercent, g.SteadyWindowS, g.HeartbeatsPerSec, g.Goroutines, g.Threads, g.HeapAllocMB)
		perNode := func(v float64) float64 { return v * 1024 / float64(max(g.Nodes, 1)) }
		row("gateway mem", "heap in use %.1f MB (%.1f KB/node), stacks %.1f MB (%.1f KB/node; %.1f MB after the fan-outs), Go total %.1f MB, next GC at %.1f MB; GC %.1f%% of CPU %s",
			g.HeapInuseMB, perNode(g.HeapInuseMB), g.StackInuseMB, perNode(g.StackInuseMB), g.StackAfterFanoutMB, g.GoSysMB, g.NextGCMB,
			100*g.GCCPUFraction, strings.Join(g.Env, " "))
	}
	if f := r.Fanout; f != nil {
		fanoutRows(row, "fan-out", f)
	}
	if b := r.Bare; b != nil {
		if b.Connect != nil {
			row("bare connect", "%d/%d in %.2f s → %.0f conns/s; echo server %.1f MB, %.1f KB/conn over baseline",
				b.Connect.Connected, b.Connect.Target, b.Connect.Seconds, b.Connect.PerSec, b.RSSMB, b.RSSPerConnKB)
		}
		if b.Fanout != nil {
			fanoutRows(row, "bare fan-out", b.Fanout)
		}
	}
	if x := r.Ratio; x != nil {
		row("ratio", "ClawOps/bare throughput %.2f (target ≥ %.1f); server CPU per op bare/ClawOps %.2f", x.Throughput, x.Target, x.ServerCPU)
	}
	if rp := r.Ramp; rp != nil {
		row("ramp", "largest N held: %d (last fully connected step %d); stopped: %s", rp.LargestHeld, rp.LargestFullStep, rp.StopReason)
	}
	tw.Flush()
	if rp := r.Ramp; rp != nil && len(rp.Steps) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  step\ttarget\tconnected\tseconds\tnodes/s\tRSS MB\tKB/node\tfan-out ok\tround ms\tp99 ms\t")
		for _, s := range rp.Steps {
			fmt.Fprintf(tw, "  %d\t%d\t%d\t%.1f\t%.0f\t%.1f\t%.1f\t%d/%d\t%.0f\t%.0f\t\n", s.Step, s.Target, s.Connected,
				s.Seconds, s.PerSec, s.RSSMB, s.KBPerNode, s.FanoutOK, s.FanoutTargets, s.FanoutWallMs, s.FanoutP99Ms)
		}
		tw.Flush()
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  ERROR: %s\n", r.Error)
	}
	fmt.Fprintf(w, "  (%.1f s in all)\n", r.ElapsedS)
}

func fanoutRows(row func(string, string, ...any), name string, f *fanoutSummary) {
	what := f.Command
	if what == "" {
		what = "echo"
	}
	row(name, "%s ×%d, %d rounds, %d in flight: %d/%d ok; per-op p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms",
		what, f.Targets/max(f.Rounds, 1), f.Rounds, f.Concurrency, f.OK, f.Targets,
		f.Latency.P50Ms, f.Latency.P90Ms, f.Latency.P99Ms, f.Latency.MaxMs)
	row("", "round (all N) p50 %.0f ms, max %.0f ms → %.0f ops/s; CPU per op: server %.1f µs, clients %.1f µs; frames %d B ↓ %d B ↑",
		f.RoundWallP50Ms, f.RoundWallMaxMs, f.ThroughputPerSec, f.ServerCPUUsPerOp, f.ClientCPUUsPerOp, f.ReqFrameBytes, f.ResFrameBytes)
	row("", "cores busy during the rounds: server %.2f, clients %.2f, other processes on this machine %.2f",
		f.ServerCores, f.ClientCores, f.OtherCores)
	if len(f.Errors) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(f.Errors)) {
			parts = append(parts, fmt.Sprintf("%s×%d", k, f.Errors[k]))
		}
		row("", "errors: %s", strings.Join(parts, ", "))
	}
}
