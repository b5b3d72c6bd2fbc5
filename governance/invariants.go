package governance

import (
	"fmt"
	"strings"

	"github.com/gatewayforge/clawops"
)

// Limits the invariants enforce.
const (
	// MaxDirectConfigPush is the most instances a config push or an upgrade may touch
	// unless it is a rolling push.
	MaxDirectConfigPush = 100
	// MaxUsersWithoutApproval is the most end users a plan may affect before a human must
	// approve it, whatever the role table says.
	MaxUsersWithoutApproval = 10
)

// violation is a hard deny raised by an invariant.
type violation struct {
	reason clawops.ReasonCode
	msg    string
}

// checkInvariants returns the first hard deny that p breaks, or nil. Invariants hold for
// every actor and cannot be approved away.
func checkInvariants(spec ToolSpec, p Plan) *violation {
	// A teardown, or any plan that deletes a VPS at the provider, must never remove the
	// active primary of a pair whose standby could not take over.
	if spec.Action == ActionTeardown || p.ProviderDelete {
		for _, t := range p.Targets {
			if strings.EqualFold(t.Role, "primary") && strings.EqualFold(t.State, "ACTIVE") &&
				!strings.EqualFold(t.PeerState, "ACTIVE") {
				peer := t.PeerState
				if peer == "" {
					peer = "unknown"
				}
				return &violation{clawops.ReasonStandbyNotActive, fmt.Sprintf(
					"%s is the ACTIVE primary and its standby is %s", t.Instance, peer)}
			}
		}
	}
	// A config push or an upgrade changes what every targeted gateway runs: above
	// MaxDirectConfigPush instances only in validated batches.
	if spec.Action == ActionConfigPush || spec.Action == ActionUpgrade {
		n := len(p.Targets)
		what := "config push"
		if spec.Action == ActionUpgrade {
			what = "upgrade"
		}
		if n > MaxDirectConfigPush && !p.Rolling {
			return &violation{clawops.ReasonRollingRequired, fmt.Sprintf(
				"%s to %d instances must be a rolling push (limit %d)", what, n, MaxDirectConfigPush)}
		}
		if p.Rolling && (p.BatchSize < 1 || p.BatchSize > MaxDirectConfigPush) {
			return &violation{clawops.ReasonRollingRequired, fmt.Sprintf(
				"rolling push batch size %d is outside 1..%d", p.BatchSize, MaxDirectConfigPush)}
		}
	}
	return nil
}

// riskFlags lists what makes p risky, for cards and audit details.
func riskFlags(risk clawops.RiskClass, p Plan) []string {
	var flags []string
	if risk == clawops.RiskHigh || risk == clawops.RiskCritical {
		flags = append(flags, "risk:"+string(risk))
	}
	if p.ProviderDelete {
		flags = append(flags, "provider_delete")
	}
	if !p.Reversible {
		flags = append(flags, "irreversible")
	}
	if p.UsersAffected > MaxUsersWithoutApproval {
		flags = append(flags, fmt.Sprintf("users>%d", MaxUsersWithoutApproval))
	}
	if p.Rolling {
		flags = append(flags, fmt.Sprintf("rolling:batch=%d", p.BatchSize))
	}
	return flags
}
