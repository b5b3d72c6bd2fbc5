package governance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
)

// Group commit. Every append must be durable before Append returns, and the chain must be
// read and extended inside one write transaction so that other writers (a second gateway
// process on the same SQLite file, replicas on PostgreSQL) never fork it. A transaction per
// entry spends most of its time in BEGIN/COMMIT and statement preparation, so appends are
// queued and a single writer goroutine commits whatever is queued in one transaction: the
// tail is read once (a primary-key lookup, cheap enough to do every time, which is what
// keeps several writers honest), every queued row is inserted with a prepared statement,
// and each caller is woken once its batch has committed. The writer goroutine lives only
// while there is work, so an idle AuditLog holds no goroutine and needs no Close.
const (
	// maxGroupRows bounds one group-commit transaction.
	maxGroupRows = 512
	// groupCommitTimeout bounds one group transaction. Callers' contexts do not cancel a
	// batch that other callers share; they are checked before queueing.
	groupCommitTimeout = 30 * time.Second
)

// appendReq is one caller's rows waiting for a group commit.
type appendReq struct {
	rows []auditRow
	err  error
	done chan struct{}
}

// Append adds e to the end of the log and returns it as stored, with Seq, Time, PrevHash
// and Hash assigned (values in e for those fields are ignored). Detail passes the log's
// redactor before it is hashed. Append returns once the entry is committed. Several
// AuditLogs (or gateway replicas) may share one database.
func (l *AuditLog) Append(ctx context.Context, e AuditEntry) (AuditEntry, error) {
	out, err := l.AppendBatch(ctx, e)
	if err != nil {
		return AuditEntry{}, err
	}
	return out[0], nil
}

// AppendBatch appends the entries consecutively (no other entry comes between them) in one
// transaction, and returns them as stored.
func (l *AuditLog) AppendBatch(ctx context.Context, es ...AuditEntry) ([]AuditEntry, error) {
	if len(es) == 0 {
		return nil, nil
	}
	if len(es) > maxGroupRows {
		return nil, clawops.E("audit append", clawops.KindInvalid, clawops.ReasonBadArguments,
			fmt.Sprintf("%d entries in one batch; the most is %d", len(es), maxGroupRows))
	}
	req := &appendReq{rows: make([]auditRow, len(es)), done: make(chan struct{})}
	for i, e := range es {
		row, err := l.row(e)
		if err != nil {
			return nil, err
		}
		req.rows[i] = row
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("audit append: %w", err)
	}
	l.qmu.Lock()
	l.queue = append(l.queue, req)
	if !l.writing {
		l.writing = true
		go l.writeLoop()
	}
	l.qmu.Unlock()
	<-req.done
	if req.err != nil {
		return nil, fmt.Errorf("audit append: %w", req.err)
	}
	out := make([]AuditEntry, len(req.rows))
	for i, r := range req.rows {
		out[i] = r.entry()
	}
	return out, nil
}

// row validates e and turns it into a row to store (without seq, time and hashes).
func (l *AuditLog) row(e AuditEntry) (auditRow, error) {
	row := auditRow{
		Actor:    cleanText(e.Actor, maxAuditShort),
		Tool:     cleanText(e.Tool, maxAuditShort),
		Target:   cleanText(e.Target, maxAuditLong),
		Event:    cleanText(e.Event, 32),
		Decision: cleanText(string(e.Decision), 32),
		Reason:   cleanText(string(e.Reason), 64),
		PlanHash: cleanText(e.PlanHash, 64),
		Detail:   cleanText(l.redactor.String(e.Detail), maxAuditLong),
	}
	if row.Event == "" {
		return auditRow{}, clawops.E("audit append", clawops.KindInvalid, clawops.ReasonBadArguments, "entry has no event")
	}
	return row, nil
}

// writeLoop commits queued requests, a group at a time, until the queue is empty.
func (l *AuditLog) writeLoop() {
	for {
		l.qmu.Lock()
		var group []*appendReq
		n := 0
		for len(l.queue) > 0 && (n == 0 || n+len(l.queue[0].rows) <= maxGroupRows) {
			n += len(l.queue[0].rows)
			group = append(group, l.queue[0])
			l.queue[0] = nil
			l.queue = l.queue[1:]
		}
		if len(group) == 0 {
			l.writing = false
			l.queue = nil // let the backing array go
			l.qmu.Unlock()
			return
		}
		l.qmu.Unlock()
		l.commitGroup(group)
	}
}

