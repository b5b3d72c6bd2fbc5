package fleet

import (
	"context"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops"
)

func steps(r HealReport) string {
	var s []string
	for _, st := range r.Steps {
		mark := "ok"
		if !st.OK {
			mark = "fail"
		}
		s = append(s, st.Step+":"+mark)
	}
	return strings.Join(s, " ")
}

func TestHealRunbook(t *testing.T) {
	for _, tc := range []struct {
		name      string
		target    clawops.InstanceID
		setup     func(sim *simNodes, h *harness)
		opts      HealOptions
		outcome   HealOutcome
		steps     string
		escalate  string // substring of the escalation
		severity  Severity
		failedOut bool
	}{
		{name: "healthy", target: "demo1-pri", opts: HealOptions{AllowFailover: true},
			outcome: HealHealthy, steps: "verify:ok", severity: SeverityInfo},
		{name: "restart heals", target: "demo1-pri", opts: HealOptions{AllowFailover: true},
			setup: func(sim *simNodes, _ *harness) {
				sim.with("node-demo1-pri", func(n *simNode) { n.unhealthy, n.restartFixes = true, true })
			},
			outcome: HealRestarted, steps: "verify:fail restart:ok wait:ok", severity: SeverityInfo},
		{name: "primary down fails over", target: "demo1-pri", opts: HealOptions{AllowFailover: true},
			setup:   func(sim *simNodes, _ *harness) { sim.with("node-demo1-pri", func(n *simNode) { n.down = true }) },
			outcome: HealFailedOver, steps: "verify:fail restart:fail wait:fail check_standby:ok failover:ok",
			severity: SeverityWarning, failedOut: true},
		{name: "failover not allowed", target: "demo1-pri",
			setup:   func(sim *simNodes, _ *harness) { sim.with("node-demo1-pri", func(n *simNode) { n.down = true }) },
			outcome: HealEscalated, steps: "verify:fail restart:fail wait:fail check_standby:ok escalate:fail",
			escalate: "gf_failover", severity: SeverityCritical},
		{name: "standby degraded escalates", target: "demo1-pri", opts: HealOptions{AllowFailover: true},
			setup: func(sim *simNodes, h *harness) {
				sim.with("node-demo1-pri", func(n *simNode) { n.down = true })
				h.setRow(t, "demo1-sby", map[string]any{"state": StateDegraded})
			},
			outcome: HealEscalated, steps: "verify:fail restart:fail wait:fail check_standby:fail escalate:fail",
			escalate: "CRITICAL", severity: SeverityCritical},
		{name: "standby ACTIVE but not answering escalates", target: "demo1-pri", opts: HealOptions{AllowFailover: true},
			setup: func(sim *simNodes, _ *harness) {
				sim.with("node-demo1-pri", func(n *simNode) { n.unhealthy = true })
				sim.with("node-demo1-sby", func(n *simNode) { n.down = true })
			},
			outcome: HealEscalated, steps: "verify:fail restart:ok wait:fail check_standby:fail escalate:fail",
			escalate: "does not answer healthy", severity: SeverityCritical},
		{name: "standby down escalates without failover", target: "demo1-sby", opts: HealOptions{AllowFailover: true},
			setup:   func(sim *simNodes, _ *harness) { sim.with("node-demo1-sby", func(n *simNode) { n.unhealthy = true }) },
			outcome: HealEscalated, steps: "verify:fail restart:ok wait:fail escalate:fail",
			escalate: "replace it", severity: SeverityWarning},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := NewBus(nil)
			h, sim := newSimHarness(t, func(o *Options) { o.Bus = bus })
			events := collect(t, bus, EventHealStarted, EventHealSucceeded, EventHealEscalated, EventFailoverCompleted)
			h.activePairsNamed(t, sim, "demo1")
			if tc.setup != nil {
				tc.setup(sim, h)
			}
			r, err := h.svc.Heal(context.Background(), tc.target, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if r.Outcome != tc.outcome || steps(r) != tc.steps {
				t.Fatalf("heal: got %s [%s], want %s [%s]; escalation %q", r.Outcome, steps(r), tc.outcome, tc.steps, r.Escalation)
			}
			if !strings.Contains(r.Escalation, tc.escalate) {
				t.Errorf("escalation: got %q, want it to contain %q", r.Escalation, tc.escalate)
			}
			_, deletes := h.hz.calls()
			_, vdeletes := h.vu.calls()
			if len(deletes)+len(vdeletes) != 0 {
				t.Errorf("provider deletes: got %v %v, want none: the runbook never deletes", deletes, vdeletes)
			}
			evs := events()
			if len(eventsOf(evs, EventHealStarted)) != 1 {
				t.Errorf("HEAL_STARTED events: got %d, want 1", len(eventsOf(evs, EventHealStarted)))
			}
			last := evs[len(evs)-1]
			if tc.outcome == HealEscalated && (last.Type != EventHealEscalated || last.Severity != tc.severity) {
				t.Errorf("last event: got %s %s, want HEAL_ESCALATED %s", last.Type, last.Severity, tc.severity)
			}
			if tc.outcome != HealEscalated && (last.Type != EventHealSucceeded || last.Severity != tc.severity) {
				t.Errorf("last event: got %s %s, want HEAL_SUCCEEDED %s", last.Type, last.Severity, tc.severity)
			}
			pv, err := h.svc.Pair(context.Background(), "demo1")
			if err != nil {
				t.Fatal(err)
			}
			if tc.failedOut {
				if pv.PrimaryID != "demo1-sby" || pv.StandbyID != "demo1-r1" || r.Failover == nil || r.Failover.NewStandby != "demo1-r1" {
					t.Errorf("pair after failover: got %s/%s, report %+v", pv.PrimaryID, pv.StandbyID, r.Failover)
				}
			} else if pv.PrimaryID != "demo1-pri" || pv.StandbyID != "demo1-sby" {
				t.Errorf("pair changed without a failover: got %s/%s", pv.PrimaryID, pv.StandbyID)
			}
		})
	}
}

