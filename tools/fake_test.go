package tools

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
	"github.com/gatewayforge/clawops/fleet"
)

// memFleet is an in-memory Fleet that records every call.
type memFleet struct {
	mu     sync.Mutex
	views  map[clawops.InstanceID]fleet.InstanceView
	calls  []string
	health proto.Health
	logs   string
	err    error // returned by the operations (not by Instance/Instances)
}

func (m *memFleet) record(format string, a ...any) {
	m.calls = append(m.calls, fmt.Sprintf(format, a...))
}

func (m *memFleet) recorded() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

func (m *memFleet) Instances(context.Context) ([]fleet.InstanceView, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("Instances")
	out := make([]fleet.InstanceView, 0, len(m.views))
	for _, v := range m.views {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b fleet.InstanceView) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out, nil
}

func (m *memFleet) Instance(_ context.Context, id clawops.InstanceID) (fleet.InstanceView, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("Instance %s", id)
	v, ok := m.views[id]
	if !ok {
		return fleet.InstanceView{}, clawops.E("get instance", clawops.KindNotFound, clawops.ReasonUnknownInstance, fmt.Errorf("no instance %q", id))
	}
	return v, nil
}

func (m *memFleet) Health(_ context.Context, id clawops.InstanceID) (proto.Health, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("Health %s", id)
	return m.health, m.err
}

func (m *memFleet) Restart(_ context.Context, id clawops.InstanceID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("Restart %s", id)
	return m.err
}

func (m *memFleet) Logs(_ context.Context, id clawops.InstanceID, lines int) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("Logs %s %d", id, lines)
	return m.logs, m.err
}

func (m *memFleet) Teardown(_ context.Context, id clawops.InstanceID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record("Teardown %s", id)
	if m.err != nil {
		return m.err
	}
	v := m.views[id]
	v.State = fleet.StateTerminated
	m.views[id] = v
	return nil
}

var heartbeatAt = time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)

// newMemFleet holds:
//   - demo1: primary and standby ACTIVE, both with nodes;
//   - demo2: primary ACTIVE, standby DEGRADED;
//   - demo3: primary BOOTSTRAPPING without a node, standby TERMINATED;
//   - demo4: standby FAILED before its server was created.
func newMemFleet() *memFleet {
	m := &memFleet{views: map[clawops.InstanceID]fleet.InstanceView{}}
	add := func(pair string, pri, sby fleet.State, priNode, sbyNode clawops.NodeID) {
		for _, x := range []struct {
			suffix string
			role   fleet.Role
			state  fleet.State
			node   clawops.NodeID
			peer   string
			peerSt fleet.State
			prov   string
		}{
			{fleet.PrimarySuffix, fleet.RolePrimary, pri, priNode, pair + fleet.StandbySuffix, sby, "hetzner"},
			{fleet.StandbySuffix, fleet.RoleStandby, sby, sbyNode, pair + fleet.PrimarySuffix, pri, "vultr"},
		} {
			id := clawops.InstanceID(pair + x.suffix)
			v := fleet.InstanceView{ID: id, Account: pair, Pair: pair, Provider: x.prov,
				ProviderID: x.prov + "-" + string(id), Region: "eu", Tier: "standard", Role: x.role,
				State: x.state, Node: x.node, Peer: clawops.InstanceID(x.peer), PeerState: x.peerSt,
				Health: fleet.HealthView{OK: x.state == fleet.StateActive, Status: 200, LatencyMs: 9}}
			if x.node != "" {
				v.LastHeartbeat = &heartbeatAt
			}
			m.views[id] = v
		}
	}
	add("demo1", fleet.StateActive, fleet.StateActive,
		"1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988", "a0b1c2d3e4f5a6b7a0b1c2d3e4f5a6b7a0b1c2d3e4f5a6b7a0b1c2d3e4f5a6b7")
	add("demo2", fleet.StateActive, fleet.StateDegraded, "node-demo2-pri", "node-demo2-sby")
	add("demo3", fleet.StateBootstrapping, fleet.StateTerminated, "", "")
	add("demo4", fleet.StateBootstrapping, fleet.StateFailed, "", "")
	v := m.views["demo4-sby"]
	v.ProviderID = ""
	m.views["demo4-sby"] = v
	return m
}
