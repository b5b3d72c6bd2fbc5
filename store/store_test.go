package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOpenSQLiteWAL(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(context.Background(), Options{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Close(db) })
	var mode string
	if err := db.Raw("PRAGMA journal_mode").Scan(&mode).Error; err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Fatalf("journal_mode: got %q, want wal", mode)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "clawops.db")); err != nil {
		t.Fatalf("database file: %v", err)
	}
}

func TestOpenBadOptions(t *testing.T) {
	ctx := context.Background()
	for _, opts := range []Options{{Driver: "oracle", DataDir: t.TempDir()}, {Driver: "postgres"}, {}} {
		if _, err := Open(ctx, opts); err == nil {
			t.Errorf("Open(%+v): got nil error, want one", opts)
		}
	}
}

func TestBackgroundCheckpoint(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(context.Background(), Options{DataDir: dir, BackgroundCheckpoint: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Close(db) })
	var auto int
	if err := db.Raw("PRAGMA wal_autocheckpoint").Scan(&auto).Error; err != nil {
		t.Fatal(err)
	}
	if auto != 0 {
		t.Fatalf("wal_autocheckpoint: got %d, want 0 (checkpoints in the background)", auto)
	}
	if err := db.Exec("CREATE TABLE t (v TEXT)").Error; err != nil {
		t.Fatal(err)
	}
	for range 200 {
		if err := db.Exec("INSERT INTO t VALUES (?)", strings.Repeat("x", 4000)).Error; err != nil {
			t.Fatal(err)
		}
	}
	walSize := func() int64 {
		st, err := os.Stat(filepath.Join(dir, "clawops.db-wal"))
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	dbSize := func() int64 {
		st, err := os.Stat(filepath.Join(dir, "clawops.db"))
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	if walSize() < 200*4000 || dbSize() > 100_000 {
		t.Fatalf("before checkpoint: wal %d bytes, db %d bytes; want the rows in the WAL only", walSize(), dbSize())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunCheckpoints(ctx, db, 10*time.Millisecond) }()
	deadline := time.Now().Add(10 * time.Second)
	for dbSize() < 200*4000 {
		if time.Now().After(deadline) {
			t.Fatalf("db file still %d bytes: the background checkpoint did not copy the WAL", dbSize())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
