package fleet

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

func heartbeat(id clawops.InstanceID, node clawops.NodeID, ok bool) proto.Heartbeat {
	hb := proto.Heartbeat{Node: node, Instance: id,
		Metrics:  proto.Metrics{CPUPercent: 12.5, MemUsedBytes: 1 << 20, Load1: 0.3},
		OpenClaw: proto.Health{OK: ok, Status: 200, LatencyMs: 7}}
	if !ok {
		hb.OpenClaw.Status, hb.OpenClaw.Error = 503, "upstream not ready"
	}
	return hb
}

func TestRecordHeartbeatStateMachine(t *testing.T) {
	for _, tc := range []struct {
		from    State
		healthy bool
		want    State
	}{
		{StateCreating, true, StateActive},
		{StateCreating, false, StateBootstrapping},
		{StateBootstrapping, true, StateActive},
		{StateBootstrapping, false, StateBootstrapping},
		{StateActive, true, StateActive},
		{StateActive, false, StateDegraded},
		{StateDegraded, true, StateActive},
		{StateDegraded, false, StateDegraded},
		{StateFailed, true, StateFailed},
		{StateStandbyPromoting, true, StateStandbyPromoting},
		{StateStandbyPromoting, false, StateStandbyPromoting},
	} {
		name := string(tc.from) + map[bool]string{true: "+healthy", false: "+unhealthy"}[tc.healthy]
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.seedPair(t, "demo1", tc.from, StateActive)
			before := len(h.seen())
			h.clock.Advance(time.Minute)
			if err := h.svc.RecordHeartbeat(context.Background(), heartbeat("demo1-pri", "node-new", tc.healthy)); err != nil {
				t.Fatal(err)
			}
			in := h.row(t, "demo1-pri")
			if in.State != tc.want {
				t.Errorf("state: got %s, want %s", in.State, tc.want)
			}
			if in.NodeID != "node-new" {
				t.Errorf("node: got %q, want node-new", in.NodeID)
			}
			if in.LastHeartbeat == nil || !in.LastHeartbeat.Equal(h.clock.Now()) {
				t.Errorf("last heartbeat: got %v, want %v", in.LastHeartbeat, h.clock.Now())
			}
			if in.HealthOK != tc.healthy {
				t.Errorf("health ok: got %v, want %v", in.HealthOK, tc.healthy)
			}
			var m proto.Metrics
			if err := json.Unmarshal([]byte(in.LastMetrics), &m); err != nil || m.CPUPercent != 12.5 {
				t.Errorf("metrics: got %q (%v), want cpuPercent 12.5", in.LastMetrics, err)
			}
			tr := h.seen()[before:]
			if tc.from == tc.want && len(tr) != 0 {
				t.Errorf("transitions: got %+v, want none", tr)
			}
			if tc.from != tc.want && (len(tr) != 1 || tr[0].From != tc.from || tr[0].To != tc.want) {
				t.Errorf("transitions: got %+v, want one %s→%s", tr, tc.from, tc.want)
			}
		})
	}
}

func TestRecordHeartbeatBad(t *testing.T) {
	h := newHarness(t, nil)
	h.seedPair(t, "demo1", StateActive, StateTerminated)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		hb     proto.Heartbeat
		reason clawops.ReasonCode
	}{
		{"unknown instance", heartbeat("ghost-pri", "n1", true), clawops.ReasonUnknownInstance},
		{"bad instance id", heartbeat("Ghost;1", "n1", true), clawops.ReasonBadArguments},
		{"empty instance id", heartbeat("", "n1", true), clawops.ReasonBadArguments},
		{"no node", heartbeat("demo1-pri", "", true), clawops.ReasonBadArguments},
		{"terminated", heartbeat("demo1-sby", "n1", true), clawops.ReasonInstanceNotActive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantReason(t, h.svc.RecordHeartbeat(ctx, tc.hb), tc.reason)
		})
	}
	if in := h.row(t, "demo1-sby"); in.NodeID != "node-demo1-sby" || in.LastHeartbeat != nil {
		t.Errorf("terminated row changed: node %q heartbeat %v", in.NodeID, in.LastHeartbeat)
	}
}

