// Package cluster elects one leader among the gateway replicas that share a database.
//
// Several gateways may run against one PostgreSQL database for availability. Most of
// what a gateway does is safe on every replica (serving the API from the database,
// verifying audit), but some loops must run exactly once per fleet: the health monitor,
// the provisioning queue, the rolling-push worker, approval expiry, audit checkpoints,
// chat pollers and schedules. Those run on the replica holding the leader lease.
//
// The lease is one row in the shared database. Its expiry is computed from the
// database's own clock, so replicas' clocks never have to agree; the holder renews it
// well before it runs out, and steps down by its own monotonic clock if it cannot renew
// in time, so it stops leading before anyone else can start. Every change of holder
// increments the lease's epoch, a fencing number a leader's work can carry. SQLite works
// too (one replica on one host: it acquires at once).
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Lease is the row a leader holds: who holds it, where that replica serves, the
// fencing epoch, and when it runs out by the database's clock (ms since 1970).
type Lease struct {
	Name       string `gorm:"primaryKey;size:64"`
	Holder     string `gorm:"size:200"`
	Addr       string `gorm:"size:500"`
	Epoch      int64
	Nonce      string `gorm:"size:32"` // the holding process: differs between two processes of one replica ID
	ExpiresMs  int64
	AcquiredMs int64
}

// TableName is cluster_leases.
func (Lease) TableName() string { return "cluster_leases" }

// Migrate creates or updates the cluster's tables.
func Migrate(db *gorm.DB) error { return db.AutoMigrate(&Lease{}, &Identity{}) }

// Defaults of an Elector.
const (
	DefaultTTL = 15 * time.Second
	// MinTTL keeps a lease long enough for one slow database round trip to renew it.
	MinTTL = 2 * time.Second
)

// Options configure an Elector.
type Options struct {
	// Name is the lease; "leader" when empty.
	Name string
	// ID names this replica; it must differ between replicas and should stay the same
	// across restarts of one replica (so a restarted leader takes its lease back at once).
	ID string
	// Addr is the base URL other replicas forward requests to while this one leads.
	Addr string
	// TTL is how long a lease lasts without renewal (default 15s): the longest a fleet
	// goes without a leader after its leader dies without releasing.
	TTL time.Duration
	// Logger receives transitions; nil discards.
	Logger *slog.Logger
}

// Status is what a replica knows of the lease.
type Status struct {
	Replica string `json:"replica"`
	Leader  bool   `json:"leader"`
	// Holder and Addr are the leader's ID and URL as last read ("" when none is known).
	Holder string `json:"holder,omitempty"`
	Addr   string `json:"addr,omitempty"`
	Epoch  int64  `json:"epoch"`
	// Duplicate is set when another process holding this replica's ID took the lease.
	Duplicate bool `json:"duplicate,omitempty"`
}

// Elector campaigns for one lease on behalf of this replica.
type Elector struct {
	db    *gorm.DB
	opts  Options
	log   *slog.Logger
	nowMs string // SQL expression: the database's clock in ms since 1970
	nonce string // this process

	mu     sync.Mutex
	status Status

	ready     chan struct{} // closed after the first round of the campaign
	readyOnce sync.Once
}

// New returns an Elector for opts over db, whose lease table must be migrated.
func New(db *gorm.DB, opts Options) (*Elector, error) {
	if db == nil {
		return nil, errors.New("cluster: database is nil")
	}
	if opts.Name == "" {
		opts.Name = "leader"
	}
	if opts.ID == "" || len(opts.ID) > 200 {
		return nil, fmt.Errorf("cluster: replica id %.40q: want 1-200 characters", opts.ID)
	}
	if len(opts.Addr) > 500 {
		return nil, errors.New("cluster: replica address longer than 500 characters")
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TTL < MinTTL {
		return nil, fmt.Errorf("cluster: lease ttl %s is shorter than %s", opts.TTL, MinTTL)
	}
	var n [8]byte
	if _, err := rand.Read(n[:]); err != nil {
		return nil, fmt.Errorf("cluster: nonce: %w", err)
	}
	e := &Elector{db: db, opts: opts, log: opts.Logger,
		status: Status{Replica: opts.ID}, nonce: hex.EncodeToString(n[:]), ready: make(chan struct{})}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if e.nowMs, err = nowMsExpr(db); err != nil {
		return nil, err
	}
	return e, nil
}

// nowMsExpr is the SQL expression of the database's clock in ms since 1970.
func nowMsExpr(db *gorm.DB) (string, error) {
	switch db.Dialector.Name() {
	case "postgres":
		return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)", nil
	case "sqlite":
		return "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)", nil
	}
	return "", fmt.Errorf("cluster: database %q is not supported (postgres or sqlite)", db.Dialector.Name())
}

