package governance

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
)

func TestAssessRisk(t *testing.T) {
	admin := clawops.Actor{Identity: "slack:carol", Role: clawops.RoleAdmin}
	targets := func(n int) []Target {
		ts := make([]Target, n)
		for i := range ts {
			ts[i] = Target{Instance: clawops.InstanceID("i"), Users: 1}
		}
		return ts
	}
	tests := []struct {
		name    string
		action  Action
		floor   clawops.RiskClass
		plan    Plan
		actor   clawops.Actor
		env     Environment
		score   int
		class   clawops.RiskClass
		factors []string
	}{
		{"read by an agent in production", ActionRead, clawops.RiskLow,
			Plan{UsersAffected: 500, Targets: targets(500), Reversible: true}, guardian, Production,
			20, clawops.RiskLow, []string{"actor", "environment"}},
		{"read in staging by an admin", ActionRead, clawops.RiskLow, Plan{Reversible: true}, admin, Staging,
			0, clawops.RiskLow, nil},
		{"restart one instance", ActionRestart, clawops.RiskLow,
			Plan{UsersAffected: 1, Targets: targets(1), Reversible: true}, guardian, Production,
			25, clawops.RiskMedium, []string{"users", "actor", "environment"}},
		{"restart ten, operator", ActionRestart, clawops.RiskLow,
			Plan{UsersAffected: 10, Targets: targets(10), Reversible: true}, alice, Production,
			30, clawops.RiskMedium, []string{"users", "instances", "actor", "environment"}},
		{"static floor holds", ActionRestart, clawops.RiskHigh,
			Plan{UsersAffected: 1, Targets: targets(1), Reversible: true}, admin, Staging,
			5, clawops.RiskHigh, []string{"users"}},
		{"irreversible teardown of one", ActionTeardown, clawops.RiskMedium,
			Plan{UsersAffected: 1, Targets: targets(1)}, alice, Production,
			40, clawops.RiskMedium, []string{"users", "irreversible", "actor", "environment"}},
		{"teardown with provider delete raises to high", ActionTeardown, clawops.RiskMedium,
			Plan{UsersAffected: 1, Targets: targets(1), ProviderDelete: true}, forge, Production,
			70, clawops.RiskHigh, []string{"users", "irreversible", "provider_delete", "actor", "environment"}},
		{"bulk delete is critical", ActionTeardown, clawops.RiskMedium,
			Plan{UsersAffected: 20, Targets: targets(20), ProviderDelete: true}, forge, Production,
			100, clawops.RiskCritical, []string{"users", "instances", "irreversible", "provider_delete", "actor", "environment"}},
		{"score is capped at 100", ActionTeardown, clawops.RiskLow,
			Plan{UsersAffected: 500, Targets: targets(500), ProviderDelete: true, CostDeltaMonthlyUSD: 9000}, forge, Production,
			100, clawops.RiskCritical, []string{"users", "instances", "irreversible", "cost", "provider_delete", "actor", "environment"}},
		{"cost increase counts", ActionProvision, clawops.RiskLow,
			Plan{UsersAffected: 5, Targets: targets(5), Reversible: true, CostDeltaMonthlyUSD: 600}, alice, Staging,
			30, clawops.RiskMedium, []string{"users", "instances", "cost", "actor"}},
		{"savings do not add risk", ActionTierChange, clawops.RiskLow,
			Plan{UsersAffected: 1, Targets: targets(1), Reversible: true, CostDeltaMonthlyUSD: -600}, admin, Staging,
			5, clawops.RiskLow, []string{"users"}},
		{"over 100 users", ActionConfigPush, clawops.RiskLow,
			Plan{UsersAffected: 101, Targets: targets(101), Reversible: true}, admin, Staging,
			50, clawops.RiskHigh, []string{"users", "instances"}},
		{"unknown floor is critical", ActionRead, clawops.RiskClass("weird"), Plan{}, admin, Staging,
			0, clawops.RiskCritical, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := ToolSpec{Name: "x", Action: tc.action, Risk: tc.floor}
			got := AssessRisk(spec, tc.plan, tc.actor, tc.env)
			if got.Score != tc.score || got.Class != tc.class {
				t.Errorf("got score %d class %s, want %d %s (factors %+v)", got.Score, got.Class, tc.score, tc.class, got.Factors)
			}
			var names []string
			sum := 0
			for _, f := range got.Factors {
				names = append(names, f.Name)
				sum += f.Points
			}
			if diff := cmp.Diff(tc.factors, names); diff != "" {
				t.Errorf("factors (-want +got):\n%s", diff)
			}
			if min(sum, 100) != got.Score {
				t.Errorf("factor points sum to %d, score is %d", sum, got.Score)
			}
			if got.ScoreClass != ClassOfScore(got.Score) {
				t.Errorf("score class: got %s, want %s", got.ScoreClass, ClassOfScore(got.Score))
			}
		})
	}
}

func TestClassOfScore(t *testing.T) {
	tests := []struct {
		score int
		want  clawops.RiskClass
	}{{0, clawops.RiskLow}, {24, clawops.RiskLow}, {25, clawops.RiskMedium}, {49, clawops.RiskMedium},
		{50, clawops.RiskHigh}, {74, clawops.RiskHigh}, {75, clawops.RiskCritical}, {100, clawops.RiskCritical}}
	for _, tc := range tests {
		if got := ClassOfScore(tc.score); got != tc.want {
			t.Errorf("ClassOfScore(%d): got %s, want %s", tc.score, got, tc.want)
		}
	}
}

// The score raises the class above the tool's static one, and that decides approval: a
// medium tool whose plan deletes servers needs a human, and a critical score needs two.
func TestRiskScoreDrivesDecision(t *testing.T) {
	restart := newTestTool("fleet.restart", ActionRestart, clawops.RiskLow, 30)
	restart.providerDelete = true // an odd restart that deletes at the provider: high by score
	h := newHarness(t, restart)
	out, err := h.gate.Invoke(context.Background(), guardian, "fleet.restart", instancesArgs(1))
	if err != nil || out.Decision != clawops.NeedsApproval || out.Reason != clawops.ReasonApprovalRequired {
		t.Fatalf("high by score: got %s/%s, %v; want needs_approval/APPROVAL_REQUIRED", out.Decision, out.Reason, err)
	}
	if out.Risk != clawops.RiskHigh || out.RiskScore != 50 || out.Assessment == nil || out.ApprovalsRequired != 1 {
		t.Errorf("risk: got %s score %d approvals %d", out.Risk, out.RiskScore, out.ApprovalsRequired)
	}
	out, err = h.gate.Invoke(context.Background(), guardian, "fleet.restart", instancesArgs(20))
	if err != nil || out.Decision != clawops.NeedsApproval || out.Risk != clawops.RiskCritical || out.ApprovalsRequired != 2 {
		t.Fatalf("critical by score: got %s/%s risk %s approvals %d, %v", out.Decision, out.Reason, out.Risk, out.ApprovalsRequired, err)
	}
	if n := restart.applies(); n != 0 {
		t.Errorf("applies: got %d, want 0", n)
	}
	a, err := h.gate.Approval(context.Background(), out.ApprovalID)
	if err != nil {
		t.Fatal(err)
	}
	if a.ApprovalsRequired != 2 || a.RiskScore != 80 || len(a.RiskFactors) == 0 {
		t.Errorf("approval: got required %d score %d factors %v", a.ApprovalsRequired, a.RiskScore, a.RiskFactors)
	}
}
