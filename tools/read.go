package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/governance"
)

// StatusRow is one instance in gf_fleet_status's result.
type StatusRow struct {
	ID            clawops.InstanceID `json:"id"`
	Account       string             `json:"account"`
	Pair          string             `json:"pair"`
	Provider      string             `json:"provider"`
	Region        string             `json:"region"`
	Tier          string             `json:"tier"`
	Role          fleet.Role         `json:"role"`
	State         fleet.State        `json:"state"`
	PeerState     fleet.State        `json:"peer_state,omitempty"`
	Node          clawops.NodeID     `json:"node,omitempty"`
	LastHeartbeat *time.Time         `json:"last_heartbeat,omitempty"`
	Health        fleet.HealthView   `json:"health"`
}

// statusTool is gf_fleet_status: every live instance and a count by state.
type statusTool struct{ f Fleet }

func (t *statusTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NameFleetStatus, Action: governance.ActionRead, Risk: clawops.RiskLow,
		Description: "List every instance of the fleet that is not terminated: account, pair, provider, region, " +
			"tier, role, state, node, last heartbeat and OpenClaw health. Takes no arguments.",
		Schema: schemaEmpty}
}

func (t *statusTool) Plan(_ context.Context, _ clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	if _, err := decodeObject(NameFleetStatus+" plan", args); err != nil {
		return governance.Plan{}, err
	}
	return governance.Plan{Tool: NameFleetStatus, Args: canonical(struct{}{}),
		Summary: "Read the status of every instance", Reversible: true,
		Effects: []governance.Effect{{Kind: EffectDBRead, Target: "fleet", Detail: "list instances"}}}, nil
}

func (t *statusTool) Apply(ctx context.Context, _ governance.Plan) (governance.Result, error) {
	all, err := t.f.Instances(ctx)
	if err != nil {
		return governance.Result{}, clawops.E(NameFleetStatus, err)
	}
	rows := []StatusRow{}
	counts := map[fleet.State]int{}
	terminated := 0
	for _, v := range all {
		if v.State == fleet.StateTerminated {
			terminated++
			continue
		}
		counts[v.State]++
		rows = append(rows, StatusRow{ID: v.ID, Account: v.Account, Pair: v.Pair, Provider: v.Provider,
			Region: v.Region, Tier: v.Tier, Role: v.Role, State: v.State, PeerState: v.PeerState,
			Node: v.Node, LastHeartbeat: v.LastHeartbeat, Health: v.Health})
	}
	return governance.Result{Summary: statusSummary(len(rows), counts, terminated), Data: canonical(rows)}, nil
}

// statusSummary reads e.g. "6 instances: 5 ACTIVE, 1 DEGRADED".
func statusSummary(n int, counts map[fleet.State]int, terminated int) string {
	word := "instances"
	if n == 1 {
		word = "instance"
	}
	s := fmt.Sprintf("%d %s", n, word)
	var parts []string
	for _, st := range fleet.States {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, ", ")
	}
	if terminated > 0 {
		s += fmt.Sprintf(" (%d terminated not shown)", terminated)
	}
	return s
}

// healthTool is gf_instance_health: OpenClaw's health asked of the node now.
type healthTool struct{ f Fleet }

func (t *healthTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NameInstanceHealth, Action: governance.ActionRead, Risk: clawops.RiskLow,
		Description: "Ask an instance's node to check OpenClaw's health URL now; returns ok, HTTP status, latency and error.",
		Schema:      schemaInstance}
}

func (t *healthTool) Plan(ctx context.Context, _ clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	const op = NameInstanceHealth + " plan"
	id, err := instanceOnly(op, args)
	if err != nil {
		return governance.Plan{}, err
	}
	v, err := resolve(ctx, t.f, op, id)
	if err != nil {
		return governance.Plan{}, err
	}
	if err := needNode(op, v); err != nil {
		return governance.Plan{}, err
	}
	return governance.Plan{Tool: NameInstanceHealth, Args: canonical(map[string]any{"instance": id}),
		Summary: fmt.Sprintf("Check OpenClaw health on %s via node %s", describe(v), shortNode(v.Node)),
		Targets: []governance.Target{target(v)}, Reversible: true,
		Effects: []governance.Effect{{Kind: EffectNodeCommand, Target: string(v.Node),
			Detail: fleet.CmdHealth + " for " + string(id)}}}, nil
}

