// Package local is the fleet provider that runs each instance as real processes on this
// machine: a gf-clawnode daemon that enrolls with the gateway over loopback, and a tiny
// stand-in for the OpenClaw container that answers its health URL. It is what `clawops
// demo` runs and what end-to-end tests drive; nothing about it is simulated above the
// process boundary.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
)

// Name is the provider key of the local provider.
const Name = "local"

// Runtimes a local instance can use.
const (
	RuntimeProcess = "process" // gf-clawnode supervises the stand-in itself
	RuntimeDocker  = "docker"  // gf-clawnode drives `docker compose`; this provider runs the stand-in
)

// DefaultStopGrace is how long Delete waits after SIGTERM before SIGKILL.
const DefaultStopGrace = 5 * time.Second

// Options configure the local provider.
type Options struct {
	// NodeBinary is the path of the gf-clawnode executable. It must not contain
	// whitespace: it is also passed inside the --openclaw-cmd string.
	NodeBinary string
	// StateDir holds one folder per instance: the node's state, the join token file and
	// the processes' logs (node.log, standin.log).
	StateDir string
	// Runtime is RuntimeProcess (default) or RuntimeDocker.
	Runtime string
	// ComposeDir holds <instance>/compose.yml for the docker runtime.
	ComposeDir string
	// Env is given to every process started, after PATH, HOME, TMPDIR, LANG and TZ, which
	// are the only variables inherited from this process.
	Env []string
	// StopGrace is the SIGTERM→SIGKILL delay; DefaultStopGrace when zero.
	StopGrace time.Duration
	// HeartbeatInterval is passed to gf-clawnode as --heartbeat (at least 1s); zero keeps
	// the node's default.
	HeartbeatInterval time.Duration
	Clock             clawops.Clock
	Logger            *slog.Logger
}

// Provider runs instances as local process groups. It is safe for concurrent use.
type Provider struct {
	opts Options
	clk  clawops.Clock
	log  *slog.Logger

	mu        sync.Mutex
	instances map[string]*instance // by provider ID
	closed    bool
}

var (
	_ fleet.Provider      = (*Provider)(nil)
	_ fleet.BackupFetcher = (*Provider)(nil)
)

// instance is one local server: its record and its processes.
type instance struct {
	server    fleet.Server
	dir       string
	tokenFile string
	procs     []*proc
}