// Read returns the lease called name as the database has it, and how long it remains
// valid by the database's clock (zero or less: free or expired). It writes nothing.
func Read(ctx context.Context, db *gorm.DB, name string) (Lease, time.Duration, error) {
	if name == "" {
		name = "leader"
	}
	nowMs, err := nowMsExpr(db)
	if err != nil {
		return Lease{}, 0, err
	}
	var row struct {
		Lease
		NowMs int64
	}
	err = db.WithContext(ctx).Raw("SELECT *, "+nowMs+" AS now_ms FROM cluster_leases WHERE name = ?", name).Scan(&row).Error
	if err != nil {
		return Lease{}, 0, fmt.Errorf("read lease: %w", err)
	}
	if row.Holder == "" {
		return row.Lease, 0, nil
	}
	return row.Lease, time.Duration(row.ExpiresMs-row.NowMs) * time.Millisecond, nil
}

// Status returns what this replica knows of the lease now.
func (e *Elector) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status
}

// Ready returns a channel closed once Run has finished its first attempt to take the
// lease, won or not: from then on Status says who leads, as far as the database told.
func (e *Elector) Ready() <-chan struct{} { return e.ready }

func (e *Elector) setStatus(s Status) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s.Replica = e.opts.ID
	e.status = s
}

// renewEvery is how often a leader renews; a follower polls at the same pace.
func (e *Elector) renewEvery() time.Duration { return e.opts.TTL / 3 }

// validFor is how long after sending a successful renewal this replica still counts
// itself leader: the TTL less a margin for the clocks' rates and the scheduler.
func (e *Elector) validFor() time.Duration { return e.opts.TTL - e.opts.TTL/5 }

// Run campaigns until ctx ends. While this replica holds the lease, lead runs with a
// context that ends when the lease is lost; if lead returns while the lease is still
// held, the lease is released and the campaign starts over. When ctx ends the lease is
// released, so a successor takes over without waiting for it to expire. Run returns nil
// when ctx ends.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context) error) error {
	if err := e.ensureRow(ctx); err != nil && ctx.Err() == nil {
		e.log.Warn("lease row", "err", err)
	}
	for {
		won, until := e.tryAcquire(ctx, time.Time{}, false)
		e.readyOnce.Do(func() { close(e.ready) })
		if ctx.Err() != nil {
			return nil
		}
		if won {
			dup := e.leadUntilLost(ctx, until, lead)
			if ctx.Err() != nil {
				e.release()
				return nil
			}
			if dup {
				return fmt.Errorf("%w: %s", ErrDuplicateReplica, e.opts.ID)
			}
		}
		t := time.NewTimer(e.renewEvery())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (e *Elector) ensureRow(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, e.renewEvery())
	defer cancel()
	return e.db.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&Lease{Name: e.opts.Name}).Error
}