func TestSweep(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.seedPair(t, "old1", StateBootstrapping, StateBootstrapping)
	h.seedPair(t, "fresh1", StateBootstrapping, StateBootstrapping)
	// old1 reports now, fresh1 reports 25 s later; the sweep runs 40 s after the first.
	for _, id := range []clawops.InstanceID{"old1-pri", "old1-sby"} {
		if err := h.svc.RecordHeartbeat(ctx, heartbeat(id, "n-"+clawops.NodeID(id), true)); err != nil {
			t.Fatal(err)
		}
	}
	h.clock.Advance(25 * time.Second)
	for _, id := range []clawops.InstanceID{"fresh1-pri", "fresh1-sby"} {
		if err := h.svc.RecordHeartbeat(ctx, heartbeat(id, "n-"+clawops.NodeID(id), true)); err != nil {
			t.Fatal(err)
		}
	}
	h.setRow(t, "old1-sby", map[string]any{"state": StateDegraded})
	h.clock.Advance(15 * time.Second)

	changed, err := h.svc.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 1 || changed[0].Instance != "old1-pri" || changed[0].To != StateDegraded {
		t.Fatalf("changed: got %+v, want only old1-pri → DEGRADED", changed)
	}
	for _, tc := range []struct {
		id   clawops.InstanceID
		want State
	}{{"old1-pri", StateDegraded}, {"old1-sby", StateDegraded}, {"fresh1-pri", StateActive}, {"fresh1-sby", StateActive}} {
		if got := h.row(t, tc.id).State; got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.id, got, tc.want)
		}
	}
	if in := h.row(t, "old1-pri"); in.HealthOK || in.HealthError != HealthErrorNoHeartbeat {
		t.Errorf("old1-pri health: got ok=%v error %q, want false %q", in.HealthOK, in.HealthError, HealthErrorNoHeartbeat)
	}
	// A second sweep finds nothing new; a healthy heartbeat brings the instance back.
	if again, err := h.svc.Sweep(ctx); err != nil || len(again) != 0 {
		t.Errorf("second sweep: got %+v, %v, want nothing", again, err)
	}
	if err := h.svc.RecordHeartbeat(ctx, heartbeat("old1-pri", "n-old1-pri", true)); err != nil {
		t.Fatal(err)
	}
	if got := h.row(t, "old1-pri").State; got != StateActive {
		t.Errorf("after heartbeat: got %s, want ACTIVE", got)
	}
}

func TestNodeCommands(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.seedPair(t, "demo1", StateActive, StateActive)
	h.nodes.answers[CmdHealth] = json.RawMessage(`{"ok":true,"status":200,"latencyMs":4,"checkedAt":1}`)
	h.nodes.answers[CmdLogs] = json.RawMessage(`{"lines":["a","b"]}`)
	h.nodes.answers[CmdRestart] = json.RawMessage(`{}`)
	h.nodes.answers[CmdMetrics] = json.RawMessage(`{"cpuPercent":3}`)

	hl, err := h.svc.Health(ctx, "demo1-sby")
	if err != nil || !hl.OK || hl.Status != 200 {
		t.Errorf("Health: got %+v, %v", hl, err)
	}
	if err := h.svc.Restart(ctx, "demo1-pri"); err != nil {
		t.Errorf("Restart: %v", err)
	}
	text, err := h.svc.Logs(ctx, "demo1-pri", 50)
	if err != nil || text != "a\nb" {
		t.Errorf("Logs: got %q, %v, want a\\nb", text, err)
	}
	if m, err := h.svc.Metrics(ctx, "demo1-sby"); err != nil || m.CPUPercent != 3 {
		t.Errorf("Metrics: got %+v, %v", m, err)
	}
	want := []invocation{
		{"node-demo1-sby", CmdHealth, `{}`},
		{"node-demo1-pri", CmdRestart, `{}`},
		{"node-demo1-pri", CmdLogs, `{"tail":50}`},
		{"node-demo1-sby", CmdMetrics, `{}`},
	}
	got := h.nodes.recorded()
	if len(got) != len(want) {
		t.Fatalf("invocations: got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("invocation %d: got %+v, want %+v", i, got[i], want[i])
		}
	}

	h.nodes.answers[CmdLogs] = json.RawMessage(`{"text":"one\ntwo"}`)
	if text, err := h.svc.Logs(ctx, "demo1-pri", 2); err != nil || text != "one\ntwo" {
		t.Errorf("Logs text form: got %q, %v", text, err)
	}
	h.nodes.answers[CmdLogs] = json.RawMessage(`["not","an","object"]`)
	_, err = h.svc.Logs(ctx, "demo1-pri", 2)
	wantReason(t, err, clawops.ReasonExecutionFailed)
}

