package governance

import (
	"fmt"

	"github.com/gatewayforge/clawops"
)

// Environment is what the gate is guarding; production scores riskier than staging.
type Environment string

// Environments.
const (
	Production Environment = "production"
	Staging    Environment = "staging"
)

// Valid reports whether e is a known environment.
func (e Environment) Valid() bool { return e == Production || e == Staging }

// RiskFactor is one line of the rubric that added points to a score.
type RiskFactor struct {
	Name   string `json:"name"`
	Points int    `json:"points"`
	Detail string `json:"detail,omitempty"`
}

// RiskAssessment is the risk rubric's verdict on one plan: a score from 0 to 100, the class
// the score maps to, and the class that applies (the higher of that and the tool's static
// class, which is a floor).
type RiskAssessment struct {
	Score      int               `json:"score"`
	ScoreClass clawops.RiskClass `json:"score_class"`
	Floor      clawops.RiskClass `json:"floor"`
	Class      clawops.RiskClass `json:"class"`
	Factors    []RiskFactor      `json:"factors"`
}

// Score thresholds of the classes: a score below RiskMediumFrom is low, and so on.
const (
	RiskMediumFrom   = 25
	RiskHighFrom     = 50
	RiskCriticalFrom = 75
)

// ClassOfScore maps a 0–100 score to a risk class.
func ClassOfScore(score int) clawops.RiskClass {
	switch {
	case score >= RiskCriticalFrom:
		return clawops.RiskCritical
	case score >= RiskHighFrom:
		return clawops.RiskHigh
	case score >= RiskMediumFrom:
		return clawops.RiskMedium
	}
	return clawops.RiskLow
}

// riskRank orders classes; an unknown class ranks as critical (fail closed).
func riskRank(c clawops.RiskClass) int {
	switch c {
	case clawops.RiskLow:
		return 0
	case clawops.RiskMedium:
		return 1
	case clawops.RiskHigh:
		return 2
	}
	return 3
}

// MaxRisk returns the higher of two classes.
func MaxRisk(a, b clawops.RiskClass) clawops.RiskClass {
	if riskRank(b) > riskRank(a) {
		return b
	}
	return a
}

// readOnly reports whether action changes nothing, so the impact factors do not apply.
func readOnly(a Action) bool { return a == ActionRead || a == ActionRecommend }

// AssessRisk scores plan p of a tool with spec, asked for by actor, in env. The rubric
// (docs/governance.md keeps the same table):
//
//	users affected (writes)     1: 5   2–10: 10   11–100: 25   >100: 35
//	instances (writes)          2–10: 5   11–100: 10   >100: 15
//	irreversible (writes)       20
//	provider delete             25
//	cost increase per month     ≥$50: 5   ≥$500: 10   ≥$5000: 20
//	actor                       admin: 0   operator: 5   agent on its own: 10
//	environment                 production: 10   staging: 0
//
// The sum is capped at 100. Reads and recommendations change nothing, so only the actor
// and environment count for them. The tool's static class is a floor: the score can raise
// the class, never lower it.
func AssessRisk(spec ToolSpec, p Plan, actor clawops.Actor, env Environment) RiskAssessment {
	var fs []RiskFactor
	add := func(name string, pts int, detail string) {
		if pts > 0 {
			fs = append(fs, RiskFactor{Name: name, Points: pts, Detail: detail})
		}
	}
	if !readOnly(spec.Action) {
		add("users", usersPoints(p.UsersAffected), fmt.Sprintf("%d users affected", p.UsersAffected))
		add("instances", instancesPoints(len(p.Targets)), fmt.Sprintf("%d instances", len(p.Targets)))
		if !p.Reversible {
			add("irreversible", 20, "cannot be undone")
		}
		add("cost", costPoints(p.CostDeltaMonthlyUSD), fmt.Sprintf("+$%.2f per month", p.CostDeltaMonthlyUSD))
	}
	if p.ProviderDelete {
		add("provider_delete", 25, "deletes servers at the provider")
	}
	switch {
	case actor.Role == clawops.RoleAdmin:
	case actor.Role != "":
		add("actor", 5, "asked by a "+string(actor.Role))
	default:
		add("actor", 10, "an agent acting on its own")
	}
	if env != Staging {
		add("environment", 10, "production")
	}
	score := 0
	for _, f := range fs {
		score += f.Points
	}
	score = min(score, 100)
	floor := spec.Risk
	switch floor {
	case "":
		floor = clawops.RiskLow
	case clawops.RiskLow, clawops.RiskMedium, clawops.RiskHigh, clawops.RiskCritical:
	default:
		floor = clawops.RiskCritical // fail closed on a class nobody knows
	}
	sc := ClassOfScore(score)
	return RiskAssessment{Score: score, ScoreClass: sc, Floor: floor, Class: MaxRisk(sc, floor), Factors: fs}
}

func usersPoints(n int) int {
	switch {
	case n > 100:
		return 35
	case n > MaxUsersWithoutApproval:
		return 25
	case n >= 2:
		return 10
	case n == 1:
		return 5
	}
	return 0
}

func instancesPoints(n int) int {
	switch {
	case n > 100:
		return 15
	case n > 10:
		return 10
	case n >= 2:
		return 5
	}
	return 0
}

func costPoints(usd float64) int {
	switch {
	case usd >= 5000:
		return 20
	case usd >= 500:
		return 10
	case usd >= 50:
		return 5
	}
	return 0
}
