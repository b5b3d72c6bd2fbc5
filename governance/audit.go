package governance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

// GenesisHash is the PrevHash of the first audit entry.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// auditTimeLayout is how audit times are stored and hashed: UTC, microseconds, fixed width,
// so the text survives SQLite and PostgreSQL unchanged and sorts like the time it names.
const auditTimeLayout = "2006-01-02T15:04:05.000000Z"

// Field size limits of an audit row. Longer values are cut (on a rune boundary) before
// hashing, so what is stored is exactly what is hashed.
const (
	maxAuditShort  = 256
	maxAuditLong   = 8192
	verifyBatch    = 500
	appendAttempts = 3
	// auditLockKey is the PostgreSQL advisory lock that serialises appends across gateway
	// replicas ("clawaudt" in ASCII).
	auditLockKey int64 = 0x636c617761756474
)

// AuditLog is the append-only, hash-chained audit log. Each entry carries the hash of the
// one before it, so changing, removing or inserting a row breaks the chain at that row and
// Verify finds it. It has no update or delete API.
type AuditLog struct {
	db    *gorm.DB
	clock clawops.Clock
	batch int        // rows per Verify read
	mu    sync.Mutex // serialises appends in this process; the DB transaction does it across processes
}

// NewAuditLog returns the audit log kept in db (see Migrate). A nil clock is the system clock.
func NewAuditLog(db *gorm.DB, clock clawops.Clock) *AuditLog {
	return &AuditLog{db: db, clock: clawops.ClockOrSystem(clock), batch: verifyBatch}
}

// auditRow is the stored form of an AuditEntry.
type auditRow struct {
	Seq      int64  `gorm:"column:seq;primaryKey;autoIncrement:false"`
	Time     string `gorm:"column:time;size:32;not null"`
	Actor    string `gorm:"column:actor;type:text;not null"`
	Tool     string `gorm:"column:tool;type:text;not null"`
	Target   string `gorm:"column:target;type:text;not null"`
	Event    string `gorm:"column:event;size:32;not null;index"`
	Decision string `gorm:"column:decision;size:32;not null"`
	Reason   string `gorm:"column:reason;size:64;not null"`
	PlanHash string `gorm:"column:plan_hash;size:64;not null;index"`
	Detail   string `gorm:"column:detail;type:text;not null"`
	PrevHash string `gorm:"column:prev_hash;size:64;not null"`
	Hash     string `gorm:"column:hash;size:64;not null"`
}

// TableName names the audit table.
func (auditRow) TableName() string { return "governance_audit" }

// hashInput is the canonical encoding that an entry's hash covers: every field but Hash,
// with the time as stored. V versions the encoding.
type hashInput struct {
	V        int    `json:"v"`
	Seq      int64  `json:"seq"`
	Time     string `json:"time"`
	Actor    string `json:"actor"`
	Tool     string `json:"tool"`
	Target   string `json:"target"`
	Event    string `json:"event"`
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
	PlanHash string `json:"plan_hash"`
	Detail   string `json:"detail"`
	PrevHash string `json:"prev_hash"`
}

