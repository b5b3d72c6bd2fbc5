package governance

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

// newHarnessOpts is newHarness with options changed by set.
func newHarnessOpts(t testing.TB, set func(*GateOptions), tools ...Tool) *harness {
	t.Helper()
	db, path := openDB(t)
	h := &harness{db: db, path: path, clock: newFakeClock(), notifier: &recordingNotifier{}}
	opts := GateOptions{DB: db, Clock: h.clock, Logger: testLogger(t), Notifier: h.notifier}
	if set != nil {
		set(&opts)
	}
	g, err := NewGate(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools {
		g.Register(tool)
	}
	h.gate = g
	return h
}

// More actors.
var (
	erin  = clawops.Actor{Identity: "slack:erin", Role: clawops.RoleApprover, Channel: "slack"}
	frank = clawops.Actor{Identity: "slack:frank", Role: clawops.RoleAdmin, Channel: "slack"}
)

// A base32 TOTP secret (20 bytes) for tests.
const testTOTPSecret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

func totpCode(t testing.TB, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(testTOTPSecret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// wrongCode returns a 6-digit code different from right.
func wrongCode(right string) string {
	if right == "000000" {
		return "111111"
	}
	return "000000"
}

// countRows counts the rows of every governance table, to show that something wrote nothing.
func countRows(t testing.TB, db *gorm.DB) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, m := range []any{&auditRow{}, &checkpointRow{}, &approvalRow{}, &grantRow{}, &breakGlassRow{},
		&budgetRow{}, &costRow{}, &traceRow{}, &spanRow{}} {
		var n int64
		if err := db.Model(m).Count(&n).Error; err != nil {
			t.Fatal(err)
		}
		stmt := &gorm.Statement{DB: db}
		if err := stmt.Parse(m); err != nil {
			t.Fatal(err)
		}
		out[stmt.Schema.Table] = n
	}
	return out
}

// lastEvents returns the last n audit events as "event/reason".
func (h *harness) lastEvents(t testing.TB, n int) []string {
	t.Helper()
	all := h.events(t)
	if len(all) < n {
		return all
	}
	return all[len(all)-n:]
}

// eventsSince returns the audit events after the first skip.
func (h *harness) eventsSince(t testing.TB, skip int) []string {
	t.Helper()
	return h.events(t)[skip:]
}

func hasEvent(events []string, prefix string) bool {
	for _, e := range events {
		if strings.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}

// invokeNeedsApproval invokes and requires a NeedsApproval outcome.
func (h *harness) invokeNeedsApproval(t testing.TB, actor clawops.Actor, tool string, n int) Outcome {
	t.Helper()
	out, err := h.gate.Invoke(context.Background(), actor, tool, instancesArgs(n))
	if err != nil || out.Decision != clawops.NeedsApproval {
		t.Fatalf("invoke %s: got %s/%s, %v; want needs_approval", tool, out.Decision, out.Reason, err)
	}
	return out
}
