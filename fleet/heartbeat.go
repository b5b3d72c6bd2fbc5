package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// HealthErrorNoHeartbeat is the health error Sweep records on a silent instance.
const HealthErrorNoHeartbeat = "no heartbeat"

// nextState is the heartbeat half of the instance state machine: what a heartbeat whose
// OpenClaw health is healthy (or not) does to an instance in cur. States it does not own
// (FAILED, STANDBY_PROMOTING, TERMINATED) are left alone.
func nextState(cur State, healthy bool) State {
	switch cur {
	case StateCreating, StateBootstrapping:
		if healthy {
			return StateActive
		}
		return StateBootstrapping
	case StateActive:
		if !healthy {
			return StateDegraded
		}
	case StateDegraded:
		if healthy {
			return StateActive
		}
	}
	return cur
}

// RecordHeartbeat stores what a node reported about its instance (node binding, time of
// receipt, OpenClaw health, metrics) and moves the instance's state: BOOTSTRAPPING or
// DEGRADED to ACTIVE when OpenClaw is healthy, ACTIVE to DEGRADED when it is not. The time
// recorded is the gateway's clock, not the node's, so a skewed node clock cannot hide
// from Sweep. An unknown instance is UNKNOWN_INSTANCE; a terminated one is
// INSTANCE_NOT_ACTIVE and nothing is recorded.
func (s *Service) RecordHeartbeat(ctx context.Context, hb proto.Heartbeat) error {
	const op = "record heartbeat"
	if hb.Node == "" {
		return clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, "heartbeat without a node id")
	}
	metrics, err := json.Marshal(hb.Metrics)
	if err != nil {
		return clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, fmt.Errorf("metrics: %w", err))
	}
	// The update is conditional on the state read; a concurrent change makes it miss and
	// the loop reads again.
	for range 5 {
		in, err := s.load(ctx, op, hb.Instance)
		if err != nil {
			return err
		}
		if in.State == StateTerminated {
			return clawops.E(op, clawops.KindDenied, clawops.ReasonInstanceNotActive,
				fmt.Errorf("instance %s is terminated; node %s should not be running", in.ID, hb.Node))
		}
		if in.NodeID != "" && in.NodeID != hb.Node {
			s.log.Warn("instance served by a new node", "instance", in.ID, "old_node", in.NodeID, "node", hb.Node)
		}
		to := nextState(in.State, hb.OpenClaw.OK)
		now := s.now()
		cols := map[string]any{
			"node_id": hb.Node, "last_heartbeat": now,
			"health_ok": hb.OpenClaw.OK, "health_status": hb.OpenClaw.Status,
			"health_latency_ms": hb.OpenClaw.LatencyMs, "health_error": truncate(hb.OpenClaw.Error, 1000),
			"last_metrics": string(metrics),
		}
		firstActive := to == StateActive && in.ActiveAt == nil
		if firstActive {
			cols["active_at"] = now
		}
		s.usageColumns(in, hb.Metrics, now, cols)
		moved, err := s.setState(ctx, in.ID, in.State, to, cols)
		if err != nil {
			return clawops.E(op, clawops.ReasonInternal, err)
		}
		if !moved {
			continue
		}
		if firstActive && (in.State == StateCreating || in.State == StateBootstrapping) {
			// A provision time only for a server that just came up, not for one that was
			// ACTIVE before ActiveAt was kept.
			s.recordProviderSample(ctx, in.Provider, true, now.Sub(in.CreatedAt), "")
		}
		reason := "heartbeat: openclaw healthy"
		if !hb.OpenClaw.OK {
			reason = "heartbeat: openclaw unhealthy"
			if hb.OpenClaw.Error != "" {
				reason += ": " + truncate(hb.OpenClaw.Error, 200)
			}
		}
		s.emit(ctx, in, in.State, to, reason)
		return nil
	}
	return clawops.E(op, clawops.KindTransient, clawops.ReasonInternal, fmt.Errorf("instance %s kept changing; heartbeat not recorded", hb.Instance))
}

