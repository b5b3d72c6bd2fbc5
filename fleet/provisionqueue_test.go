package fleet

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
)

var euRouting = &RoutingPolicy{Groups: map[string]GroupRoute{
	"eu": {Primary: []Placement{{"hetzner", "fsn1"}}, Standby: []Placement{{"vultr", "ams"}}},
}}

func planFor(t *testing.T, h *harness, req ProvisionRequest) ProvisionPlan {
	t.Helper()
	p, err := h.svc.PlanProvision(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProvisionBatchProgress(t *testing.T) {
	bus := NewBus(nil)
	h := newHarness(t, func(o *Options) { o.Bus = bus; o.DefaultRouting = euRouting })
	events := collect(t, bus, EventProvisionProgress, EventProvisionCompleted)
	ctx := context.Background()
	plan := planFor(t, h, ProvisionRequest{Prefix: "beta", Count: 4, Tier: "standard", Group: "eu"})
	if len(plan.Pairs) != 4 || plan.Pairs[0].Account != "beta-001" || plan.Pairs[3].Account != "beta-004" ||
		plan.Pairs[0].Primary != (Placement{"hetzner", "fsn1"}) || plan.Pairs[0].Standby != (Placement{"vultr", "ams"}) {
		t.Fatalf("plan: got %+v", plan)
	}
	// 4 × (hetzner standard 5.99 + vultr standard 6.00)
	if plan.MonthlyUSD != 47.96 || plan.RoutingVersion != 0 {
		t.Errorf("plan cost: got %.2f (routing v%d), want 47.96 (v0)", plan.MonthlyUSD, plan.RoutingVersion)
	}
	b, err := h.svc.EnqueueProvision(ctx, plan, "alice via forge", "COMPANION beta")
	if err != nil {
		t.Fatal(err)
	}
	if b.Summary != "4/4 QUEUED" || b.Done {
		t.Errorf("queued batch: got %q done=%v", b.Summary, b.Done)
	}
	if d, _ := h.svc.QueueDepth(ctx); d != 4 {
		t.Errorf("queue depth: got %d, want 4", d)
	}
	// The same accounts again are refused while queued.
	_, err = h.svc.EnqueueProvision(ctx, plan, "alice", "again")
	wantReason(t, err, ReasonPairExists)
	// The next numbers follow the queued ones.
	if p2 := planFor(t, h, ProvisionRequest{Prefix: "beta", Count: 1, Tier: "standard", Group: "eu"}); p2.Pairs[0].Account != "beta-005" {
		t.Errorf("next account: got %s, want beta-005", p2.Pairs[0].Account)
	}

	if n, err := h.svc.ProcessProvisionQueue(ctx); err != nil || n != 4 {
		t.Fatalf("processed: got %d, %v; want 4", n, err)
	}
	b, _ = h.svc.ProvisionBatch(ctx, b.ID)
	if b.Summary != "4/4 BOOTSTRAPPING" {
		t.Errorf("after provisioning: got %q", b.Summary)
	}
	// Heartbeats bring pairs to ACTIVE; the monitor's sweep reports progress.
	h.clock.Advance(4 * time.Minute)
	for _, id := range []clawops.InstanceID{"beta-001-pri", "beta-001-sby", "beta-002-pri"} {
		if err := h.svc.RecordHeartbeat(ctx, heartbeat(id, clawops.NodeID("n-"+id), true)); err != nil {
			t.Fatal(err)
		}
	}
	mon := NewMonitor(h.svc, MonitorOptions{CostEvery: -1})
	if _, err := mon.SweepOnce(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ = h.svc.ProvisionBatch(ctx, b.ID)
	if b.Summary != "1/4 ACTIVE, 3/4 BOOTSTRAPPING" {
		t.Errorf("progress: got %q", b.Summary)
	}
	h.clock.Advance(3 * time.Minute)
	for _, id := range []clawops.InstanceID{"beta-002-sby", "beta-003-pri", "beta-003-sby", "beta-004-pri", "beta-004-sby"} {
		if err := h.svc.RecordHeartbeat(ctx, heartbeat(id, clawops.NodeID("n-"+id), true)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := mon.SweepOnce(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ = h.svc.ProvisionBatch(ctx, b.ID)
	if !b.Done || b.Summary != "4/4 ACTIVE" || b.FastestMs != (4*time.Minute).Milliseconds() || b.SlowestMs != (7*time.Minute).Milliseconds() {
		t.Errorf("done: got %+v", b)
	}
	evs := events()
	prog := eventsOf(evs, EventProvisionProgress)
	done := eventsOf(evs, EventProvisionCompleted)
	if len(prog) < 2 || len(done) != 1 || !strings.Contains(done[0].Summary, "fastest 4m0s, slowest 7m0s") {
		t.Errorf("events: progress %d, completed %v", len(prog), done)
	}
	// A sweep without change reports nothing new.
	before := len(events())
	mon.SweepOnce(ctx)
	if after := len(events()); after != before {
		t.Errorf("repeated sweep raised %d progress events, want 0", after-before)
	}
	// Provider samples feed the scores: hetzner's primaries took 4, 4, 7 and 7 minutes
	// (mean 5m30s, 30s over the 5m target: -2), vultr's standbys 4, 7, 7, 7 (mean 6m15s: -5).
	scores, _ := h.svc.ProviderScores(ctx)
	want := map[string]int{"hetzner": 98, "vultr": 95}
	for _, sc := range scores {
		if sc.Provisions != 4 || sc.Failures != 0 || sc.Score != want[sc.Provider] {
			t.Errorf("score: got %+v, want 4 provisions, score %d", sc, want[sc.Provider])
		}
	}
}

func TestProvisionRetries(t *testing.T) {
	rate := clawops.E("vultr create", clawops.KindTransient, ReasonProviderRateLimited,
		RateLimitedFromHeader(http.Header{"Retry-After": {"120"}}, errors.New("429")))
	quota := clawops.E("vultr create", clawops.KindDenied, ReasonProviderQuota, "instance limit reached")
	for _, tc := range []struct {
		name      string
		seq       []error
		wantState string
		wantJob   string
		creates   int
	}{
		{"second attempt succeeds", []error{rate, nil}, string(StateBootstrapping), JobDone, 2},
		{"gives up after two retries", []error{quota, quota, quota, nil}, string(StateFailed), JobFailed, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := NewBus(nil)
			h := newHarness(t, func(o *Options) { o.Bus = bus; o.DefaultRouting = euRouting })
			events := collect(t, bus, EventProvisionRetry, EventProvisionFailed)
			h.vu.failSeq = map[string][]error{"acct1-sby": tc.seq}
			ctx := context.Background()
			b, err := h.svc.EnqueueProvision(ctx, planFor(t, h, ProvisionRequest{Accounts: []string{"acct1"}, Tier: "standard", Group: "eu"}), "forge", "test")
			if err != nil {
				t.Fatal(err)
			}
			for range 5 {
				h.svc.ProcessProvisionQueue(ctx)
				h.clock.Advance(3 * time.Minute) // past the retry delay and the Retry-After
			}
			var job ProvisionJob
			h.db.Where("batch_id = ?", b.ID).Take(&job)
			if got := h.row(t, "acct1-sby").State; string(got) != tc.wantState || job.State != tc.wantJob {
				t.Errorf("standby %s, job %s; want %s, %s", got, job.State, tc.wantState, tc.wantJob)
			}
			if creates, _ := h.vu.calls(); len(creates) != tc.creates {
				t.Errorf("vultr creates: got %d, want %d", len(creates), tc.creates)
			}
			if creates, _ := h.hz.calls(); len(creates) != 1 {
				t.Errorf("hetzner creates: got %d, want 1 (the primary is never created twice)", len(creates))
			}
			evs := events()
			if tc.wantJob == JobFailed {
				f := eventsOf(evs, EventProvisionFailed)
				if len(f) != 1 || f[0].Severity != SeverityCritical || !strings.Contains(f[0].Summary, "instance limit reached") ||
					len(eventsOf(evs, EventProvisionRetry)) != 2 {
					t.Errorf("events: got %+v", evs)
				}
				if v, _ := h.svc.ProvisionBatch(ctx, b.ID); !v.Done || len(v.Failed) != 1 {
					t.Errorf("batch: got %+v, want done with acct1 failed", v)
				}
				scores, _ := h.svc.ProviderScores(ctx)
				for _, sc := range scores {
					if sc.Provider == "vultr" && (sc.Failures != 3 || sc.Score != 40) {
						t.Errorf("vultr score: got %+v, want 3 failures, score 40", sc)
					}
				}
			} else if len(eventsOf(evs, EventProvisionRetry)) != 1 || len(eventsOf(evs, EventProvisionFailed)) != 0 {
				t.Errorf("events: got %+v", evs)
			}
		})
	}
}

// TestProvisionReconcilesMaybeCreated: a Create that may have succeeded is not repeated
// blindly: the retry finds the server by its label.
func TestProvisionReconcilesMaybeCreated(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.DefaultRouting = euRouting })
	h.vu.maybe = map[string]bool{"acct1-sby": true}
	ctx := context.Background()
	if _, err := h.svc.EnqueueProvision(ctx, planFor(t, h, ProvisionRequest{Accounts: []string{"acct1"}, Tier: "standard", Group: "eu"}), "forge", "t"); err != nil {
		t.Fatal(err)
	}
	h.svc.ProcessProvisionQueue(ctx)
	if st := h.row(t, "acct1-sby"); st.State != StateFailed || !strings.Contains(st.Error, "may exist") {
		t.Fatalf("after the ambiguous create: got %s %q", st.State, st.Error)
	}
	h.clock.Advance(time.Minute)
	h.svc.ProcessProvisionQueue(ctx)
	st := h.row(t, "acct1-sby")
	if st.State != StateBootstrapping || st.ProviderID != "vultr-acct1-sby" {
		t.Errorf("after the retry: got %s %q, want BOOTSTRAPPING with the server found", st.State, st.ProviderID)
	}
	if creates, _ := h.vu.calls(); len(creates) != 1 {
		t.Errorf("vultr creates: got %d, want 1 (the retry must find the server, not create another)", len(creates))
	}
}

// TestProvisionerResumesAfterRestart: a job a stopped gateway left running is queued
// again by the next provisioner, which finishes the pair.
func TestProvisionerResumesAfterRestart(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.DefaultRouting = euRouting })
	ctx := context.Background()
	b, err := h.svc.EnqueueProvision(ctx, planFor(t, h, ProvisionRequest{Accounts: []string{"acct1"}, Tier: "standard", Group: "eu"}), "forge", "t")
	if err != nil {
		t.Fatal(err)
	}
	// The crash: the job was claimed and the pair recorded, but no server was created.
	h.db.Model(&ProvisionJob{}).Where("batch_id = ?", b.ID).Update("state", JobRunning)
	spec := demoSpec
	spec.Account = "acct1"
	h.svc.opts.Tokens = fakeMinter{err: errors.New("hub down")}
	h.svc.ProvisionPair(ctx, spec) // records the pair; both creations fail
	h.svc.opts.Tokens = fakeMinter{}
	h.setRow(t, "acct1-pri", map[string]any{"state": StateCreating})

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.svc.RunProvisioner(runCtx, time.Hour) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var job ProvisionJob
		h.db.Where("batch_id = ?", b.ID).Take(&job)
		if job.State == JobDone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job: got %s (%s), want done", job.State, job.Error)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, id := range []clawops.InstanceID{"acct1-pri", "acct1-sby"} {
		if st := h.row(t, id); st.State != StateBootstrapping || st.ProviderID == "" {
			t.Errorf("%s: got %s %q, want BOOTSTRAPPING with a server", id, st.State, st.ProviderID)
		}
	}
}

