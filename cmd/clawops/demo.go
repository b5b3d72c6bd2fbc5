package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gatewayforge/clawops/config"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/gateway"
)

// demoMarker marks a data folder that `clawops demo` created, so it may reset it.
const demoMarker = ".clawops-demo"

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf configFlags
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	cf.register(fs, true)
	instances := fs.Int("instances", 6, "instances to run (an even number: primary/standby pairs)")
	keep := fs.Bool("keep", false, "keep the data folder of an earlier demo run instead of starting fresh")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *instances < 2 || *instances%2 != 0 || *instances > 40 {
		fmt.Fprintln(stderr, "clawops demo: --instances must be an even number from 2 to 40")
		return exitError{2}
	}
	if cf.dataDir == "" {
		cf.dataDir = filepath.Join(".data", "demo")
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	if err := prepareDemoDir(cfg.DataDir, *keep); err != nil {
		return err
	}
	tokens, err := demoTokens()
	if err != nil {
		return err
	}
	log := cfg.Log.NewLogger(stderr)
	gw, err := gateway.New(ctx, gateway.Options{Config: cfg, Tokens: tokens, Logger: log})
	if err != nil {
		return err
	}

	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return gw.Run(ctx) })
	eg.Go(func() error {
		if err := provisionDemo(ctx, gw.Fleet(), *instances/2, *keep); err != nil {
			return err
		}
		if err := waitActive(ctx, gw.Fleet(), *instances, 60*time.Second); err != nil {
			fmt.Fprintln(stderr, "clawops demo: warning:", err)
		}
		printDemo(ctx, stdout, gw, cfg, tokens)
		return nil
	})
	return eg.Wait()
}

// prepareDemoDir starts the demo fresh: an earlier demo's folder (marked) is emptied, since
// its node processes died with it. A folder that is not a demo's is never touched.
func prepareDemoDir(dir string, keep bool) error {
	marker := filepath.Join(dir, demoMarker)
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("demo: read data folder: %w", err)
	case len(entries) > 0 && !keep:
		if _, err := os.Stat(marker); err != nil {
			return fmt.Errorf("demo: data folder %s is not empty and was not made by clawops demo: choose another --data", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("demo: reset data folder: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo: create data folder: %w", err)
	}
	return os.WriteFile(marker, []byte("made by clawops demo; emptied at each demo start\n"), 0o600)
}

// demoTokens takes the admin and operator tokens from the environment, or makes them.
func demoTokens() ([]config.Token, error) {
	var out []config.Token
	for _, r := range []struct{ identity, role, env string }{
		{"admin", "admin", "CLAWOPS_ADMIN_TOKEN"},
		{"operator", "operator", "CLAWOPS_OPERATOR_TOKEN"},
	} {
		secret, from := os.Getenv(r.env), "env "+r.env
		if secret == "" {
			b := make([]byte, 24)
			if _, err := rand.Read(b); err != nil {
				return nil, fmt.Errorf("demo: generate %s token: %w", r.identity, err)
			}
			secret, from = hex.EncodeToString(b), "generated"
		}
		if len(secret) < 16 {
			return nil, fmt.Errorf("demo: %s is shorter than 16 characters", r.env)
		}
		out = append(out, config.Token{Identity: r.identity, Role: r.role, Secret: secret, From: from})
	}
	return out, nil
}

func provisionDemo(ctx context.Context, f *fleet.Service, pairs int, keep bool) error {
	existing, err := f.Instances(ctx)
	if err != nil {
		return err
	}
	if keep && len(existing) > 0 {
		return nil
	}
	for i := 1; i <= pairs; i++ {
		spec := fleet.PairSpec{
			Account:     fmt.Sprintf("demo%d", i),
			AccountName: fmt.Sprintf("Demo user %d", i),
			Tier:        "standard",
			Primary:     fleet.Placement{Provider: "local", Region: "local-a"},
			Standby:     fleet.Placement{Provider: "local", Region: "local-b"},
		}
		if _, err := f.ProvisionPair(ctx, spec); err != nil {
			return fmt.Errorf("demo: provision %s: %w", spec.Account, err)
		}
	}
	return nil
}

// waitActive polls until n instances are ACTIVE or the timeout passes.
func waitActive(ctx context.Context, f *fleet.Service, n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		views, err := f.Instances(ctx)
		if err == nil {
			active := 0
			for _, v := range views {
				if v.State == fleet.StateActive {
					active++
				}
			}
			if active >= n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not every instance became ACTIVE within %s (see the node logs under the data folder's local/)", timeout)
		case <-t.C:
		}
	}
}

func printDemo(ctx context.Context, w io.Writer, gw *gateway.Gateway, cfg *config.Config, tokens []config.Token) {
	views, _ := gw.Fleet().Instances(ctx)
	fmt.Fprintf(w, "\nClawOps demo gateway on %s (data in %s)\n\n", gw.URL(), cfg.DataDir)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tROLE\tSTATE\tHEALTH\tNODE")
	for _, v := range views {
		health := "-"
		if v.Health.OK {
			health = "ok"
		} else if v.Health.Error != "" {
			health = v.Health.Error
		}
		node := string(v.Node)
		if len(node) > 12 {
			node = node[:12]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.ID, v.Role, v.State, health, node)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nOpen the console (the token is read from the URL fragment and never sent to the server in the URL):")
	for _, t := range tokens {
		fmt.Fprintf(w, "  %-8s %s/#token=%s   (token %s)\n", t.Identity, gw.URL(), t.Secret, t.From)
	}
	fmt.Fprintln(w, "\nTry: /status, /restart demo1-pri, /teardown demo1-sby (then Approve as admin). Ctrl-C stops everything.")
	fmt.Fprintln(w, strings.Repeat("-", 72))
}
