package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
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
