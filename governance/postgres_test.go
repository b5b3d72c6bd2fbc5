package governance

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/internal/pgtest"
	"github.com/gatewayforge/clawops/store"
)

// openPostgres returns a function opening connection pools onto a fresh schema of the local
// PostgreSQL test database (dropped at cleanup), or skips when no server answers.
func openPostgres(t *testing.T) func() *gorm.DB {
	t.Helper()
	dsn := pgtest.DSN(t, "gov_test")
	ctx := context.Background()
	open := func() *gorm.DB {
		db, err := store.Open(ctx, store.Options{Driver: "postgres", DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close(db) }) // runs before the schema is dropped
		return db
	}
	if err := Migrate(open()); err != nil {
		t.Fatal(err)
	}
	return open
}

func TestPostgresAuditRoundTrip(t *testing.T) {
	open := openPostgres(t)
	db := open()
	zone := time.FixedZone("UTC-3", -3*3600)
	clock := &fakeClock{now: time.Date(2026, 11, 3, 9, 30, 0, 987654321, zone)}
	l := NewAuditLog(db, clock)
	es := appendN(t, l, 5)
	got, err := l.List(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i := range es {
		if got[i] != es[i] {
			t.Errorf("entry %d round trip: got %+v, want %+v", i, got[i], es[i])
		}
	}
	rep, err := l.Verify(context.Background())
	if err != nil || !rep.OK || rep.Entries != 5 {
		t.Errorf("verify: got %+v, %v; want OK with 5", rep, err)
	}
}

func TestPostgresAuditTamper(t *testing.T) {
	open := openPostgres(t)
	for i, tc := range tamperCases() {
		t.Run(tc.name, func(t *testing.T) {
			db := open()
			if i > 0 {
				if err := db.Exec("DELETE FROM governance_audit").Error; err != nil {
					t.Fatal(err)
				}
			}
			l := NewAuditLog(db, newFakeClock())
			l.batch = 2
			runTamper(t, db, l, tc)
		})
	}
}

// Two gateway replicas append to one PostgreSQL: the advisory lock keeps one chain.
func TestPostgresAuditConcurrentReplicas(t *testing.T) {
	open := openPostgres(t)
	logs := []*AuditLog{NewAuditLog(open(), nil), NewAuditLog(open(), nil)}
	const workers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(l *AuditLog, w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := l.Append(context.Background(), AuditEntry{Actor: fmt.Sprintf("w%d", w), Event: EventRequested}); err != nil {
					errs <- err
				}
			}
		}(logs[w%2], w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rep, err := logs[0].Verify(context.Background())
	if err != nil || !rep.OK || rep.Entries != workers*each {
		t.Errorf("verify: got %+v, %v; want OK with %d", rep, err, workers*each)
	}
}

func TestPostgresApprovalFlow(t *testing.T) {
	open := openPostgres(t)
	db := open()
	clock := newFakeClock()
	tool := newTestTool("fleet.teardown", ActionTeardown, clawops.RiskHigh, 2)
	g, err := NewGate(GateOptions{DB: db, Clock: clock, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	g.Register(tool)
	ctx := context.Background()
	req, err := g.Invoke(ctx, alice, "fleet.teardown", instancesArgs(1))
	if err != nil || req.Decision != clawops.NeedsApproval {
		t.Fatalf("invoke: got %s, %v", req.Decision, err)
	}
	late, err := g.Invoke(ctx, alice, "fleet.teardown", instancesArgs(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Decide(ctx, bob, req.ApprovalID, true, ""); err != nil {
		t.Fatal(err)
	}
	clock.Advance(DefaultApprovalTTL + time.Second)
	if n, err := g.ExpireDue(ctx); err != nil || n != 1 {
		t.Errorf("ExpireDue: got %d, %v; want 1", n, err)
	}
	a, err := g.Approval(ctx, late.ApprovalID)
	if err != nil || a.State != ApprovalExpired {
		t.Errorf("late approval: got %s, %v; want expired", a.State, err)
	}
	if n := tool.applies(); n != 1 {
		t.Errorf("applies: got %d, want 1", n)
	}
	rep, err := g.Audit().Verify(ctx)
	if err != nil || !rep.OK {
		t.Errorf("verify: got %+v, %v", rep, err)
	}
}