func (t *healthTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	id, err := instanceOnly(NameInstanceHealth, p.Args)
	if err != nil {
		return governance.Result{}, err
	}
	h, err := t.f.Health(ctx, id)
	if err != nil {
		return governance.Result{}, clawops.E(NameInstanceHealth, err)
	}
	data := struct {
		Instance clawops.InstanceID `json:"instance"`
		Health   proto.Health       `json:"health"`
	}{id, h}
	return governance.Result{Summary: healthSummary(id, h), Data: canonical(data)}, nil
}

func healthSummary(id clawops.InstanceID, h proto.Health) string {
	word := "healthy"
	if !h.OK {
		word = "unhealthy"
	}
	var detail []string
	if h.Status != 0 {
		detail = append(detail, fmt.Sprintf("HTTP %d", h.Status))
	}
	detail = append(detail, fmt.Sprintf("%d ms", h.LatencyMs))
	s := fmt.Sprintf("%s: OpenClaw %s (%s)", id, word, strings.Join(detail, ", "))
	if h.Error != "" {
		s += ": " + h.Error
	}
	return s
}

// maxSummaryLog bounds the log text carried in a summary (chat messages are small); the
// result's data holds every line.
const maxSummaryLog = 3500

// logsTool is gf_instance_logs: the newest lines of OpenClaw's log.
type logsTool struct{ f Fleet }

func (t *logsTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NameInstanceLogs, Action: governance.ActionRead, Risk: clawops.RiskLow,
		Description: fmt.Sprintf("Return the newest lines of OpenClaw's log on an instance (lines %d..%d, default %d).",
			fleet.MinLogLines, fleet.MaxLogLines, fleet.DefaultLogLines),
		Schema: schemaLogs}
}

func decodeLogsArgs(op string, raw json.RawMessage) (clawops.InstanceID, int, error) {
	m, err := decodeObject(op, raw, "instance", "lines")
	if err != nil {
		return "", 0, err
	}
	id, err := instanceArg(op, m)
	if err != nil {
		return "", 0, err
	}
	n, err := linesArg(op, m)
	return id, n, err
}

func (t *logsTool) Plan(ctx context.Context, _ clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	const op = NameInstanceLogs + " plan"
	id, n, err := decodeLogsArgs(op, args)
	if err != nil {
		return governance.Plan{}, err
	}
	v, err := resolve(ctx, t.f, op, id)
	if err != nil {
		return governance.Plan{}, err
	}
	if err := needNode(op, v); err != nil {
		return governance.Plan{}, err
	}
	return governance.Plan{Tool: NameInstanceLogs, Args: canonical(map[string]any{"instance": id, "lines": n}),
		Summary: fmt.Sprintf("Read the last %d lines of OpenClaw's log on %s via node %s", n, describe(v), shortNode(v.Node)),
		Targets: []governance.Target{target(v)}, Reversible: true,
		Effects: []governance.Effect{{Kind: EffectNodeCommand, Target: string(v.Node),
			Detail: fmt.Sprintf("%s tail=%d for %s", fleet.CmdLogs, n, id)}}}, nil
}

func (t *logsTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	id, n, err := decodeLogsArgs(NameInstanceLogs, p.Args)
	if err != nil {
		return governance.Result{}, err
	}
	text, err := t.f.Logs(ctx, id, n)
	if err != nil {
		return governance.Result{}, clawops.E(NameInstanceLogs, err)
	}
	text = strings.TrimRight(text, "\n")
	lines := []string{}
	if text != "" {
		lines = strings.Split(text, "\n")
	}
	data := struct {
		Instance clawops.InstanceID `json:"instance"`
		Lines    []string           `json:"lines"`
	}{id, lines}
	head := fmt.Sprintf("%s: %d log lines", id, len(lines))
	if len(text) > maxSummaryLog {
		// Keep the newest part, starting on a line boundary.
		cut := text[len(text)-maxSummaryLog:]
		if i := strings.IndexByte(cut, '\n'); i >= 0 {
			cut = cut[i+1:]
		}
		for len(cut) > 0 && !utf8.RuneStart(cut[0]) {
			cut = cut[1:]
		}
		head += fmt.Sprintf(" (newest %d shown)", strings.Count(cut, "\n")+1)
		text = cut
	}
	summary := head
	if text != "" {
		summary += "\n" + text
	}
	return governance.Result{Summary: summary, Data: canonical(data)}, nil
}
