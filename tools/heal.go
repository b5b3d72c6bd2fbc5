package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/governance"
)

// Expected durations of the heal and failover tools.
const (
	healDuration     = 2 * time.Minute
	failoverDuration = 2 * time.Minute
)

var schemaPair = schema(map[string]any{
	"pair": map[string]any{"type": "string", "pattern": fleet.InstanceIDPattern, "description": "Pair ID, e.g. demo1."},
}, []string{"pair"})

var schemaHeal = schema(map[string]any{
	"instance": instanceProp,
	"failover": map[string]any{"type": "boolean", "default": true,
		"description": "Let the runbook fail the pair over when the primary stays down and the standby is ACTIVE " +
			"(only for agents allowed to fail over alone; others get an escalation instead)."},
}, []string{"instance"})

// diagnoseTool is gf_instance_diagnose: a read-only look at one instance.
type diagnoseTool struct {
	f Fleet
	d diagnoser
}

func (t *diagnoseTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NameDiagnose, Action: governance.ActionRead, Risk: clawops.RiskLow,
		Description: "Diagnose one instance without changing anything: its record and pair, heartbeat age, OpenClaw " +
			"health, a resource sample and the newest log lines from its node, findings, and a recommendation " +
			"(none, heal, failover, escalate, wait, teardown).",
		Schema: schemaInstance}
}

func (t *diagnoseTool) Plan(ctx context.Context, _ clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	const op = NameDiagnose + " plan"
	id, err := instanceOnly(op, args)
	if err != nil {
		return governance.Plan{}, err
	}
	v, err := resolve(ctx, t.f, op, id)
	if err != nil {
		return governance.Plan{}, err
	}
	p := governance.Plan{Tool: NameDiagnose, Args: canonical(map[string]any{"instance": id}),
		Summary: "Diagnose " + describe(v), Targets: []governance.Target{target(v)}, Reversible: true,
		Effects: []governance.Effect{{Kind: EffectDBRead, Target: string(id), Detail: "instance and pair records"}}}
	if v.Node != "" && v.State != fleet.StateTerminated {
		p.Effects = append(p.Effects, governance.Effect{Kind: EffectNodeCommand, Target: string(v.Node),
			Detail: fmt.Sprintf("%s, %s, %s tail=%d (read-only)", fleet.CmdHealth, fleet.CmdMetrics, fleet.CmdLogs, fleet.DiagnoseLogLines)})
	}
	return p, nil
}

func (t *diagnoseTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	id, err := instanceOnly(NameDiagnose, p.Args)
	if err != nil {
		return governance.Result{}, err
	}
	d, err := t.d.Diagnose(ctx, id)
	if err != nil {
		return governance.Result{}, clawops.E(NameDiagnose, err)
	}
	summary := fmt.Sprintf("%s (%s, %s): recommendation %s; %s", id, d.Instance.Role, d.Instance.State,
		d.Recommendation, strings.Join(d.Findings, "; "))
	return governance.Result{Summary: summary, Data: canonical(d)}, nil
}

// healTool is gf_heal: the auto-heal runbook on one instance.
type healTool struct {
	f     Fleet
	h     healer
	roles governance.RoleTable
}

func (t *healTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NameHeal, Action: governance.ActionHeal, Risk: clawops.RiskMedium,
		Description: "Run the auto-heal runbook on one instance: verify health, restart OpenClaw, wait for health, " +
			"and if a primary stays down while its standby is ACTIVE and healthy, fail the pair over (for agents " +
			"allowed to fail over alone; others get an escalation naming gf_failover). Never deletes anything.",
		Schema: schemaHeal}
}

func decodeHealArgs(op string, raw json.RawMessage) (clawops.InstanceID, bool, error) {
	m, err := decodeObject(op, raw, "instance", "failover")
	if err != nil {
		return "", false, err
	}
	id, err := instanceArg(op, m)
	if err != nil {
		return "", false, err
	}
	fo, err := boolArg(op, m, "failover", true)
	return id, fo, err
}

