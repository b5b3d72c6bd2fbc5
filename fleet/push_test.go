package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
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

// pushKind is one kind of rolling push as the tests drive it over simulated nodes.
type pushKind struct {
	kind    string
	start   func(s *Service, ids []clawops.InstanceID, batch, maxFail int) (PushView, error)
	prepare func(sim *simNodes, ids []clawops.InstanceID)
	changes func(sim *simNodes) map[clawops.NodeID]int // what each node took: configs or images
	command string                                     // what changes a node
	probe   string                                     // what asks a node what it runs
	code    clawops.ReasonCode                         // a node's rollback
	label   string                                     // PushView.Label
}

var pushKinds = []pushKind{
	{PushKindConfig,
		func(s *Service, ids []clawops.InstanceID, batch, maxFail int) (PushView, error) {
			return s.StartPush(context.Background(), pushSpec(ids, batch, maxFail))
		},
		func(*simNodes, []clawops.InstanceID) {}, (*simNodes).appliesByNode, CmdConfigApply, CmdConfigGet, ReasonConfigRolledBack, "v48"},
	{PushKindUpgrade,
		func(s *Service, ids []clawops.InstanceID, batch, maxFail int) (PushView, error) {
			return s.StartUpgrade(context.Background(), upgradeSpec(ids, batch, maxFail))
		},
		simImages, upgradesByNode, CmdUpgrade, CmdInfo, ReasonUpgradeRolledBack, "upgrade to " + newImage},
}

