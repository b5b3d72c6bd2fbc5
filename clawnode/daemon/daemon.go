// Package daemon is gf-clawnode's node side: it dials the gateway, authenticates with its
// device key (enrolling with a one-time join token the first time), keeps the connection
// alive (reconnecting with jittered exponential backoff), sends heartbeats, and runs the
// commands of its allowlist — only when signed by the pinned gateway key, not expired and
// not replayed.
package daemon

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/keyfile"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Config configures a Daemon. GatewayURL, GatewayKey and StateDir are required, and Runtime
// unless Commands is given.
type Config struct {
	GatewayURL string             // ws:// or wss:// node endpoint of the gateway
	GatewayKey ed25519.PublicKey  // pinned at install; commands must verify with it
	JoinToken  string             // one-time enrollment token; unused once a device token exists
	StateDir   string             // device key, device token, replay journal (all 0600)
	Instance   clawops.InstanceID // for display; the hub binds the instance from the join token
	HealthURL  string             // OpenClaw health endpoint, e.g. http://127.0.0.1:18789/health
	Runtime    Runtime            // the OpenClaw container (or stand-in)
	DiskPath   string             // filesystem measured by vps.metrics (default /)
	ProcRoot   string             // default /proc

	HeartbeatInterval time.Duration // default 10s
	MaxCommandTTL     time.Duration // refuse commands expiring further ahead (default 10m)
	MaxExecTime       time.Duration // cap on a command's run time (default 10m)
	MaxConcurrent     int           // commands running at once (default 4)
	BackoffMin        time.Duration // first reconnect delay (default 1s)
	BackoffMax        time.Duration // reconnect delay cap (default 30s)
	HandshakeTimeout  time.Duration // default 15s
	WriteTimeout      time.Duration // default 10s

	// AllowUnprovenGateway lets the node connect to a gateway whose challenge carries no
	// ClawOps proof of the pinned key (the stock OpenClaw gateway). Commands must still be
	// signed with the pinned key.
	AllowUnprovenGateway bool
	// AllowUnsignedReadOnly lets unsigned commands run when the allowlist marks them
	// read-only (health, logs, metrics, info, config.get): what a stock OpenClaw gateway,
	// which signs nothing, may do. Every other unsigned command is UNSIGNED_COMMAND.
	AllowUnsignedReadOnly bool

	// The OpenClaw files the lifecycle commands act on. Empty means "not on this node":
	// the command answers NOT_CONFIGURED.
	ConfigPath     string        // openclaw.json for config.get / config.apply
	ConfigValidate []string      // optional validator for config.apply (OPENCLAW_CONFIG_PATH=<candidate>)
	WorkspaceDir   string        // OpenClaw state folder archived by backup.create
	BackupDir      string        // where archives go (default <StateDir>/backups)
	BackupKeep     int           // archives kept (default 5)
	HealthWait     time.Duration // how long OpenClaw has to be healthy after a change (default 90s)
	RuntimeName    string        // docker or process, reported by vps.info

	// RotateKeyEvery makes the node replace its device key when the key file is older
	// than this (checked at each connect). Zero never rotates on its own; the gateway can
	// still ask for a rotation.
	RotateKeyEvery time.Duration

	Version    string        // client.version (default "dev")
	Platform   string        // client.platform (default runtime.GOOS)
	Commands   *Allowlist    // default StandardCommands(Runtime, ...)
	HTTPClient *http.Client  // for health checks
	Clock      clawops.Clock // expiry checks and timestamps
	Rand       *rand.Rand    // backoff jitter (default seeded randomly)
	Logger     *slog.Logger
}

// Daemon is one gf-clawnode. Create it with New and run it with Run.
type Daemon struct {
	cfg      Config
	mu       sync.Mutex // guards key and nodeID, which a key rotation changes
	key      ed25519.PrivateKey
	nodeID   string
	rotating atomic.Bool
	results  *resultCache
	commands *Allowlist
	health   *HealthChecker
	metrics  *Sampler
	replay   *replayGuard
	slots    chan struct{}
	clock    clawops.Clock
	log      *slog.Logger
	rng      *rand.Rand
}

// File names inside StateDir.
const (
	DeviceKeyFile   = "device.key"
	DeviceTokenFile = "device-token"
	ReplayFile      = "seen-commands"
)