func (r auditRow) computeHash() string {
	b, err := json.Marshal(hashInput{
		V: 1, Seq: r.Seq, Time: r.Time, Actor: r.Actor, Tool: r.Tool, Target: r.Target,
		Event: r.Event, Decision: r.Decision, Reason: r.Reason, PlanHash: r.PlanHash,
		Detail: r.Detail, PrevHash: r.PrevHash,
	})
	if err != nil {
		// Marshalling a struct of strings and ints cannot fail.
		panic(fmt.Sprintf("governance: encode audit hash input: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (r auditRow) entry() AuditEntry {
	t, _ := time.Parse(auditTimeLayout, r.Time) // rows written by Append always parse
	return AuditEntry{
		Seq: r.Seq, Time: t, Actor: r.Actor, Tool: r.Tool, Target: r.Target, Event: r.Event,
		Decision: clawops.Decision(r.Decision), Reason: clawops.ReasonCode(r.Reason),
		PlanHash: r.PlanHash, Detail: r.Detail, PrevHash: r.PrevHash, Hash: r.Hash,
	}
}

// cleanText makes s storable in both databases (valid UTF-8, no NUL) and at most max bytes.
func cleanText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Append adds e to the end of the log and returns it as stored, with Seq, Time, PrevHash
// and Hash assigned (values in e for those fields are ignored). Appends are serialised by a
// database transaction that reads the tail, so several AuditLogs (or gateway replicas) may
// share one database.
func (l *AuditLog) Append(ctx context.Context, e AuditEntry) (AuditEntry, error) {
	row := auditRow{
		Actor:    cleanText(e.Actor, maxAuditShort),
		Tool:     cleanText(e.Tool, maxAuditShort),
		Target:   cleanText(e.Target, maxAuditLong),
		Event:    cleanText(e.Event, 32),
		Decision: cleanText(string(e.Decision), 32),
		Reason:   cleanText(string(e.Reason), 64),
		PlanHash: cleanText(e.PlanHash, 64),
		Detail:   cleanText(e.Detail, maxAuditLong),
	}
	if row.Event == "" {
		return AuditEntry{}, clawops.E("audit append", clawops.KindInvalid, clawops.ReasonBadArguments, "entry has no event")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	for attempt := 0; attempt < appendAttempts; attempt++ {
		var stored auditRow
		stored, err = l.appendOnce(ctx, row)
		if err == nil {
			return stored.entry(), nil
		}
		if ctx.Err() != nil {
			break
		}
		// Another writer may have taken the same seq (a unique-key conflict); read the tail again.
	}
	return AuditEntry{}, fmt.Errorf("audit append: %w", err)
}

func (l *AuditLog) appendOnce(ctx context.Context, row auditRow) (auditRow, error) {
	err := l.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if tx.Dialector.Name() == "postgres" {
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", auditLockKey).Error; err != nil {
				return fmt.Errorf("lock: %w", err)
			}
		}
		var tail []auditRow
		if err := tx.Order("seq DESC").Limit(1).Find(&tail).Error; err != nil {
			return fmt.Errorf("read tail: %w", err)
		}
		row.Seq, row.PrevHash = 1, GenesisHash
		if len(tail) == 1 {
			row.Seq, row.PrevHash = tail[0].Seq+1, tail[0].Hash
		}
		row.Time = l.clock.Now().UTC().Format(auditTimeLayout)
		row.Hash = row.computeHash()
		if err := tx.Create(&row).Error; err != nil {
			return fmt.Errorf("insert seq %d: %w", row.Seq, err)
		}
		return nil
	})
	return row, err
}

// List returns up to limit entries with Seq greater than afterSeq, in seq order. A limit of
// 0 means 100; the most is 1000.
func (l *AuditLog) List(ctx context.Context, afterSeq int64, limit int) ([]AuditEntry, error) {
	if limit == 0 {
		limit = 100
	}
	if limit < 1 || limit > 1000 {
		return nil, clawops.E("audit list", clawops.KindInvalid, clawops.ReasonBadArguments,
			fmt.Sprintf("limit %d is outside 1..1000", limit))
	}
	var rows []auditRow
	if err := l.db.WithContext(ctx).Where("seq > ?", afterSeq).Order("seq ASC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("audit list: %w", err)
	}
	out := make([]AuditEntry, len(rows))
	for i, r := range rows {
		out[i] = r.entry()
	}
	return out, nil
}

// Verify walks the whole log in seq order, a batch at a time, recomputing every hash and
// checking every link. It reports the first bad seq and what is wrong with it: a changed row
// (its hash no longer matches its content), a removed row (a gap in the seqs), or an inserted
// or re-linked row (its PrevHash is not the previous row's hash, or its seq is out of place).
// The report's HeadHash names the last entry; recording it elsewhere lets a later Verify
// detect removal of entries from the end, which no chain can show on its own.
func (l *AuditLog) Verify(ctx context.Context) (VerifyReport, error) {
	rep := VerifyReport{OK: true}
	expected, prev := int64(1), GenesisHash
	var after int64
	first := true
	for {
		q := l.db.WithContext(ctx).Order("seq ASC").Limit(l.batch)
		if !first {
			q = q.Where("seq > ?", after)
		}
		first = false
		var rows []auditRow
		if err := q.Find(&rows).Error; err != nil {
			return VerifyReport{}, fmt.Errorf("audit verify: read after seq %d: %w", after, err)
		}
		for _, r := range rows {
			rep.Entries++
			if problem, bad := checkRow(r, expected, prev); problem != "" {
				rep.OK, rep.FirstBadSeq, rep.Problem = false, bad, problem
				return rep, nil
			}
			prev, expected, after = r.Hash, expected+1, r.Seq
			rep.HeadHash = r.Hash
		}
		if len(rows) < l.batch {
			return rep, nil
		}
	}
}

// checkRow returns what is wrong with r given the seq and previous hash the chain expects,
// and the seq to report; "" when r is sound.
func checkRow(r auditRow, expected int64, prev string) (string, int64) {
	switch {
	case r.Seq < expected:
		return fmt.Sprintf("row inserted: unexpected seq %d before seq %d", r.Seq, expected), r.Seq
	case r.Seq > expected:
		return fmt.Sprintf("row removed: seq %d is missing (next present is %d)", expected, r.Seq), expected
	case r.computeHash() != r.Hash:
		return fmt.Sprintf("row changed: content of seq %d does not match its hash", r.Seq), r.Seq
	case r.PrevHash != prev:
		return fmt.Sprintf("row inserted or re-linked: prev_hash of seq %d is not the hash of seq %d", r.Seq, r.Seq-1), r.Seq
	}
	if _, err := time.Parse(auditTimeLayout, r.Time); err != nil {
		return fmt.Sprintf("row changed: time %q of seq %d is malformed", r.Time, r.Seq), r.Seq
	}
	return "", 0
}

// errAuditUnavailable marks an audit failure that stopped a tool call before any side effect.
var errAuditUnavailable = errors.New("audit log unavailable: refusing to act unaudited")