// TestRollingPushFailurePercent pushes to 100 instances, two of them broken (the node
// rolls back), with a threshold the two stay under and one they cross; for a config and
// for an image.
func TestRollingPushFailurePercent(t *testing.T) {
	for _, k := range pushKinds {
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
			t.Run(k.kind+"/"+tc.name, func(t *testing.T) {
				bus := NewBus(nil)
				h, sim := newSimHarness(t, func(o *Options) { o.Bus = bus })
				events := collect(t, bus)
				ids := h.activePairs(t, sim, "acct", 50)
				if len(ids) != 100 {
					t.Fatalf("instances: got %d, want 100", len(ids))
				}
				k.prepare(sim, ids)
				broken := []clawops.InstanceID{ids[14], ids[40]}
				for _, id := range broken {
					sim.with(clawops.NodeID("node-"+string(id)), func(n *simNode) { n.broken = true })
				}
				v, err := k.start(h.svc, ids, tc.batch, tc.maxFail)
				if err != nil {
					t.Fatal(err)
				}
				if v.Kind != k.kind || v.Label() != k.label {
					t.Fatalf("started: got kind %q label %q, want %s %s", v.Kind, v.Label(), k.kind, k.label)
				}
				v, err = h.svc.RunPush(context.Background(), v.ID)
				if err != nil {
					t.Fatal(err)
				}
				if v.State != tc.wantState || v.Counts[TargetApplied] != tc.wantApplied || v.Counts[TargetFailed] != tc.wantFailed ||
					v.Counts[TargetPending] != tc.wantPending {
					t.Fatalf("push: got %s %v (%s), want %s applied=%d failed=%d pending=%d", v.State, v.Counts, v.StopReason,
						tc.wantState, tc.wantApplied, tc.wantFailed, tc.wantPending)
				}
				total := 0
				for node, n := range k.changes(sim) {
					if n > 1 {
						t.Errorf("%s: changed %d times, want at most 1", node, n)
					}
					total += n
				}
				if total != v.Counts[TargetApplied] {
					t.Errorf("changes at the nodes: got %d, want %d (the applied targets)", total, v.Counts[TargetApplied])
				}
				for _, f := range v.Failures {
					if !isBroken(clawops.NodeID("node-"+string(f.Instance)), broken) ||
						!strings.HasPrefix(f.Detail, "rolled back by the node: ") || !strings.Contains(f.Detail, string(k.code)) {
						t.Errorf("failure: got %+v, want only the broken instances, rolled back (%s)", f, k.code)
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
				started := eventsOf(evs, EventPushStarted)
				if len(started) != 1 || !strings.Contains(started[0].Summary, "("+v.Label()+")") {
					t.Errorf("started events: got %+v, want one naming %s", started, v.Label())
				}
				for _, e := range append(started, eventsOf(evs, EventPushBatch)...) {
					var p struct{ Kind, Image, Version string }
					if err := json.Unmarshal(e.Payload, &p); err != nil || p.Kind != k.kind || p.Image != v.Image || p.Version != v.Version {
						t.Errorf("%s payload: got %s, want kind %s, image %q, version %q", e.Type, e.Payload, k.kind, v.Image, v.Version)
					}
				}
			})
		}
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
// that matter: after a node took the change but before the journal heard of it, and
// before the command left. A new Service over the same database finishes the push,
// asking the nodes left "sending" what they run (config.get, vps.info), and every
// instance has the change exactly once.
func TestRollingPushResumesAfterCrash(t *testing.T) {
	for _, k := range pushKinds {
		t.Run(k.kind, func(t *testing.T) {
			h, sim := newSimHarness(t, func(o *Options) { o.PushConcurrency = 4 })
			ids := h.activePairs(t, sim, "acct", 15) // 30 instances
			k.prepare(sim, ids)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			v, err := k.start(h.svc, ids, 10, 0)
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
			for node, n := range k.changes(sim) {
				if n != 1 {
					t.Errorf("%s: changed %d times, want exactly 1", node, n)
				}
			}
			var reconciled int64
			h.db.Model(&PushTarget{}).Where("push_id = ? AND detail LIKE ?", v.ID, "confirmed by "+k.probe+"%").Count(&reconciled)
			if reconciled == 0 {
				t.Errorf("no target was confirmed through %s: the crash case after the change was not exercised", k.probe)
			}
		})
	}
}

// TestRollingPushLostAnswer: a node takes the change but its answer is lost; the probe
// (config.get, vps.info) shows the change, so the instance counts as done and is not sent
// the command again.
func TestRollingPushLostAnswer(t *testing.T) {
	for _, k := range pushKinds {
		t.Run(k.kind, func(t *testing.T) {
			h, sim := newSimHarness(t, nil)
			ids := h.activePairs(t, sim, "acct", 1)
			k.prepare(sim, ids)
			node := "node-" + clawops.NodeID(ids[0])
			sim.with(node, func(n *simNode) { n.lostAnswer = true })
			v, err := k.start(h.svc, ids, 10, 0)
			if err != nil {
				t.Fatal(err)
			}
			v, err = h.svc.RunPush(context.Background(), v.ID)
			if err != nil || v.State != PushCompleted || v.Counts[TargetApplied] != 2 {
				t.Fatalf("push: got %s %v, %v; want completed, 2 applied", v.State, v.Counts, err)
			}
			if n := k.changes(sim)[node]; n != 1 {
				t.Errorf("changes after a lost answer: got %d, want 1", n)
			}
			if c, want := sim.commandsOf(node), []string{k.command, k.probe, k.probe, CmdHealth}; !slices.Equal(c, want) {
				t.Errorf("commands: got %v, want %v (the lost answer checked, then the batch validated)", c, want)
			}
			// The idempotency key the journal recorded is the one the node saw.
			var tg PushTarget
			h.db.Where("push_id = ? AND instance = ?", v.ID, ids[0]).Take(&tg)
			want := fmt.Sprintf("push-%d-%s-1", v.ID, ids[0])
			if !strings.HasPrefix(tg.Detail, "applied; the answer was lost") || tg.Attempts != 1 {
				t.Errorf("journal: got %+v, want applied after a lost answer, one attempt", tg)
			}
			sim.with(node, func(n *simNode) {
				if tg.Key != want || !n.keys[want] {
					t.Errorf("idempotency key: journal %q, node saw %v; want %s", tg.Key, n.keys, want)
				}
			})
		})
	}
}

// TestRollingPushControl pauses, resumes and aborts a push of either kind.
func TestRollingPushControl(t *testing.T) {
	for _, k := range pushKinds {
		t.Run(k.kind, func(t *testing.T) {
			bus := NewBus(nil)
			h, sim := newSimHarness(t, func(o *Options) { o.Bus = bus; o.PushConcurrency = 1 })
			events := collect(t, bus, EventPushPaused, EventPushResumed, EventPushAborted)
			ids := h.activePairs(t, sim, "acct", 10) // 20 instances, batches of 5
			k.prepare(sim, ids)
			ctx := context.Background()
			v, err := k.start(h.svc, ids, 5, 0)
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
		})
	}
}

// TestRollingPushSkipsAndValidates: an instance without a node is skipped; after each
// batch the probe (config.get, vps.info) and the health check validate the instances
// that took the change, failing one that runs something else or turned unhealthy.
func TestRollingPushSkipsAndValidates(t *testing.T) {
	for _, k := range pushKinds {
		t.Run(k.kind, func(t *testing.T) {
			h, sim := newSimHarness(t, nil)
			ids := h.activePairs(t, sim, "acct", 2)
			k.prepare(sim, ids)
			// acct000-sby's node goes away: skipped, not failed. acct001-pri takes the
			// change, then answers unhealthy; acct001-sby takes it, then someone puts the
			// old one back: validation fails both.
			h.setRow(t, ids[1], map[string]any{"node_id": ""})
			sim.afterApply = func(node clawops.NodeID) {
				switch node {
				case "node-" + clawops.NodeID(ids[2]):
					sim.with(node, func(n *simNode) { n.unhealthy = true })
				case "node-" + clawops.NodeID(ids[3]):
					sim.with(node, func(n *simNode) { n.version, n.image = "v0", oldImage })
				}
			}
			v, err := k.start(h.svc, ids, 10, 80)
			if err != nil {
				t.Fatal(err)
			}
			v, err = h.svc.RunPush(context.Background(), v.ID)
			if err != nil {
				t.Fatal(err)
			}
			if v.State != PushCompleted || v.Counts[TargetApplied] != 1 || v.Counts[TargetSkipped] != 1 || v.Counts[TargetFailed] != 2 {
				t.Fatalf("push: got %s %v, want completed 1 applied, 1 skipped, 2 failed", v.State, v.Counts)
			}
			want := map[clawops.InstanceID]string{ids[2]: "validation: unhealthy", ids[3]: "validation: runs "}
			for _, f := range v.Failures {
				if w, ok := want[f.Instance]; !ok || !strings.HasPrefix(f.Detail, w) {
					t.Errorf("failure %s: got %q, want prefix %q", f.Instance, f.Detail, want[f.Instance])
				}
			}
			if c, want := sim.commandsOf("node-"+clawops.NodeID(ids[0])), []string{k.command, k.probe, CmdHealth}; !slices.Equal(c, want) {
				t.Errorf("commands of a healthy node: got %v, want %v", c, want)
			}
		})
	}
}

func TestStartPushBad(t *testing.T) {
	h, sim := newSimHarness(t, nil)
	ids := h.activePairs(t, sim, "acct", 1)
	for _, tc := range []struct {
		name   string
		mutate func(*PushSpec)
	}{
		{"config array", func(s *PushSpec) { s.Config = json.RawMessage(`[1]`) }},
		{"config invalid", func(s *PushSpec) { s.Config = json.RawMessage(`{"a":`) }},
		{"config empty", func(s *PushSpec) { s.Config = nil }},
		{"config huge", func(s *PushSpec) {
			s.Config = json.RawMessage(`{"x":"` + strings.Repeat("a", MaxConfigBytes) + `"}`)
		}},
		{"version shell", func(s *PushSpec) { s.Version = "v1;reboot" }},
		{"version long", func(s *PushSpec) { s.Version = strings.Repeat("v", 65) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := pushSpec(ids, 10, 0)
			tc.mutate(&spec)
			_, err := h.svc.StartPush(context.Background(), spec)
			wantReason(t, err, clawops.ReasonBadArguments)
		})
	}
	wantNothingSent(t, h, sim, ids)
}

// TestStartRolloutBad: the rules every kind of push shares (batch size, failure
// threshold, targets) refuse a bad push of either kind with nothing journaled or sent.
func TestStartRolloutBad(t *testing.T) {
	for _, k := range pushKinds {
		t.Run(k.kind, func(t *testing.T) {
			h, sim := newSimHarness(t, nil)
			ids := h.activePairs(t, sim, "acct", 1)
			many := make([]clawops.InstanceID, 0, 150)
			for i := range 150 {
				many = append(many, clawops.InstanceID(fmt.Sprintf("x%03d-pri", i)))
			}
			for _, tc := range []struct {
				name           string
				targets        []clawops.InstanceID
				batch, maxFail int
				reason         clawops.ReasonCode
			}{
				{"batch too big", ids, 101, 0, clawops.ReasonRollingRequired},
				{"batch too big for many", many, 150, 0, clawops.ReasonRollingRequired},
				{"batch negative", ids, -1, 0, clawops.ReasonRollingRequired},
				{"fail percent above 100", ids, 10, 101, clawops.ReasonBadArguments},
				{"fail percent negative", ids, 10, -1, clawops.ReasonBadArguments},
				{"no targets", nil, 10, 0, clawops.ReasonBadArguments},
				{"duplicate target", []clawops.InstanceID{ids[0], ids[1], ids[0]}, 10, 0, clawops.ReasonBadArguments},
				{"bad target", []clawops.InstanceID{"../x"}, 10, 0, clawops.ReasonBadArguments},
				{"shell target", []clawops.InstanceID{"acct000-pri;reboot"}, 10, 0, clawops.ReasonBadArguments},
				{"unknown target", []clawops.InstanceID{ids[0], "ghost-pri"}, 10, 0, clawops.ReasonUnknownInstance},
			} {
				t.Run(tc.name, func(t *testing.T) {
					_, err := k.start(h.svc, tc.targets, tc.batch, tc.maxFail)
					wantReason(t, err, tc.reason)
				})
			}
			wantNothingSent(t, h, sim, ids)
		})
	}
}

// wantNothingSent fails when a push or a push target was journaled, or a node of ids
// was sent anything.
func wantNothingSent(t *testing.T, h *harness, sim *simNodes, ids []clawops.InstanceID) {
	t.Helper()
	var pushes, targets int64
	h.db.Model(&Push{}).Count(&pushes)
	h.db.Model(&PushTarget{}).Count(&targets)
	if pushes != 0 || targets != 0 {
		t.Errorf("journal: got %d pushes and %d targets, want none", pushes, targets)
	}
	for _, id := range ids {
		if c := sim.commandsOf("node-" + clawops.NodeID(id)); len(c) != 0 {
			t.Errorf("%s: node commands %v, want none", id, c)
		}
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
