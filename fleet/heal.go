package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/gatewayforge/clawops"
)

// HealOutcome is how the auto-heal runbook ended.
type HealOutcome string

// Heal outcomes.
const (
	HealHealthy    HealOutcome = "healthy"     // the verify step found OpenClaw healthy; nothing done
	HealRestarted  HealOutcome = "healed"      // a restart brought OpenClaw back
	HealFailedOver HealOutcome = "failed_over" // the primary stayed down; the ACTIVE standby took over
	HealEscalated  HealOutcome = "escalated"   // a human must decide; nothing destructive was done
)

// Heal steps, in runbook order.
const (
	StepVerify       = "verify"
	StepRestart      = "restart"
	StepWait         = "wait"
	StepCheckStandby = "check_standby"
	StepFailover     = "failover"
	StepEscalate     = "escalate"
)

// HealStep is one step the runbook took.
type HealStep struct {
	Step   string    `json:"step"`
	OK     bool      `json:"ok"`
	Detail string    `json:"detail"`
	At     time.Time `json:"at"`
}

// HealReport is what the runbook did to one instance, step by step.
type HealReport struct {
	Instance   clawops.InstanceID `json:"instance"`
	Pair       string             `json:"pair"`
	Role       Role               `json:"role"`
	Outcome    HealOutcome        `json:"outcome"`
	Steps      []HealStep         `json:"steps"`
	Failover   *FailoverReport    `json:"failover,omitempty"`
	Escalation string             `json:"escalation,omitempty"` // what a human must decide
}

// HealOptions tune one run of the runbook.
type HealOptions struct {
	// AllowFailover lets the runbook fail the pair over when the primary stays unhealthy
	// and its standby is ACTIVE and answers healthy. Without it the runbook escalates and
	// names the failover it would have made, for someone allowed to fail over.
	AllowFailover bool
}

// Heal runs the auto-heal runbook on one instance, as deterministic code:
//
//  1. verify: ask the node for OpenClaw's health; healthy → done, nothing changed;
//  2. restart OpenClaw through the node;
//  3. wait up to HealWait, asking for health every HealPoll; healthy → healed;
//  4. a standby that stays down is escalated (it needs replacing, which is not a heal);
//     for a primary, check its standby: ACTIVE in the records and healthy when asked;
//  5. standby fit and failover allowed → fail over (promote it, queue a new standby);
//  6. otherwise escalate, critical when the primary has no fit standby.
//
// The runbook never deletes a server and never touches another pair. A runbook that ran
// to its end returns a nil error whatever its outcome; an error means it could not run
// (unknown or terminated instance, another operation holding the pair).
func (s *Service) Heal(ctx context.Context, id clawops.InstanceID, opts HealOptions) (HealReport, error) {
	const op = "heal instance"
	in, err := s.load(ctx, op, id)
	if err != nil {
		return HealReport{}, err
	}
	if in.State == StateTerminated {
		return HealReport{}, clawops.E(op, clawops.KindDenied, clawops.ReasonInstanceNotActive, fmt.Errorf("instance %s is terminated", id))
	}
	release, err := s.hold(op, in.PairID)
	if err != nil {
		return HealReport{}, err
	}
	defer release()

	r := &HealReport{Instance: in.ID, Pair: in.PairID, Role: in.Role}
	step := func(name string, ok bool, format string, a ...any) {
		r.Steps = append(r.Steps, HealStep{Step: name, OK: ok, Detail: fmt.Sprintf(format, a...), At: s.now()})
	}
	s.publish(Event{Type: EventHealStarted, Subject: string(in.ID), Summary: fmt.Sprintf("heal %s (%s, %s) started", in.ID, in.Role, in.State)})

	if in.Role == RoleRetired {
		step(StepEscalate, false, "instance was replaced by a failover; tear it down instead")
		return s.healDone(r, HealEscalated, SeverityWarning, "retired instance "+string(in.ID)+" should be torn down, not healed"), nil
	}
	if in.NodeID == "" {
		step(StepVerify, false, "no node has enrolled for it yet (state %s)", in.State)
		return s.healDone(r, HealEscalated, SeverityWarning,
			fmt.Sprintf("%s has no node (state %s): check its provisioning", in.ID, in.State)), nil
	}

	// 1 verify
	if ok, detail := s.healthy(ctx, in.ID); ok {
		step(StepVerify, true, "OpenClaw answers healthy: %s", detail)
		return s.healDone(r, HealHealthy, SeverityInfo, ""), nil
	} else {
		step(StepVerify, false, "OpenClaw unhealthy: %s", detail)
	}
	// 2 restart
	if err := s.Restart(ctx, in.ID); err != nil {
		step(StepRestart, false, "restart failed: %v", err)
	} else {
		step(StepRestart, true, "OpenClaw restarted")
	}
	// 3 wait for health
	if ok, detail := s.waitHealthy(ctx, in.ID); ok {
		step(StepWait, true, "healthy again: %s", detail)
		return s.healDone(r, HealRestarted, SeverityInfo, ""), nil
	} else {
		step(StepWait, false, "still unhealthy after %s: %s", s.opts.HealWait, detail)
	}
	if ctx.Err() != nil {
		return *r, clawops.E(op, clawops.KindTransient, ctx.Err())
	}
	// 4 the standby
	if in.Role != RolePrimary {
		step(StepEscalate, false, "a standby that stays down needs replacing")
		return s.healDone(r, HealEscalated, SeverityWarning,
			fmt.Sprintf("standby %s stays unhealthy after a restart: replace it (teardown and provision), the primary is unaffected", in.ID)), nil
	}
	pv, err := s.Pair(ctx, in.PairID)
	if err != nil {
		return *r, err
	}
	sby := pv.Standby
	fit := sby.ID != "" && sby.State == StateActive
	detail := fmt.Sprintf("standby %s is %s", sby.ID, sby.State)
	if fit {
		if ok, hd := s.healthy(ctx, sby.ID); ok {
			detail += " and answers healthy"
		} else {
			fit = false
			detail += " but does not answer healthy: " + hd
		}
	}
	step(StepCheckStandby, fit, "%s", detail)
	if !fit {
		step(StepEscalate, false, "no fit standby: not acting alone")
		return s.healDone(r, HealEscalated, SeverityCritical,
			fmt.Sprintf("CRITICAL: primary %s is down and %s; no failover possible, a human must act (nothing was deleted)", in.ID, detail)), nil
	}
	if !opts.AllowFailover {
		step(StepEscalate, false, "failover not allowed for this caller")
		return s.healDone(r, HealEscalated, SeverityCritical,
			fmt.Sprintf("primary %s is down; standby %s is ACTIVE and healthy: fail pair %s over (gf_failover)", in.ID, sby.ID, in.PairID)), nil
	}
	// 5 fail over
	fr, err := s.failoverLocked(ctx, in.PairID)
	if err != nil {
		step(StepFailover, false, "failover failed: %v", err)
		return s.healDone(r, HealEscalated, SeverityCritical,
			fmt.Sprintf("primary %s is down and failover to %s failed: %v", in.ID, sby.ID, err)), nil
	}
	step(StepFailover, true, "%s promoted; new standby %s queued at %s/%s", fr.NewPrimary, fr.NewStandby,
		fr.NewStandbyPlacement.Provider, fr.NewStandbyPlacement.Region)
	r.Failover = &fr
	return s.healDone(r, HealFailedOver, SeverityWarning, ""), nil
}

