// Package gateway composes the rooms of ClawOps into one running gateway: the store, the
// node hub, the fleet with its providers, the gate with the tool catalog, the Commander, the
// channels and the HTTP API. cmd/clawops and the end-to-end tests both start it from here,
// so what the tests drive is what operators run.
package gateway

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents"
	"github.com/gatewayforge/clawops/api"
	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/channels/web"
	"github.com/gatewayforge/clawops/clawnode"
	"github.com/gatewayforge/clawops/clawnode/keyfile"
	"github.com/gatewayforge/clawops/clawnode/proto"
	"github.com/gatewayforge/clawops/cluster"
	"github.com/gatewayforge/clawops/config"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/fleet/local"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/governance/redact"
	"github.com/gatewayforge/clawops/store"
	"github.com/gatewayforge/clawops/tools"
)

// NodePath is where the node endpoint is mounted.
const NodePath = "/v1/nodes/ws"

// KeyFile is the gateway's Ed25519 key inside the data folder.
const KeyFile = "gateway.key"

// CheckpointInterval is how often the gateway signs the audit chain's head while it grows.
const CheckpointInterval = 5 * time.Minute

// Options are what New needs beyond the config.
type Options struct {
	Config *config.Config
	// Tokens are the API tokens (resolved secrets) and the identities they stand for.
	Tokens []config.Token
	// Listener, when set, is used instead of listening on Config.Listen (tests pass one
	// bound to 127.0.0.1:0).
	Listener net.Listener
	// LocalEnv is added to the environment of every process the local provider starts.
	LocalEnv []string
	// LookupEnv resolves the secret references in channel settings; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	Clock     clawops.Clock
	Logger    *slog.Logger
}

// Gateway is a composed, not yet running gateway. Run serves it; Close releases what New
// acquired when Run is never called.
type Gateway struct {
	cfg      *config.Config
	log      *slog.Logger
	clk      clawops.Clock
	redactor *redact.Redactor

	db        *gorm.DB
	key       ed25519.PrivateKey
	ln        net.Listener
	url       string
	hub       *clawnode.Hub
	local     *local.Provider
	fleet     *fleet.Service
	gate      *governance.Gate
	commander *agents.Commander
	console   *web.Console
	chans     []channels.Channel
	approvals *approvalRelay
	team      *agents.Team
	bus       *fleet.Bus
	tokens    []config.Token
	auth      *api.TokenStore
	notifier  *channels.Notifier
	handler   http.Handler

	lock    *os.File // the data folder's lock, held while the gateway exists
	elector *cluster.Elector
	proxyMu sync.Mutex
	proxies map[string]*httputil.ReverseProxy
}

// New opens the store, migrates it, loads or creates the gateway key, listens, and wires
// every room. Nothing is served until Run.
func New(ctx context.Context, opts Options) (_ *Gateway, err error) {
	cfg := opts.Config
	if cfg == nil {
		return nil, errors.New("new gateway: config is nil")
	}
	g := &Gateway{cfg: cfg, log: opts.Logger, clk: clawops.ClockOrSystem(opts.Clock), redactor: redact.Default()}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	// Whatever a room logs, secrets, phone numbers and e-mail addresses never reach the
	// log's sink.
	g.log = slog.New(redact.NewHandler(g.log.Handler(), g.redactor))
	defer func() {
		if err != nil {
			g.Close()
		}
	}()

	if g.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("new gateway: %w", err)
	}
	if g.db, err = openStore(ctx, cfg, true); err != nil {
		return nil, err
	}
	if g.key, err = keyfile.LoadOrCreate(filepath.Join(cfg.DataDir, KeyFile)); err != nil {
		return nil, fmt.Errorf("new gateway: gateway key: %w", err)
	}

	g.ln = opts.Listener
	if g.ln == nil {
		if g.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("new gateway: listen on %s (set listen or --listen): %w", cfg.Listen, err)
		}
	}
	g.url = "http://" + g.ln.Addr().String()
	nodeURL := cfg.PublicURL
	if opts.Listener != nil || nodeURL == "" || nodeURL == config.DerivePublicURL(cfg.Listen) {
		// The listener decides the real port (it may have been :0).
		nodeURL = "ws://" + g.ln.Addr().String() + NodePath
	}

	if err := g.wire(opts, nodeURL); err != nil {
		return nil, err
	}
	if err := g.wireCluster(ctx, g.url); err != nil {
		return nil, err
	}
	g.handler = g.routeToLeader(g.handler)
	return g, nil
}