// mayFailoverAlone reports whether actor's agent may fail over without approval. A human
// with no agent counts as the Commander, as at the gate.
func mayFailoverAlone(roles governance.RoleTable, actor clawops.Actor) bool {
	agent := actor.Agent
	if agent == "" {
		agent = clawops.Commander
	}
	return roles.Lookup(agent, governance.ActionFailover).Mode == governance.Alone
}

func (t *healTool) Plan(ctx context.Context, actor clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	const op = NameHeal + " plan"
	id, wantFailover, err := decodeHealArgs(op, args)
	if err != nil {
		return governance.Plan{}, err
	}
	v, err := resolve(ctx, t.f, op, id)
	if err != nil {
		return governance.Plan{}, err
	}
	if v.State == fleet.StateTerminated {
		return governance.Plan{}, clawops.E(op, clawops.KindDenied, clawops.ReasonInstanceNotActive, fmt.Errorf("instance %s is terminated", id))
	}
	allow := wantFailover && mayFailoverAlone(t.roles, actor)
	p := governance.Plan{Tool: NameHeal, Args: canonical(map[string]any{"instance": id, "failover": allow}),
		Targets: []governance.Target{target(v)}, UsersAffected: fleet.UsersPerAccount, Reversible: true,
		ExpectedDuration: healDuration}
	if v.Node != "" {
		p.Effects = append(p.Effects, governance.Effect{Kind: EffectNodeCommand, Target: string(v.Node),
			Detail: fmt.Sprintf("%s, then %s if unhealthy, then %s until healthy", fleet.CmdHealth, fleet.CmdRestart, fleet.CmdHealth)})
	}
	then := "escalate if it stays down"
	if v.Role == fleet.RolePrimary && v.Peer != "" {
		switch {
		case allow && v.PeerState == fleet.StateActive:
			then = fmt.Sprintf("fail over to standby %s if it stays down (and %s answers healthy), else escalate", v.Peer, v.Peer)
			peer, err := resolve(ctx, t.f, op, v.Peer)
			if err != nil {
				return governance.Plan{}, err
			}
			p.Targets = append(p.Targets, target(peer))
			p.Effects = append(p.Effects, governance.Effect{Kind: EffectDBUpdate, Target: v.Pair,
				Detail: fmt.Sprintf("if needed: promote %s to primary, retire %s (server kept), queue a new standby", v.Peer, id)})
		case v.PeerState == fleet.StateActive:
			then = fmt.Sprintf("escalate if it stays down, naming the failover to %s (not allowed for this caller alone)", v.Peer)
		default:
			then = fmt.Sprintf("escalate if it stays down: standby %s is %s, no failover possible", v.Peer, v.PeerState)
		}
	}
	p.Summary = fmt.Sprintf("Auto-heal %s: verify, restart, wait for health; %s; nothing is deleted", describe(v), then)
	return p, nil
}

func (t *healTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	id, allow, err := decodeHealArgs(NameHeal, p.Args)
	if err != nil {
		return governance.Result{}, err
	}
	r, err := t.h.Heal(ctx, id, fleet.HealOptions{AllowFailover: allow})
	if err != nil {
		return governance.Result{}, clawops.E(NameHeal, err)
	}
	summary := fmt.Sprintf("Heal %s: %s", id, r.Outcome)
	switch {
	case r.Failover != nil:
		summary += fmt.Sprintf("; %s is primary now, new standby %s queued, %s retired", r.Failover.NewPrimary, r.Failover.NewStandby, r.Failover.OldPrimary)
	case r.Escalation != "":
		summary += ": " + r.Escalation
	}
	return governance.Result{Summary: summary, Data: canonical(r)}, nil
}

// failoverTool is gf_failover: promote a pair's standby and queue a new standby.
type failoverTool struct{ f failoverer }

