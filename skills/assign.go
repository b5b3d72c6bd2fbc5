package skills

import "github.com/gatewayforge/clawops"

// DefaultAssignments is which shipped skills each agent role reads, in prompt order. It
// follows the agent team: the Commander routes and synthesises, Guardian keeps instances
// healthy, Ledger watches money, Triage diagnoses read-only, Forge builds and removes,
// Briefer reports. A skill only teaches; what a role may actually do is decided by the
// governance gate.
func DefaultAssignments() map[clawops.AgentRole][]string {
	return map[clawops.AgentRole][]string{
		clawops.Commander: {"clawops", "fleet-overview", "gateway-manager", "incident-response",
			"rolling-config-push", "tier-resize", "provider-routing"},
		clawops.Guardian: {"auto-heal", "fleet-overview", "gateway-manager", "instance-diagnose",
			"incident-response"},
		clawops.Ledger:  {"cost-analysis", "provider-routing", "tier-resize", "fleet-overview"},
		clawops.Triage:  {"instance-diagnose", "incident-response", "fleet-overview"},
		clawops.Forge:   {"provisioning", "teardown", "tier-resize", "fleet-overview"},
		clawops.Briefer: {"briefings", "fleet-overview", "cost-analysis"},
	}
}
