package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gatewayforge/clawops"
)

var kimiConfig = json.RawMessage(`{"model":{"primary":"moonshot/kimi-k2.5","fallbacks":["anthropic/claude-sonnet-4"]}}`)

func pushSpec(targets []clawops.InstanceID, batch, maxFail int) PushSpec {
	return PushSpec{Config: kimiConfig, Version: "v48", Targets: targets, BatchSize: batch,
		MaxFailPercent: maxFail, RequestedBy: "alice via commander", Reason: "kimi routing"}
}

// TestRollingPushFailurePercent pushes to 100 instances, two of them broken, with a
// threshold the two stay under and one they cross.
func TestRollingPushFailurePercent(t *testing.T) {
	for _, tc := range []struct {
		name             string
		batch, maxFail   int
		wantState        string
		wantApplied      int
		wantFailed       int
		wantPending      int
		wantBatchesEvent int
	}{
		// 2 of 100 is 2%, under 5%: every batch runs.
		{"continues under threshold", 10, 5, PushCompleted, 98, 2, 0, 10},
		// Instance 15 (batch 2) fails: 1 of 20 is 5% > 1%: the push stops after batch 2.
		{"stops above threshold", 10, 1, PushStopped, 19, 1, 80, 2},
		// The default batch of 50: both broken ones are in batch 1 (2 of 50 = 4% > 2%).
		{"default batch", 0, 2, PushStopped, 48, 2, 50, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := NewBus(nil)
			h, sim := newSimHarness(t, func(o *Options) { o.Bus = bus })
			events := collect(t, bus)
			ids := h.activePairs(t, sim, "acct", 50)
			if len(ids) != 100 {
				t.Fatalf("instances: got %d, want 100", len(ids))
			}
			broken := []clawops.InstanceID{ids[14], ids[40]}
			for _, id := range broken {
				sim.with(clawops.NodeID("node-"+string(id)), func(n *simNode) { n.broken = true })
			}
			ctx := context.Background()
			v, err := h.svc.StartPush(ctx, pushSpec(ids, tc.batch, tc.maxFail))
			if err != nil {
				t.Fatal(err)
			}
			v, err = h.svc.RunPush(ctx, v.ID)
			if err != nil {
				t.Fatal(err)
			}
			if v.State != tc.wantState || v.Counts[TargetApplied] != tc.wantApplied || v.Counts[TargetFailed] != tc.wantFailed ||
				v.Counts[TargetPending] != tc.wantPending {
				t.Fatalf("push: got %s %v (%s), want %s applied=%d failed=%d pending=%d", v.State, v.Counts, v.StopReason,
					tc.wantState, tc.wantApplied, tc.wantFailed, tc.wantPending)
			}
			total := 0
			for node, n := range sim.appliesByNode() {
				if n > 1 {
					t.Errorf("%s: config applied %d times, want at most 1", node, n)
				}
				total += n
			}
			if total != v.Counts[TargetApplied] {
				t.Errorf("applies at the nodes: got %d, want %d (the applied targets)", total, v.Counts[TargetApplied])
			}
			for _, f := range v.Failures {
				if !isBroken(clawops.NodeID("node-"+string(f.Instance)), broken) || !strings.Contains(f.Detail, "CONFIG_ROLLED_BACK") {
					t.Errorf("failure: got %+v, want only the broken instances, rolled back", f)
				}
			}
			evs := events()
			if got := len(eventsOf(evs, EventPushBatch)); got != tc.wantBatchesEvent {
				t.Errorf("batch events: got %d, want %d", got, tc.wantBatchesEvent)
			}
			final := EventPushCompleted
			if tc.wantState == PushStopped {
				final = EventPushStopped
			}
			if got := eventsOf(evs, final); len(got) != 1 {
				t.Errorf("%s events: got %d, want 1", final, len(got))
			}
			if b := eventsOf(evs, EventPushBatch); len(b) > 0 && !strings.Contains(b[0].Summary, "batch 1/") {
				t.Errorf("first batch summary: got %q", b[0].Summary)
			}
		})
	}
}

func isBroken(node clawops.NodeID, broken []clawops.InstanceID) bool {
	for _, b := range broken {
		if node == clawops.NodeID("node-"+string(b)) {
			return true
		}
	}
	return false
}