func (t *failoverTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NameFailover, Action: governance.ActionFailover, Risk: clawops.RiskMedium,
		Description: "Fail a pair over: its ACTIVE standby (checked healthy first) becomes the primary, the old " +
			"primary is retired (its server kept for review, never deleted), and a new standby is provisioned on " +
			"another provider.",
		Schema: schemaPair}
}

func pairOnly(op string, raw json.RawMessage) (string, error) {
	m, err := decodeObject(op, raw, "pair")
	if err != nil {
		return "", err
	}
	v, ok := m["pair"]
	if !ok {
		return "", badArgs(op, "argument \"pair\" is required")
	}
	var s string
	if string(v) == "null" || json.Unmarshal(v, &s) != nil {
		return "", badArgs(op, "argument \"pair\" must be a string")
	}
	if !fleet.ValidInstanceID(s) {
		return "", badArgs(op, "pair %.48q is not a pair id (pattern %s)", s, fleet.InstanceIDPattern)
	}
	return s, nil
}

func (t *failoverTool) Plan(ctx context.Context, _ clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	const op = NameFailover + " plan"
	id, err := pairOnly(op, args)
	if err != nil {
		return governance.Plan{}, err
	}
	pv, err := t.f.Pair(ctx, id)
	if err != nil {
		return governance.Plan{}, clawops.E(op, err)
	}
	if pv.Standby.State != fleet.StateActive {
		return governance.Plan{}, clawops.E(op, clawops.KindDenied, clawops.ReasonStandbyNotActive,
			fmt.Errorf("standby %s of pair %s is %s, not ACTIVE: nothing to fail over to", pv.StandbyID, id, pv.Standby.State))
	}
	prices := t.f.Prices()
	cost, _ := prices.Monthly(pv.Primary.Provider, pv.Primary.Region, pv.Primary.Tier)
	p := governance.Plan{Tool: NameFailover, Args: canonical(map[string]any{"pair": id}),
		Summary: fmt.Sprintf("Fail pair %s over: promote standby %s (%s/%s, ACTIVE) to primary; retire primary %s (%s, server kept); "+
			"provision a new %s standby on another provider (+%s/month until %s is torn down)",
			id, pv.StandbyID, pv.Standby.Provider, pv.Standby.Region, pv.PrimaryID, pv.Primary.State, pv.Primary.Tier, money(cost), pv.PrimaryID),
		Targets:       []governance.Target{target(pv.Primary), target(pv.Standby)},
		UsersAffected: fleet.UsersPerAccount, Reversible: true, CostDeltaMonthlyUSD: cost, ExpectedDuration: failoverDuration,
		Effects: []governance.Effect{
			{Kind: EffectNodeCommand, Target: string(pv.Standby.Node), Detail: fleet.CmdHealth + " of " + string(pv.StandbyID) + " before promoting"},
			{Kind: EffectDBUpdate, Target: id, Detail: fmt.Sprintf("primary %s → %s; %s retired", pv.PrimaryID, pv.StandbyID, pv.PrimaryID)},
			{Kind: EffectProviderCreate, Target: id, Detail: "new standby, placed by the routing policy away from " + pv.Standby.Provider},
		}}
	p.Targets[0].Users, p.Targets[1].Users = fleet.UsersPerAccount, 0
	return p, nil
}

func (t *failoverTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	id, err := pairOnly(NameFailover, p.Args)
	if err != nil {
		return governance.Result{}, err
	}
	r, err := t.f.Failover(ctx, id)
	if err != nil {
		return governance.Result{}, clawops.E(NameFailover, err)
	}
	return governance.Result{Summary: fmt.Sprintf("Pair %s failed over: %s is primary; new standby %s queued at %s/%s; %s retired (server kept)",
		id, r.NewPrimary, r.NewStandby, r.NewStandbyPlacement.Provider, r.NewStandbyPlacement.Region, r.OldPrimary), Data: canonical(r)}, nil
}