func (g *Gateway) wire(opts Options, nodeURL string) error {
	cfg := g.cfg
	var err error
	g.hub, err = clawnode.NewHub(clawnode.HubOptions{
		DB:           g.db,
		Key:          g.key,
		TickInterval: cfg.Nodes.TickInterval,
		// Every node beats at the interval the monitor's timeout is measured against.
		HeartbeatInterval: cfg.Nodes.HeartbeatInterval,
		InvokeTimeout:     cfg.Nodes.InvokeTimeout,
		Clock:             g.clk,
		Logger:            g.log.With("room", "hub"),
		OnHeartbeat:       g.onHeartbeat,
		OnRefused: func(_ context.Context, r clawnode.Refusal) {
			g.log.Warn("node refused a command", "node", r.Node, "instance", r.Instance,
				"command", r.Command, "reason", r.Code)
		},
	})
	if err != nil {
		return fmt.Errorf("new gateway: %w", err)
	}

	g.local, err = local.New(local.Options{
		NodeBinary: cfg.Fleet.Local.NodeBinary,
		StateDir:   filepath.Join(cfg.DataDir, "local"),
		Runtime:    cfg.Fleet.Local.Runtime,
		ComposeDir: cfg.Fleet.Local.ComposeDir,
		// Nodes must beat at the interval the monitor's timeout is measured against.
		HeartbeatInterval: cfg.Nodes.HeartbeatInterval,
		Env:               opts.LocalEnv,
		Clock:             g.clk,
		Logger:            g.log.With("room", "local-provider"),
	})
	if err != nil {
		return fmt.Errorf("new gateway: %w", err)
	}

	providers, tailscaleKey, err := cloudProviders(cfg, opts.LookupEnv, g.log.With("room", "providers"))
	if err != nil {
		return fmt.Errorf("new gateway: %w", err)
	}
	providers[g.local.Name()] = g.local
	archive, where, err := ArchiveStore(cfg, opts.LookupEnv, g.clk)
	if err != nil {
		return fmt.Errorf("new gateway: %w", err)
	}
	g.log.Info("teardown archives workspaces", "store", where)
	g.bus = fleet.NewBus(g.log.With("room", "events"))
	g.fleet, err = fleet.NewService(fleet.Options{
		Bus:              g.bus,
		DB:               g.db,
		Nodes:            g.hub,
		Tokens:           g.hub,
		Providers:        providers,
		Archive:          archive,
		TailscaleKey:     tailscaleKey,
		OpenClawImage:    cfg.Fleet.Bootstrap.OpenClawImage,
		GatewayURL:       nodeURL,
		GatewayKey:       base64.RawURLEncoding.EncodeToString(g.key.Public().(ed25519.PublicKey)),
		JoinTokenTTL:     cfg.Nodes.JoinTokenTTL,
		HeartbeatTimeout: cfg.Nodes.HeartbeatTimeout,
		// The monitor sweeps every heartbeat interval. A heal that waits at most two sweeps
		// for OpenClaw to come back after a restart fails a dead primary over within three
		// sweeps of its detection, as the runbook promises.
		HealWait: 2 * cfg.Nodes.HeartbeatInterval,
		HealPoll: max(cfg.Nodes.HeartbeatInterval/5, 200*time.Millisecond),
		Clock:    g.clk,
		Logger:   g.log.With("room", "fleet"),
	})
	if err != nil {
		return fmt.Errorf("new gateway: %w", err)
	}

	g.console = web.New(web.Options{Clock: g.clk, Logger: g.log.With("channel", web.Name)})
	g.approvals = &approvalRelay{}

	var secondFactor governance.SecondFactorVerifier
	if cfg.Governance.SecondFactorFrom != "" {
		getenv := func(k string) string { v, _ := lookupEnv(opts.LookupEnv)(k); return v }
		secrets, err := cfg.ResolveTOTP(getenv)
		if err != nil {
			return fmt.Errorf("new gateway: %w", err)
		}
		if secondFactor, err = governance.NewTOTPVerifier(secrets, g.clk); err != nil {
			return fmt.Errorf("new gateway: governance.totp: %w", err)
		}
	}
	g.gate, err = governance.NewGate(governance.GateOptions{
		DB:          g.db,
		Clock:       g.clk,
		Logger:      g.log.With("room", "gate"),
		ApprovalTTL: cfg.Approvals.TTL,
		Notifier:    g.approvals,
		Admins:      admins(opts.Tokens),
		Redactor:    g.redactor,
		Environment: governance.Environment(cfg.Governance.Environment),

		SecondFactor:     secondFactor,
		SecondFactorFrom: clawops.RiskClass(cfg.Governance.SecondFactorFrom),
	})
	if err != nil {
		return fmt.Errorf("new gateway: %w", err)
	}
	for _, t := range tools.All(g.fleet) {
		g.gate.Register(t)
	}

	g.tokens = opts.Tokens
	if err := g.buildTeam(opts.LookupEnv); err != nil {
		return fmt.Errorf("new gateway: %w", err)
	}

	g.auth = api.NewTokenStore()
	auth := g.auth
	for _, t := range opts.Tokens {
		if err := auth.Add(t.Secret, t.Identity, clawops.HumanRole(t.Role)); err != nil {
			return fmt.Errorf("new gateway: token for %s: %w", t.Identity, err)
		}
	}
	apiHandler := api.New(api.Options{
		Auth:      auth,
		Gate:      g.gate,
		Audit:     g.gate.Audit(),
		Commander: g.commander,
		Console:   g.console,
		Clock:     g.clk,
		Logger:    g.log.With("room", "api"),
	})
	mux := http.NewServeMux()
	mux.Handle(NodePath, g.hub)
	mux.Handle("/", apiHandler)
	if err := g.wireChannels(mux, opts.LookupEnv); err != nil {
		return fmt.Errorf("new gateway: %w", err)
	}
	g.handler = mux
	return nil
}

