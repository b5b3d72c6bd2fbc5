package cluster

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops/internal/pgtest"
	"github.com/gatewayforge/clawops/store"
)

// replica is one campaigning Elector over its own connection pool, recording when it
// led.
type replica struct {
	id      string
	db      *gorm.DB
	el      *Elector
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	periods []period
}

type period struct {
	start, end time.Time
	epoch      int64
}

// leading counts the replicas whose lead function is running, across the test.
type leading struct{ now, max atomic.Int32 }

func (l *leading) enter() {
	n := l.now.Add(1)
	for {
		m := l.max.Load()
		if n <= m || l.max.CompareAndSwap(m, n) {
			return
		}
	}
}

func startReplica(t *testing.T, db *gorm.DB, id string, ttl time.Duration, count *leading) *replica {
	t.Helper()
	el, err := New(db, Options{ID: id, Addr: "http://" + id, TTL: ttl,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)).With("replica", id)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{id: id, db: db, el: el, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		el.Run(ctx, func(lctx context.Context) error {
			count.enter()
			p := period{start: time.Now(), epoch: el.Status().Epoch}
			<-lctx.Done()
			p.end = time.Now()
			count.now.Add(-1)
			r.mu.Lock()
			r.periods = append(r.periods, p)
			r.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *replica) stop() {
	r.cancel()
	<-r.done
}

func (r *replica) led() []period {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]period(nil), r.periods...)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// waitFor polls cond for up to a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leaderOf(rs ...*replica) *replica {
	var found *replica
	for _, r := range rs {
		if r.el.Status().Leader {
			if found != nil {
				return nil
			}
			found = r
		}
	}
	return found
}

// databases runs f on SQLite (two pools over one file) and, when it answers, on the
// PostgreSQL server at 127.0.0.1:5432 (two pools over one schema).
func databases(t *testing.T, f func(t *testing.T, open func() *gorm.DB)) {
	t.Run("sqlite", func(t *testing.T) {
		f(t, opener(t, store.Options{DSN: filepath.Join(t.TempDir(), "clawops.db")}))
	})
	t.Run("postgres", func(t *testing.T) {
		f(t, opener(t, store.Options{Driver: "postgres", DSN: pgtest.DSN(t, "cluster_test")}))
	})
}

// opener returns a function that opens a new, migrated pool over the database of opts.
func opener(t *testing.T, opts store.Options) func() *gorm.DB {
	return func() *gorm.DB {
		db, err := store.Open(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close(db) })
		if err := Migrate(db); err != nil {
			t.Fatal(err)
		}
		return db
	}
}

