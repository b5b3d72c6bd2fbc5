// Command clawops is the ClawOps gateway and its command-line tools.
//
//	clawops demo   [--listen ADDR] [--data DIR] [--instances N]   gateway + local fleet, no config
//	clawops serve  [--config FILE]                                 the gateway from a config file
//	clawops node token --instance ID [--ttl 1h] [--config FILE | --data DIR]
//	clawops audit verify|export|verify-bundle|pubkey
//	clawops version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "clawops:", err)
		os.Exit(1)
	}
}

// exitError carries an exit code for a failure that was already reported to the user.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

const usage = `usage: clawops <command> [flags]

commands:
  demo          start the gateway and a local fleet of real gf-clawnode processes (no config needed)
  serve         start the gateway from a config file (--config, or CLAWOPS_CONFIG)
  node token    mint a one-time join token for an instance's gf-clawnode
  audit verify  walk the hash-chained audit log and its signed checkpoints; exits 1 naming the first bad entry
  audit export  write a signed audit bundle (--out DIR) for offline verification
  audit verify-bundle --key HEX DIR   check a bundle offline; exits 1 if any byte changed
  audit pubkey  print the gateway's public key (hex) that bundles and checkpoints are signed with
  eval          run the seed dialogues against a real model (--base-url URL --model NAME) and score them
  doctor        say what is configured and whether each part (store, channels, ...) can work
  version       print the version

Run 'clawops <command> -h' for a command's flags.`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return exitError{2}
	}
	switch args[0] {
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "node":
		if len(args) > 1 && args[1] == "token" {
			return runNodeToken(ctx, args[2:], stdout, stderr)
		}
	case "audit":
		return runAudit(ctx, args[1:], stdout, stderr)
	case "eval":
		return runEval(ctx, args[1:], stdout, stderr)
	case "doctor":
		return runDoctor(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "clawops", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "clawops: unknown command %q\n\n%s\n", args[0], usage)
	return exitError{2}
}
