package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// simNode is one simulated gf-clawnode: it answers the node commands the fleet sends with
// the shapes the real node uses.
type simNode struct {
	version      string
	config       json.RawMessage
	applies      int             // config.apply runs that changed the config
	keys         map[string]bool // idempotency keys seen (the node's replay guard)
	broken       bool            // config.apply fails its health check and rolls back
	down         bool            // the node is offline
	unhealthy    bool            // OpenClaw answers unhealthy
	restartFixes bool            // a restart makes OpenClaw healthy again
	lostAnswer   bool            // the next config.apply runs but its answer is lost
	backup       *Backup         // what backup.create answers (an error when nil)
	image        string          // the OpenClaw image vps.info reports
	upgrades     int             // openclaw.upgrade runs that changed the image
	noImages     bool            // the process runtime: openclaw.upgrade is NOT_IMPLEMENTED
	commands     []string

	archive []byte                                                    // what backup.read serves at backup.Path; nil: a node without backup.read
	tamper  func(p proto.BackupReadParams, r *proto.BackupReadResult) // when set, alters each backup.read answer (a lying node)
}

// simNodes is a fleet of simulated nodes behind the NodeInvoker boundary.
type simNodes struct {
	mu    sync.Mutex
	nodes map[clawops.NodeID]*simNode
	// beforeApply runs (unlocked) before each config.apply and openclaw.upgrade; an error
	// aborts it unapplied.
	beforeApply func(ctx context.Context, node clawops.NodeID) error
	// afterApply runs (unlocked) after a config.apply or openclaw.upgrade has changed the
	// config or the image.
	afterApply func(node clawops.NodeID)
}

func newSimNodes() *simNodes { return &simNodes{nodes: map[clawops.NodeID]*simNode{}} }

func (s *simNodes) add(node clawops.NodeID) *simNode {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := &simNode{version: "v0", config: json.RawMessage(`{}`), keys: map[string]bool{}}
	s.nodes[node] = n
	return n
}

func (s *simNodes) with(node clawops.NodeID, f func(n *simNode)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.nodes[node])
}

func (s *simNodes) Invoke(ctx context.Context, node clawops.NodeID, command string, params any) (json.RawMessage, error) {
	op := fmt.Sprintf("invoke %s on node %s", command, node)
	key := proto.IdempotencyKeyFrom(ctx)
	if err := ctx.Err(); err != nil {
		return nil, clawops.E(op, clawops.KindTransient, err)
	}
	b, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	if (command == CmdConfigApply || command == CmdUpgrade) && s.beforeApply != nil {
		if err := s.beforeApply(ctx, node); err != nil {
			return nil, clawops.E(op, clawops.KindTransient, err)
		}
	}
	s.mu.Lock()
	n := s.nodes[node]
	if n == nil || n.down {
		s.mu.Unlock()
		return nil, clawops.E(op, clawops.KindTransient, clawops.ReasonNodeOffline, "node is not connected")
	}
	n.commands = append(n.commands, command)
	var out any
	var cerr error
	applied := false
	switch command {
	case CmdHealth:
		h := proto.Health{OK: !n.unhealthy, Status: 200, LatencyMs: 3, CheckedAt: 1}
		if n.unhealthy {
			h.Status, h.Error = 502, "bad gateway"
		}
		out = h
	case CmdRestart:
		if n.restartFixes {
			n.unhealthy = false
		}
		out = map[string]any{"restarted": true, "container": "running"}
	case CmdMetrics:
		out = proto.Metrics{CPUPercent: 12, MemUsedBytes: 1 << 30, MemTotalBytes: 4 << 30, DiskUsedBytes: 95, DiskTotalBytes: 100}
	case CmdLogs:
		out = map[string]any{"lines": []string{"booted", "ready"}}
	case CmdBackup:
		if n.backup == nil {
			cerr = clawops.E(op, clawops.KindOther, clawops.ReasonExecutionFailed, "tar: workspace: No such file or directory")
		} else {
			out = n.backup
		}
	case CmdBackupRead:
		var p proto.BackupReadParams
		switch {
		case n.archive == nil:
			cerr = clawops.E(op, clawops.KindDenied, clawops.ReasonNotAllowlisted, "command \"backup.read\" is not in this node's allowlist")
		case proto.UnmarshalStrict(b, &p) != nil || p.Validate() != nil:
			cerr = clawops.E(op, clawops.KindDenied, clawops.ReasonBadParams, "bad params")
		case n.backup == nil || p.Path != n.backup.Path:
			cerr = clawops.E(op, clawops.KindOther, clawops.ReasonExecutionFailed, "not an archive of this node's backup folder")
		default:
			size := int64(len(n.archive))
			from := min(p.Offset, size)
			to := min(from+int64(p.Length), size)
			r := proto.BackupReadResult{Data: slices.Clone(n.archive[from:to]), Size: size, EOF: to == size}
			if n.tamper != nil {
				n.tamper(p, &r)
			}
			out = r
		}
	case CmdConfigGet:
		out = ConfigGetResult{Version: n.version, Config: n.config}
	case CmdConfigApply:
		var p ConfigApplyParams
		switch {
		case json.Unmarshal(b, &p) != nil:
			cerr = clawops.E(op, clawops.KindDenied, clawops.ReasonBadParams, "bad params")
		case key != "" && n.keys[key]:
			cerr = clawops.E(op, clawops.KindDenied, clawops.ReasonCommandReplayed, "idempotency key already used")
		case n.broken:
			n.keys[key] = true
			cerr = clawops.E(op, clawops.KindOther, clawops.ReasonExecutionFailed, "CONFIG_ROLLED_BACK: new config failed its health check")
		default:
			n.keys[key] = true
			n.version, n.config = p.Version, p.Config
			n.applies++
			applied = true
			out = ConfigApplyResult{Version: p.Version, Healthy: true}
			if n.lostAnswer {
				n.lostAnswer = false
				cerr = clawops.E(op, clawops.KindTransient, clawops.ReasonNodeTimeout, "no result before the deadline")
			}
		}
	case CmdInfo:
		out = proto.VPSInfo{Hostname: string(node), OS: "linux", Arch: "amd64", Runtime: "docker", Image: n.image}
		if n.noImages {
			out = proto.VPSInfo{Hostname: string(node), OS: "linux", Arch: "amd64", Runtime: "process"}
		}
	case CmdUpgrade:
		var p proto.UpgradeParams
		switch {
		case json.Unmarshal(b, &p) != nil || p.Validate() != nil:
			cerr = clawops.E(op, clawops.KindDenied, clawops.ReasonBadParams, "bad params")
		case key != "" && n.keys[key]:
			cerr = clawops.E(op, clawops.KindDenied, clawops.ReasonCommandReplayed, "idempotency key already used")
		case n.noImages:
			cerr = clawops.E(op, proto.CodeNotImplemented, "this node's runtime runs no container image")
		case n.broken:
			n.keys[key] = true
			cerr = clawops.E(op, proto.CodeUpgradeRolledBack, fmt.Sprintf("image %s failed: not healthy within 90s; %s runs again and is healthy", p.Image, n.image))
		default:
			n.keys[key] = true
			out = proto.UpgradeResult{Image: p.Image, PreviousImage: n.image, Healthy: true}
			n.image = p.Image
			n.upgrades++
			applied = true
			if n.lostAnswer {
				n.lostAnswer = false
				cerr = clawops.E(op, clawops.KindTransient, clawops.ReasonNodeTimeout, "no result before the deadline")
			}
		}
	default:
		cerr = clawops.E(op, clawops.KindDenied, clawops.ReasonNotAllowlisted, "not allowlisted")
	}
	s.mu.Unlock()
	if applied && s.afterApply != nil {
		s.afterApply(node)
		if ctx.Err() != nil {
			return nil, clawops.E(op, clawops.KindTransient, ctx.Err())
		}
	}
	if cerr != nil {
		return nil, cerr
	}
	return json.Marshal(out)
}

