package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops/clawnode/keyfile"
	"github.com/gatewayforge/clawops/gateway"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/store"
)

// runAudit dispatches `clawops audit <verb>`.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: clawops audit verify|export|verify-bundle|pubkey [flags]")
		return exitError{2}
	}
	switch args[0] {
	case "verify":
		return runAuditVerify(ctx, args[1:], stdout, stderr)
	case "export":
		return runAuditExport(ctx, args[1:], stdout, stderr)
	case "verify-bundle":
		return runAuditVerifyBundle(args[1:], stdout, stderr)
	case "pubkey":
		return runAuditPubkey(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "clawops audit: unknown verb %q: use verify, export, verify-bundle or pubkey\n", args[0])
	return exitError{2}
}

// openAudit loads the config, opens the store and the gateway key, for the offline audit
// commands. The caller closes the store.
func openAudit(ctx context.Context, name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*gorm.DB, ed25519.PrivateKey, error) {
	var cf configFlags
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cf.register(fs, false)
	if extra != nil {
		extra(fs)
	}
	cfg, err := cf.parseAndLoad(fs, args, stderr)
	if err != nil {
		return nil, nil, err
	}
	key, err := keyfile.Load(filepath.Join(cfg.DataDir, gateway.KeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: gateway key (it is created by the first gateway start): %w", name, err)
	}
	db, err := gateway.OpenStore(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return db, key, nil
}

func runAuditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	db, key, err := openAudit(ctx, "audit verify", args, stderr, nil)
	if err != nil {
		return err
	}
	defer store.Close(db)
	log := governance.NewAuditLogWithOptions(db, governance.AuditOptions{
		TrustedKeys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)},
	})
	rep, err := log.Verify(ctx)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	if !rep.OK {
		fmt.Fprintf(stdout, "audit chain BROKEN at entry %d: %s (%d entries read)\n", rep.FirstBadSeq, rep.Problem, rep.Entries)
		return exitError{1}
	}
	fmt.Fprintf(stdout, "audit chain OK: %d entries, head %s\n", rep.Entries, rep.HeadHash)
	return nil
}

func runAuditExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var out string
	db, key, err := openAudit(ctx, "audit export", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&out, "out", "", "folder to write the bundle into (must not exist or be empty; required)")
	})
	if err != nil {
		return err
	}
	defer store.Close(db)
	if out == "" {
		fmt.Fprintln(stderr, "clawops audit export: --out is required")
		return exitError{2}
	}
	m, err := governance.NewAuditLog(db, nil).ExportBundle(ctx, out, key)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	fmt.Fprintf(stdout, "bundle written to %s: %d entries, head %d %s, %d checkpoints, %d files\n",
		out, m.Entries, m.HeadSeq, m.HeadHash, m.Checkpoints, len(m.Files))
	fmt.Fprintf(stdout, "verify offline with: clawops audit verify-bundle --key %s %s\n",
		hex.EncodeToString(key.Public().(ed25519.PublicKey)), out)
	return nil
}

func runAuditVerifyBundle(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit verify-bundle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyHex := fs.String("key", "", "the gateway's Ed25519 public key, hex (from `clawops audit pubkey`); required")
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	if fs.NArg() != 1 || *keyHex == "" {
		fmt.Fprintln(stderr, "usage: clawops audit verify-bundle --key HEX BUNDLE_DIR")
		return exitError{2}
	}
	pub, err := hex.DecodeString(strings.TrimSpace(*keyHex))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		fmt.Fprintln(stderr, "clawops audit verify-bundle: --key must be 64 hex digits (an Ed25519 public key)")
		return exitError{2}
	}
	rep, err := governance.VerifyBundle(fs.Arg(0), ed25519.PublicKey(pub))
	if err != nil {
		fmt.Fprintf(stdout, "bundle INVALID: %v\n", err)
		return exitError{1}
	}
	fmt.Fprintf(stdout, "bundle OK: %d entries, head %d %s, %d checkpoints, created %s\n",
		rep.Entries, rep.HeadSeq, rep.HeadHash, rep.Checkpoints, rep.Created.UTC().Format("2006-01-02 15:04:05Z"))
	return nil
}

func runAuditPubkey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	db, key, err := openAudit(ctx, "audit pubkey", args, stderr, nil)
	if err != nil {
		return err
	}
	store.Close(db)
	fmt.Fprintln(stdout, hex.EncodeToString(key.Public().(ed25519.PublicKey)))
	return nil
}
