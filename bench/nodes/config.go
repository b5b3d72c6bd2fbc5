//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"time"

	"github.com/gatewayforge/clawops/clawnode"
)

var (
	gogcPattern     = regexp.MustCompile(`^(off|[1-9][0-9]{0,4})$`)
	memLimitPattern = regexp.MustCompile(`^[1-9][0-9]{0,12}(B|KiB|MiB|GiB)?$`)
)

// config is the driver's configuration, from flags.
type config struct {
	N                int           `json:"n"`
	M                int           `json:"m"` // sim processes actually used (after defaults)
	PerSim           int           `json:"perSim"`
	SourceIPs        int           `json:"sourceIPs"`
	Dials            int           `json:"dials"`
	Heartbeat        time.Duration `json:"heartbeat"`
	Tick             time.Duration `json:"tick"`
	MaxHandshakes    int           `json:"maxHandshakes"`
	GatewayGOGC      string        `json:"gatewayGOGC,omitempty"`
	GatewayMemLimit  string        `json:"gatewayMemLimit,omitempty"`
	HandshakeTimeout time.Duration `json:"handshakeTimeout"`
	ConnectTimeout   time.Duration `json:"connectTimeout"`
	Settle           time.Duration `json:"settle"`
	Steady           time.Duration `json:"steady"`
	Rounds           int           `json:"rounds"`
	Command          string        `json:"command"`
	Concurrency      int           `json:"concurrency"`
	InvokeTimeout    time.Duration `json:"invokeTimeout"`
	Bare             bool          `json:"bare"`
	Ramp             bool          `json:"ramp"`
	RampStep         int           `json:"rampStep"`
	RampMax          int           `json:"rampMax"`
	RampStepTimeout  time.Duration `json:"rampStepTimeout"`
	RampRSSMB        int           `json:"rampRssMB"`
	Budget           time.Duration `json:"budget"`
	StatusEvery      time.Duration `json:"statusEvery"`
	JSONPath         string        `json:"jsonPath,omitempty"`
	PprofDir         string        `json:"pprofDir,omitempty"`
	Keep             bool          `json:"keep"`
	Verbose          bool          `json:"verbose"`
}

// parseFlags reads the driver's flags and validates them.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench/nodes", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./bench/nodes [flags]\n\n"+
			"Starts a ClawOps gateway (clawnode.Hub on SQLite) in its own process, connects -n simulated\n"+
			"gf-clawnode nodes from -m client processes over real loopback WebSockets, and measures connect\n"+
			"rate, gateway CPU and RSS, fan-out latency, and the same fan-out over a bare WebSocket echo\n"+
			"server. -ramp instead grows N until connects fail or a budget is hit. See docs/bench.md.\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.IntVar(&c.N, "n", 10000, "simulated nodes")
	fs.IntVar(&c.M, "m", 0, "sim processes (0: enough for -per-sim each)")
	fs.IntVar(&c.PerSim, "per-sim", maxPerSim, "most connections per client process")
	fs.IntVar(&c.SourceIPs, "src-ips", 32, "client source addresses 127.0.0.2 … 127.0.0.(1+this)")
	fs.IntVar(&c.Dials, "dials", 192, "handshakes in flight, in total over all client processes")
	fs.DurationVar(&c.Heartbeat, "heartbeat", 10*time.Second, "node heartbeat interval, as gf-clawnode's")
	fs.DurationVar(&c.Tick, "tick", 15*time.Second, "hub tick interval, as the hub's default")
	fs.IntVar(&c.MaxHandshakes, "max-handshakes", 0, "hub MaxHandshakes (0: hub default)")
	fs.StringVar(&c.GatewayGOGC, "gateway-gogc", "", "GOGC for the gateway process only (e.g. 50, off)")
	fs.StringVar(&c.GatewayMemLimit, "gateway-memlimit", "", "GOMEMLIMIT for the gateway process only (e.g. 250MiB)")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", 15*time.Second, "node dial+handshake budget, as gf-clawnode's")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", 5*time.Minute, "budget for all nodes to get hello-ok")
	fs.DurationVar(&c.Settle, "settle", 3*time.Second, "pause after connecting, before measuring")
	fs.DurationVar(&c.Steady, "steady", 30*time.Second, "steady-state CPU/RSS window")
	fs.IntVar(&c.Rounds, "rounds", 5, "fan-out rounds")
	fs.StringVar(&c.Command, "command", "vps.metrics", "read command fanned out: vps.metrics or openclaw.health")
	fs.IntVar(&c.Concurrency, "concurrency", clawnode.DefaultFanOut, "invokes in flight during a fan-out (the default is MultiInvoke's)")
	fs.DurationVar(&c.InvokeTimeout, "invoke-timeout", 30*time.Second, "per-node invoke budget")
	fs.BoolVar(&c.Bare, "bare", true, "also run the bare WebSocket echo baseline")
	fs.BoolVar(&c.Ramp, "ramp", false, "ramp mode: grow N by -ramp-step until connects fail or a budget is hit")
	fs.IntVar(&c.RampStep, "ramp-step", 2000, "ramp: nodes added per step")
	fs.IntVar(&c.RampMax, "ramp-max", 30000, "ramp: stop at this many nodes")
	fs.DurationVar(&c.RampStepTimeout, "ramp-step-timeout", time.Minute, "ramp: budget for one step's connects")
	fs.IntVar(&c.RampRSSMB, "ramp-rss-mb", 0, "ramp: stop when the gateway's RSS passes this (0: no limit)")
	fs.DurationVar(&c.Budget, "budget", 20*time.Minute, "hard limit on the whole run")
	fs.DurationVar(&c.StatusEvery, "status-every", 250*time.Millisecond, "client status period")
	fs.StringVar(&c.JSONPath, "json", "", "write JSON results to this file")
	fs.StringVar(&c.PprofDir, "pprof", "", "write gateway heap, connect and fan-out CPU profiles into this folder")
	fs.BoolVar(&c.Keep, "keep", false, "keep the working folder (logs, database)")
	fs.BoolVar(&c.Verbose, "v", false, "copy children's logs to stderr")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := c.complete(); err != nil {
		return c, err
	}
	return c, nil
}

