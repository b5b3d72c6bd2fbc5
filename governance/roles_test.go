package governance

import (
	"testing"

	"github.com/gatewayforge/clawops"
)

func TestDefaultRolesEveryCell(t *testing.T) {
	const (
		A = Alone
		Q = WithApproval
		N = Never
	)
	// Columns: read recommend restart heal upgrade failover provision teardown tier_change
	// config_push send_message halt (the order of AllActions).
	want := map[clawops.AgentRole][12]Mode{
		clawops.Commander: {A, A, A, A, A, Q, Q, Q, Q, Q, A, A},
		clawops.Guardian:  {A, N, A, A, N, A, N, N, N, N, N, A},
		clawops.Ledger:    {A, A, N, N, N, N, N, N, Q, N, N, N},
		clawops.Triage:    {A, N, N, N, N, N, N, N, N, N, N, N},
		clawops.Forge:     {A, N, N, N, N, N, A, Q, Q, N, N, N},
		clawops.Briefer:   {A, N, N, N, N, N, N, N, N, N, A, N},
	}
	roles := DefaultRoles()
	actions := AllActions()
	if len(actions) != 12 {
		t.Fatalf("actions: got %d, want 12", len(actions))
	}
	for _, agent := range clawops.AgentRoles {
		for i, action := range actions {
			t.Run(string(agent)+"/"+string(action), func(t *testing.T) {
				got := roles.Lookup(agent, action)
				if got.Mode != want[agent][i] {
					t.Errorf("got %v, want %v", got.Mode, want[agent][i])
				}
				wantMax := 0
				if agent == clawops.Forge && action == ActionProvision {
					wantMax = ForgeProvisionLimit
				}
				if got.MaxTargets != wantMax {
					t.Errorf("max targets: got %d, want %d", got.MaxTargets, wantMax)
				}
			})
		}
	}
	if got := roles.Lookup("janitor", ActionRead); got.Mode != Never {
		t.Errorf("unknown agent: got %v, want never", got.Mode)
	}
	if got := roles.Lookup(clawops.Commander, "format_disk"); got.Mode != Never {
		t.Errorf("unknown action: got %v, want never", got.Mode)
	}
}

func TestPermit(t *testing.T) {
	roles := DefaultRoles()
	human := func(role clawops.HumanRole, agent clawops.AgentRole) clawops.Actor {
		return clawops.Actor{Identity: "tg:dana", Role: role, Agent: agent}
	}
	tests := []struct {
		name   string
		actor  clawops.Actor
		action Action
		want   Mode
		reason clawops.ReasonCode // set when refused
	}{
		{"viewer reads", human(clawops.RoleViewer, clawops.Commander), ActionRead, Alone, ""},
		{"viewer restarts", human(clawops.RoleViewer, clawops.Commander), ActionRestart, Never, clawops.ReasonRoleNotPermitted},
		{"viewer recommends", human(clawops.RoleViewer, clawops.Ledger), ActionRecommend, Never, clawops.ReasonRoleNotPermitted},
		{"approver reads", human(clawops.RoleApprover, ""), ActionRead, Alone, ""},
		{"approver does not start changes", human(clawops.RoleApprover, ""), ActionTeardown, Never, clawops.ReasonRoleNotPermitted},
		{"operator restarts via commander", human(clawops.RoleOperator, clawops.Commander), ActionRestart, Alone, ""},
		{"operator without agent is commander", human(clawops.RoleOperator, ""), ActionProvision, WithApproval, ""},
		{"admin without agent upgrades", human(clawops.RoleAdmin, ""), ActionUpgrade, Alone, ""},
		{"operator via triage cannot write", human(clawops.RoleOperator, clawops.Triage), ActionRestart, Never, clawops.ReasonRoleNotPermitted},
		{"admin via briefer cannot provision", human(clawops.RoleAdmin, clawops.Briefer), ActionProvision, Never, clawops.ReasonRoleNotPermitted},
		{"scheduled guardian fails over", clawops.Actor{Identity: "agent:guardian", Agent: clawops.Guardian}, ActionFailover, Alone, ""},
		{"agent without identity", clawops.Actor{Agent: clawops.Ledger}, ActionTierChange, WithApproval, ""},
		{"guardian never tears down", clawops.Actor{Agent: clawops.Guardian}, ActionTeardown, Never, clawops.ReasonRoleNotPermitted},
		{"forge provisions within limit", clawops.Actor{Agent: clawops.Forge}, ActionProvision, Alone, ""},
		{"nobody", clawops.Actor{}, ActionRead, Never, clawops.ReasonUnauthenticated},
		{"unknown human role", human("root", clawops.Commander), ActionRead, Never, clawops.ReasonRoleNotPermitted},
		{"unknown agent", human(clawops.RoleAdmin, "janitor"), ActionRead, Never, clawops.ReasonRoleNotPermitted},
		{"human identity without role", clawops.Actor{Identity: "tg:mallory", Agent: clawops.Commander}, ActionRead, Never, clawops.ReasonRoleNotPermitted},
		{"identity only, no role", clawops.Actor{Identity: "tg:mallory"}, ActionRead, Never, clawops.ReasonRoleNotPermitted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rule, err := roles.permit(tc.actor, tc.action)
			if tc.reason != "" {
				if got := clawops.ReasonOf(err); got != tc.reason {
					t.Fatalf("reason: got %q (err %v), want %q", got, err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want mode %v", err, tc.want)
			}
			if rule.Mode != tc.want {
				t.Errorf("mode: got %v, want %v", rule.Mode, tc.want)
			}
		})
	}
}

func TestRoleTableClone(t *testing.T) {
	orig := DefaultRoles()
	c := orig.Clone()
	c[clawops.Triage][ActionTeardown] = Rule{Mode: Alone}
	if got := orig.Lookup(clawops.Triage, ActionTeardown).Mode; got != Never {
		t.Errorf("original after changing clone: got %v, want never", got)
	}
}
