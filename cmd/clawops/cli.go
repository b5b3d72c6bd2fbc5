package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode"
	"github.com/gatewayforge/clawops/clawnode/keyfile"
	"github.com/gatewayforge/clawops/config"
	"github.com/gatewayforge/clawops/gateway"
	"github.com/gatewayforge/clawops/store"
)

// configFlags are the flags every command that reads the config shares.
type configFlags struct {
	path    string
	dataDir string
	listen  string
}

func (c *configFlags) register(fs *flag.FlagSet, withListen bool) {
	fs.StringVar(&c.path, "config", os.Getenv("CLAWOPS_CONFIG"), "config file (YAML); defaults and CLAWOPS_* env when empty")
	fs.StringVar(&c.dataDir, "data", "", "data folder (overrides data_dir)")
	if withListen {
		fs.StringVar(&c.listen, "listen", "", "address to serve on (overrides listen)")
	}
}

// load reads the config: defaults, the file, CLAWOPS_* env, then these flags, which win.
func (c *configFlags) load() (*config.Config, error) {
	env := os.Environ()
	if c.dataDir != "" {
		env = append(env, "CLAWOPS_DATA_DIR="+c.dataDir)
	}
	if c.listen != "" {
		env = append(env, "CLAWOPS_LISTEN="+c.listen)
	}
	cfg, err := config.Load(c.path, env)
	if err != nil {
		return nil, fmt.Errorf("config:\n%w", err)
	}
	return cfg, nil
}

func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "clawops %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitError{2}
	}
	return nil
}

// parseAndLoad parses args (the command's own flags and the shared config flags) and loads
// the config they name.
func (c *configFlags) parseAndLoad(fs *flag.FlagSet, args []string, stderr io.Writer) (*config.Config, error) {
	if err := parseFlags(fs, args, stderr); err != nil {
		return nil, err
	}
	return c.load()
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf configFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cf.register(fs, true)
	cfg, err := cf.parseAndLoad(fs, args, stderr)
	if err != nil {
		return err
	}
	tokens, err := cfg.ResolveTokens(os.Getenv)
	if err != nil {
		return err
	}
	if len(tokens) == 0 {
		return fmt.Errorf("serve: auth.tokens is empty: add at least one admin token (token_env or token_file) to the config")
	}
	log := cfg.Log.NewLogger(stderr)
	gw, err := gateway.New(ctx, gateway.Options{Config: cfg, Tokens: tokens, Logger: log})
	if err != nil {
		return err
	}
	log.Info("gateway serving", "url", gw.URL(), "data", cfg.DataDir)
	fmt.Fprintf(stdout, "ClawOps gateway on %s\n", gw.URL())
	return gw.Run(ctx)
}

func runNodeToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf configFlags
	fs := flag.NewFlagSet("node token", flag.ContinueOnError)
	cf.register(fs, false)
	instance := fs.String("instance", "", "instance the token enrolls a node for (required)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token stays valid (1m..24h)")
	cfg, err := cf.parseAndLoad(fs, args, stderr)
	if err != nil {
		return err
	}
	if *instance == "" {
		fmt.Fprintln(stderr, "clawops node token: --instance is required")
		return exitError{2}
	}
	if *ttl < time.Minute || *ttl > 24*time.Hour {
		fmt.Fprintln(stderr, "clawops node token: --ttl must be between 1m and 24h")
		return exitError{2}
	}
	db, err := gateway.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close(db)
	key, err := keyfile.LoadOrCreate(filepath.Join(cfg.DataDir, gateway.KeyFile))
	if err != nil {
		return fmt.Errorf("node token: gateway key: %w", err)
	}
	hub, err := clawnode.NewHub(clawnode.HubOptions{DB: db, Key: key, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer hub.Close()
	tok, err := hub.MintJoinToken(ctx, clawops.InstanceID(strings.TrimSpace(*instance)), *ttl)
	if err != nil {
		return fmt.Errorf("node token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
