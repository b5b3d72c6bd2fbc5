//go:build linux

// Command nodes is the node-plane load tool: how many gf-clawnode connections one ClawOps
// gateway process holds, and what they cost.
//
//	go run ./bench/nodes -n 10000 -json bench-nodes.json
//	go run ./bench/nodes -ramp
//
// The driver (this process) starts, as re-executions of its own binary selected by the
// CLAWOPS_BENCH_ROLE environment variable:
//   - gateway: a real clawnode.Hub on SQLite in a temporary folder, serving nodes on
//     127.0.0.1 and a control API (mint join tokens in bulk, run a fan-out, stats, pprof)
//     on another loopback port;
//   - sim ×M: each plays up to 4,000 nodes over real WebSockets speaking the real protocol
//     (challenge-signed connect, enrollment with a join token, ticks, heartbeats, commands
//     verified against the pinned gateway key), dialling from 127.0.0.2…127.0.0.x;
//   - echo and echosim ×M: a bare coder/websocket server and its clients, the baseline for
//     the same fan-out.
//
// It measures connect rate, the gateway's steady-state CPU and RSS, fan-out latency of a
// read command to all N nodes over several rounds, the same through the bare server, and
// (with -ramp) the largest N one gateway process holds. Everything is bounded by counts and
// deadlines, contacts only 127.0.0.0/8, and stops every process group it started on exit
// or Ctrl-C. It reads /proc, so it runs on Linux only. docs/bench.md explains the method.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role, os.Stdin, os.Stdout))
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/nodes:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	_, err = run(ctx, cfg, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/nodes:", err)
		os.Exit(1)
	}
}

// runRole runs one child role to completion and returns the exit code.
func runRole(role string, stdin io.Reader, stdout io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch role {
	case roleGateway:
		err = runGateway(ctx, stdin, stdout)
	case roleSim:
		err = runSim(ctx, stdin, stdout)
	case roleEcho:
		err = runEchoServer(ctx, stdin, stdout)
	case roleEchoSim:
		err = runEchoClients(ctx, stdin, stdout)
	default:
		err = fmt.Errorf("unknown %s %q", roleEnv, role)
	}
	if err != nil {
		stderrf("%s: %v", role, err)
		return 1
	}
	return 0
}
