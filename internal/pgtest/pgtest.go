// Package pgtest gives a test a PostgreSQL schema of its own on the server at
// 127.0.0.1:5432 (trust authentication, database "test"), dropped when the test ends.
package pgtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatewayforge/clawops/store"
)

// Base is the DSN of the test database, without a search path.
const Base = "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable connect_timeout=2"

// DSN creates a schema named prefix_<nanoseconds> and returns a DSN whose search path is
// that schema. It skips the test in -short mode and when no server answers.
func DSN(t testing.TB, prefix string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("short mode: no PostgreSQL")
	}
	admin, err := store.Open(context.Background(), store.Options{Driver: "postgres", DSN: Base})
	if err != nil {
		t.Skipf("no PostgreSQL at 127.0.0.1:5432: %v", err)
	}
	t.Cleanup(func() { store.Close(admin) })
	schema := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	if err := admin.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Skipf("create schema: %v", err)
	}
	t.Cleanup(func() { admin.Exec("DROP SCHEMA " + schema + " CASCADE") })
	return Base + " search_path=" + schema
}
