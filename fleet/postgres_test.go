package fleet

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/store"
)

// TestPostgres runs the state machine on the PostgreSQL server at 127.0.0.1:5432 when one
// answers, in a schema of its own that is dropped afterwards.
func TestPostgres(t *testing.T) {
	ctx := context.Background()
	base := "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable connect_timeout=2"
	admin, err := store.Open(ctx, store.Options{Driver: "postgres", DSN: base})
	if err != nil {
		t.Skipf("no PostgreSQL at 127.0.0.1:5432: %v", err)
	}
	t.Cleanup(func() { store.Close(admin) })
	schema := fmt.Sprintf("fleet_test_%d", time.Now().UnixNano())
	if err := admin.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Skipf("create schema: %v", err)
	}
	t.Cleanup(func() { admin.Exec("DROP SCHEMA " + schema + " CASCADE") })
	db, err := store.Open(ctx, store.Options{Driver: "postgres", DSN: base + " search_path=" + schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })

	h := newHarnessDB(t, db, nil)
	h.seedPair(t, "pg1", StateBootstrapping, StateBootstrapping)
	if err := h.svc.RecordHeartbeat(ctx, heartbeat("pg1-pri", "n1", true)); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.RecordHeartbeat(ctx, heartbeat("pg1-sby", "n2", false)); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(31 * time.Second)
	changed, err := h.svc.Sweep(ctx)
	if err != nil || len(changed) != 1 || changed[0].Instance != "pg1-pri" {
		t.Fatalf("sweep: got %+v, %v, want pg1-pri degraded", changed, err)
	}
	v, err := h.svc.Instance(ctx, "pg1-sby")
	if err != nil || v.State != StateBootstrapping || v.PeerState != StateDegraded {
		t.Errorf("pg1-sby: got %s peer %s (%v), want BOOTSTRAPPING peer DEGRADED", v.State, v.PeerState, err)
	}
	if err := h.svc.Teardown(ctx, "pg1-sby"); err != nil {
		t.Fatal(err)
	}
	_, err = h.svc.ProvisionPair(ctx, PairSpec{Account: "pg1", Tier: "standard",
		Primary: Placement{"hetzner", "fsn1"}, Standby: Placement{"vultr", "ams"}})
	wantReason(t, err, ReasonPairExists)
	wantReason(t, h.svc.RecordHeartbeat(ctx, heartbeat("pg1-sby", "n2", true)), clawops.ReasonInstanceNotActive)
}