func TestPlanProvisionBad(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.DefaultRouting = euRouting })
	h.seedPair(t, "taken", StateActive, StateActive)
	for _, tc := range []struct {
		name   string
		req    ProvisionRequest
		reason clawops.ReasonCode
	}{
		{"unknown tier", ProvisionRequest{Accounts: []string{"a1"}, Tier: "huge", Group: "eu"}, ReasonUnknownTier},
		{"no accounts", ProvisionRequest{Tier: "standard", Group: "eu"}, clawops.ReasonBadArguments},
		{"both forms", ProvisionRequest{Accounts: []string{"a1"}, Prefix: "b", Count: 1, Tier: "standard", Group: "eu"}, clawops.ReasonBadArguments},
		{"count too big", ProvisionRequest{Prefix: "beta", Count: MaxProvisionBatch + 1, Tier: "standard", Group: "eu"}, clawops.ReasonBadArguments},
		{"bad prefix", ProvisionRequest{Prefix: "Beta;", Count: 1, Tier: "standard", Group: "eu"}, clawops.ReasonBadArguments},
		{"bad account", ProvisionRequest{Accounts: []string{"$(id)"}, Tier: "standard", Group: "eu"}, clawops.ReasonBadArguments},
		{"duplicate account", ProvisionRequest{Accounts: []string{"a1", "a1"}, Tier: "standard", Group: "eu"}, clawops.ReasonBadArguments},
		{"existing pair", ProvisionRequest{Accounts: []string{"taken"}, Tier: "standard", Group: "eu"}, ReasonPairExists},
		{"unknown group", ProvisionRequest{Accounts: []string{"a1"}, Tier: "standard", Group: "mars"}, ReasonNoPlacement},
		{"bad group", ProvisionRequest{Accounts: []string{"a1"}, Tier: "standard", Group: "e u"}, clawops.ReasonBadArguments},
		{"half placement", ProvisionRequest{Accounts: []string{"a1"}, Tier: "standard", Primary: &Placement{"hetzner", "fsn1"}}, clawops.ReasonBadArguments},
		{"unknown provider", ProvisionRequest{Accounts: []string{"a1"}, Tier: "standard",
			Primary: &Placement{"aws", "x1"}, Standby: &Placement{"vultr", "ams"}}, ReasonUnknownProvider},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.svc.PlanProvision(context.Background(), tc.req)
			wantReason(t, err, tc.reason)
		})
	}
	_, err := h.svc.EnqueueProvision(context.Background(), ProvisionPlan{}, "x", "y")
	wantReason(t, err, clawops.ReasonBadArguments)
	_, err = h.svc.ProvisionBatch(context.Background(), 42)
	wantReason(t, err, ReasonUnknownBatch)
}