// tryAcquire takes or renews the lease in one statement, giving up at deadline (when
// not zero) or after one renewal period. It returns whether this replica holds the
// lease and, if so, until when by the monotonic clock.
//
// Taking the lease succeeds when it is free, expired, or held under this replica's ID:
// a restarted replica takes its own lease back at once. Renewing succeeds only while
// this very process holds it (its nonce), so a second process started under the same
// ID by mistake takes the lease from the first, whose renewal then fails and which
// steps down at once, saying why.
func (e *Elector) tryAcquire(ctx context.Context, deadline time.Time, renewing bool) (bool, time.Time) {
	sent := time.Now()
	if deadline.IsZero() || deadline.After(sent.Add(e.renewEvery())) {
		deadline = sent.Add(e.renewEvery())
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	ttl := e.opts.TTL.Milliseconds()
	where, args := "(holder = ? OR holder = '' OR expires_ms < "+e.nowMs+")", []any{e.opts.ID}
	if renewing {
		where, args = "holder = ? AND nonce = ?", []any{e.opts.ID, e.nonce}
	}
	res := e.db.WithContext(ctx).Exec(
		"UPDATE cluster_leases SET holder = ?, addr = ?, nonce = ?, "+
			"epoch = CASE WHEN holder = ? THEN epoch ELSE epoch + 1 END, "+
			"acquired_ms = CASE WHEN holder = ? THEN acquired_ms ELSE "+e.nowMs+" END, "+
			"expires_ms = "+e.nowMs+" + ? "+
			"WHERE name = ? AND "+where,
		append([]any{e.opts.ID, e.opts.Addr, e.nonce, e.opts.ID, e.opts.ID, ttl, e.opts.Name}, args...)...)
	if res.Error != nil {
		e.log.Warn("lease: database did not answer", "err", res.Error)
		return false, time.Time{}
	}
	var l Lease
	rerr := e.db.WithContext(ctx).Where("name = ?", e.opts.Name).Take(&l).Error
	if res.RowsAffected == 1 {
		st := Status{Leader: true, Holder: e.opts.ID, Addr: e.opts.Addr, Epoch: l.Epoch}
		if rerr != nil {
			st.Epoch = e.Status().Epoch
		}
		e.setStatus(st)
		return true, sent.Add(e.validFor())
	}
	switch {
	case rerr == nil && renewing && l.Holder == e.opts.ID && l.Nonce != e.nonce:
		e.log.Error("another process runs under this replica's ID and took the lease: give each replica its own cluster.replica_id",
			"replica", e.opts.ID)
		e.setStatus(Status{Holder: l.Holder, Addr: l.Addr, Epoch: l.Epoch, Duplicate: true})
	case rerr == nil:
		st := Status{Holder: l.Holder, Addr: l.Addr, Epoch: l.Epoch}
		if l.Holder == "" {
			st.Addr = ""
		}
		e.setStatus(st)
	case errors.Is(rerr, gorm.ErrRecordNotFound):
		// A database migrated after Run started: create the row for the next round.
		if err := e.ensureRow(ctx); err != nil {
			e.log.Warn("lease row", "err", err)
		}
	}
	return false, time.Time{}
}

// ErrDuplicateReplica is what Run returns when another process runs under this
// replica's ID: campaigning on would have the two take the lease from each other.
var ErrDuplicateReplica = errors.New("cluster: another process runs under this replica ID")

// leadUntilLost runs lead while renewing the lease; it returns when the lease is lost,
// lead returns, or ctx ends, with lead's context ended and lead returned. It reports
// whether the lease was lost to another process under this replica's ID.
func (e *Elector) leadUntilLost(ctx context.Context, until time.Time, lead func(ctx context.Context) error) bool {
	st := e.Status()
	e.log.Info("became leader", "replica", e.opts.ID, "epoch", st.Epoch)
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- lead(lctx) }()
	stop := func(why string) {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			e.log.Error("leader work ended", "err", err)
		}
		e.setStatus(Status{Epoch: st.Epoch})
		e.log.Warn("stopped leading", "replica", e.opts.ID, "epoch", st.Epoch, "why", why)
	}
	t := time.NewTicker(e.renewEvery())
	defer t.Stop()
	// The deadline fires on its own, not only at a tick: a leader that cannot renew stops
	// before the lease can have run out by the database's clock.
	deadline := time.NewTimer(time.Until(until))
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			stop("shutting down")
			return false
		case err := <-done:
			done <- err // stop reads it again
			stop(fmt.Sprintf("leader work returned: %v", err))
			e.release()
			return false
		case <-deadline.C:
			stop("lease not renewed in time")
			return false
		case <-t.C:
			won, next := e.tryAcquire(ctx, until, true)
			switch {
			case ctx.Err() != nil:
				stop("shutting down")
				return false
			case won:
				until = next
				deadline.Reset(time.Until(until))
			case e.Status().Duplicate:
				stop("another process with this replica ID holds the lease")
				return true
			case e.Status().Holder != "" && e.Status().Holder != e.opts.ID:
				stop("another replica holds the lease")
				return false
			}
		}
	}
}

// release gives the lease up if this replica still holds it.
func (e *Elector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), e.renewEvery())
	defer cancel()
	res := e.db.WithContext(ctx).Model(&Lease{}).Where("name = ? AND holder = ?", e.opts.Name, e.opts.ID).
		Where("nonce = ?", e.nonce).Updates(map[string]any{"holder": "", "addr": "", "nonce": "", "expires_ms": 0})
	if res.Error != nil {
		e.log.Warn("lease not released; it expires on its own", "err", res.Error)
		return
	}
	if res.RowsAffected == 1 {
		e.log.Info("lease released", "replica", e.opts.ID)
	}
	st := e.Status()
	e.setStatus(Status{Epoch: st.Epoch})
}