// complete fills derived values and validates; messages name the flag.
func (c *config) complete() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.N < 1 || c.N > maxNodes {
		bad("-n %d: want 1..%d", c.N, maxNodes)
	}
	if c.PerSim < 1 || c.PerSim > maxPerSim {
		bad("-per-sim %d: want 1..%d (each process may open 20,000 files)", c.PerSim, maxPerSim)
	}
	if c.M < 0 || (c.N >= 1 && c.M > c.N) {
		bad("-m %d: want 0..n", c.M)
	}
	if c.SourceIPs < 1 || c.SourceIPs > 250 {
		bad("-src-ips %d: want 1..250", c.SourceIPs)
	}
	if c.Dials < 1 || c.Dials > 10000 {
		bad("-dials %d: want 1..10000", c.Dials)
	}
	if c.Rounds < 1 || c.Rounds > 1000 {
		bad("-rounds %d: want 1..1000", c.Rounds)
	}
	if c.Command != "vps.metrics" && c.Command != "openclaw.health" {
		bad("-command %q: want vps.metrics or openclaw.health (the simulated nodes' read commands)", c.Command)
	}
	if c.Concurrency < 1 || c.Concurrency > maxNodes {
		bad("-concurrency %d: want 1..%d", c.Concurrency, maxNodes)
	}
	if c.MaxHandshakes < 0 || c.MaxHandshakes > 100_000 {
		bad("-max-handshakes %d: want 0..100000", c.MaxHandshakes)
	}
	if c.GatewayGOGC != "" && !gogcPattern.MatchString(c.GatewayGOGC) {
		bad("-gateway-gogc %q: want off or a percentage 1..99999", c.GatewayGOGC)
	}
	if c.GatewayMemLimit != "" && !memLimitPattern.MatchString(c.GatewayMemLimit) {
		bad("-gateway-memlimit %q: want a size such as 250MiB or 1GiB", c.GatewayMemLimit)
	}
	for _, d := range []struct {
		name     string
		v        time.Duration
		min, max time.Duration
	}{
		{"-heartbeat", c.Heartbeat, 10 * time.Millisecond, 10 * time.Minute},
		{"-tick", c.Tick, 10 * time.Millisecond, 10 * time.Minute},
		{"-handshake-timeout", c.HandshakeTimeout, 100 * time.Millisecond, 2 * time.Minute},
		{"-connect-timeout", c.ConnectTimeout, 100 * time.Millisecond, time.Hour},
		{"-settle", c.Settle, 0, 10 * time.Minute},
		{"-steady", c.Steady, 10 * time.Millisecond, time.Hour},
		{"-invoke-timeout", c.InvokeTimeout, time.Millisecond, 5 * time.Minute},
		{"-ramp-step-timeout", c.RampStepTimeout, 100 * time.Millisecond, time.Hour},
		{"-budget", c.Budget, time.Second, 24 * time.Hour},
		{"-status-every", c.StatusEvery, 10 * time.Millisecond, 10 * time.Second},
	} {
		if d.v < d.min || d.v > d.max {
			bad("%s %s: want %s..%s", d.name, d.v, d.min, d.max)
		}
	}
	if c.Ramp {
		if c.RampStep < 1 || c.RampStep > maxNodes {
			bad("-ramp-step %d: want 1..%d", c.RampStep, maxNodes)
		}
		if c.RampMax < c.RampStep || c.RampMax > maxNodes {
			bad("-ramp-max %d: want -ramp-step..%d", c.RampMax, maxNodes)
		}
		if c.RampRSSMB < 0 {
			bad("-ramp-rss-mb %d: want 0 or more", c.RampRSSMB)
		}
	}
	if c.PprofDir != "" {
		abs, err := filepath.Abs(c.PprofDir)
		if err != nil {
			bad("-pprof %q: %v", c.PprofDir, err)
		}
		c.PprofDir = abs
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	c.M = max(c.M, (c.N+c.PerSim-1)/c.PerSim)
	if c.Dials < c.M {
		c.Dials = c.M
	}
	return nil
}

// split divides n items over m parts as evenly as possible: the sizes of the parts.
func split(n, m int) []int {
	out := make([]int, m)
	for i := range out {
		out[i] = n / m
		if i < n%m {
			out[i]++
		}
	}
	return out
}

// gatewayEnv is the environment the gateway process gets on top of the driver's.
func (c config) gatewayEnv() []string {
	var env []string
	if c.GatewayGOGC != "" {
		env = append(env, "GOGC="+c.GatewayGOGC)
	}
	if c.GatewayMemLimit != "" {
		env = append(env, "GOMEMLIMIT="+c.GatewayMemLimit)
	}
	return env
}
