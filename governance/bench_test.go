package governance

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/gatewayforge/clawops"
)

// BenchmarkGateInvokeWithAudit measures one allowed read call: permission, plan, hash,
// three audit appends (requested, allowed, completed) and Apply, on SQLite in a temp dir.
func BenchmarkGateInvokeWithAudit(b *testing.B) {
	db, _ := openDB(b)
	g, err := NewGate(GateOptions{DB: db, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	g.Register(newTestTool("fleet.status", ActionRead, clawops.RiskLow, 3))
	args := json.RawMessage(`{"instances":["i-001","i-002","i-003"]}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		out, err := g.Invoke(ctx, guardian, "fleet.status", args)
		if err != nil || out.Decision != clawops.Allow {
			b.Fatalf("invoke: %s, %v", out.Decision, err)
		}
	}
}

// BenchmarkAuditAppend measures one hash-chained append on SQLite in a temp dir.
func BenchmarkAuditAppend(b *testing.B) {
	db, _ := openDB(b)
	l := NewAuditLog(db, nil)
	e := AuditEntry{Actor: "agent:guardian", Tool: "fleet.restart", Target: "i-001,i-002", Event: EventCompleted,
		Decision: clawops.Allow, Reason: clawops.ReasonOK, PlanHash: "ab12", Detail: "restarted 2 instances"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Append(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}