// commitGroup writes a group in one transaction. If that fails and the group holds several
// requests, each is retried alone, so one caller's bad row cannot fail another's.
func (l *AuditLog) commitGroup(group []*appendReq) {
	ctx, cancel := context.WithTimeout(context.Background(), groupCommitTimeout)
	defer cancel()
	var rows []*auditRow
	for _, r := range group {
		for i := range r.rows {
			rows = append(rows, &r.rows[i])
		}
	}
	err := l.writeRows(ctx, rows)
	if err != nil && len(group) > 1 {
		for _, r := range group {
			one := make([]*auditRow, len(r.rows))
			for i := range r.rows {
				one[i] = &r.rows[i]
			}
			r.err = l.writeRows(ctx, one)
			close(r.done)
		}
		return
	}
	for _, r := range group {
		r.err = err
		close(r.done)
	}
}

// writeRows appends rows in one transaction, retrying a few times when another writer got
// in between (a unique-key conflict on seq).
func (l *AuditLog) writeRows(ctx context.Context, rows []*auditRow) error {
	var err error
	for attempt := 0; attempt < appendAttempts; attempt++ {
		if err = l.writeOnce(ctx, rows); err == nil || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (l *AuditLog) writeOnce(ctx context.Context, rows []*auditRow) (err error) {
	st, err := l.statements(ctx)
	if err != nil {
		return err
	}
	tx, err := st.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if st.postgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", auditLockKey); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
	}
	seq, prev := int64(0), GenesisHash
	switch err := tx.StmtContext(ctx, st.tail).QueryRowContext(ctx).Scan(&seq, &prev); {
	case errors.Is(err, sql.ErrNoRows):
		seq, prev = 0, GenesisHash
	case err != nil:
		return fmt.Errorf("read tail: %w", err)
	}
	insert := tx.StmtContext(ctx, st.insert)
	defer insert.Close()
	stored := make([]auditRow, len(rows))
	for i, r := range rows {
		w := *r
		seq++
		w.Seq, w.PrevHash = seq, prev
		w.Time = l.clock.Now().UTC().Format(auditTimeLayout)
		w.Hash = w.computeHash()
		if _, err := insert.ExecContext(ctx, w.Seq, w.Time, w.Actor, w.Tool, w.Target, w.Event, w.Decision,
			w.Reason, w.PlanHash, w.Detail, w.PrevHash, w.Hash); err != nil {
			return fmt.Errorf("insert seq %d: %w", w.Seq, err)
		}
		stored[i], prev = w, w.Hash
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	for i, r := range rows {
		*r = stored[i]
	}
	return nil
}

// auditStatements are the prepared statements of the append path.
type auditStatements struct {
	db       *sql.DB
	postgres bool
	tail     *sql.Stmt
	insert   *sql.Stmt
}

// statements prepares the append statements on first use (and again after a failure).
func (l *AuditLog) statements(ctx context.Context) (*auditStatements, error) {
	l.stmtMu.Lock()
	defer l.stmtMu.Unlock()
	if l.stmts != nil {
		return l.stmts, nil
	}
	db, err := l.db.DB()
	if err != nil {
		return nil, fmt.Errorf("database handle: %w", err)
	}
	st := &auditStatements{db: db, postgres: l.db.Dialector.Name() == "postgres"}
	const cols = "seq, time, actor, tool, target, event, decision, reason, plan_hash, detail, prev_hash, hash"
	ph := strings.TrimSuffix(strings.Repeat("?, ", 12), ", ")
	if st.postgres {
		ph = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12"
	}
	if st.tail, err = db.PrepareContext(ctx, "SELECT seq, hash FROM governance_audit ORDER BY seq DESC LIMIT 1"); err != nil {
		return nil, fmt.Errorf("prepare tail: %w", err)
	}
	if st.insert, err = db.PrepareContext(ctx, "INSERT INTO governance_audit ("+cols+") VALUES ("+ph+")"); err != nil {
		st.tail.Close()
		return nil, fmt.Errorf("prepare insert: %w", err)
	}
	l.stmts = st
	return st, nil
}
