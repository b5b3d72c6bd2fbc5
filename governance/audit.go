package governance

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance/redact"
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
// Verify finds it; signed checkpoints (see Checkpoint) also reveal removal from the end. It
// has no update or delete API.
type AuditLog struct {
	db       *gorm.DB
	clock    clawops.Clock
	redactor *redact.Redactor
	trusted  []ed25519.PublicKey
	batch    int // rows per Verify read

	qmu     sync.Mutex // guards queue and writing (group commit, see audit_writer.go)
	queue   []*appendReq
	writing bool

	stmtMu sync.Mutex
	stmts  *auditStatements
}

// AuditOptions configure an AuditLog.
type AuditOptions struct {
	Clock clawops.Clock // nil: the system clock
	// Redactor cleans Detail before it is hashed and stored; nil: redact.Default(). Pass
	// an empty &redact.Redactor{} to store details as given.
	Redactor *redact.Redactor
	// TrustedKeys are the Ed25519 public keys whose checkpoint signatures Verify accepts.
	// Empty: any checkpoint must verify under the key stored with it (which proves it was
	// not altered, but not who made it).
	TrustedKeys []ed25519.PublicKey
}

// NewAuditLog returns the audit log kept in db (see Migrate). A nil clock is the system clock.
func NewAuditLog(db *gorm.DB, clock clawops.Clock) *AuditLog {
	return NewAuditLogWithOptions(db, AuditOptions{Clock: clock})
}

// NewAuditLogWithOptions returns the audit log kept in db, configured by opts.
func NewAuditLogWithOptions(db *gorm.DB, opts AuditOptions) *AuditLog {
	l := &AuditLog{db: db, clock: clawops.ClockOrSystem(opts.Clock), redactor: opts.Redactor,
		trusted: slices.Clone(opts.TrustedKeys), batch: verifyBatch}
	if l.redactor == nil {
		l.redactor = redact.Default()
	}
	return l
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
// It then checks every stored checkpoint: its signature (under a trusted key, when the log
// has any), and that the entry it signed is still there with the same hash, which reveals
// removal of entries from the end of the log (truncation), which no chain shows on its own.
// The report's HeadHash names the last entry.
func (l *AuditLog) Verify(ctx context.Context) (VerifyReport, error) {
	cps, err := l.checkpointRows(ctx, -1)
	if err != nil {
		return VerifyReport{}, fmt.Errorf("audit verify: %w", err)
	}
	want := make(map[int64]string, len(cps)) // checkpointed seq → hash found in the chain
	for _, c := range cps {
		want[c.Seq] = ""
	}
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
			if _, ok := want[r.Seq]; ok {
				want[r.Seq] = r.Hash
			}
			prev, expected, after = r.Hash, expected+1, r.Seq
			rep.HeadHash = r.Hash
		}
		if len(rows) < l.batch {
			break
		}
	}
	hashAt := func(seq int64) (string, bool) { h := want[seq]; return h, h != "" }
	if problem, bad := checkCheckpoints(cps, l.trusted, after, hashAt); problem != "" {
		rep.OK, rep.FirstBadSeq, rep.Problem = false, bad, problem
		return rep, nil
	}
	rep.Checkpoints = len(cps)
	return rep, nil
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
