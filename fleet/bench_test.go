package fleet

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// seedFleet inserts n pairs (2n instances) straight into the tables: ACTIVE, heartbeats
// fresh except every hundredth instance, which is silent.
func seedFleet(b *testing.B, h *harness, pairs int) {
	b.Helper()
	now := h.clock.Now()
	stale := now.Add(-time.Hour)
	var accts []Account
	var ps []Pair
	var ins []Instance
	for i := range pairs {
		id := fmt.Sprintf("b%05d", i)
		accts = append(accts, Account{ID: id, Name: id, CreatedAt: now})
		ps = append(ps, Pair{ID: id, AccountID: id, PrimaryID: clawops.InstanceID(id + PrimarySuffix),
			StandbyID: clawops.InstanceID(id + StandbySuffix), CreatedAt: now})
		for j, suffix := range []string{PrimarySuffix, StandbySuffix} {
			hb := now
			if (2*i+j)%100 == 0 {
				hb = stale
			}
			role, prov, region := RolePrimary, "hetzner", "fsn1"
			if j == 1 {
				role, prov, region = RoleStandby, "vultr", "ams"
			}
			ins = append(ins, Instance{ID: clawops.InstanceID(id + suffix), AccountID: id, PairID: id, Provider: prov,
				ProviderID: prov + "-" + id + suffix, Region: region, Tier: "standard", Role: role, State: StateActive,
				NodeID: clawops.NodeID("node-" + id + suffix), LastHeartbeat: &hb, ActiveAt: &now, HealthOK: true,
				CreatedAt: now, UpdatedAt: now})
		}
	}
	for _, err := range []error{
		h.db.CreateInBatches(accts, 500).Error, h.db.CreateInBatches(ps, 500).Error, h.db.CreateInBatches(ins, 500).Error,
	} {
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHealthSweep10k is one monitor sweep over 10,000 instances on SQLite: the
// heartbeat timeout check, degraded instances and pairs, the provisioning queue and the
// provider scores; with_cost adds the week's cost report (every instance priced).
func BenchmarkHealthSweep10k(b *testing.B) {
	for _, withCost := range []bool{false, true} {
		b.Run(fmt.Sprintf("with_cost=%v", withCost), func(b *testing.B) {
			h := newHarness(b, func(o *Options) { o.Logger = nil; o.OnTransition = nil })
			seedFleet(b, h, 5000)
			every := time.Duration(-1)
			if withCost {
				every = time.Nanosecond
			}
			mon := NewMonitor(h.svc, MonitorOptions{CostEvery: every})
			ctx := context.Background()
			if _, err := mon.SweepOnce(ctx); err != nil { // the 100 silent instances go DEGRADED
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				h.clock.Advance(time.Millisecond)
				rep, err := mon.SweepOnce(ctx)
				if err != nil || rep.Instances != 10000 {
					b.Fatalf("sweep: %d instances, %v", rep.Instances, err)
				}
			}
		})
	}
}

// BenchmarkRecordHeartbeatWithMetrics is one node heartbeat with a metrics sample (usage
// bookkeeping included) across 1,000 instances on SQLite; 10,000 instances at the
// default 10 s interval need 1,000 a second.
func BenchmarkRecordHeartbeatWithMetrics(b *testing.B) {
	h := newHarness(b, func(o *Options) { o.Logger = nil; o.OnTransition = nil })
	seedFleet(b, h, 500)
	ctx := context.Background()
	hb := proto.Heartbeat{OpenClaw: proto.Health{OK: true, Status: 200},
		Metrics: proto.Metrics{CPUPercent: 5, MemUsedBytes: 1 << 30, MemTotalBytes: 4 << 30}}
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("b%05d%s", (i/2)%500, []string{PrimarySuffix, StandbySuffix}[i%2])
		hb.Instance, hb.Node = clawops.InstanceID(id), clawops.NodeID("node-"+id)
		if err := h.svc.RecordHeartbeat(ctx, hb); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkRollingPush1000 is the orchestration overhead of a rolling push to 1,000
// instances (batches of 50, 10 at a time) with nodes that answer at once: journaling
// every instance before and after its command, validating every batch (config.get, or
// vps.info for an upgrade, and health for each instance) and the failure accounting.
// kind=config pushes a config; kind=upgrade switches the OpenClaw image.
func BenchmarkRollingPush1000(b *testing.B) {
	for _, kind := range []string{PushKindConfig, PushKindUpgrade} {
		b.Run("kind="+kind, func(b *testing.B) {
			h, sim := newSimHarness(b, func(o *Options) { o.Logger = nil; o.OnTransition = nil })
			ids := h.activePairs(b, sim, "p", 500)
			ctx := context.Background()
			n := 0
			b.ResetTimer()
			for b.Loop() {
				n++
				var v PushView
				var err error
				if kind == PushKindUpgrade {
					v, err = h.svc.StartUpgrade(ctx, UpgradeSpec{Image: fmt.Sprintf("ghcr.io/openclaw/openclaw:2026.%d", n),
						Targets: ids, BatchSize: 50, MaxFailPercent: 5, RequestedBy: "bench"})
				} else {
					v, err = h.svc.StartPush(ctx, PushSpec{Config: kimiConfig, Version: fmt.Sprintf("v%d", n), Targets: ids,
						BatchSize: 50, MaxFailPercent: 5, RequestedBy: "bench"})
				}
				if err != nil {
					b.Fatal(err)
				}
				v, err = h.svc.RunPush(ctx, v.ID)
				if err != nil || v.State != PushCompleted || v.Counts[TargetApplied] != len(ids) {
					b.Fatalf("push: %s %v, %v", v.State, v.Counts, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(ids)), "µs/instance")
		})
	}
}
