package governance

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/store"
)

// benchDB opens SQLite as the gateway does: WAL checkpoints in the background
// (store.RunCheckpoints), so no commit pays for one.
func benchDB(b *testing.B) *gorm.DB {
	b.Helper()
	db, err := store.Open(context.Background(), store.Options{DSN: filepath.Join(b.TempDir(), "gov.db"), BackgroundCheckpoint: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := Migrate(db); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); store.RunCheckpoints(ctx, db, store.CheckpointInterval) }()
	b.Cleanup(func() { cancel(); <-done; store.Close(db) })
	return db
}

// BenchmarkGateInvokeWithAudit measures one allowed read call: permission, plan, hash,
// three audit appends (requested, allowed, completed) and Apply, on SQLite in a temp dir.
func BenchmarkGateInvokeWithAudit(b *testing.B) {
	db := benchDB(b)
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
	db := benchDB(b)
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

// BenchmarkAuditAppendParallel measures appends from many goroutines at once: the group
// commit turns them into few transactions.
func BenchmarkAuditAppendParallel(b *testing.B) {
	db := benchDB(b)
	l := NewAuditLog(db, nil)
	e := AuditEntry{Actor: "agent:guardian", Tool: "fleet.restart", Target: "i-001,i-002", Event: EventCompleted,
		Decision: clawops.Allow, Reason: clawops.ReasonOK, PlanHash: "ab12", Detail: "restarted 2 instances"}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(ctx, e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// BenchmarkGateDecisionLatency reports the p50 and p99 latency of whole gate decisions (an
// allowed call: plan, risk, audit requested+allowed, apply, audit completed), from one caller
// and from eight concurrent callers, as agents would make them.
func BenchmarkGateDecisionLatency(b *testing.B) {
	for _, callers := range []int{1, 8} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) { gateLatency(b, callers) })
	}
}

func gateLatency(b *testing.B, callers int) {
	db := benchDB(b)
	g, err := NewGate(GateOptions{DB: db, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	g.Register(newTestTool("fleet.restart", ActionRestart, clawops.RiskLow, 3))
	args := json.RawMessage(`{"instances":["i-001"]}`)
	ctx := context.Background()
	var mu sync.Mutex
	var lat []time.Duration
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism(max(1, (callers+procs-1)/procs))
	if callers == 1 {
		b.SetParallelism(1)
		runtime.GOMAXPROCS(1)
		defer runtime.GOMAXPROCS(procs)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			start := time.Now()
			out, err := g.Invoke(ctx, guardian, "fleet.restart", args)
			mine = append(mine, time.Since(start))
			if err != nil || out.Decision != clawops.Allow {
				b.Errorf("invoke: %s, %v", out.Decision, err)
				return
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "decisions/s")
}