func TestNodeCommandsRefused(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.seedPair(t, "demo1", StateActive, StateActive)
	h.seedPair(t, "demo2", StateBootstrapping, StateTerminated)
	h.setRow(t, "demo2-pri", map[string]any{"node_id": ""})

	for _, tc := range []struct {
		name   string
		call   func() error
		reason clawops.ReasonCode
	}{
		{"unknown", func() error { return h.svc.Restart(ctx, "ghost-pri") }, clawops.ReasonUnknownInstance},
		{"bad id", func() error { return h.svc.Restart(ctx, "demo1-pri; reboot") }, clawops.ReasonBadArguments},
		{"no node yet", func() error { _, err := h.svc.Health(ctx, "demo2-pri"); return err }, clawops.ReasonNodeOffline},
		{"terminated", func() error { return h.svc.Restart(ctx, "demo2-sby") }, clawops.ReasonInstanceNotActive},
		{"lines zero", func() error { _, err := h.svc.Logs(ctx, "demo1-pri", 0); return err }, clawops.ReasonBadArguments},
		{"lines too many", func() error { _, err := h.svc.Logs(ctx, "demo1-pri", 5001); return err }, clawops.ReasonBadArguments},
	} {
		t.Run(tc.name, func(t *testing.T) { wantReason(t, tc.call(), tc.reason) })
	}
	if got := h.nodes.recorded(); len(got) != 0 {
		t.Errorf("invocations: got %+v, want none", got)
	}

	// The invoker's own reason codes pass through; plain errors become EXECUTION_FAILED.
	h.nodes.err = clawops.E("invoke", clawops.KindTransient, clawops.ReasonNodeOffline, "node not connected")
	err := h.svc.Restart(ctx, "demo1-pri")
	wantReason(t, err, clawops.ReasonNodeOffline)
	if clawops.KindOf(err) != clawops.KindTransient {
		t.Errorf("kind: got %v, want transient", clawops.KindOf(err))
	}
	h.nodes.err = context.DeadlineExceeded
	wantReason(t, h.svc.Restart(ctx, "demo1-pri"), clawops.ReasonNodeTimeout)
}

func TestTeardown(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.seedPair(t, "demo1", StateActive, StateActive)

	h.hz.deleteErr = clawops.E("hetzner delete", clawops.KindTransient, ReasonProviderUnavailable, "503")
	err := h.svc.Teardown(ctx, "demo1-pri")
	wantReason(t, err, ReasonProviderUnavailable)
	if in := h.row(t, "demo1-pri"); in.State != StateActive || in.Error == "" {
		t.Errorf("after failed delete: got state %s error %q, want ACTIVE and the error recorded", in.State, in.Error)
	}

	h.hz.deleteErr = nil
	if err := h.svc.Teardown(ctx, "demo1-pri"); err != nil {
		t.Fatal(err)
	}
	in := h.row(t, "demo1-pri")
	if in.State != StateTerminated || in.NodeID != "" {
		t.Errorf("after teardown: got state %s node %q, want TERMINATED and no node", in.State, in.NodeID)
	}
	_, deletes := h.hz.calls()
	if len(deletes) != 2 || deletes[1] != "hetzner-demo1-pri" {
		t.Errorf("deletes: got %v, want two of hetzner-demo1-pri", deletes)
	}
	// Idempotent: a second teardown calls nothing.
	if err := h.svc.Teardown(ctx, "demo1-pri"); err != nil {
		t.Errorf("second teardown: %v", err)
	}
	if _, d := h.hz.calls(); len(d) != 2 {
		t.Errorf("deletes after second teardown: got %d, want 2", len(d))
	}
	if ps, _ := h.svc.PeerState(ctx, "demo1-sby"); ps != StateTerminated {
		t.Errorf("standby's peer state: got %s, want TERMINATED", ps)
	}
	wantReason(t, h.svc.Teardown(ctx, "ghost-pri"), clawops.ReasonUnknownInstance)
	wantReason(t, h.svc.Teardown(ctx, "x"), clawops.ReasonBadArguments)

	// A FAILED instance without a server is just recorded terminated.
	h.vu.failOn = map[string]error{"demo3-sby": clawops.E("create", ReasonProviderInvalid, "bad size")}
	spec := demoSpec
	spec.Account = "demo3"
	if _, err := h.svc.ProvisionPair(ctx, spec); err == nil {
		t.Fatal("provision demo3: got nil error, want the standby failure")
	}
	if err := h.svc.Teardown(ctx, "demo3-sby"); err != nil {
		t.Fatal(err)
	}
	if _, d := h.vu.calls(); len(d) != 0 {
		t.Errorf("vultr deletes for a server never created: got %v, want none", d)
	}
}

// BenchmarkRecordHeartbeat measures one heartbeat on SQLite: read, state step, update.
func BenchmarkRecordHeartbeat(b *testing.B) {
	h := newHarness(b, func(o *Options) { o.Logger = nil })
	ctx := context.Background()
	if _, err := h.svc.ProvisionPair(ctx, demoSpec); err != nil {
		b.Fatal(err)
	}
	hb := heartbeat("demo1-pri", "node-1", true)
	b.ReportAllocs()
	for b.Loop() {
		if err := h.svc.RecordHeartbeat(ctx, hb); err != nil {
			b.Fatal(err)
		}
	}
}
