package fleet

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/internal/pgtest"
	"github.com/gatewayforge/clawops/store"
)

// TestPostgres runs the state machine on the PostgreSQL server at 127.0.0.1:5432 when one
// answers, in a schema of its own that is dropped afterwards.
func TestPostgres(t *testing.T) {
	db := postgresDB(t)
	ctx := context.Background()
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

// postgresDB opens a schema of its own on the PostgreSQL server at 127.0.0.1:5432, dropped
// afterwards, or skips when none answers.
func postgresDB(t *testing.T) *gorm.DB {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{Driver: "postgres", DSN: pgtest.DSN(t, "fleet_test")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	return db
}

// TestPostgresOperations runs the journals and reports of the operations on PostgreSQL:
// provisioning queue, rolling push with a resume, failover, routing versions, monitor and
// cost report.
func TestPostgresOperations(t *testing.T) {
	db := postgresDB(t)
	sim := newSimNodes()
	bus := NewBus(nil)
	h := newHarnessDB(t, db, func(o *Options) {
		o.Nodes, o.Bus, o.DefaultRouting = sim, bus, euRouting
		o.HealWait, o.HealPoll = 100*time.Millisecond, 10*time.Millisecond
	})
	ctx := context.Background()
	ids := h.activePairs(t, sim, "pg", 3)

	b, err := h.svc.EnqueueProvision(ctx, planFor(t, h, ProvisionRequest{Prefix: "beta", Count: 2, Tier: "standard", Group: "eu"}), "forge", "pg")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := h.svc.ProcessProvisionQueue(ctx); err != nil || n != 2 {
		t.Fatalf("provision queue: %d, %v", n, err)
	}
	if v, _ := h.svc.ProvisionBatch(ctx, b.ID); v.Summary != "2/2 BOOTSTRAPPING" {
		t.Errorf("batch: got %q", v.Summary)
	}

	pctx, cancel := context.WithCancel(ctx)
	v, err := h.svc.StartPush(ctx, pushSpec(ids, 2, 0))
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	sim.afterApply = func(clawops.NodeID) {
		if n.Add(1) == 3 {
			cancel()
		}
	}
	h.svc.RunPush(pctx, v.ID)
	sim.afterApply = nil
	if v, err = h.svc.RunPush(ctx, v.ID); err != nil || v.State != PushCompleted || v.Counts[TargetApplied] != len(ids) {
		t.Fatalf("push: %+v, %v", v, err)
	}
	for node, c := range sim.appliesByNode() {
		if c != 1 {
			t.Errorf("%s applied %d times", node, c)
		}
	}

	if _, err := h.svc.SetRoutingPolicy(ctx, RoutingChange{Policy: *euRouting, Author: "a", Reason: "b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.SetRoutingPolicy(ctx, RoutingChange{Policy: *euRouting, Author: "a", Reason: "c", BaseVersion: 1}); err != nil {
		t.Fatal(err)
	}
	if rv, _ := h.svc.RoutingPolicy(ctx); rv.Version != 2 {
		t.Errorf("routing version: got %d", rv.Version)
	}
	if r, err := h.svc.Failover(ctx, "pg000"); err != nil || r.NewStandby != "pg000-r1" {
		t.Fatalf("failover: %+v, %v", r, err)
	}
	h.clock.Advance(time.Minute)
	rep, err := NewMonitor(h.svc, MonitorOptions{}).SweepOnce(ctx)
	if err != nil || len(rep.Transitions) == 0 {
		t.Fatalf("sweep: %+v, %v", rep, err)
	}
	cr, err := h.svc.CostReport(ctx, CostQuery{})
	if err != nil || cr.RunRateMonthlyUSD <= 0 || len(cr.Retired) != 1 {
		t.Fatalf("cost: %+v, %v", cr, err)
	}
	if scores, err := h.svc.ProviderScores(ctx); err != nil || len(scores) != 2 {
		t.Errorf("scores: %+v, %v", scores, err)
	}
}