// healDone records the outcome and publishes it.
func (s *Service) healDone(r *HealReport, outcome HealOutcome, sev Severity, escalation string) HealReport {
	r.Outcome, r.Escalation = outcome, escalation
	typ, summary := EventHealSucceeded, fmt.Sprintf("heal %s: %s", r.Instance, outcome)
	if outcome == HealEscalated {
		typ, summary = EventHealEscalated, fmt.Sprintf("heal %s escalated: %s", r.Instance, escalation)
	}
	s.log.Info("heal finished", "instance", r.Instance, "outcome", outcome)
	s.publish(Event{Type: typ, Subject: string(r.Instance), Severity: sev, Summary: summary, Payload: payload(r)})
	return *r
}

// healthy asks the node for OpenClaw's health now and describes the answer.
func (s *Service) healthy(ctx context.Context, id clawops.InstanceID) (bool, string) {
	hctx, cancel := context.WithTimeout(ctx, max(s.opts.HealPoll, 5*time.Second))
	defer cancel()
	h, err := s.Health(hctx, id)
	if err != nil {
		return false, err.Error()
	}
	if !h.OK {
		msg := fmt.Sprintf("HTTP %d", h.Status)
		if h.Error != "" {
			msg += ": " + h.Error
		}
		return false, msg
	}
	return true, fmt.Sprintf("HTTP %d in %d ms", h.Status, h.LatencyMs)
}

// waitHealthy polls health every HealPoll until it is healthy or HealWait has passed.
func (s *Service) waitHealthy(ctx context.Context, id clawops.InstanceID) (bool, string) {
	deadline := time.NewTimer(s.opts.HealWait)
	defer deadline.Stop()
	tick := time.NewTicker(s.opts.HealPoll)
	defer tick.Stop()
	last := "not checked"
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err().Error()
		case <-deadline.C:
			return false, last
		case <-tick.C:
			ok, detail := s.healthy(ctx, id)
			if ok {
				return true, detail
			}
			last = detail
		}
	}
}