// TestRollingPushResumesAfterCrash stops the push the way a crash does, at both points
// that matter: after a node took the config but before the journal heard of it, and
// before the command left. A new Service over the same database finishes the push, and
// every instance has the config exactly once.
func TestRollingPushResumesAfterCrash(t *testing.T) {
	h, sim := newSimHarness(t, func(o *Options) { o.PushConcurrency = 4 })
	ids := h.activePairs(t, sim, "acct", 15) // 30 instances
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := h.svc.StartPush(ctx, pushSpec(ids, 10, 0))
	if err != nil {
		t.Fatal(err)
	}
	var applied atomic.Int32
	sim.afterApply = func(clawops.NodeID) {
		if applied.Add(1) == 13 {
			cancel() // the gateway dies with this node's answer in flight
		}
	}
	if _, err := h.svc.RunPush(ctx, v.ID); err == nil {
		t.Fatal("RunPush: got nil error after the crash, want the context error")
	}
	sim.afterApply = nil
	var sending []PushTarget
	h.db.Where("push_id = ? AND state = ?", v.ID, TargetSending).Find(&sending)
	if len(sending) == 0 {
		t.Fatal("no target was left sending: the crash did not hit an instance in flight")
	}

	// The restarted gateway: a new Service over the same database and nodes.
	svc2, err := NewService(h.svc.opts)
	if err != nil {
		t.Fatal(err)
	}
	v, err = svc2.RunPush(context.Background(), v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v.State != PushCompleted || v.Counts[TargetApplied] != len(ids) {
		t.Fatalf("resumed push: got %s %v, want completed with %d applied", v.State, v.Counts, len(ids))
	}
	for node, n := range sim.appliesByNode() {
		if n != 1 {
			t.Errorf("%s: config applied %d times, want exactly 1", node, n)
		}
	}
	var reconciled int64
	h.db.Model(&PushTarget{}).Where("push_id = ? AND detail LIKE ?", v.ID, "confirmed by config.get%").Count(&reconciled)
	if reconciled == 0 {
		t.Error("no target was confirmed through config.get: the crash case after apply was not exercised")
	}
}

func TestRollingPushLostAnswer(t *testing.T) {
	h, sim := newSimHarness(t, nil)
	ids := h.activePairs(t, sim, "acct", 1)
	sim.with("node-"+clawops.NodeID(ids[0]), func(n *simNode) { n.lostAnswer = true })
	v, err := h.svc.StartPush(context.Background(), pushSpec(ids, 10, 0))
	if err != nil {
		t.Fatal(err)
	}
	v, err = h.svc.RunPush(context.Background(), v.ID)
	if err != nil || v.State != PushCompleted || v.Counts[TargetApplied] != 2 {
		t.Fatalf("push: got %s %v, %v; want completed, 2 applied", v.State, v.Counts, err)
	}
	if n := sim.appliesByNode()["node-"+clawops.NodeID(ids[0])]; n != 1 {
		t.Errorf("applies after a lost answer: got %d, want 1", n)
	}
	// The idempotency key the journal recorded is the one the node saw.
	var tg PushTarget
	h.db.Where("push_id = ? AND instance = ?", v.ID, ids[0]).Take(&tg)
	want := fmt.Sprintf("push-%d-%s-1", v.ID, ids[0])
	sim.with("node-"+clawops.NodeID(ids[0]), func(n *simNode) {
		if tg.Key != want || !n.keys[want] {
			t.Errorf("idempotency key: journal %q, node saw %v; want %s", tg.Key, n.keys, want)
		}
	})
}

func TestRollingPushControl(t *testing.T) {
	bus := NewBus(nil)
	h, sim := newSimHarness(t, func(o *Options) { o.Bus = bus; o.PushConcurrency = 1 })
	events := collect(t, bus, EventPushPaused, EventPushResumed, EventPushAborted)
	ids := h.activePairs(t, sim, "acct", 10) // 20 instances, batches of 5
	ctx := context.Background()
	v, err := h.svc.StartPush(ctx, pushSpec(ids, 5, 0))
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	sim.afterApply = func(clawops.NodeID) {
		if n.Add(1) == 3 {
			if _, err := h.svc.PausePush(ctx, v.ID, "alice"); err != nil {
				t.Error(err)
			}
		}
	}
	v, err = h.svc.RunPush(ctx, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v.State != PushPaused || v.Counts[TargetApplied] != 3 || v.Counts[TargetPending] != 17 {
		t.Fatalf("paused push: got %s %v, want paused after the instance in flight (3 applied)", v.State, v.Counts)
	}
	// A paused push does not run.
	if v, _ = h.svc.RunPush(ctx, v.ID); v.Counts[TargetApplied] != 3 {
		t.Errorf("RunPush of a paused push applied more: %v", v.Counts)
	}
	_, err = h.svc.PausePush(ctx, v.ID, "alice")
	wantReason(t, err, ReasonPushState)

	sim.afterApply = nil
	if _, err := h.svc.ResumePush(ctx, v.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	var m atomic.Int32
	sim.afterApply = func(clawops.NodeID) {
		if m.Add(1) == 2 {
			if _, err := h.svc.AbortPush(ctx, v.ID, "bob"); err != nil {
				t.Error(err)
			}
		}
	}
	v, err = h.svc.RunPush(ctx, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v.State != PushAborted || v.Counts[TargetApplied] != 5 || v.Counts[TargetSkipped] != 15 || v.FinishedAt == nil {
		t.Fatalf("aborted push: got %s %v", v.State, v.Counts)
	}
	_, err = h.svc.ResumePush(ctx, v.ID, "alice")
	wantReason(t, err, ReasonPushState)
	_, err = h.svc.PushStatus(ctx, 999)
	wantReason(t, err, ReasonUnknownPush)
	evs := events()
	if len(eventsOf(evs, EventPushPaused)) != 1 || len(eventsOf(evs, EventPushResumed)) != 1 || len(eventsOf(evs, EventPushAborted)) != 1 {
		t.Errorf("control events: got %v", evs)
	}
}

func TestRollingPushSkipsAndValidates(t *testing.T) {
	h, sim := newSimHarness(t, nil)
	ids := h.activePairs(t, sim, "acct", 2)
	// acct000-sby's node goes away: skipped, not failed. acct001-pri takes the config but
	// then answers unhealthy: validation fails it.
	h.setRow(t, ids[1], map[string]any{"node_id": ""})
	sim.afterApply = func(node clawops.NodeID) {
		if node == "node-"+clawops.NodeID(ids[2]) {
			sim.with(node, func(n *simNode) { n.unhealthy = true })
		}
	}
	v, err := h.svc.StartPush(context.Background(), pushSpec(ids, 10, 50))
	if err != nil {
		t.Fatal(err)
	}
	v, err = h.svc.RunPush(context.Background(), v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v.State != PushCompleted || v.Counts[TargetApplied] != 2 || v.Counts[TargetSkipped] != 1 || v.Counts[TargetFailed] != 1 {
		t.Fatalf("push: got %s %v, want completed 2 applied, 1 skipped, 1 failed", v.State, v.Counts)
	}
	if len(v.Failures) != 1 || v.Failures[0].Instance != ids[2] || !strings.HasPrefix(v.Failures[0].Detail, "validation: unhealthy") {
		t.Errorf("failures: got %+v", v.Failures)
	}
}

func TestStartPushBad(t *testing.T) {
	h, sim := newSimHarness(t, nil)
	ids := h.activePairs(t, sim, "acct", 1)
	many := make([]clawops.InstanceID, 0, 150)
	for i := range 150 {
		many = append(many, clawops.InstanceID(fmt.Sprintf("x%03d-pri", i)))
	}
	for _, tc := range []struct {
		name   string
		mutate func(*PushSpec)
		reason clawops.ReasonCode
	}{
		{"config array", func(s *PushSpec) { s.Config = json.RawMessage(`[1]`) }, clawops.ReasonBadArguments},
		{"config invalid", func(s *PushSpec) { s.Config = json.RawMessage(`{"a":`) }, clawops.ReasonBadArguments},
		{"config empty", func(s *PushSpec) { s.Config = nil }, clawops.ReasonBadArguments},
		{"config huge", func(s *PushSpec) {
			s.Config = json.RawMessage(`{"x":"` + strings.Repeat("a", MaxConfigBytes) + `"}`)
		}, clawops.ReasonBadArguments},
		{"version shell", func(s *PushSpec) { s.Version = "v1;reboot" }, clawops.ReasonBadArguments},
		{"version long", func(s *PushSpec) { s.Version = strings.Repeat("v", 65) }, clawops.ReasonBadArguments},
		{"batch too big", func(s *PushSpec) { s.BatchSize = 101 }, clawops.ReasonRollingRequired},
		{"batch too big for many", func(s *PushSpec) { s.Targets, s.BatchSize = many, 150 }, clawops.ReasonRollingRequired},
		{"batch negative", func(s *PushSpec) { s.BatchSize = -1 }, clawops.ReasonRollingRequired},
		{"fail percent", func(s *PushSpec) { s.MaxFailPercent = 101 }, clawops.ReasonBadArguments},
		{"no targets", func(s *PushSpec) { s.Targets = nil }, clawops.ReasonBadArguments},
		{"duplicate target", func(s *PushSpec) { s.Targets = []clawops.InstanceID{ids[0], ids[0]} }, clawops.ReasonBadArguments},
		{"bad target", func(s *PushSpec) { s.Targets = []clawops.InstanceID{"../x"} }, clawops.ReasonBadArguments},
		{"unknown target", func(s *PushSpec) { s.Targets = []clawops.InstanceID{ids[0], "ghost-pri"} }, clawops.ReasonUnknownInstance},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := pushSpec(ids, 10, 0)
			tc.mutate(&spec)
			_, err := h.svc.StartPush(context.Background(), spec)
			wantReason(t, err, tc.reason)
		})
	}
	var n int64
	h.db.Model(&Push{}).Count(&n)
	if n != 0 {
		t.Errorf("pushes recorded: got %d, want 0", n)
	}
	if c := sim.commandsOf("node-" + clawops.NodeID(ids[0])); len(c) != 0 {
		t.Errorf("node commands: got %v, want none", c)
	}
}

func TestConfigVersionDefault(t *testing.T) {
	spec, err := NormalizePushSpec(PushSpec{Config: json.RawMessage(`{ "a" : 1 }`), Targets: []clawops.InstanceID{"ab-pri"}})
	if err != nil {
		t.Fatal(err)
	}
	if string(spec.Config) != `{"a":1}` || spec.Version != ConfigVersion(json.RawMessage(`{"a":1}`)) ||
		!strings.HasPrefix(spec.Version, "cfg-") || len(spec.Version) != 16 || spec.BatchSize != DefaultBatchSize {
		t.Errorf("normalized: got config %s version %s batch %d", spec.Config, spec.Version, spec.BatchSize)
	}
}
