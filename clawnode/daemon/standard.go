package daemon

import (
	"context"

	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Names of the standard commands (the same as proto's).
const (
	CmdHealth      = proto.CmdHealth
	CmdRestart     = proto.CmdRestart
	CmdLogs        = proto.CmdLogs
	CmdMetrics     = proto.CmdMetrics
	CmdUpgrade     = proto.CmdUpgrade
	CmdConfigGet   = proto.CmdConfigGet
	CmdConfigApply = proto.CmdConfigApply
	CmdInfo        = proto.CmdInfo
	CmdBackup      = proto.CmdBackup
	CmdBackupRead  = proto.CmdBackupRead
)

// NoParams is the params type of commands that take none: only {} is accepted.
type NoParams struct{}

// Params and results of the standard commands; the types live in proto so the gateway
// side can decode them.
type (
	LogsParams    = proto.LogsParams
	LogsResult    = proto.LogsResult
	RestartResult = proto.RestartResult
)

// CommandDeps are what the standard commands act on. Runtime, Health and Metrics are
// required. Without Config, config.get and config.apply answer NOT_CONFIGURED; without
// Backups, backup.create and backup.read do.
type CommandDeps struct {
	Runtime   Runtime
	Health    *HealthChecker
	Metrics   *Sampler
	Lifecycle *Lifecycle // default NewLifecycle(Runtime, Health, 0, 0, nil)
	Config    *ConfigFile
	Backups   *Archiver
	Info      *InfoReader // default reads the real machine
}

// StandardCommands is the allowlist for a runtime with health and metrics and nothing
// else configured (config and backups answer NOT_CONFIGURED).
func StandardCommands(rt Runtime, health *HealthChecker, metrics *Sampler) *Allowlist {
	return NewCommands(CommandDeps{Runtime: rt, Health: health, Metrics: metrics})
}

// NewCommands is gf-clawnode's allowlist: the ten commands of docs/commands.md, each
// with typed, validated params. Nothing here reaches a shell: the runtime runs a fixed
// argv, files are written by the node itself.
func NewCommands(d CommandDeps) *Allowlist {
	rt, health := d.Runtime, d.Health
	lc := d.Lifecycle
	if lc == nil {
		lc = NewLifecycle(rt, health, 0, 0, nil)
	}
	info := d.Info
	if info == nil {
		info = &InfoReader{}
	}
	a := NewAllowlist()
	a.Register(CmdHealth, Handle(func(ctx context.Context, _ NoParams) (any, error) {
		return health.Check(ctx), nil
	}).ReadOnly())
	a.Register(CmdMetrics, Handle(func(ctx context.Context, _ NoParams) (any, error) {
		return d.Metrics.Sample(ctx)
	}).ReadOnly())
	a.Register(CmdInfo, Handle(func(ctx context.Context, _ NoParams) (any, error) {
		return info.Info(ctx, rt), nil
	}).ReadOnly())
	a.Register(CmdLogs, Handle(func(ctx context.Context, p LogsParams) (any, error) {
		tail := 200
		if p.Tail != nil {
			tail = *p.Tail
		}
		lines, err := rt.Logs(ctx, tail)
		if err != nil {
			return nil, err
		}
		if lines == nil {
			lines = []string{}
		}
		return LogsResult{Lines: lines}, nil
	}).ReadOnly())
	a.Register(CmdRestart, Handle(func(ctx context.Context, _ NoParams) (any, error) {
		if err := rt.Restart(ctx); err != nil {
			return nil, err
		}
		st, _ := rt.Status(ctx)
		return RestartResult{Restarted: true, Container: st}, nil
	}))
	a.Register(CmdUpgrade, Handle(func(ctx context.Context, p proto.UpgradeParams) (any, error) {
		return lc.Upgrade(ctx, p.Image)
	}))
	a.Register(CmdConfigGet, Handle(func(ctx context.Context, _ NoParams) (any, error) {
		if d.Config == nil {
			return nil, errNotConfigured(CmdConfigGet, "this node has no OpenClaw config path (--openclaw-config)")
		}
		return d.Config.Get(ctx)
	}).ReadOnly())
	a.Register(CmdConfigApply, Handle(func(ctx context.Context, p proto.ConfigApplyParams) (any, error) {
		if d.Config == nil {
			return nil, errNotConfigured(CmdConfigApply, "this node has no OpenClaw config path (--openclaw-config)")
		}
		return d.Config.Apply(ctx, p, lc)
	}).Opaque("config"))
	a.Register(CmdBackup, Handle(func(ctx context.Context, _ NoParams) (any, error) {
		if d.Backups == nil {
			return nil, errNotConfigured(CmdBackup, "this node has no OpenClaw workspace folder (--workspace-dir)")
		}
		return d.Backups.Create(ctx)
	}))
	// backup.read is signed, not read-only: an archive holds the user's whole workspace.
	a.Register(CmdBackupRead, Handle(func(ctx context.Context, p proto.BackupReadParams) (any, error) {
		if d.Backups == nil {
			return nil, errNotConfigured(CmdBackupRead, "this node has no OpenClaw workspace folder (--workspace-dir)")
		}
		return d.Backups.Read(ctx, p)
	}))
	return a
}