// Sweep marks DEGRADED every ACTIVE instance whose last heartbeat is older than the
// heartbeat timeout, with health error "no heartbeat", and returns the transitions made.
// A heartbeat that lands during the sweep wins: the update is conditional.
func (s *Service) Sweep(ctx context.Context) ([]Transition, error) {
	const op = "sweep heartbeats"
	now := s.now()
	cutoff := now.Add(-s.opts.HeartbeatTimeout)
	stale := "state = ? AND (last_heartbeat IS NULL OR last_heartbeat < ?)"
	var rows []Instance
	if err := s.db.WithContext(ctx).Where(stale, StateActive, cutoff).Order("id").Find(&rows).Error; err != nil {
		return nil, clawops.E(op, clawops.ReasonInternal, err)
	}
	var out []Transition
	for _, in := range rows {
		res := s.db.WithContext(ctx).Model(&Instance{}).Where("id = ?", in.ID).Where(stale, StateActive, cutoff).
			Updates(map[string]any{"state": StateDegraded, "health_ok": false,
				"health_error": HealthErrorNoHeartbeat, "updated_at": now})
		if res.Error != nil {
			return out, clawops.E(op, clawops.ReasonInternal, res.Error)
		}
		if res.RowsAffected == 0 {
			continue
		}
		s.emit(ctx, in, StateActive, StateDegraded, HealthErrorNoHeartbeat)
		out = append(out, Transition{Instance: in.ID, Account: in.AccountID, Pair: in.PairID, Role: in.Role,
			From: StateActive, To: StateDegraded, Reason: HealthErrorNoHeartbeat, At: now})
	}
	return out, nil
}

// UsageWeek is the length of the window whose mean CPU and memory decide whether a tier is
// under-used.
const UsageWeek = 7 * 24 * time.Hour

// usageColumns adds to cols the usage bookkeeping of one heartbeat's metrics: the running
// sums of the current week, the means of the last full week when a week has passed, and
// the last activity when the CPU shows the user at work. Heartbeats without a memory
// total carry no sample.
func (s *Service) usageColumns(in Instance, m proto.Metrics, now time.Time, cols map[string]any) {
	if m.MemTotalBytes == 0 {
		return
	}
	cpu := m.CPUPercent
	mem := 100 * float64(m.MemUsedBytes) / float64(m.MemTotalBytes)
	if cpu >= s.opts.ActivityCPUPercent {
		cols["last_active_at"] = now
	}
	switch {
	case in.UsageSince == nil:
		cols["usage_since"], cols["usage_cpu_sum"], cols["usage_mem_sum"], cols["usage_samples"] = now, cpu, mem, 1
	case now.Sub(*in.UsageSince) >= UsageWeek:
		if in.UsageSamples > 0 {
			cols["usage_week_cpu"] = in.UsageCPUSum / float64(in.UsageSamples)
			cols["usage_week_mem"] = in.UsageMemSum / float64(in.UsageSamples)
			cols["usage_week_full"] = true
		}
		cols["usage_since"], cols["usage_cpu_sum"], cols["usage_mem_sum"], cols["usage_samples"] = now, cpu, mem, 1
	default:
		cols["usage_cpu_sum"] = in.UsageCPUSum + cpu
		cols["usage_mem_sum"] = in.UsageMemSum + mem
		cols["usage_samples"] = in.UsageSamples + 1
	}
}

// RecordActivity notes that account's user was active at at (e.g. an OpenClaw session
// event), so the cost model does not count the account idle. Older times are ignored.
func (s *Service) RecordActivity(ctx context.Context, account string, at time.Time) error {
	const op = "record activity"
	if !ValidInstanceID(account) {
		return clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, fmt.Errorf("%q is not an account id", account))
	}
	at = at.UTC().Truncate(time.Microsecond)
	res := s.db.WithContext(ctx).Model(&Account{}).
		Where("id = ? AND (last_activity_at IS NULL OR last_activity_at < ?)", account, at).
		Update("last_activity_at", at)
	if res.Error != nil {
		return clawops.E(op, clawops.ReasonInternal, res.Error)
	}
	if res.RowsAffected == 0 {
		var n int64
		if err := s.db.WithContext(ctx).Model(&Account{}).Where("id = ?", account).Count(&n).Error; err != nil {
			return clawops.E(op, clawops.ReasonInternal, err)
		}
		if n == 0 {
			return clawops.E(op, clawops.KindNotFound, clawops.ReasonBadArguments, fmt.Errorf("no account %q", account))
		}
	}
	return nil
}
