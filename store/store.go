// Package store opens the relational database that every room keeps its tables in: SQLite in
// WAL mode inside a data folder by default (so the demo needs nothing installed), PostgreSQL
// for operators who run several gateway replicas. Each room migrates its own models; this
// package only opens, tunes and closes the connection.
package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" database/sql driver
)

// Options say which database to open.
type Options struct {
	// Driver is "sqlite" (default) or "postgres".
	Driver string
	// DataDir is the folder that holds clawops.db when Driver is sqlite and DSN is empty.
	DataDir string
	// DSN overrides the connection string: a file path for sqlite, a URL or key=value
	// string for postgres.
	DSN string
	// BackgroundCheckpoint turns off SQLite's automatic WAL checkpoint, which otherwise runs
	// (and syncs the database file) inside whichever commit crosses the threshold, stalling
	// that caller. The owner must then run RunCheckpoints. Long-lived processes (the
	// gateway) set it; short CLI commands leave it off.
	BackgroundCheckpoint bool
}

// Open connects to the database described by opts and checks that it answers.
func Open(ctx context.Context, opts Options) (*gorm.DB, error) {
	cfg := &gorm.Config{Logger: logger.Discard, NowFunc: func() time.Time { return time.Now().UTC() }}
	switch strings.ToLower(opts.Driver) {
	case "", "sqlite":
		return openSQLite(ctx, opts, cfg)
	case "postgres", "postgresql":
		if opts.DSN == "" {
			return nil, fmt.Errorf("open store: database.dsn is required for the postgres driver")
		}
		db, err := gorm.Open(postgres.Open(opts.DSN), cfg)
		if err != nil {
			return nil, fmt.Errorf("open store: postgres: %w", err)
		}
		return db, ping(ctx, db)
	default:
		return nil, fmt.Errorf("open store: unknown database.driver %q: use sqlite or postgres", opts.Driver)
	}
}

func openSQLite(ctx context.Context, opts Options, cfg *gorm.Config) (*gorm.DB, error) {
	path := opts.DSN
	if path == "" {
		if opts.DataDir == "" {
			return nil, fmt.Errorf("open store: data folder is empty: set data_dir")
		}
		if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("open store: create data folder: %w", err)
		}
		path = filepath.Join(opts.DataDir, "clawops.db")
	}
	// WAL lets readers run beside the single writer; busy_timeout makes a second writer wait
	// instead of failing with SQLITE_BUSY; foreign keys are off by default in SQLite.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	if opts.BackgroundCheckpoint {
		dsn += "&_pragma=wal_autocheckpoint(0)"
	}
	db, err := gorm.Open(sqlite.New(sqlite.Config{DriverName: "sqlite", DSN: dsn}), cfg)
	if err != nil {
		return nil, fmt.Errorf("open store: sqlite %s: %w", path, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	// SQLite has one writer; a small pool avoids lock contention between our own connections.
	sqlDB.SetMaxOpenConns(4)
	return db, ping(ctx, db)
}

func ping(ctx context.Context, db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("open store: ping: %w", err)
	}
	return nil
}

// CheckpointInterval is how often RunCheckpoints moves the WAL into the database file.
const CheckpointInterval = time.Second

// RunCheckpoints checkpoints a SQLite WAL every interval until ctx ends, off the commit
// path (see Options.BackgroundCheckpoint). A PASSIVE checkpoint never blocks writers or
// readers; it copies what it can, and SQLite rewinds the WAL once everything is copied. It
// returns nil at once for other databases.
func RunCheckpoints(ctx context.Context, db *gorm.DB, every time.Duration) error {
	if db.Dialector.Name() != "sqlite" {
		return nil
	}
	if every <= 0 {
		every = CheckpointInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			// A failure (busy, for instance) is retried at the next tick; the next one
			// copies whatever this one could not.
			_ = db.WithContext(ctx).Exec("PRAGMA wal_checkpoint(PASSIVE)").Error
		}
	}
}

// Close closes the connection pool behind db.
func Close(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// migrationLockKey is the PostgreSQL advisory lock that serialises schema changes.
const migrationLockKey = 0x636c61776f7073 // "clawops"

// Migrate runs migrate with the database's schema lock held: on PostgreSQL an advisory
// lock, so gateway replicas that start together apply their schema changes one after the
// other instead of racing to create the same tables; on SQLite, which serialises writers
// itself, it just runs migrate.
func Migrate(ctx context.Context, db *gorm.DB, migrate func(*gorm.DB) error) error {
	if db.Dialector.Name() != "postgres" {
		return migrate(db)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		return fmt.Errorf("migrate: take the schema lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLockKey)
	return migrate(db)
}
