// Package tools is the governed tool catalog: each fleet operation an agent may ask for,
// described to the gate (name, action, risk, JSON Schema), planned as a deterministic dry
// run, and applied only from a plan the gate allowed. Tool names and argument shapes are a
// contract with the agents and the LLM prompts; they never change meaning.
package tools

import (
	"context"
	"fmt"
	"strings"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/governance"
)

// Tool names.
const (
	NameFleetStatus    = "gf_fleet_status"
	NameInstanceHealth = "gf_instance_health"
	NameInstanceLogs   = "gf_instance_logs"
	NameRestart        = "gf_restart"
	NameTeardown       = "gf_teardown"
)

// Fleet is what the tools need of the fleet; *fleet.Service implements it.
type Fleet interface {
	Instances(ctx context.Context) ([]fleet.InstanceView, error)
	Instance(ctx context.Context, id clawops.InstanceID) (fleet.InstanceView, error)
	Health(ctx context.Context, id clawops.InstanceID) (proto.Health, error)
	Restart(ctx context.Context, id clawops.InstanceID) error
	Logs(ctx context.Context, id clawops.InstanceID, lines int) (string, error)
	Teardown(ctx context.Context, id clawops.InstanceID) error
}

var _ Fleet = (*fleet.Service)(nil)

// All returns the catalog over f, in a stable order, ready for Gate.Register: the five
// instance tools, then the operation tools (diagnose, heal, failover, provision, tier
// resize, config push, upgrade and their control, cost report, provider routing) that f
// supports —
// *fleet.Service supports them all.
func All(f Fleet) []governance.Tool { return AllWith(f, Options{}) }

// AllWith is All with options.
func AllWith(f Fleet, o Options) []governance.Tool {
	out := []governance.Tool{
		&statusTool{f}, &healthTool{f}, &logsTool{f}, &restartTool{f}, &teardownTool{f},
	}
	return append(out, operationTools(f, o)...)
}

// Effect kinds used in plans.
const (
	EffectDBRead         = "db.read"
	EffectDBUpdate       = "db.update"
	EffectNodeCommand    = "node.command"
	EffectProviderDelete = "provider.delete"
)

// resolve reads the instance a plan is about; UNKNOWN_INSTANCE passes through.
func resolve(ctx context.Context, f Fleet, op string, id clawops.InstanceID) (fleet.InstanceView, error) {
	v, err := f.Instance(ctx, id)
	if err != nil {
		return fleet.InstanceView{}, clawops.E(op, err)
	}
	return v, nil
}

// needNode refuses to plan a node command for an instance no node serves.
func needNode(op string, v fleet.InstanceView) error {
	if v.State == fleet.StateTerminated {
		return clawops.E(op, clawops.KindDenied, clawops.ReasonInstanceNotActive,
			fmt.Errorf("instance %s is terminated", v.ID))
	}
	if v.Node == "" {
		return clawops.E(op, clawops.KindTransient, clawops.ReasonNodeOffline,
			fmt.Errorf("instance %s has no enrolled node (state %s)", v.ID, v.State))
	}
	return nil
}

// target is the governance view of one instance.
func target(v fleet.InstanceView) governance.Target {
	return governance.Target{Instance: v.ID, Account: v.Account, Role: string(v.Role),
		State: string(v.State), PeerState: string(v.PeerState), Users: fleet.UsersPerAccount}
}

// describe renders an instance and its peer for plan summaries, e.g.
// "demo1-pri (primary, ACTIVE; standby demo1-sby ACTIVE)".
func describe(v fleet.InstanceView) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s, %s", v.ID, v.Role, v.State)
	if v.Peer != "" {
		peerRole := fleet.RoleStandby
		if v.Role == fleet.RoleStandby {
			peerRole = fleet.RolePrimary
		}
		fmt.Fprintf(&b, "; %s %s %s", peerRole, v.Peer, v.PeerState)
	}
	b.WriteString(")")
	return b.String()
}

// shortNode abbreviates a node ID (a 64-hex-digit key hash) for summaries.
func shortNode(n clawops.NodeID) string {
	if len(n) > 12 {
		return string(n[:12]) + "…"
	}
	return string(n)
}
