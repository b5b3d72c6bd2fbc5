package main

import (
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatewayforge/clawops/clawnode/daemon"
	"github.com/gatewayforge/clawops/clawnode/keyfile"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// nodeFlags describe the machine: where OpenClaw runs and where its files are. Both run
// and ssh-exec take them, so the SSH fallback acts on exactly what the daemon acts on.
type nodeFlags struct {
	stateDir, instance, healthURL, runtime, composeFile, imageFile, openclawCmd, diskPath string
	openclawConfig, validateCmd, workspaceDir, backupDir                                  string
	backupKeep                                                                            int
	healthWait                                                                            time.Duration
}

func (f *nodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.stateDir, "state-dir", "", "")
	fs.StringVar(&f.instance, "instance", "", "")
	fs.StringVar(&f.healthURL, "health-url", "", "")
	fs.StringVar(&f.runtime, "runtime", "docker", "")
	fs.StringVar(&f.composeFile, "compose-file", "", "")
	fs.StringVar(&f.imageFile, "image-file", "", "")
	fs.StringVar(&f.openclawCmd, "openclaw-cmd", "", "")
	fs.StringVar(&f.diskPath, "disk-path", "/", "")
	fs.StringVar(&f.openclawConfig, "openclaw-config", "", "")
	fs.StringVar(&f.validateCmd, "config-validate-cmd", "", "")
	fs.StringVar(&f.workspaceDir, "workspace-dir", "", "")
	fs.StringVar(&f.backupDir, "backup-dir", "", "")
	fs.IntVar(&f.backupKeep, "backup-keep", 5, "")
	fs.DurationVar(&f.healthWait, "health-wait", 90*time.Second, "")
}

func (f *nodeFlags) check() error {
	if f.stateDir == "" {
		return fmt.Errorf("%w: --state-dir is required", errUsage)
	}
	if f.backupKeep < 1 || f.backupKeep > 1000 {
		return fmt.Errorf("%w: --backup-keep %d: must be 1..1000", errUsage, f.backupKeep)
	}
	if f.healthWait < time.Second || f.healthWait > time.Hour {
		return fmt.Errorf("%w: --health-wait %s: must be between 1s and 1h", errUsage, f.healthWait)
	}
	for name, v := range map[string]string{"--openclaw-config": f.openclawConfig, "--workspace-dir": f.workspaceDir,
		"--backup-dir": f.backupDir, "--image-file": f.imageFile} {
		if v != "" && !filepath.IsAbs(v) {
			return fmt.Errorf("%w: %s %q: must be an absolute path", errUsage, name, v)
		}
	}
	return nil
}

// buildRuntime makes the OpenClaw runtime; proc is set for the process runtime, which
// the caller must run.
func (f *nodeFlags) buildRuntime(stderr io.Writer, log *slog.Logger) (rt daemon.Runtime, proc *daemon.ProcessRuntime, err error) {
	switch f.runtime {
	case "docker":
		if f.composeFile == "" {
			return nil, nil, fmt.Errorf("%w: --runtime docker needs --compose-file", errUsage)
		}
		imageFile := f.imageFile
		if imageFile == "" {
			imageFile = filepath.Join(f.stateDir, "openclaw-image.yml")
		}
		rt, err = daemon.NewDockerRuntimeWith(daemon.DockerOptions{ComposeFile: f.composeFile, ImageFile: imageFile})
		return rt, nil, err
	case "process":
		argv := strings.Fields(f.openclawCmd)
		if len(argv) == 0 {
			return nil, nil, fmt.Errorf("%w: --runtime process needs --openclaw-cmd", errUsage)
		}
		proc, err = daemon.NewProcessRuntime(argv, daemon.ProcessOptions{Echo: stderr, Logger: log})
		return proc, proc, err
	}
	return nil, nil, fmt.Errorf("%w: --runtime %q: use docker or process", errUsage, f.runtime)
}

// nodeConfig is the daemon configuration the node flags describe.
func (f *nodeFlags) nodeConfig(rt daemon.Runtime) daemon.Config {
	return daemon.Config{StateDir: f.stateDir, HealthURL: f.healthURL, Runtime: rt, DiskPath: f.diskPath,
		ConfigPath: f.openclawConfig, ConfigValidate: strings.Fields(f.validateCmd), WorkspaceDir: f.workspaceDir,
		BackupDir: f.backupDir, BackupKeep: f.backupKeep, HealthWait: f.healthWait, RuntimeName: f.runtime, Version: version}
}

type runFlags struct {
	nodeFlags
	gateway, gatewayKey, joinToken, joinTokenFile string
	heartbeat, rotateEvery                        time.Duration
	allowUnproven, allowUnsigned                  bool
}

func parseRunFlags(args []string, stderr io.Writer) (runFlags, error) {
	var f runFlags
	fs := newFlagSet("run", stderr)
	f.nodeFlags.register(fs)
	fs.StringVar(&f.gateway, "gateway", "", "")
	fs.StringVar(&f.gatewayKey, "gateway-key", "", "")
	fs.StringVar(&f.joinToken, "join-token", "", "")
	fs.StringVar(&f.joinTokenFile, "join-token-file", "", "")
	fs.DurationVar(&f.heartbeat, "heartbeat", 10*time.Second, "")
	fs.DurationVar(&f.rotateEvery, "rotate-key-every", 0, "")
	fs.BoolVar(&f.allowUnproven, "allow-unproven-gateway", false, "")
	fs.BoolVar(&f.allowUnsigned, "allow-unsigned-read-only", false, "")
	if err := parse(fs, args); err != nil {
		return f, err
	}
	var missing []string
	for _, p := range []struct{ name, v string }{{"--gateway", f.gateway}, {"--gateway-key", f.gatewayKey}, {"--state-dir", f.stateDir}} {
		if p.v == "" {
			missing = append(missing, p.name)
		}
	}
	if len(missing) > 0 {
		return f, fmt.Errorf("%w: run needs %s", errUsage, strings.Join(missing, ", "))
	}
	if f.heartbeat < time.Second {
		return f, fmt.Errorf("%w: --heartbeat %s: must be at least 1s", errUsage, f.heartbeat)
	}
	if f.rotateEvery < 0 || (f.rotateEvery > 0 && f.rotateEvery < time.Hour) {
		return f, fmt.Errorf("%w: --rotate-key-every %s: must be 0 or at least 1h", errUsage, f.rotateEvery)
	}
	return f, f.nodeFlags.check()
}

// credentials decodes the pinned gateway key and finds the join token (flag, file, env).
func (f *runFlags) credentials(getenv func(string) string) (ed25519.PublicKey, string, error) {
	gwKey, err := proto.DecodePublicKey(f.gatewayKey)
	if err != nil {
		return nil, "", fmt.Errorf("%w: --gateway-key: %v", errUsage, err)
	}
	join := f.joinToken
	if join == "" && f.joinTokenFile != "" {
		if join, err = keyfile.ReadToken(f.joinTokenFile); err != nil {
			return nil, "", fmt.Errorf("--join-token-file: %w", err)
		}
	}
	if join == "" {
		join = strings.TrimSpace(getenv("GF_CLAWNODE_JOIN_TOKEN"))
	}
	return gwKey, join, nil
}
