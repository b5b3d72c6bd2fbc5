package governance

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

func appendN(t testing.TB, l *AuditLog, n int) []AuditEntry {
	t.Helper()
	out := make([]AuditEntry, 0, n)
	for i := 0; i < n; i++ {
		e, err := l.Append(context.Background(), AuditEntry{
			Actor: "agent:guardian", Tool: "fleet.restart", Target: fmt.Sprintf("i-%03d", i),
			Event: EventRequested, Decision: clawops.Allow, Reason: clawops.ReasonRolePermits,
			PlanHash: strings.Repeat("ab", 32), Detail: fmt.Sprintf("entry %d", i),
		})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func TestAuditAppendChain(t *testing.T) {
	db, _ := openDB(t)
	clock := newFakeClock()
	l := NewAuditLog(db, clock)
	ctx := context.Background()
	es := appendN(t, l, 3)
	for i, e := range es {
		if e.Seq != int64(i+1) {
			t.Errorf("entry %d seq: got %d, want %d", i, e.Seq, i+1)
		}
		wantPrev := GenesisHash
		if i > 0 {
			wantPrev = es[i-1].Hash
		}
		if e.PrevHash != wantPrev {
			t.Errorf("entry %d prev hash: got %s, want %s", i, e.PrevHash, wantPrev)
		}
		if len(e.Hash) != 64 || e.Hash == e.PrevHash {
			t.Errorf("entry %d hash: got %q", i, e.Hash)
		}
		if want := clock.Now().UTC().Truncate(time.Microsecond); !e.Time.Equal(want) {
			t.Errorf("entry %d time: got %v, want %v", i, e.Time, want)
		}
	}
	rep, err := l.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Entries != 3 || rep.HeadHash != es[2].Hash {
		t.Errorf("verify: got %+v, want OK with 3 entries and head %s", rep, es[2].Hash)
	}
	got, err := l.List(ctx, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != es[1] {
		t.Errorf("List(1, 1): got %+v, want [%+v]", got, es[1])
	}
	all, err := l.List(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Errorf("List(0, default): got %d entries, want 3", len(all))
	}
	if _, err := l.Append(ctx, AuditEntry{Actor: "x"}); clawops.ReasonOf(err) != clawops.ReasonBadArguments {
		t.Errorf("append without event: got %v, want BAD_ARGUMENTS", err)
	}
}

func TestAuditEmptyVerify(t *testing.T) {
	db, _ := openDB(t)
	rep, err := NewAuditLog(db, nil).Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Entries != 0 {
		t.Errorf("empty log: got %+v, want OK with 0 entries", rep)
	}
}

func TestAuditListBadLimits(t *testing.T) {
	db, _ := openDB(t)
	l := NewAuditLog(db, nil)
	for _, limit := range []int{-1, 1001, 1 << 30} {
		if _, err := l.List(context.Background(), 0, limit); clawops.ReasonOf(err) != clawops.ReasonBadArguments {
			t.Errorf("List limit %d: got %v, want BAD_ARGUMENTS", limit, err)
		}
	}
}

func TestAuditTimeAndTextRoundTrip(t *testing.T) {
	db, _ := openDB(t)
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	clock := &fakeClock{now: time.Date(2026, 12, 31, 23, 59, 59, 999999999, zone)}
	l := NewAuditLog(db, clock)
	long := strings.Repeat("é", maxAuditLong) // two bytes each: must be cut on a rune boundary
	e, err := l.Append(context.Background(), AuditEntry{
		Actor: "bad\xffutf8", Tool: "nul\x00tool", Event: EventViolation, Detail: long,
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 12, 31, 18, 29, 59, 999999000, time.UTC); !e.Time.Equal(want) || e.Time.Location() != time.UTC {
		t.Errorf("time: got %v, want %v in UTC", e.Time, want)
	}
	if e.Actor != "bad\uFFFDutf8" || e.Tool != "nultool" {
		t.Errorf("cleaned text: got actor %q tool %q", e.Actor, e.Tool)
	}
	if len(e.Detail) > maxAuditLong || !strings.HasSuffix(e.Detail, "…") || !strings.HasPrefix(e.Detail, "éé") {
		t.Errorf("long detail: got %d bytes ending %q", len(e.Detail), e.Detail[len(e.Detail)-8:])
	}
	got, err := l.List(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != e {
		t.Errorf("round trip: got %+v, want %+v", got, e)
	}
	rep, err := l.Verify(context.Background())
	if err != nil || !rep.OK {
		t.Errorf("verify: got %+v, %v; want OK", rep, err)
	}
}

// tamperCase changes a healthy chain of 6 entries with raw SQL; Verify must name badSeq.
type tamperCase struct {
	name   string
	sql    func(l *AuditLog, es []AuditEntry) (string, []any)
	badSeq int64
	want   string // a word the problem must contain
}

func tamperCases() []tamperCase {
	forged := func(seq int64, prev string) auditRow {
		r := auditRow{Seq: seq, Time: "2026-11-03T09:30:00.000000Z", Actor: "mallory", Tool: "fleet.teardown",
			Target: "i-001", Event: EventCompleted, Decision: "allow", Reason: "OK", PrevHash: prev}
		r.Hash = r.computeHash() // the forger knows the algorithm
		return r
	}
	insert := func(r auditRow) (string, []any) {
		return `INSERT INTO governance_audit (seq, time, actor, tool, target, event, decision, reason, plan_hash, detail, prev_hash, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			[]any{r.Seq, r.Time, r.Actor, r.Tool, r.Target, r.Event, r.Decision, r.Reason, r.PlanHash, r.Detail, r.PrevHash, r.Hash}
	}
	return []tamperCase{
		{"detail changed", func(*AuditLog, []AuditEntry) (string, []any) {
			return `UPDATE governance_audit SET detail = 'nothing to see' WHERE seq = 3`, nil
		}, 3, "changed"},
		{"actor changed", func(*AuditLog, []AuditEntry) (string, []any) {
			return `UPDATE governance_audit SET actor = 'slack:bob' WHERE seq = 4`, nil
		}, 4, "changed"},
		{"reason changed", func(*AuditLog, []AuditEntry) (string, []any) {
			return `UPDATE governance_audit SET reason = 'OK' WHERE seq = 2`, nil
		}, 2, "changed"},
		{"time changed", func(*AuditLog, []AuditEntry) (string, []any) {
			return `UPDATE governance_audit SET time = '2020-01-01T00:00:00.000000Z' WHERE seq = 5`, nil
		}, 5, "changed"},
		{"hash rewritten", func(*AuditLog, []AuditEntry) (string, []any) {
			return `UPDATE governance_audit SET hash = ? WHERE seq = 1`, []any{strings.Repeat("f", 64)}
		}, 1, "changed"},
		{"row rewritten with a fresh hash", func(_ *AuditLog, es []AuditEntry) (string, []any) {
			r := forged(3, es[1].Hash)
			return `UPDATE governance_audit SET actor = ?, tool = ?, event = ?, time = ?, target = ?, decision = ?, reason = ?, plan_hash = ?, detail = ?, hash = ? WHERE seq = 3`,
				[]any{r.Actor, r.Tool, r.Event, r.Time, r.Target, r.Decision, r.Reason, r.PlanHash, r.Detail, r.Hash}
		}, 4, "prev_hash"},
		{"middle row deleted", func(*AuditLog, []AuditEntry) (string, []any) {
			return `DELETE FROM governance_audit WHERE seq = 3`, nil
		}, 3, "removed"},
		{"first row deleted", func(*AuditLog, []AuditEntry) (string, []any) {
			return `DELETE FROM governance_audit WHERE seq = 1`, nil
		}, 1, "removed"},
		{"forged row appended", func(_ *AuditLog, _ []AuditEntry) (string, []any) {
			return insert(forged(7, strings.Repeat("1", 64)))
		}, 7, "prev_hash"},
		{"forged row at seq 0", func(_ *AuditLog, _ []AuditEntry) (string, []any) {
			return insert(forged(0, GenesisHash))
		}, 0, "inserted"},
		{"forged row in a gap", func(_ *AuditLog, es []AuditEntry) (string, []any) {
			return insert(forged(100, es[5].Hash))
		}, 7, "removed"},
	}
}

func runTamper(t *testing.T, db *gorm.DB, l *AuditLog, tc tamperCase) {
	t.Helper()
	es := appendN(t, l, 6)
	query, args := tc.sql(l, es)
	if err := db.Exec(query, args...).Error; err != nil {
		t.Fatal(err)
	}
	rep, err := l.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK {
		t.Fatalf("verify after tampering: got OK, want a problem at seq %d", tc.badSeq)
	}
	if rep.FirstBadSeq != tc.badSeq {
		t.Errorf("first bad seq: got %d (%s), want %d", rep.FirstBadSeq, rep.Problem, tc.badSeq)
	}
	if !strings.Contains(rep.Problem, tc.want) {
		t.Errorf("problem: got %q, want it to mention %q", rep.Problem, tc.want)
	}
}

func TestAuditVerifyTamper(t *testing.T) {
	for _, tc := range tamperCases() {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := openDB(t)
			l := NewAuditLog(db, newFakeClock())
			l.batch = 2 // cross batch boundaries with a small chain
			runTamper(t, db, l, tc)
		})
	}
}

// Two AuditLogs over two connection pools to one SQLite file (as two gateway processes
// would be) append concurrently; the chain must stay whole.
func TestAuditSharedDatabase(t *testing.T) {
	db1, path := openDB(t)
	db2 := openPath(t, path)
	logs := []*AuditLog{NewAuditLog(db1, nil), NewAuditLog(db2, nil)}
	const workers, each = 4, 15
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
	rep, err := logs[1].Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Entries != workers*each {
		t.Errorf("verify: got %+v, want OK with %d entries", rep, workers*each)
	}
}