// activePairsNamed records one ACTIVE pair for account with simulated nodes.
func (h *harness) activePairsNamed(t *testing.T, sim *simNodes, account string) {
	t.Helper()
	spec := demoSpec
	spec.Account = account
	if _, err := h.svc.ProvisionPair(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	now := h.clock.Now()
	for _, id := range []clawops.InstanceID{clawops.InstanceID(account + PrimarySuffix), clawops.InstanceID(account + StandbySuffix)} {
		h.setRow(t, id, map[string]any{"state": StateActive, "node_id": "node-" + string(id), "active_at": now, "last_heartbeat": now})
		sim.add(clawops.NodeID("node-" + string(id)))
	}
}

func TestFailover(t *testing.T) {
	bus := NewBus(nil)
	h, sim := newSimHarness(t, func(o *Options) {
		o.Bus = bus
		o.DefaultRouting = &RoutingPolicy{Groups: map[string]GroupRoute{
			"eu": {Primary: []Placement{{"hetzner", "fsn1"}}, Standby: []Placement{{"vultr", "ams"}, {"hetzner", "nbg1"}}},
		}}
	})
	events := collect(t, bus)
	h.activePairsNamed(t, sim, "demo1")
	ctx := context.Background()
	r, err := h.svc.Failover(ctx, "demo1")
	if err != nil {
		t.Fatal(err)
	}
	// The new primary is at vultr, so the new standby must not be: the policy's next
	// standby placement, hetzner/nbg1.
	if r.OldPrimary != "demo1-pri" || r.NewPrimary != "demo1-sby" || r.NewStandby != "demo1-r1" ||
		r.NewStandbyPlacement != (Placement{"hetzner", "nbg1"}) || r.Job == 0 {
		t.Fatalf("report: got %+v", r)
	}
	pv, _ := h.svc.Pair(ctx, "demo1")
	if pv.Primary.ID != "demo1-sby" || pv.Primary.Role != RolePrimary || pv.Primary.State != StateActive ||
		pv.Standby.ID != "demo1-r1" || pv.Standby.State != StateCreating || pv.Standby.Role != RoleStandby {
		t.Fatalf("pair: got primary %+v standby %+v", pv.Primary, pv.Standby)
	}
	old := h.row(t, "demo1-pri")
	if old.Role != RoleRetired || !strings.Contains(old.Error, "replaced by failover") {
		t.Errorf("old primary: got role %s error %q, want retired", old.Role, old.Error)
	}
	if v, _ := h.svc.Instance(ctx, "demo1-pri"); v.Peer != "" {
		t.Errorf("retired instance peer: got %s, want none", v.Peer)
	}
	// The provisioner creates the new standby's server.
	if n, err := h.svc.ProcessProvisionQueue(ctx); err != nil || n != 1 {
		t.Fatalf("provision queue: ran %d, %v; want 1", n, err)
	}
	if st := h.row(t, "demo1-r1"); st.State != StateBootstrapping || st.ProviderID != "hetzner-demo1-r1" {
		t.Errorf("new standby: got %s %q, want BOOTSTRAPPING at hetzner", st.State, st.ProviderID)
	}
	if len(eventsOf(events(), EventFailoverCompleted)) != 1 {
		t.Error("no FAILOVER_COMPLETED event")
	}

	// A second failover now: the standby is not ACTIVE.
	_, err = h.svc.Failover(ctx, "demo1")
	wantReason(t, err, clawops.ReasonStandbyNotActive)
	_, err = h.svc.Failover(ctx, "nope9")
	wantReason(t, err, ReasonUnknownPair)
}

func TestFailoverStandbyUnhealthy(t *testing.T) {
	h, sim := newSimHarness(t, nil)
	h.activePairsNamed(t, sim, "demo1")
	sim.with("node-demo1-sby", func(n *simNode) { n.unhealthy = true })
	_, err := h.svc.Failover(context.Background(), "demo1")
	wantReason(t, err, ReasonFailoverFailed)
	if st := h.row(t, "demo1-sby"); st.State != StateDegraded || st.Role != RoleStandby {
		t.Errorf("standby: got %s %s, want DEGRADED standby", st.State, st.Role)
	}
	if pv, _ := h.svc.Pair(context.Background(), "demo1"); pv.PrimaryID != "demo1-pri" {
		t.Errorf("pair changed: primary %s", pv.PrimaryID)
	}
}

func TestOperationsHoldThePair(t *testing.T) {
	h, sim := newSimHarness(t, nil)
	h.activePairsNamed(t, sim, "demo1")
	release, err := h.svc.hold("heal instance", "demo1")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	_, err = h.svc.Failover(context.Background(), "demo1")
	wantReason(t, err, ReasonOperationInProgress)
	_, err = h.svc.Heal(context.Background(), "demo1-sby", HealOptions{})
	wantReason(t, err, ReasonOperationInProgress)
	_, err = h.svc.Heal(context.Background(), "ghost-pri", HealOptions{})
	wantReason(t, err, clawops.ReasonUnknownInstance)
}
