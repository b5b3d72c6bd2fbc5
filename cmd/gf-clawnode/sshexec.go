package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/gatewayforge/clawops/clawnode/daemon"
	"github.com/gatewayforge/clawops/clawnode/sshfallback"
)

// runSSHExec is the node side of the SSH fallback. It runs as the forced command of the
// gateway's key in authorized_keys:
//
//	command="/usr/local/bin/gf-clawnode ssh-exec --state-dir /var/lib/gf-clawnode --compose-file ...",restrict ssh-ed25519 AAAA... clawops-gateway
//
// so that key can do nothing but this. The command the gateway asked for arrives in
// SSH_ORIGINAL_COMMAND; it is checked and run from the daemon's own allowlist, and one JSON
// result is printed. Only the docker runtime is served: a process runtime belongs to the
// daemon that supervises it.
func runSSHExec(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	var f nodeFlags
	fs := newFlagSet("ssh-exec", stderr)
	f.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	if f.runtime != "docker" {
		return fmt.Errorf("%w: ssh-exec serves the docker runtime only", errUsage)
	}
	line := getenv("SSH_ORIGINAL_COMMAND")
	if line == "" {
		return fmt.Errorf("%w: ssh-exec runs as the forced command of an authorized_keys entry (SSH_ORIGINAL_COMMAND is empty)", errUsage)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rt, _, err := f.buildRuntime(stderr, log)
	if err != nil {
		return err
	}
	cfg := f.nodeConfig(rt)
	cfg.Logger = log
	cmds, err := daemon.CommandsFor(cfg)
	if err != nil {
		return err
	}
	if sshfallback.Dispatch(ctx, cmds, line, stdout) != 0 {
		return errCommandFailed
	}
	return nil
}
