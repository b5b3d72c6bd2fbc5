package agents

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/gatewayforge/clawops"
)

// Event is a fleet event as the agents receive it. The gateway adapts the fleet's events
// into this type; agents know nothing of the fleet package.
type Event struct {
	Type     string          `json:"type"`    // e.g. INSTANCE_DEGRADED
	Subject  string          `json:"subject"` // the instance, pair, provider or push it is about
	Severity Severity        `json:"severity"`
	Summary  string          `json:"summary,omitempty"`
	Payload  json.RawMessage `json:"payload,omitempty"`
	Time     time.Time       `json:"time"`
}

// Severity says how urgently a person should hear about an event.
type Severity string

// Severities, as the fleet's health monitor assigns them.
const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// Event types the default routes know. The names are the fleet's.
const (
	EventInstanceDegraded      = "INSTANCE_DEGRADED"
	EventPairFailed            = "PAIR_FAILED"
	EventCostAnomaly           = "COST_ANOMALY"
	EventProvisionQueueBacklog = "PROVISION_QUEUE_BACKLOG"
	EventProviderDegraded      = "PROVIDER_DEGRADED"
	EventProvisionFailed       = "PROVISION_FAILED"
	EventProvisionCompleted    = "PROVISION_COMPLETED"
	EventHealEscalated         = "HEAL_ESCALATED"
	EventFailoverCompleted     = "FAILOVER_COMPLETED"
	EventFailoverFailed        = "FAILOVER_FAILED"
)

// Route sends one event type to an agent, and says whether people hear about it at once.
type Route struct {
	Type  string            `json:"type"`
	Agent clawops.AgentRole `json:"agent"` // "" when only the alert matters
	// Alert makes the Briefer send a real-time alert as soon as the event arrives,
	// rendered by code: no model sits between an unrecoverable failure and the operator.
	Alert bool `json:"alert,omitempty"`
	// MinSeverity, when set, limits the alert to events at least this severe.
	MinSeverity Severity `json:"min_severity,omitempty"`
}

// DefaultRoutes is the event routing table of DESIGN.md, with the alerts of seed 003 §9.2:
// unrecoverable failures, provisions that failed after their retries and cost anomalies
// reach the operators at once.
func DefaultRoutes() []Route {
	return []Route{
		{Type: EventInstanceDegraded, Agent: clawops.Guardian},
		{Type: EventPairFailed, Agent: clawops.Guardian, Alert: true},
		{Type: EventCostAnomaly, Agent: clawops.Ledger, Alert: true},
		{Type: EventProvisionQueueBacklog, Agent: clawops.Forge},
		{Type: EventProviderDegraded, Agent: clawops.Commander},
		{Type: EventProvisionFailed, Agent: clawops.Forge, Alert: true},
		{Type: EventHealEscalated, Agent: clawops.Commander, Alert: true},
		{Type: EventFailoverFailed, Agent: clawops.Commander, Alert: true},
		{Type: EventFailoverCompleted, Agent: clawops.Guardian},
	}
}

// routeTable indexes routes by type.
type routeTable map[string]Route

func newRouteTable(routes []Route) (routeTable, error) {
	t := routeTable{}
	for i, r := range routes {
		if !eventTypeRE.MatchString(r.Type) {
			return nil, fmt.Errorf("route %d: event type %q must be upper case, e.g. PAIR_FAILED", i, r.Type)
		}
		if r.Agent != "" && !r.Agent.Valid() {
			return nil, fmt.Errorf("route %s: unknown agent %q", r.Type, r.Agent)
		}
		if r.Agent == "" && !r.Alert {
			return nil, fmt.Errorf("route %s: needs an agent or alert", r.Type)
		}
		switch r.MinSeverity {
		case "", SeverityInfo, SeverityWarning, SeverityCritical:
		default:
			return nil, fmt.Errorf("route %s: unknown severity %q", r.Type, r.MinSeverity)
		}
		if _, dup := t[r.Type]; dup {
			return nil, fmt.Errorf("route %s: given twice", r.Type)
		}
		t[r.Type] = r
	}
	return t, nil
}

var eventTypeRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

// MaxEventPayload bounds an event's payload; a bigger one is cut from what the agent sees.
const MaxEventPayload = 8 << 10

// validate checks an event from outside before anything acts on it.
func (e Event) validate() error {
	const op = "agents event"
	bad := func(msg string) error {
		return clawops.E(op, clawops.KindInvalid, clawops.ReasonMalformedRequest, msg)
	}
	if !eventTypeRE.MatchString(e.Type) {
		return bad(fmt.Sprintf("event type %.40q must be upper case letters, digits and _", e.Type))
	}
	if len(e.Subject) > 255 {
		return bad("event subject is longer than 255 bytes")
	}
	switch e.Severity {
	case "", SeverityInfo, SeverityWarning, SeverityCritical:
	default:
		return bad(fmt.Sprintf("event severity %.20q must be info, warning or critical", e.Severity))
	}
	if len(e.Payload) > 0 && !json.Valid(e.Payload) {
		return bad("event payload is not valid JSON")
	}
	return nil
}

func severityRank(s Severity) int {
	switch s {
	case SeverityWarning:
		return 1
	case SeverityCritical:
		return 2
	}
	return 0
}
