package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/clawnode/keyfile"
	"github.com/gatewayforge/clawops/cluster"
	"github.com/gatewayforge/clawops/config"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/gateway"
	"github.com/gatewayforge/clawops/store"
)

// doctorCheckTimeout bounds each platform check.
const doctorCheckTimeout = 15 * time.Second

// runDoctor says what is configured and whether each part can work: the config, the data
// folder, the store, the gateway key, the local provider's node binary, the archive store,
// the API tokens, and whether each chat channel can reach its platform. It exits 1 when anything fails.
func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf configFlags
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	cf.register(fs, false)
	cfg, err := cf.parseAndLoad(fs, args, stderr)
	if err != nil {
		fmt.Fprintf(stdout, "config   FAIL  %v\n", err)
		return exitError{1}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	failed := false
	report := func(part, status, detail string) {
		if status == "FAIL" {
			failed = true
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", part, status, detail)
	}
	src := cf.path
	if src == "" {
		src = "defaults and CLAWOPS_* environment"
	}
	report("config", "ok", src)

	db, err := gateway.OpenStore(ctx, cfg)
	if err != nil {
		report("store", "FAIL", err.Error())
	} else {
		defer store.Close(db)
		report("store", "ok", fmt.Sprintf("%s in %s, migrated", db.Dialector.Name(), cfg.DataDir))
	}
	if _, err := keyfile.Load(filepath.Join(cfg.DataDir, gateway.KeyFile)); err != nil {
		report("gateway key", "warn", "not created yet: the first start creates "+filepath.Join(cfg.DataDir, gateway.KeyFile))
	} else {
		report("gateway key", "ok", filepath.Join(cfg.DataDir, gateway.KeyFile))
	}
	if st, err := os.Stat(cfg.Fleet.Local.NodeBinary); err != nil || st.Mode()&0o111 == 0 {
		report("local provider", "warn", fmt.Sprintf("gf-clawnode not executable at %s (needed only for the local provider): make build", cfg.Fleet.Local.NodeBinary))
	} else {
		report("local provider", "ok", fmt.Sprintf("%s, runtime %s", cfg.Fleet.Local.NodeBinary, cfg.Fleet.Local.Runtime))
	}
	doctorArchive(cfg, report)
	if tokens, err := cfg.ResolveTokens(os.Getenv); err != nil {
		report("api tokens", "FAIL", err.Error())
	} else if len(tokens) == 0 {
		report("api tokens", "warn", "auth.tokens is empty: serve needs at least one admin token (demo makes its own)")
	} else {
		report("api tokens", "ok", fmt.Sprintf("%d identities", len(tokens)))
	}

	if db != nil {
		doctorCluster(ctx, cfg, db, report)
		doctorChannels(ctx, cfg, db, report)
	}
	tw.Flush()
	if failed {
		return exitError{1}
	}
	return nil
}

// doctorCluster says which replica leads and checks that this replica's gateway key is
// the one the fleet's nodes pin. It writes nothing.
func doctorCluster(ctx context.Context, cfg *config.Config, db *gorm.DB, report func(part, status, detail string)) {
	me := gateway.ReplicaID(cfg)
	if key, err := keyfile.Load(filepath.Join(cfg.DataDir, gateway.KeyFile)); err == nil {
		if _, err := cluster.VerifyGatewayKey(ctx, db, key.Public().(ed25519.PublicKey)); err != nil {
			report("cluster", "FAIL", err.Error()+": copy the fleet's gateway.key into "+cfg.DataDir)
			return
		}
	}
	l, left, err := cluster.Read(ctx, db, "")
	switch {
	case err != nil:
		report("cluster", "FAIL", err.Error())
	case l.Holder == "" || left <= 0:
		report("cluster", "ok", fmt.Sprintf("replica %s; no replica leads now (the lease is free): the next gateway to start leads", me))
	case l.Holder == me:
		report("cluster", "ok", fmt.Sprintf("replica %s leads (epoch %d, lease valid %s)", me, l.Epoch, left.Round(time.Second)))
	default:
		report("cluster", "ok", fmt.Sprintf("replica %s; %s leads at %s (epoch %d, lease valid %s)", me, l.Holder, l.Addr, l.Epoch, left.Round(time.Second)))
	}
}

// doctorArchive checks where teardowns keep workspaces: a folder must be writable (a file
// is created and removed); a bucket's keys must be readable. The bucket is not contacted.
func doctorArchive(cfg *config.Config, report func(part, status, detail string)) {
	st, where, err := gateway.ArchiveStore(cfg, nil, nil)
	if err != nil {
		report("archive", "FAIL", err.Error())
		return
	}
	ds, ok := st.(fleet.DirStore)
	if !ok {
		report("archive", "ok", where+"; keys readable, bucket not contacted")
		return
	}
	if err := os.MkdirAll(ds.Root, 0o700); err != nil {
		report("archive", "FAIL", fmt.Sprintf("%s: cannot create it (fleet.archive.dir): %v", where, err))
		return
	}
	f, err := os.CreateTemp(ds.Root, ".doctor-*")
	if err != nil {
		report("archive", "FAIL", fmt.Sprintf("%s is not writable (fleet.archive.dir): %v", where, err))
		return
	}
	f.Close()
	os.Remove(f.Name())
	report("archive", "ok", where+", writable")
}

// doctorChannels builds each configured adapter (checking its settings and secrets) and
// asks it whether it can reach its platform. Nothing is sent to any chat.
func doctorChannels(ctx context.Context, cfg *config.Config, db *gorm.DB, report func(part, status, detail string)) {
	report("channel web", "ok", "the console at /, always on")
	if len(cfg.Channels.Adapters) == 0 {
		report("channels", "-", "no chat adapters configured (channels.adapters)")
		return
	}
	dir, err := gateway.Directory(cfg)
	if err != nil {
		report("channels", "FAIL", err.Error())
		return
	}
	sqlDB, err := db.DB()
	if err != nil {
		report("channels", "FAIL", err.Error())
		return
	}
	env := channels.Env{
		Logger:     slog.New(slog.DiscardHandler),
		Deliver:    func(context.Context, channels.Inbound) error { return nil },
		Resolver:   dir,
		SQL:        sqlDB,
		SQLDialect: db.Dialector.Name(),
	}
	for i, a := range cfg.Channels.Adapters {
		part := fmt.Sprintf("channel %s", a.Type)
		one := *cfg
		one.Channels.Adapters = cfg.Channels.Adapters[i : i+1]
		chans, err := gateway.BuildChannels(&one, env)
		if err != nil {
			report(part, "FAIL", err.Error())
			continue
		}
		ch := chans[0]
		c, ok := ch.(channels.Checker)
		if !ok {
			report(part, "ok", "configured ("+ch.Name()+"); this adapter has no connectivity check")
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, doctorCheckTimeout)
		err = c.Check(cctx)
		cancel()
		if err != nil {
			report(part, "FAIL", fmt.Sprintf("%s cannot connect: %v", ch.Name(), err))
			continue
		}
		report(part, "ok", ch.Name()+" can connect")
	}
	report("allow_from", "ok", fmt.Sprintf("%d senders", len(cfg.Channels.AllowFrom)))
}