// TestOneLeaderAndHandover runs three replicas: exactly one leads; when it stops, it
// releases the lease and another takes over with a higher epoch, without waiting for
// the lease to expire; a replica restarted under its old ID while leading takes its
// lease back at once.
func TestOneLeaderAndHandover(t *testing.T) {
	databases(t, func(t *testing.T, open func() *gorm.DB) {
		var count leading
		const ttl = 10 * time.Second // long: a handover that waited for expiry would show
		a := startReplica(t, open(), "a", ttl, &count)
		waitFor(t, "a to lead", func() bool { return a.el.Status().Leader })
		b := startReplica(t, open(), "b", ttl, &count)
		c := startReplica(t, open(), "c", ttl, &count)
		waitFor(t, "b and c to see a", func() bool {
			return b.el.Status().Holder == "a" && c.el.Status().Holder == "a" && b.el.Status().Addr == "http://a"
		})
		select {
		case <-c.el.Ready(): // a follower is ready too: it knows who leads
		case <-time.After(30 * time.Second):
			t.Fatal("c never ready")
		}
		if b.el.Status().Leader || c.el.Status().Leader {
			t.Fatalf("b %+v c %+v: want followers", b.el.Status(), c.el.Status())
		}
		first := a.el.Status().Epoch

		stopped := time.Now()
		a.stop()
		if got := a.el.Status(); got.Leader {
			t.Errorf("a after stop: %+v, want not leader", got)
		}
		var next *replica
		waitFor(t, "b or c to lead", func() bool { next = leaderOf(b, c); return next != nil })
		if took := time.Since(stopped); took >= ttl {
			t.Errorf("handover took %s, want well under the ttl %s (the lease was released)", took, ttl)
		}
		if e := next.el.Status().Epoch; e <= first {
			t.Errorf("epoch after handover %d, want > %d", e, first)
		}
		// The leader crashes (its lease stays held) and restarts under its ID: it takes
		// its own lease back at once, same epoch, while the others would wait for expiry.
		epoch := next.el.Status().Epoch
		sqlDB, err := next.db.DB()
		if err != nil {
			t.Fatal(err)
		}
		sqlDB.Close() // the release at stop cannot reach the database
		next.stop()
		restarted := time.Now()
		again := startReplica(t, open(), next.id, ttl, &count)
		waitFor(t, "the restarted replica to lead", func() bool { return again.el.Status().Leader })
		if took := time.Since(restarted); took >= ttl {
			t.Errorf("restarted leader took %s to lead, want well under the ttl", took)
		}
		if e := again.el.Status().Epoch; e != epoch {
			t.Errorf("epoch after restart %d, want %d (same holder)", e, epoch)
		}
		if max := count.max.Load(); max != 1 {
			t.Errorf("at most %d replicas led at once, want 1", max)
		}
	})
}

// TestLeaderThatCannotRenewStepsDown cuts the leader off from the database: it must stop
// leading by its own clock before the lease runs out, and a follower takes over only
// after that, so no two replicas ever lead at once.
func TestLeaderThatCannotRenewStepsDown(t *testing.T) {
	databases(t, func(t *testing.T, open func() *gorm.DB) {
		var count leading
		const ttl = 2 * time.Second
		a := startReplica(t, open(), "a", ttl, &count)
		waitFor(t, "a to lead", func() bool { return a.el.Status().Leader })
		b := startReplica(t, open(), "b", ttl, &count)
		waitFor(t, "b to see a", func() bool { return b.el.Status().Holder == "a" })

		sqlDB, err := a.db.DB()
		if err != nil {
			t.Fatal(err)
		}
		sqlDB.Close() // a's renewals now fail
		waitFor(t, "b to lead", func() bool { return b.el.Status().Leader })
		waitFor(t, "a to step down", func() bool { return len(a.led()) == 1 })
		aEnd := a.led()[0].end
		waitFor(t, "b's lead to start", func() bool { return b.el.Status().Epoch > 0 })
		// b's lead function starts right after b wins; its period is recorded at its end.
		b.stop()
		bp := b.led()
		if len(bp) != 1 {
			t.Fatalf("b led %d times, want 1", len(bp))
		}
		if !aEnd.Before(bp[0].start) {
			t.Errorf("a led until %s, b from %s: want a to stop before b starts", aEnd.Format(time.StampMilli), bp[0].start.Format(time.StampMilli))
		}
		if bp[0].epoch != a.led()[0].epoch+1 {
			t.Errorf("epochs: a %d, b %d, want b = a+1", a.led()[0].epoch, bp[0].epoch)
		}
		if max := count.max.Load(); max != 1 {
			t.Errorf("at most %d replicas led at once, want 1", max)
		}
	})
}

