package fleet

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

func types(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Type)+":"+e.Subject)
	}
	return out
}

func TestMonitorSweep(t *testing.T) {
	bus := NewBus(nil)
	h, sim := newSimHarness(t, func(o *Options) { o.Bus = bus; o.DefaultRouting = euRouting })
	h.activePairsNamed(t, sim, "demo1")
	h.activePairsNamed(t, sim, "demo2")
	ctx := context.Background()
	mon := NewMonitor(h.svc, MonitorOptions{Realert: 10 * time.Minute, BacklogThreshold: 2, CostEvery: -1})

	// All fresh: nothing to say.
	rep, err := mon.SweepOnce(ctx)
	if err != nil || len(rep.Events) != 0 || rep.Instances != 4 || rep.Sweep != 1 {
		t.Fatalf("first sweep: got %+v, %v", rep, err)
	}
	// demo1-pri stops sending heartbeats; the others keep going.
	h.clock.Advance(31 * time.Second)
	for _, id := range []clawops.InstanceID{"demo1-sby", "demo2-pri", "demo2-sby"} {
		if err := h.svc.RecordHeartbeat(ctx, heartbeat(id, clawops.NodeID("node-"+id), true)); err != nil {
			t.Fatal(err)
		}
	}
	rep, _ = mon.SweepOnce(ctx)
	if got := types(rep.Events); len(got) != 1 || got[0] != "INSTANCE_DEGRADED:demo1-pri" || len(rep.Transitions) != 1 {
		t.Fatalf("sweep 2: events %v transitions %+v", got, rep.Transitions)
	}
	if !strings.Contains(rep.Events[0].Summary, "no heartbeat") || rep.Events[0].Severity != SeverityWarning {
		t.Errorf("event: got %+v", rep.Events[0])
	}
	// Still degraded a minute later: not raised again until Realert.
	h.clock.Advance(time.Minute)
	keepAlive(t, h, "demo1-sby", "demo2-pri", "demo2-sby")
	if rep, _ = mon.SweepOnce(ctx); len(rep.Events) != 0 {
		t.Errorf("sweep 3: got %v, want nothing new", types(rep.Events))
	}
	h.clock.Advance(10 * time.Minute)
	keepAlive(t, h, "demo1-sby", "demo2-pri", "demo2-sby")
	if rep, _ = mon.SweepOnce(ctx); len(rep.Events) != 1 {
		t.Errorf("sweep after Realert: got %v, want INSTANCE_DEGRADED again", types(rep.Events))
	}
	// The standby goes too: the pair has no serving instance.
	h.clock.Advance(31 * time.Second)
	keepAlive(t, h, "demo2-pri", "demo2-sby")
	rep, _ = mon.SweepOnce(ctx)
	got := types(rep.Events)
	if len(got) != 2 || got[0] != "INSTANCE_DEGRADED:demo1-sby" || got[1] != "PAIR_FAILED:demo1" || rep.Events[1].Severity != SeverityCritical {
		t.Errorf("sweep 5: got %v", got)
	}
	// It recovers: the next episode is raised at once.
	keepAlive(t, h, "demo1-pri", "demo1-sby", "demo2-pri", "demo2-sby")
	if rep, _ = mon.SweepOnce(ctx); len(rep.Events) != 0 {
		t.Errorf("recovered: got %v", types(rep.Events))
	}
	h.clock.Advance(31 * time.Second)
	keepAlive(t, h, "demo1-sby", "demo2-pri", "demo2-sby")
	if rep, _ = mon.SweepOnce(ctx); len(rep.Events) != 1 || rep.Events[0].Type != EventInstanceDegraded {
		t.Errorf("second episode: got %v", types(rep.Events))
	}

	// Provisioning backlog and a degraded provider.
	plan := planFor(t, h, ProvisionRequest{Prefix: "beta", Count: 3, Tier: "standard", Group: "eu"})
	if _, err := h.svc.EnqueueProvision(ctx, plan, "forge", "t"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		h.svc.recordProviderSample(ctx, "vultr", false, 0, "quota")
	}
	keepAlive(t, h, "demo1-pri", "demo1-sby", "demo2-pri", "demo2-sby")
	rep, _ = mon.SweepOnce(ctx)
	got = types(rep.Events)
	if len(got) != 2 || got[0] != "PROVISION_QUEUE_BACKLOG:provisioning" || got[1] != "PROVIDER_DEGRADED:vultr" {
		t.Errorf("backlog and provider: got %v", got)
	}
	if mon.Sweeps() != 8 {
		t.Errorf("sweeps: got %d, want 8", mon.Sweeps())
	}
}