// New checks opts and returns a provider with nothing running.
func New(opts Options) (*Provider, error) {
	if opts.NodeBinary == "" {
		return nil, errors.New("local provider: node binary is empty: set fleet.local.node_binary to the gf-clawnode path")
	}
	if strings.ContainsAny(opts.NodeBinary, " \t\r\n") {
		return nil, fmt.Errorf("local provider: node binary %q contains whitespace: move gf-clawnode to a path without spaces", opts.NodeBinary)
	}
	if opts.StateDir == "" {
		return nil, errors.New("local provider: state dir is empty")
	}
	switch opts.Runtime {
	case "":
		opts.Runtime = RuntimeProcess
	case RuntimeProcess:
	case RuntimeDocker:
		if opts.ComposeDir == "" {
			return nil, errors.New("local provider: the docker runtime needs fleet.local.compose_dir")
		}
	default:
		return nil, fmt.Errorf("local provider: unknown runtime %q: use process or docker", opts.Runtime)
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = DefaultStopGrace
	}
	if opts.HeartbeatInterval != 0 && opts.HeartbeatInterval < time.Second {
		return nil, fmt.Errorf("local provider: heartbeat interval %s: gf-clawnode needs at least 1s", opts.HeartbeatInterval)
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("local provider: create state dir: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Provider{opts: opts, clk: clawops.ClockOrSystem(opts.Clock),
		log: log.With("provider", Name), instances: map[string]*instance{}}, nil
}

// Name returns "local".
func (p *Provider) Name() string { return Name }

var (
	gatewayKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+=*$`)
	sizeRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)
)

func invalid(format string, args ...any) error {
	return clawops.E("local provider", clawops.KindInvalid, fleet.ReasonProviderInvalid, fmt.Errorf(format, args...))
}

func checkSpec(spec fleet.ServerSpec) error {
	if !fleet.ValidInstanceID(spec.Name) {
		return invalid("server name %q is not an instance id", spec.Name)
	}
	b := spec.Bootstrap
	u, err := url.Parse(b.GatewayURL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" || strings.ContainsAny(b.GatewayURL, " \t\r\n") {
		return invalid("gateway url %q: want ws:// or wss:// with a host", b.GatewayURL)
	}
	if !gatewayKeyRE.MatchString(b.GatewayKey) {
		return invalid("gateway key: want base64url")
	}
	if b.JoinToken == "" || strings.ContainsAny(b.JoinToken, " \t\r\n") {
		return invalid("join token: empty or contains whitespace")
	}
	if b.Instance != "" && string(b.Instance) != spec.Name {
		return invalid("bootstrap instance %q differs from server name %q", b.Instance, spec.Name)
	}
	return nil
}

// Create starts the processes of one instance and returns once they have started; the
// node then enrolls with the gateway on its own.
func (p *Provider) Create(ctx context.Context, spec fleet.ServerSpec) (fleet.Server, error) {
	if err := ctx.Err(); err != nil {
		return fleet.Server{}, err
	}
	if err := checkSpec(spec); err != nil {
		return fleet.Server{}, err
	}
	id := Name + "-" + spec.Name
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fleet.Server{}, clawops.E("local provider", clawops.KindTransient, fleet.ReasonProviderUnavailable, "provider is closed")
	}
	if _, ok := p.instances[id]; ok {
		return fleet.Server{}, invalid("server %s already exists", spec.Name)
	}
	inst, err := p.start(spec)
	if err != nil {
		return fleet.Server{}, clawops.E("local provider", fleet.ReasonProviderUnavailable, fmt.Errorf("start %s: %w", spec.Name, err))
	}
	inst.server = fleet.Server{ProviderID: id, Name: spec.Name, Region: spec.Region, Size: spec.Size,
		Status: "running", PublicIPv4: "127.0.0.1", Labels: maps.Clone(spec.Labels), CreatedAt: p.clk.Now().UTC()}
	p.instances[id] = inst
	p.log.Info("instance started", "instance", spec.Name, "dir", inst.dir, "runtime", p.opts.Runtime)
	return inst.server, nil
}

// start prepares the instance folder and starts its processes. On failure nothing it
// started is left running.
func (p *Provider) start(spec fleet.ServerSpec) (*instance, error) {
	dir := filepath.Join(p.opts.StateDir, spec.Name)
	nodeDir := filepath.Join(dir, "node")
	// A new server starts with no node state, as a fresh VPS would: an old device key
	// left by a deleted instance of the same name must not be reused.
	if err := os.RemoveAll(nodeDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(nodeDir, 0o700); err != nil {
		return nil, err
	}
	inst := &instance{dir: dir, tokenFile: filepath.Join(dir, "join-token")}
	if err := writeSecret(inst.tokenFile, spec.Bootstrap.JoinToken); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	bin := p.opts.NodeBinary
	run := []string{"run",
		"--gateway", spec.Bootstrap.GatewayURL,
		"--gateway-key", spec.Bootstrap.GatewayKey,
		"--join-token-file", inst.tokenFile,
		"--state-dir", nodeDir,
		"--instance", spec.Name,
		"--health-url", "http://" + listen + "/health",
		"--runtime", p.opts.Runtime,
	}
	if p.opts.HeartbeatInterval > 0 {
		run = append(run, "--heartbeat", p.opts.HeartbeatInterval.String())
	}
	// The node keeps OpenClaw's config (config.get, config.apply) and archives its
	// workspace (backup.create) inside the instance folder, where FetchBackup may read.
	workspace := filepath.Join(dir, "workspace")
	if err := os.MkdirAll(workspace, 0o700); err != nil {
		return nil, err
	}
	run = append(run, "--openclaw-config", filepath.Join(dir, "openclaw.json"), "--workspace-dir", workspace)
	type launch struct {
		name string
		args []string
	}
	var launches []launch
	switch p.opts.Runtime {
	case RuntimeDocker:
		compose, err := p.writeCompose(spec)
		if err != nil {
			return nil, err
		}
		launches = append(launches, launch{"standin", []string{"standin", "--listen", listen}})
		launches = append(launches, launch{"node", append(run, "--compose-file", compose)})
	default:
		launches = append(launches, launch{"node", append(run, "--openclaw-cmd", bin+" standin --listen "+listen)})
	}
	for _, l := range launches {
		pr, err := startProc(l.name, bin, l.args, p.env(), filepath.Join(dir, l.name+".log"))
		if err != nil {
			p.stopAll(context.Background(), inst.procs)
			return nil, err
		}
		inst.procs = append(inst.procs, pr)
	}
	return inst, nil
}

// inheritedEnv is what the instance processes take from this process's environment. The
// rest (chat tokens, provider keys, database URLs) stays with the gateway.
var inheritedEnv = []string{"PATH", "HOME", "TMPDIR", "LANG", "TZ"}

func (p *Provider) env() []string {
	var env []string
	for _, k := range inheritedEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, p.opts.Env...)
}

// writeCompose writes the compose file a real server would have, unless one is there.
func (p *Provider) writeCompose(spec fleet.ServerSpec) (string, error) {
	dir := filepath.Join(p.opts.ComposeDir, spec.Name)
	path := filepath.Join(dir, "compose.yml")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	image := spec.Bootstrap.OpenClawImage
	if image == "" || strings.ContainsAny(image, " \t\r\n\"'") {
		image = "openclaw:local"
	}
	body := fmt.Sprintf("# Written by the ClawOps local provider for %s.\nservices:\n  openclaw:\n    image: %q\n    restart: unless-stopped\n", spec.Name, image)
	return path, os.WriteFile(path, []byte(body), 0o600)
}

// writeSecret writes s to a fresh 0600 file, never widening an existing file's mode.
func writeSecret(path, s string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// freePort asks the kernel for an unused loopback port. Another process could take it
// before the stand-in binds it; the node then reports OpenClaw unhealthy, which is what
// a real server with a port clash would do too.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Get returns the server; its Status is "running" while all its processes live and
// "exited" once one has ended.
func (p *Provider) Get(_ context.Context, providerID string) (fleet.Server, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	inst, ok := p.instances[providerID]
	if !ok {
		return fleet.Server{}, clawops.E("local provider", clawops.KindNotFound, fleet.ReasonProviderNotFound,
			fmt.Errorf("no server %q", providerID))
	}
	return inst.view(), nil
}

func (inst *instance) view() fleet.Server {
	s := inst.server
	s.Labels = maps.Clone(s.Labels)
	for _, pr := range inst.procs {
		if pr.exited() {
			s.Status = "exited"
		}
	}
	return s
}

// Delete stops every process of the server (SIGTERM to each process group, SIGKILL after
// the grace or when ctx ends) and removes its join token file. Its logs and node state
// stay in StateDir. An unknown ID is not an error.
func (p *Provider) Delete(ctx context.Context, providerID string) error {
	p.mu.Lock()
	inst, ok := p.instances[providerID]
	delete(p.instances, providerID)
	p.mu.Unlock()
	if !ok {
		return nil
	}
	err := p.stopAll(ctx, inst.procs)
	if rerr := os.Remove(inst.tokenFile); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	p.log.Info("instance stopped", "instance", inst.server.Name)
	if err != nil {
		return clawops.E("local provider", fleet.ReasonProviderUnavailable, fmt.Errorf("delete %s: %w", providerID, err))
	}
	return nil
}

// Resize records size: a local server has no size to change.
func (p *Provider) Resize(_ context.Context, providerID string, size string) error {
	if !sizeRE.MatchString(size) {
		return invalid("size %q: want a slug", size)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	inst, ok := p.instances[providerID]
	if !ok {
		return clawops.E("local provider", clawops.KindNotFound, fleet.ReasonProviderNotFound, fmt.Errorf("no server %q", providerID))
	}
	inst.server.Size = size
	return nil
}

// List returns every server this provider runs, ordered by name.
func (p *Provider) List(context.Context) ([]fleet.Server, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]fleet.Server, 0, len(p.instances))
	for _, inst := range p.instances {
		out = append(out, inst.view())
	}
	slices.SortFunc(out, func(a, b fleet.Server) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Close stops every process the provider started; later Creates fail.
func (p *Provider) Close() error {
	p.mu.Lock()
	p.closed = true
	ids := slices.Collect(maps.Keys(p.instances))
	p.mu.Unlock()
	var errs []error
	for _, id := range ids {
		errs = append(errs, p.Delete(context.Background(), id))
	}
	return errors.Join(errs...)
}

// stopAll stops the process groups together so that the grace is paid once.
func (p *Provider) stopAll(ctx context.Context, procs []*proc) error {
	for _, pr := range procs {
		pr.signal(sigTerm)
	}
	graceCtx, cancel := context.WithTimeout(ctx, p.opts.StopGrace)
	defer cancel()
	for _, pr := range procs {
		select {
		case <-pr.done:
		case <-graceCtx.Done():
		}
	}
	// SIGKILL the groups even when their leaders are gone, to reach any child left behind.
	var errs []error
	for _, pr := range procs {
		pr.signal(sigKill)
		select {
		case <-pr.done:
		case <-time.After(10 * time.Second):
			errs = append(errs, fmt.Errorf("%s (pid %d) did not exit after SIGKILL", pr.name, pr.pid()))
		}
	}
	return errors.Join(errs...)
}

// Crash kills every process of a server at once (SIGKILL to each process group), as a
// VPS that lost power would, and leaves the server listed with status "exited". It is
// the fault injection the demo and the failover tests use; Delete still cleans up.
func (p *Provider) Crash(providerID string) error {
	p.mu.Lock()
	inst, ok := p.instances[providerID]
	p.mu.Unlock()
	if !ok {
		return clawops.E("local provider", clawops.KindNotFound, fleet.ReasonProviderNotFound, fmt.Errorf("no server %q", providerID))
	}
	for _, pr := range inst.procs {
		pr.signal(sigKill)
	}
	for _, pr := range inst.procs {
		select {
		case <-pr.done:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("local provider: %s (pid %d) did not exit after SIGKILL", pr.name, pr.pid())
		}
	}
	p.log.Warn("instance crashed on request", "instance", inst.server.Name)
	return nil
}

// FetchBackup opens a backup file the node of a local server wrote. The path must be a
// regular file inside the server's own folder, so a node cannot make the gateway read
// anything else on this machine.
func (p *Provider) FetchBackup(_ context.Context, providerID, path string) (io.ReadCloser, error) {
	p.mu.Lock()
	inst, ok := p.instances[providerID]
	p.mu.Unlock()
	if !ok {
		return nil, clawops.E("local provider", clawops.KindNotFound, fleet.ReasonProviderNotFound, fmt.Errorf("no server %q", providerID))
	}
	root, err := filepath.EvalSymlinks(inst.dir)
	if err != nil {
		return nil, fmt.Errorf("local provider: %w", err)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("local provider: backup %s: %w", path, err)
	}
	if rel, err := filepath.Rel(root, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return nil, invalid("backup %s is outside the server's folder %s", path, inst.dir)
	}
	f, err := os.Open(real)
	if err != nil {
		return nil, fmt.Errorf("local provider: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, invalid("backup %s is not a regular file", path)
	}
	return f, nil
}

// Dir is the folder of a local server: its node state, join token and logs.
func (p *Provider) Dir(providerID string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	inst, ok := p.instances[providerID]
	if !ok {
		return "", false
	}
	return inst.dir, true
}
