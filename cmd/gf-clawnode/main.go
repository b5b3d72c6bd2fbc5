// Command gf-clawnode is the ClawOps node daemon. `gf-clawnode run` connects a VPS to the
// ClawOps gateway and executes its allowlisted, signed commands; `gf-clawnode standin` is
// the small HTTP server that stands in for an OpenClaw container on the local provider.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/daemon"
	"github.com/gatewayforge/clawops/clawnode/keyfile"
	"github.com/gatewayforge/clawops/clawnode/proto"
	"github.com/gatewayforge/clawops/clawnode/standin"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage:
  gf-clawnode run --gateway URL --gateway-key KEY --state-dir DIR [flags]
  gf-clawnode standin [--listen 127.0.0.1:0] [--port-file FILE]
  gf-clawnode version

run flags:
  --gateway URL            gateway node endpoint, e.g. ws://127.0.0.1:8080/v1/nodes/ws
  --gateway-key KEY        the gateway's Ed25519 public key (base64url), pinned
  --join-token TOKEN       one-time join token (visible in ps: prefer the file or env)
  --join-token-file FILE   file holding the join token (mode 0600)
                           (or env GF_CLAWNODE_JOIN_TOKEN)
  --state-dir DIR          device key, device token, replay journal
  --instance ID            instance this node serves (display only)
  --health-url URL         OpenClaw health URL, e.g. http://127.0.0.1:18789/health
  --runtime docker|process container runtime (default docker)
  --compose-file FILE      compose file of the openclaw service (docker runtime)
  --openclaw-cmd "CMD ARGS" command the process runtime supervises (split on spaces, no shell)
  --heartbeat 10s          heartbeat interval
  --disk-path /            filesystem measured by vps.metrics
  --allow-unproven-gateway connect to a gateway that does not prove the pinned key (stock OpenClaw)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gf-clawnode:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: a subcommand is required", errUsage)
	}
	switch args[0] {
	case "run":
		return runNode(ctx, args[1:], stderr, getenv)
	case "standin":
		return runStandin(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "gf-clawnode", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown subcommand %q", errUsage, args[0])
}

type runFlags struct {
	gateway, gatewayKey, joinToken, joinTokenFile, stateDir, instance string
	healthURL, runtime, composeFile, openclawCmd, diskPath            string
	heartbeat                                                         time.Duration
	allowUnproven                                                     bool
}

func parseRunFlags(args []string, stderr io.Writer) (runFlags, error) {
	var f runFlags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	fs.StringVar(&f.gateway, "gateway", "", "")
	fs.StringVar(&f.gatewayKey, "gateway-key", "", "")
	fs.StringVar(&f.joinToken, "join-token", "", "")
	fs.StringVar(&f.joinTokenFile, "join-token-file", "", "")
	fs.StringVar(&f.stateDir, "state-dir", "", "")
	fs.StringVar(&f.instance, "instance", "", "")
	fs.StringVar(&f.healthURL, "health-url", "", "")
	fs.StringVar(&f.runtime, "runtime", "docker", "")
	fs.StringVar(&f.composeFile, "compose-file", "", "")
	fs.StringVar(&f.openclawCmd, "openclaw-cmd", "", "")
	fs.StringVar(&f.diskPath, "disk-path", "/", "")
	fs.DurationVar(&f.heartbeat, "heartbeat", 10*time.Second, "")
	fs.BoolVar(&f.allowUnproven, "allow-unproven-gateway", false, "")
	if err := fs.Parse(args); err != nil {
		return f, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	var missing []string
	for name, v := range map[string]string{"--gateway": f.gateway, "--gateway-key": f.gatewayKey, "--state-dir": f.stateDir} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return f, fmt.Errorf("%w: run needs %s", errUsage, strings.Join(missing, ", "))
	}
	if f.heartbeat < time.Second {
		return f, fmt.Errorf("%w: --heartbeat %s: must be at least 1s", errUsage, f.heartbeat)
	}
	return f, nil
}

func runNode(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	f, err := parseRunFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	gwKey, err := proto.DecodePublicKey(f.gatewayKey)
	if err != nil {
		return fmt.Errorf("%w: --gateway-key: %v", errUsage, err)
	}
	join := f.joinToken
	if join == "" && f.joinTokenFile != "" {
		if join, err = keyfile.ReadToken(f.joinTokenFile); err != nil {
			return fmt.Errorf("--join-token-file: %w", err)
		}
	}
	if join == "" {
		join = strings.TrimSpace(getenv("GF_CLAWNODE_JOIN_TOKEN"))
	}

	var rt daemon.Runtime
	var proc *daemon.ProcessRuntime
	switch f.runtime {
	case "docker":
		if f.composeFile == "" {
			return fmt.Errorf("%w: --runtime docker needs --compose-file", errUsage)
		}
		if rt, err = daemon.NewDockerRuntime(f.composeFile); err != nil {
			return err
		}
	case "process":
		argv := strings.Fields(f.openclawCmd)
		if len(argv) == 0 {
			return fmt.Errorf("%w: --runtime process needs --openclaw-cmd", errUsage)
		}
		if proc, err = daemon.NewProcessRuntime(argv, daemon.ProcessOptions{Echo: stderr, Logger: log}); err != nil {
			return err
		}
		rt = proc
	default:
		return fmt.Errorf("%w: --runtime %q: use docker or process", errUsage, f.runtime)
	}

	d, err := daemon.New(daemon.Config{
		GatewayURL: f.gateway, GatewayKey: gwKey, JoinToken: join, StateDir: f.stateDir,
		Instance: clawops.InstanceID(f.instance), HealthURL: f.healthURL, Runtime: rt, DiskPath: f.diskPath,
		HeartbeatInterval: f.heartbeat, AllowUnprovenGateway: f.allowUnproven, Version: version, Logger: log,
	})
	if err != nil {
		return err
	}
	log.Info("gf-clawnode starting", "version", version, "node", d.NodeID(), "instance", f.instance,
		"gateway", f.gateway, "runtime", f.runtime)
	g, gctx := errgroup.WithContext(ctx)
	if proc != nil {
		g.Go(func() error { return proc.Run(gctx) })
	}
	g.Go(func() error { return d.Run(gctx) })
	return g.Wait()
}

func runStandin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("standin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	listen := fs.String("listen", "127.0.0.1:0", "")
	portFile := fs.String("port-file", "", "")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return standin.Run(ctx, *listen, *portFile, stdout)
}