func keepAlive(t *testing.T, h *harness, ids ...clawops.InstanceID) {
	t.Helper()
	for _, id := range ids {
		if err := h.svc.RecordHeartbeat(context.Background(), heartbeat(id, clawops.NodeID("node-"+id), true)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMonitorCostAnomaly(t *testing.T) {
	bus := NewBus(nil)
	h, _ := newCostHarness(t, func(o *Options) { o.Bus = bus })
	mon := NewMonitor(h.svc, MonitorOptions{})
	rep, err := mon.SweepOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var cost []Event
	for _, e := range rep.Events {
		if e.Type == EventCostAnomaly {
			cost = append(cost, e)
		}
	}
	if len(cost) != 1 || !strings.Contains(cost[0].Summary, "1.04 USD vs 0.63 USD projected") {
		t.Fatalf("cost events: got %+v", rep.Events)
	}
	// The cost is not recomputed before CostEvery, and the week's alert is not repeated.
	if rep, _ = mon.SweepOnce(context.Background()); len(rep.Events) != 0 {
		t.Errorf("second sweep: got %v", types(rep.Events))
	}
}

// newCostHarness records, with the clock on Tuesday 2026-11-03 09:00 UTC and a price
// table where DigitalOcean is cheapest:
//   - a1: hetzner+vultr standard pair since October, never active (idle);
//   - a2: the same since Monday 12:00, its primary under-used for a week.
func newCostHarness(t *testing.T, mutate func(*Options)) (*harness, *simNodes) {
	t.Helper()
	do := &fakeProvider{name: "digitalocean"}
	h, sim := newSimHarness(t, func(o *Options) {
		o.Providers["digitalocean"] = do
		o.Prices = &PriceTable{Tiers: []string{"small", "standard"}, Groups: map[string]string{"fsn1": "eu", "ams": "eu"},
			Prices: []Price{
				{"hetzner", "*", "small", 4}, {"hetzner", "*", "standard", 8},
				{"vultr", "*", "small", 3}, {"vultr", "*", "standard", 6},
				{"digitalocean", "*", "small", 2.5}, {"digitalocean", "*", "standard", 5},
			}}
		if mutate != nil {
			mutate(o)
		}
	})
	h.activePairsNamed(t, sim, "a1")
	h.activePairsNamed(t, sim, "a2")
	oct := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	mon12 := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	h.db.Model(&Account{}).Where("id = ?", "a1").Update("created_at", oct)
	h.db.Model(&Account{}).Where("id = ?", "a2").Update("created_at", mon12)
	for _, id := range []clawops.InstanceID{"a1-pri", "a1-sby"} {
		h.setRow(t, id, map[string]any{"created_at": oct})
	}
	for _, id := range []clawops.InstanceID{"a2-pri", "a2-sby"} {
		h.setRow(t, id, map[string]any{"created_at": mon12, "last_active_at": h.clock.Now().Add(-time.Hour)})
	}
	h.setRow(t, "a2-pri", map[string]any{"usage_week_full": true, "usage_week_cpu": 5.0, "usage_week_mem": 10.0})
	return h, sim
}

func TestCostReport(t *testing.T) {
	h, _ := newCostHarness(t, nil)
	ctx := context.Background()
	r, err := h.svc.CostReport(ctx, CostQuery{})
	if err != nil {
		t.Fatal(err)
	}
	// Window Monday 00:00 → Tuesday 09:00 (33 h). Projected: a1's 14 USD/month for 33 h.
	// Actual: that plus a2's 14 USD/month for 21 h.
	if !r.From.Equal(time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)) || r.ProjectedUSD != 0.63 || r.ActualUSD != 1.04 ||
		!r.Anomaly || r.DeltaPercent != 65.08 || r.RunRateMonthlyUSD != 28 {
		t.Errorf("spend: got from %s projected %.2f actual %.2f delta %.2f anomaly %v run rate %.2f",
			r.From, r.ProjectedUSD, r.ActualUSD, r.DeltaPercent, r.Anomaly, r.RunRateMonthlyUSD)
	}
	if len(r.ByProvider) != 2 || r.ByProvider[0].Provider != "hetzner" || r.ByProvider[0].RunRateMonthlyUSD != 16 || r.ByProvider[0].Instances != 2 {
		t.Errorf("by provider: got %+v", r.ByProvider)
	}
	if len(r.Idle) != 1 || r.Idle[0].Account != "a1" || r.Idle[0].IdleDays != 33 || r.Idle[0].MonthlyUSD != 14 {
		t.Errorf("idle: got %+v", r.Idle)
	}
	if len(r.Underused) != 1 || r.Underused[0].Instance != "a2-pri" || r.Underused[0].SuggestedTier != "small" || r.Underused[0].SavingsMonthlyUSD != 4 {
		t.Errorf("underused: got %+v", r.Underused)
	}
	// Never the peer's provider: a2-pri (hetzner, peer vultr) and a2-sby (vultr, peer
	// hetzner) both move to DigitalOcean.
	if len(r.Cheaper) != 2 || r.Cheaper[0].Candidate != "digitalocean" || r.Cheaper[0].SavingsMonthlyUSD != 3 ||
		r.Cheaper[1].SavingsMonthlyUSD != 1 {
		t.Errorf("cheaper: got %+v", r.Cheaper)
	}
	// 14 idle + max(4, 3) for a2-pri + 1 for a2-sby.
	if r.RecoverableMonthlyUSD != 19 {
		t.Errorf("recoverable: got %.2f, want 19", r.RecoverableMonthlyUSD)
	}
	// Activity makes a1 busy again; a teardown ends its cost.
	if err := h.svc.RecordActivity(ctx, "a1", h.clock.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.Teardown(ctx, "a1-sby"); err != nil {
		t.Fatal(err)
	}
	r, _ = h.svc.CostReport(ctx, CostQuery{})
	if len(r.Idle) != 0 || r.RunRateMonthlyUSD != 22 || r.ActualUSD != 1.04 {
		t.Errorf("after activity and teardown: idle %+v run rate %.2f actual %.2f", r.Idle, r.RunRateMonthlyUSD, r.ActualUSD)
	}
	_, err = h.svc.CostReport(ctx, CostQuery{From: h.clock.Now(), To: h.clock.Now().Add(-time.Hour)})
	wantReason(t, err, clawops.ReasonBadArguments)
	wantReason(t, h.svc.RecordActivity(ctx, "nobody", time.Now()), clawops.ReasonBadArguments)
	wantReason(t, h.svc.RecordActivity(ctx, "a1;x", time.Now()), clawops.ReasonBadArguments)
}

func TestUsageWeek(t *testing.T) {
	h, sim := newSimHarness(t, nil)
	h.activePairsNamed(t, sim, "demo1")
	ctx := context.Background()
	hb := func(cpu float64, memPct uint64) {
		b := heartbeat("demo1-pri", "node-demo1-pri", true)
		b.Metrics = proto.Metrics{CPUPercent: cpu, MemUsedBytes: memPct, MemTotalBytes: 100}
		if err := h.svc.RecordHeartbeat(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	hb(4, 10)
	h.clock.Advance(3 * 24 * time.Hour)
	hb(6, 20)
	if in := h.row(t, "demo1-pri"); in.UsageWeekFull || in.UsageSamples != 2 || in.LastActiveAt != nil {
		t.Fatalf("mid-week: got full=%v samples=%d last active %v", in.UsageWeekFull, in.UsageSamples, in.LastActiveAt)
	}
	h.clock.Advance(5 * 24 * time.Hour)
	hb(50, 30) // the week is over: its means are kept; this sample starts the next one
	in := h.row(t, "demo1-pri")
	if !in.UsageWeekFull || in.UsageWeekCPU != 5 || in.UsageWeekMem != 15 || in.UsageSamples != 1 || in.LastActiveAt == nil {
		t.Errorf("after a week: got full=%v cpu=%v mem=%v samples=%d last active %v", in.UsageWeekFull, in.UsageWeekCPU,
			in.UsageWeekMem, in.UsageSamples, in.LastActiveAt)
	}
}

func TestDiagnose(t *testing.T) {
	h, sim := newSimHarness(t, nil)
	h.activePairsNamed(t, sim, "demo1")
	ctx := context.Background()
	d, err := h.svc.Diagnose(ctx, "demo1-pri")
	if err != nil {
		t.Fatal(err)
	}
	if d.Recommendation != RecommendNone || d.Health == nil || !d.Health.OK || d.Metrics == nil || len(d.Logs) != 2 ||
		len(d.Findings) != 1 || d.Findings[0] != "disk 95% full" {
		t.Errorf("healthy: got %+v", d)
	}
	sim.with("node-demo1-pri", func(n *simNode) { n.unhealthy = true })
	if d, _ = h.svc.Diagnose(ctx, "demo1-pri"); d.Recommendation != RecommendHeal {
		t.Errorf("unhealthy: got %s %v", d.Recommendation, d.Findings)
	}
	sim.with("node-demo1-pri", func(n *simNode) { n.down = true })
	h.clock.Advance(time.Minute)
	d, _ = h.svc.Diagnose(ctx, "demo1-pri")
	if d.Recommendation != RecommendFailover || d.HealthError == "" || !strings.HasPrefix(d.Findings[0], "no heartbeat for 1m0s") {
		t.Errorf("down: got %s %v", d.Recommendation, d.Findings)
	}
	if c := sim.commandsOf("node-demo1-pri"); len(c) == 0 || c[0] != CmdHealth {
		t.Errorf("commands: got %v", c)
	}
	h.setRow(t, "demo1-sby", map[string]any{"node_id": "", "state": StateBootstrapping})
	if d, _ = h.svc.Diagnose(ctx, "demo1-sby"); d.Recommendation != RecommendWait {
		t.Errorf("bootstrapping: got %s", d.Recommendation)
	}
	_, err = h.svc.Diagnose(ctx, "ghost-pri")
	wantReason(t, err, clawops.ReasonUnknownInstance)
}

func TestBus(t *testing.T) {
	bus := NewBus(nil)
	deg := bus.Subscribe(2, EventInstanceDegraded)
	all := bus.Subscribe(0)
	for i := range 5 {
		bus.Publish(Event{Type: EventInstanceDegraded, Subject: string(rune('a' + i))})
	}
	bus.Publish(Event{Type: EventPairFailed, Subject: "p"})
	if deg.Dropped() != 3 || bus.Dropped() != 3 || all.Dropped() != 0 {
		t.Errorf("dropped: got %d (bus %d, all %d), want 3 (3, 0)", deg.Dropped(), bus.Dropped(), all.Dropped())
	}
	e1, e2 := <-deg.C(), <-deg.C()
	if e1.Subject != "a" || e2.Subject != "b" || e1.Seq != 1 || e2.Seq != 2 || e1.Severity != SeverityInfo || e1.Time.IsZero() {
		t.Errorf("delivered: got %+v %+v", e1, e2)
	}
	if n := len(all.C()); n != 6 {
		t.Errorf("all: got %d queued, want 6", n)
	}
	deg.Close()
	deg.Close()
	if _, ok := <-deg.C(); ok {
		t.Error("closed subscription still delivers")
	}
	bus.Publish(Event{Type: EventInstanceDegraded}) // must not panic on the closed one
	var nilBus *Bus
	if nilBus.Publish(Event{}) != 0 {
		t.Error("nil bus publish")
	}
}