// appliesByNode returns how many times each node took a config.
func (s *simNodes) appliesByNode() map[clawops.NodeID]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[clawops.NodeID]int{}
	for id, n := range s.nodes {
		out[id] = n.applies
	}
	return out
}

func (s *simNodes) commandsOf(node clawops.NodeID) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.nodes[node].commands)
}

// newSimHarness is a harness whose nodes are simulated.
func newSimHarness(t testing.TB, mutate func(*Options)) (*harness, *simNodes) {
	t.Helper()
	sim := newSimNodes()
	h := newHarness(t, func(o *Options) {
		o.Nodes = sim
		o.HealWait, o.HealPoll = 200*time.Millisecond, 20*time.Millisecond
		if mutate != nil {
			mutate(o)
		}
	})
	return h, sim
}

// activePairs records n ACTIVE pairs named <prefix>NNN and one simulated node per
// instance, and returns the instance IDs in order.
func (h *harness) activePairs(t testing.TB, sim *simNodes, prefix string, n int) []clawops.InstanceID {
	t.Helper()
	var ids []clawops.InstanceID
	for i := range n {
		acct := fmt.Sprintf("%s%03d", prefix, i)
		spec := demoSpec
		spec.Account = acct
		if _, err := h.svc.ProvisionPair(context.Background(), spec); err != nil {
			t.Fatal(err)
		}
		for _, id := range []clawops.InstanceID{clawops.InstanceID(acct + PrimarySuffix), clawops.InstanceID(acct + StandbySuffix)} {
			node := clawops.NodeID("node-" + string(id))
			now := h.clock.Now()
			if err := h.db.Model(&Instance{}).Where("id = ?", id).Updates(map[string]any{
				"state": StateActive, "node_id": node, "active_at": now, "last_heartbeat": now, "health_ok": true}).Error; err != nil {
				t.Fatal(err)
			}
			if sim != nil {
				sim.add(node)
			}
			ids = append(ids, id)
		}
	}
	return ids
}

// collect subscribes to the bus and returns a function listing the events received.
func collect(t testing.TB, bus *Bus, types ...EventType) func() []Event {
	t.Helper()
	sub := bus.Subscribe(10000, types...)
	t.Cleanup(sub.Close)
	var mu sync.Mutex
	var got []Event
	return func() []Event {
		mu.Lock()
		defer mu.Unlock()
		for {
			select {
			case e, ok := <-sub.C():
				if !ok {
					return slices.Clone(got)
				}
				got = append(got, e)
			default:
				return slices.Clone(got)
			}
		}
	}
}

func eventsOf(evs []Event, typ EventType) []Event {
	var out []Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}