// onHeartbeat hands a node's heartbeat to the fleet. It runs on the node's reader
// goroutine, so it is bounded.
func (g *Gateway) onHeartbeat(ctx context.Context, hb proto.Heartbeat) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// A record cut short by shutdown (the node's context ending) is not worth a warning; a
	// slow store is.
	if err := g.fleet.RecordHeartbeat(rctx, hb); err != nil && ctx.Err() == nil {
		g.log.Warn("heartbeat not recorded", "node", hb.Node, "instance", hb.Instance, "err", err)
	}
}

// lookupEnv is f, or os.LookupEnv.
func lookupEnv(f func(string) (string, bool)) func(string) (string, bool) {
	if f == nil {
		return os.LookupEnv
	}
	return f
}

// admins are the identities told about break-glass.
func admins(tokens []config.Token) []string {
	var out []string
	for _, t := range tokens {
		if clawops.HumanRole(t.Role) == clawops.RoleAdmin {
			out = append(out, t.Identity)
		}
	}
	return out
}

// OpenStore opens and migrates the database the config names. The CLI's offline commands
// (audit verify, node token) use it without starting a gateway.
func OpenStore(ctx context.Context, cfg *config.Config) (*gorm.DB, error) {
	return openStore(ctx, cfg, false)
}

// openStore opens and migrates the store; a long-lived gateway checkpoints SQLite's WAL in
// the background (Run) so no commit pays for it.
func openStore(ctx context.Context, cfg *config.Config, backgroundCheckpoint bool) (*gorm.DB, error) {
	dsn, err := cfg.ResolveDSN()
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db, err := store.Open(ctx, store.Options{Driver: cfg.Database.Driver, DataDir: cfg.DataDir, DSN: dsn,
		BackgroundCheckpoint: backgroundCheckpoint})
	if err != nil {
		return nil, err
	}
	err = store.Migrate(ctx, db, func(db *gorm.DB) error {
		for name, migrate := range map[string]func(*gorm.DB) error{
			"clawnode": clawnode.Migrate, "fleet": fleet.Migrate,
			"governance": governance.Migrate, "agents": agents.Migrate, "cluster": cluster.Migrate, "channels": channels.Migrate,
		} {
			if err := migrate(db); err != nil {
				return fmt.Errorf("migrate %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		store.Close(db)
		return nil, fmt.Errorf("open store: %w", err)
	}
	return db, nil
}

// URL is the base URL the gateway serves on, e.g. http://127.0.0.1:8080.
func (g *Gateway) URL() string { return g.url }

// Fleet is the fleet service, for provisioning the demo fleet and for tests.
func (g *Gateway) Fleet() *fleet.Service { return g.fleet }

// Bus is the fleet's event bus, which the agent team and the tests subscribe to.
func (g *Gateway) Bus() *fleet.Bus { return g.bus }

// Local is the local provider: the demo's fleet, and the fault injection (Crash) of the
// end-to-end tests.
func (g *Gateway) Local() *local.Provider { return g.local }

// Gate is the gate, for tests and offline tools.
func (g *Gateway) Gate() *governance.Gate { return g.gate }

// Hub is the node hub.
func (g *Gateway) Hub() *clawnode.Hub { return g.hub }

// Handler is the gateway's HTTP handler.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Run serves until ctx ends, with the loops that keep the fleet and approvals current, then
// shuts everything down: the HTTP server, the node hub, the local fleet's processes and the
// store.
func (g *Gateway) Run(ctx context.Context) error {
	defer g.Close()
	srv := &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		if err := srv.Serve(g.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	})
	eg.Go(func() error {
		<-ctx.Done()
		g.hub.Close() // hijacked WebSockets are not closed by Shutdown
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	// Every replica serves HTTP (forwarding to the leader what it does not lead) and keeps
	// its own SQLite WAL short; the rest runs on the leader only.
	eg.Go(func() error { return store.RunCheckpoints(ctx, g.db, store.CheckpointInterval) })
	lost := make(chan struct{})
	eg.Go(func() error { return g.elector.Run(ctx, g.lead(ctx, lost, g.leaderLoops())) })
	eg.Go(func() error {
		select {
		case <-lost:
			return ErrLeadershipLost
		case <-ctx.Done():
			return nil
		}
	})
	return eg.Wait()
}

// leaderLoops are the loops exactly one replica runs: approvals expiring, the fleet's
// monitor, provisioning queue and push worker, the agent team and its schedules, chat
// pollers and the outbox, fleet events to the team, and audit checkpoints.
func (g *Gateway) leaderLoops() []func(context.Context) error {
	loops := []func(context.Context) error{
		g.notifier.Run,
		func(ctx context.Context) error { return g.gate.RunExpiry(ctx, 15*time.Second) },
		func(ctx context.Context) error { return g.monitor().Run(ctx) },
		func(ctx context.Context) error { return g.fleet.RunProvisioner(ctx, 0) },
		func(ctx context.Context) error { return g.fleet.RunPushWorker(ctx, 0) },
		g.team.Run,
		func(ctx context.Context) error { return g.pumpEvents(ctx, g.bus.Subscribe(0)) },
		func(ctx context.Context) error {
			return g.gate.Audit().RunCheckpoints(ctx, g.key, CheckpointInterval, g.log.With("room", "audit"))
		},
	}
	for _, ch := range g.chans {
		if r, ok := ch.(channels.Runner); ok {
			// A chat platform that fails for good (a revoked token) must not take the node
			// plane and the console down with it: it is logged, and doctor reports it.
			loops = append(loops, func(ctx context.Context) error {
				if err := r.Run(ctx); err != nil && ctx.Err() == nil {
					g.log.Error("channel stopped", "channel", ch.Name(), "err", err)
				}
				return nil
			})
		}
	}
	return loops
}

// monitor sweeps the fleet on the heartbeat interval: it marks instances whose heartbeats
// stopped and raises INSTANCE_DEGRADED, PAIR_FAILED, COST_ANOMALY,
// PROVISION_QUEUE_BACKLOG and PROVIDER_DEGRADED on the bus.
func (g *Gateway) monitor() *fleet.Monitor {
	return fleet.NewMonitor(g.fleet, fleet.MonitorOptions{Interval: g.cfg.Nodes.HeartbeatInterval})
}

// Close stops the local fleet's processes and closes the hub, the listener and the store.
// It is safe to call more than once.
func (g *Gateway) Close() {
	if g.hub != nil {
		g.hub.Close()
	}
	if g.local != nil {
		g.local.Close()
	}
	if g.ln != nil {
		g.ln.Close()
	}
	if g.db != nil {
		store.Close(g.db)
		g.db = nil
	}
	if g.lock != nil {
		g.lock.Close() // releases the flock
		g.lock = nil
	}
}