// TestLeaderWorkEnding releases the lease when the leader's work returns, so the next
// replica takes over.
func TestLeaderWorkEnding(t *testing.T) {
	databases(t, func(t *testing.T, open func() *gorm.DB) {
		db := open()
		el, err := New(db, Options{ID: "x", TTL: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		runs := make(chan int, 10)
		var n atomic.Int32
		go el.Run(ctx, func(lctx context.Context) error {
			runs <- int(n.Add(1))
			if n.Load() == 1 {
				return fmt.Errorf("chat poller failed")
			}
			<-lctx.Done()
			return nil
		})
		for want := 1; want <= 2; want++ {
			select {
			case got := <-runs:
				if got != want {
					t.Fatalf("run %d, want %d", got, want)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("lead run %d never started", want)
			}
		}
	})
}

func TestNewRefusesBadOptions(t *testing.T) {
	db, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(db)
	for _, o := range []Options{
		{},
		{ID: string(make([]byte, 201))},
		{ID: "a", TTL: time.Second},
	} {
		if _, err := New(db, o); err == nil {
			t.Errorf("New(%+v): got no error", o)
		}
	}
	if _, err := New(nil, Options{ID: "a"}); err == nil {
		t.Error("New(nil db): got no error")
	}
}

// TestDuplicateReplicaID starts a second process under the leader's replica ID: it takes
// the lease (it cannot tell a duplicate from a restart), the first process's renewal
// fails on its nonce, and the first stops leading and stops campaigning with
// ErrDuplicateReplica instead of taking the lease back.
func TestDuplicateReplicaID(t *testing.T) {
	databases(t, func(t *testing.T, open func() *gorm.DB) {
		const ttl = 3 * time.Second
		first, err := New(open(), Options{ID: "same", TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ended := make(chan error, 1)
		stopped := make(chan struct{})
		go func() {
			ended <- first.Run(ctx, func(lctx context.Context) error { <-lctx.Done(); close(stopped); return nil })
		}()
		waitFor(t, "the first process to lead", func() bool { return first.Status().Leader })

		var count leading
		second := startReplica(t, open(), "same", ttl, &count)
		waitFor(t, "the second process to lead", func() bool { return second.el.Status().Leader })
		select {
		case <-stopped:
		case <-time.After(30 * time.Second):
			t.Fatal("the first process never stopped leading")
		}
		select {
		case err := <-ended:
			if !errors.Is(err, ErrDuplicateReplica) {
				t.Fatalf("first Run: got %v, want ErrDuplicateReplica", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the first process kept campaigning")
		}
		if !second.el.Status().Leader {
			t.Errorf("second after the first gave up: %+v, want leader", second.el.Status())
		}
	})
}

// TestReadAndVerifyKey reads the lease without writing, and compares gateway keys without
// recording one.
func TestReadAndVerifyKey(t *testing.T) {
	databases(t, func(t *testing.T, open func() *gorm.DB) {
		db := open()
		ctx := context.Background()
		if l, left, err := Read(ctx, db, ""); err != nil || l.Holder != "" || left != 0 {
			t.Fatalf("empty table: got %+v, %s, %v", l, left, err)
		}
		var count leading
		a := startReplica(t, db, "a", 10*time.Second, &count)
		waitFor(t, "a to lead", func() bool { return a.el.Status().Leader })
		l, left, err := Read(ctx, db, "")
		if err != nil || l.Holder != "a" || l.Addr != "http://a" || left <= 0 || left > 10*time.Second {
			t.Fatalf("held lease: got %+v, %s, %v", l, left, err)
		}

		pub1, _, _ := ed25519.GenerateKey(nil)
		pub2, _, _ := ed25519.GenerateKey(nil)
		if recorded, err := VerifyGatewayKey(ctx, db, pub1); recorded || err != nil {
			t.Fatalf("verify before any key: %v, %v; want not recorded", recorded, err)
		}
		if err := CheckGatewayKey(ctx, db, pub1); err != nil {
			t.Fatal(err)
		}
		if recorded, err := VerifyGatewayKey(ctx, db, pub1); !recorded || err != nil {
			t.Errorf("verify the recorded key: %v, %v", recorded, err)
		}
		if _, err := VerifyGatewayKey(ctx, db, pub2); !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("verify another key: %v, want ErrKeyMismatch", err)
		}
		if err := CheckGatewayKey(ctx, db, pub2); err == nil || !strings.Contains(err.Error(), "gateway.key") {
			t.Errorf("check another key: %v, want a refusal naming gateway.key", err)
		}
	})
}
