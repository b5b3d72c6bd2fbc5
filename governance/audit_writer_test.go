package governance

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance/redact"
)

// Environment of the child process in TestAuditTwoProcesses.
const (
	childDBEnv    = "GOVERNANCE_TEST_CHILD_DB"
	childCountEnv = "GOVERNANCE_TEST_CHILD_COUNT"
)

// TestAuditChildAppender is the other process of TestAuditTwoProcesses; it does nothing
// when run on its own.
func TestAuditChildAppender(t *testing.T) {
	path := os.Getenv(childDBEnv)
	if path == "" {
		t.Skip("only runs as the child of TestAuditTwoProcesses")
	}
	n, err := strconv.Atoi(os.Getenv(childCountEnv))
	if err != nil {
		t.Fatal(err)
	}
	l := NewAuditLog(openPath(t, path), nil)
	appendConcurrently(t, l, "child", 4, n/4)
}

func appendConcurrently(t testing.TB, l *AuditLog, who string, workers, each int) {
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := l.Append(context.Background(), AuditEntry{Actor: fmt.Sprintf("%s-%d", who, w),
					Event: EventRequested, Detail: fmt.Sprintf("entry %d", i)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Two processes append to one SQLite file at the same time, each with group commit: the
// chain stays whole and no entry is lost.
func TestAuditTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second process")
	}
	db, path := openDB(t)
	const each = 200
	cmd := exec.Command(os.Args[0], "-test.run=^TestAuditChildAppender$", "-test.count=1")
	cmd.Env = append(os.Environ(), childDBEnv+"="+path, childCountEnv+"="+strconv.Itoa(each))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := NewAuditLog(db, nil)
	appendConcurrently(t, l, "parent", 4, each/4)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "PASS") {
		t.Fatalf("child did not run:\n%s", out.String())
	}
	rep, err := l.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Entries != 2*each {
		t.Errorf("verify: got %+v, want OK with %d entries", rep, 2*each)
	}
	es, _ := l.List(context.Background(), 0, 1000)
	child := 0
	for _, e := range es {
		if strings.HasPrefix(e.Actor, "child-") {
			child++
		}
	}
	if child != each {
		t.Errorf("child entries: got %d, want %d", child, each)
	}
}

// AppendBatch writes its entries consecutively, and a bad batch does not fail others that
// share its group commit.
func TestAuditAppendBatch(t *testing.T) {
	db, _ := openDB(t)
	l := NewAuditLog(db, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			es := make([]AuditEntry, 3)
			for i := range es {
				es[i] = AuditEntry{Actor: fmt.Sprintf("w%d", w), Event: EventRequested}
			}
			got, err := l.AppendBatch(ctx, es...)
			if err != nil {
				t.Error(err)
				return
			}
			if got[1].Seq != got[0].Seq+1 || got[2].Seq != got[1].Seq+1 || got[1].PrevHash != got[0].Hash {
				t.Errorf("batch not consecutive: %d %d %d", got[0].Seq, got[1].Seq, got[2].Seq)
			}
		}()
	}
	wg.Wait()
	if _, err := l.AppendBatch(ctx, AuditEntry{Event: EventRequested}, AuditEntry{}); clawops.ReasonOf(err) != clawops.ReasonBadArguments {
		t.Errorf("entry without event: got %v", err)
	}
	if _, err := l.AppendBatch(ctx, make([]AuditEntry, maxGroupRows+1)...); clawops.ReasonOf(err) != clawops.ReasonBadArguments {
		t.Errorf("oversized batch: got %v", err)
	}
	if got, err := l.AppendBatch(ctx); err != nil || got != nil {
		t.Errorf("empty batch: got %v, %v", got, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Append(cctx, AuditEntry{Event: EventRequested}); err == nil {
		t.Error("cancelled context: got nil error")
	}
	// A trigger refuses one actor's rows; the others, committed in the same groups, land.
	if err := db.Exec(`CREATE TRIGGER no_mallory BEFORE INSERT ON governance_audit WHEN NEW.actor = 'mallory'
		BEGIN SELECT RAISE(ABORT, 'no'); END`).Error; err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 12)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			who := "ok"
			if i%3 == 0 {
				who = "mallory"
			}
			_, errs[i] = l.Append(ctx, AuditEntry{Actor: who, Event: EventRequested})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%3 == 0) != (err != nil) {
			t.Errorf("append %d: got %v", i, err)
		}
	}
	rep, _ := l.Verify(ctx)
	if !rep.OK || rep.Entries != 24+8 {
		t.Errorf("verify: got %+v, want OK with 32 entries", rep)
	}
}

// Audit details pass the redactor before they are hashed; the chain verifies.
func TestAuditDetailRedacted(t *testing.T) {
	db, _ := openDB(t)
	ctx := context.Background()
	l := NewAuditLog(db, nil)
	e, err := l.Append(ctx, AuditEntry{Event: EventFailed, Target: "i-001",
		Detail: "dial https://u:p@api.example.com failed; Authorization: Bearer abcdefgh12345678; call +4915112345678"})
	if err != nil {
		t.Fatal(err)
	}
	want := "dial https://[REDACTED]@api.example.com failed; Authorization: Bearer [REDACTED]; call [REDACTED]"
	if e.Detail != want {
		t.Errorf("detail: got %q, want %q", e.Detail, want)
	}
	raw := NewAuditLogWithOptions(db, AuditOptions{Redactor: &redact.Redactor{}})
	if e, _ := raw.Append(ctx, AuditEntry{Event: EventFailed, Detail: "token=abc"}); e.Detail != "token=abc" {
		t.Errorf("no redaction: got %q", e.Detail)
	}
	if rep, _ := l.Verify(ctx); !rep.OK {
		t.Errorf("verify: %+v", rep)
	}
}