// New validates cfg, loads or creates the device key and opens the replay journal.
func New(cfg Config) (*Daemon, error) {
	u, err := url.Parse(cfg.GatewayURL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return nil, fmt.Errorf("daemon: gateway URL %q: want ws://host/path or wss://host/path", cfg.GatewayURL)
	}
	if len(cfg.GatewayKey) != ed25519.PublicKeySize {
		return nil, errors.New("daemon: gateway key is required (base64url of the gateway's 32-byte Ed25519 public key)")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("daemon: state dir is required")
	}
	if cfg.Runtime == nil && cfg.Commands == nil {
		return nil, errors.New("daemon: a runtime is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.HeartbeatInterval, 10*time.Second)
	def(&cfg.MaxCommandTTL, 10*time.Minute)
	def(&cfg.MaxExecTime, 10*time.Minute)
	def(&cfg.BackoffMin, time.Second)
	def(&cfg.BackoffMax, 30*time.Second)
	def(&cfg.HandshakeTimeout, 15*time.Second)
	def(&cfg.WriteTimeout, 10*time.Second)
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 4
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.Platform == "" {
		cfg.Platform = runtime.GOOS
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("daemon: state dir: %w", err)
	}
	key, err := keyfile.LoadOrCreate(filepath.Join(cfg.StateDir, DeviceKeyFile))
	if err != nil {
		return nil, fmt.Errorf("daemon: device key: %w", err)
	}
	clock := clawops.ClockOrSystem(cfg.Clock)
	replay, err := openReplayGuard(filepath.Join(cfg.StateDir, ReplayFile), 65536, clock.Now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	d := &Daemon{
		cfg: cfg, key: key, nodeID: proto.DeviceID(key.Public().(ed25519.PublicKey)),
		health:  NewHealthChecker(cfg.HealthURL, cfg.HTTPClient, 5*time.Second, clock),
		metrics: NewSampler(cfg.ProcRoot, cfg.DiskPath), results: newResultCache(32 << 20),
		replay: replay, slots: make(chan struct{}, cfg.MaxConcurrent), clock: clock, rng: cfg.Rand,
	}
	d.log = log.With("component", "clawnode.daemon", "node", d.nodeID[:12])
	if d.rng == nil {
		d.rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	d.commands = cfg.Commands
	if d.commands == nil {
		if d.commands, err = d.standardCommands(log); err != nil {
			replay.close()
			return nil, err
		}
	}
	return d, nil
}

// standardCommands builds the allowlist from the configuration.
func (d *Daemon) standardCommands(*slog.Logger) (*Allowlist, error) {
	return commandsFor(d.cfg, d.health, d.metrics, d.clock, d.log)
}

// CommandsFor builds the allowlist a daemon with cfg would run, without starting one:
// what `gf-clawnode ssh-exec` runs a command from when the daemon is down. Only the
// Runtime, health, metrics and OpenClaw file settings of cfg are used.
func CommandsFor(cfg Config) (*Allowlist, error) {
	if cfg.Runtime == nil {
		return nil, errors.New("commands: a runtime is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clock := clawops.ClockOrSystem(cfg.Clock)
	return commandsFor(cfg, NewHealthChecker(cfg.HealthURL, cfg.HTTPClient, 5*time.Second, clock),
		NewSampler(cfg.ProcRoot, cfg.DiskPath), clock, log)
}

func commandsFor(cfg Config, health *HealthChecker, metrics *Sampler, clock clawops.Clock, log *slog.Logger) (*Allowlist, error) {
	deps := CommandDeps{Runtime: cfg.Runtime, Health: health, Metrics: metrics,
		Lifecycle: NewLifecycle(cfg.Runtime, health, cfg.HealthWait, 0, log),
		Info:      &InfoReader{ProcRoot: cfg.ProcRoot, DiskPath: cfg.DiskPath, NodeVersion: cfg.Version, Runtime: cfg.RuntimeName}}
	if cfg.ConfigPath != "" {
		if cfg.StateDir == "" {
			return nil, errors.New("commands: a state dir is required to manage the OpenClaw config")
		}
		cf, err := NewConfigFile(ConfigFileOptions{Path: cfg.ConfigPath, StateDir: cfg.StateDir,
			Validate: cfg.ConfigValidate, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("daemon: %w", err)
		}
		deps.Config = cf
	}
	if cfg.WorkspaceDir != "" {
		dst := cfg.BackupDir
		if dst == "" {
			dst = filepath.Join(cfg.StateDir, "backups")
		}
		if abs, err := filepath.Abs(dst); err == nil {
			dst = abs
		}
		a, err := NewArchiver(cfg.WorkspaceDir, dst, cfg.BackupKeep, clock)
		if err != nil {
			return nil, fmt.Errorf("daemon: %w", err)
		}
		deps.Backups = a
	}
	return NewCommands(deps), nil
}

// NodeID is this node's identity: the hex SHA-256 of its device public key. It changes
// when the node rotates its key.
func (d *Daemon) NodeID() clawops.NodeID {
	d.mu.Lock()
	defer d.mu.Unlock()
	return clawops.NodeID(d.nodeID)
}

// Run keeps a session with the gateway until ctx ends, reconnecting after every failure
// with jittered exponential backoff (BackoffMin doubling up to BackoffMax, reset after a
// successful connect). It returns nil when ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.replay.close()
	backoff := d.cfg.BackoffMin
	for {
		connected, err := d.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errRotated) {
			d.log.Info("reconnecting with the rotated key")
			continue
		}
		if connected {
			backoff = d.cfg.BackoffMin
		}
		wait := backoff/2 + time.Duration(d.rng.Int64N(int64(backoff/2)+1))
		d.log.Warn("gateway session ended; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, d.cfg.BackoffMax)
	}
}

// ConnectError is a connect the gateway refused.
type ConnectError struct {
	Code    string // res.error.code
	Detail  string // res.error.details.code
	Message string
}

// Error renders the refusal with its codes.
func (e *ConnectError) Error() string {
	return fmt.Sprintf("gateway refused connect: %s/%s: %s", e.Code, e.Detail, e.Message)
}

func (d *Daemon) deviceTokenPath() string { return filepath.Join(d.cfg.StateDir, DeviceTokenFile) }

// credential returns the token to present: the stored device token, else the join token.
func (d *Daemon) credential() (string, error) {
	tok, err := keyfile.ReadToken(d.deviceTokenPath())
	if err == nil && tok != "" {
		return tok, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("device token: %w", err)
	}
	if d.cfg.JoinToken == "" {
		return "", errors.New("not enrolled and no join token configured")
	}
	return d.cfg.JoinToken, nil
}
