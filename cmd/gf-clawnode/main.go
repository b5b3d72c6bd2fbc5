// Command gf-clawnode is the ClawOps node daemon. `gf-clawnode run` connects a VPS to the
// ClawOps gateway and executes its allowlisted, signed commands; `gf-clawnode ssh-exec` is
// the forced command of the gateway's SSH key, running the same allowlist when the daemon
// is down; `gf-clawnode standin` is the small HTTP server that stands in for an OpenClaw
// container on the local provider.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/daemon"
	"github.com/gatewayforge/clawops/clawnode/standin"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage:
  gf-clawnode run --gateway URL --gateway-key KEY --state-dir DIR [node flags] [run flags]
  gf-clawnode ssh-exec --state-dir DIR [node flags]   (forced command in authorized_keys)
  gf-clawnode standin [--listen 127.0.0.1:0] [--port-file FILE]
  gf-clawnode version

run flags:
  --gateway URL            gateway node endpoint, e.g. ws://100.64.0.1:8080/v1/nodes/ws
  --gateway-key KEY        the gateway's Ed25519 public key (base64url), pinned
  --join-token TOKEN       one-time join token (visible in ps: prefer the file or env)
  --join-token-file FILE   file holding the join token (mode 0600)
                           (or env GF_CLAWNODE_JOIN_TOKEN)
  --heartbeat 10s          heartbeat interval
  --allow-unproven-gateway connect to a gateway that does not prove the pinned key (stock OpenClaw)
  --allow-unsigned-read-only
                           run unsigned commands that only read (a stock OpenClaw gateway signs nothing)
  --rotate-key-every DUR   replace the device key when it is older than DUR (0: only when asked)

node flags (run and ssh-exec):
  --state-dir DIR          device key, device token, replay journal, config version, backups
  --instance ID            instance this node serves (display only)
  --health-url URL         OpenClaw health URL, e.g. http://127.0.0.1:18789/health
  --runtime docker|process container runtime (default docker; ssh-exec needs docker)
  --compose-file FILE      compose file of the openclaw service (docker runtime)
  --image-file FILE        compose override naming the image openclaw.upgrade picks
                           (docker runtime; default <state-dir>/openclaw-image.yml)
  --openclaw-cmd "CMD ARGS" command the process runtime supervises (split on spaces, no shell)
  --openclaw-config FILE   OpenClaw config (openclaw.json) for config.get / config.apply
  --config-validate-cmd "CMD ARGS"
                           validator run on a candidate config (OPENCLAW_CONFIG_PATH=<candidate>)
  --workspace-dir DIR      OpenClaw state folder archived by backup.create
  --backup-dir DIR         where backup archives go (default <state-dir>/backups)
  --backup-keep 5          archives kept
  --health-wait 90s        how long OpenClaw has to be healthy after config.apply or openclaw.upgrade
  --disk-path /            filesystem measured by vps.metrics
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		if !errors.Is(err, errCommandFailed) {
			fmt.Fprintln(os.Stderr, "gf-clawnode:", err)
		}
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var (
	errUsage = errors.New("usage")
	// errCommandFailed: ssh-exec already printed the failure as its JSON result.
	errCommandFailed = errors.New("command failed")
)

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: a subcommand is required", errUsage)
	}
	switch args[0] {
	case "run":
		return runNode(ctx, args[1:], stderr, getenv)
	case "ssh-exec":
		return runSSHExec(ctx, args[1:], stdout, stderr, getenv)
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

func runNode(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	f, err := parseRunFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	gwKey, join, err := f.credentials(getenv)
	if err != nil {
		return err
	}
	rt, proc, err := f.buildRuntime(stderr, log)
	if err != nil {
		return err
	}
	cfg := f.nodeConfig(rt)
	cfg.GatewayURL, cfg.GatewayKey, cfg.JoinToken = f.gateway, gwKey, join
	cfg.HeartbeatInterval, cfg.AllowUnprovenGateway, cfg.AllowUnsignedReadOnly = f.heartbeat, f.allowUnproven, f.allowUnsigned
	cfg.RotateKeyEvery, cfg.Instance, cfg.Logger = f.rotateEvery, clawops.InstanceID(f.instance), log
	d, err := daemon.New(cfg)
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
	fs := newFlagSet("standin", stderr)
	listen := fs.String("listen", "127.0.0.1:0", "")
	portFile := fs.String("port-file", "", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	return standin.Run(ctx, *listen, *portFile, stdout)
}
