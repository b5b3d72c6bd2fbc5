package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/governance"
)

var (
	schemaCost = schema(map[string]any{
		"days": map[string]any{"type": "integer", "minimum": 1, "maximum": 90,
			"description": "Look back this many days; omit for the current week (since Monday 00:00 UTC)."},
	}, nil)
	schemaRoutingSet = schema(map[string]any{
		"policy": map[string]any{"type": "object", "description": "The whole new routing policy: " +
			`{"groups":{"eu":{"primary":[{"provider":"hetzner","region":"fsn1"}],"standby":[{"provider":"vultr","region":"ams"}]}},"avoid_below_score":75}`},
		"reason": reasonProp,
	}, []string{"policy", "reason"})
)

// costTool is gf_cost_report.
type costTool struct{ c coster }

func (t *costTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NameCostReport, Action: governance.ActionRead, Risk: clawops.RiskLow,
		Description: "Cost report: projected versus actual spend (this week, or the last N days), spend by provider, " +
			"idle accounts (no activity for 14 days), under-used tiers (< 20% CPU and memory all week), instances " +
			"another provider would serve for less, retired servers still running, and the total recoverable per month.",
		Schema: schemaCost}
}

func (t *costTool) Plan(_ context.Context, _ clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	const op = NameCostReport + " plan"
	m, err := decodeObject(op, args, "days")
	if err != nil {
		return governance.Plan{}, err
	}
	days, err := intArg(op, m, "days", 1, 90, 0)
	if err != nil {
		return governance.Plan{}, err
	}
	canon, window := map[string]any{}, "the current week"
	if days > 0 {
		canon["days"], window = days, fmt.Sprintf("the last %d days", days)
	}
	return governance.Plan{Tool: NameCostReport, Args: canonical(canon), Summary: "Compute the cost report for " + window,
		Reversible: true, Effects: []governance.Effect{{Kind: EffectDBRead, Target: "fleet", Detail: "instances, accounts, prices"}}}, nil
}

func (t *costTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	m, err := decodeObject(NameCostReport, p.Args, "days")
	if err != nil {
		return governance.Result{}, err
	}
	days, err := intArg(NameCostReport, m, "days", 1, 90, 0)
	if err != nil {
		return governance.Result{}, err
	}
	var q fleet.CostQuery
	if days > 0 {
		q.To = t.c.Now()
		q.From = q.To.Add(-time.Duration(days) * 24 * time.Hour)
	}
	r, err := t.c.CostReport(ctx, q)
	if err != nil {
		return governance.Result{}, clawops.E(NameCostReport, err)
	}
	return governance.Result{Summary: costSummary(r), Data: canonical(r)}, nil
}

// costSummary reads like the Ledger: numbers first, projected versus actual.
func costSummary(r fleet.CostReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Spend %s → %s: %s vs %s projected (%+.1f%%)", r.From.Format("2006-01-02 15:04"), r.To.Format("2006-01-02 15:04"),
		money(r.ActualUSD), money(r.ProjectedUSD), r.DeltaPercent)
	if r.Anomaly {
		fmt.Fprintf(&b, ", ANOMALY above +%d%%", fleet.CostAnomalyPercent)
	}
	fmt.Fprintf(&b, "; run rate %s/month.", money(r.RunRateMonthlyUSD))
	var parts []string
	if len(r.Idle) > 0 {
		parts = append(parts, fmt.Sprintf("%d idle account(s) (14+ days no activity) %s/month", len(r.Idle), money(r.IdleMonthlyUSD)))
	}
	if len(r.Underused) > 0 {
		parts = append(parts, fmt.Sprintf("%d under-used instance(s) (< 20%% CPU and memory all week) %s/month if downsized", len(r.Underused), money(r.UnderusedMonthlyUSD)))
	}
	if len(r.Cheaper) > 0 {
		parts = append(parts, fmt.Sprintf("%d instance(s) cheaper at another provider %s/month", len(r.Cheaper), money(r.CheaperMonthlyUSD)))
	}
	if len(r.Retired) > 0 {
		parts = append(parts, fmt.Sprintf("%d retired server(s) still running %s/month", len(r.Retired), money(r.RetiredMonthlyUSD)))
	}
	if len(parts) == 0 {
		b.WriteString(" Nothing to recover.")
	} else {
		fmt.Fprintf(&b, " Recoverable ~%s/month: %s.", money(r.RecoverableMonthlyUSD), strings.Join(parts, "; "))
	}
	if len(r.Unpriced) > 0 {
		fmt.Fprintf(&b, " %d instance(s) have no price and are left out.", len(r.Unpriced))
	}
	return b.String()
}

// routingTool is gf_provider_routing: the routing policy and provider health.
type routingTool struct{ r router }

func (t *routingTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NameProviderRouting, Action: governance.ActionRead, Risk: clawops.RiskLow,
		Description: "Show the provider routing policy (its version, who set it and why, where new primaries and " +
			"standbys go per region group), its recent versions, and each provider's 7-day health score from " +
			"provision times and failures. Change it with gf_provider_routing_set.",
		Schema: schemaEmpty}
}

func (t *routingTool) Plan(_ context.Context, _ clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	if _, err := decodeObject(NameProviderRouting+" plan", args); err != nil {
		return governance.Plan{}, err
	}
	return governance.Plan{Tool: NameProviderRouting, Args: canonical(struct{}{}), Summary: "Read the provider routing policy and provider health scores",
		Reversible: true, Effects: []governance.Effect{{Kind: EffectDBRead, Target: "routing", Detail: "policy versions and provision samples"}}}, nil
}

func (t *routingTool) Apply(ctx context.Context, _ governance.Plan) (governance.Result, error) {
	scores, err := t.r.ProviderScores(ctx)
	if err != nil {
		return governance.Result{}, clawops.E(NameProviderRouting, err)
	}
	hist, err := t.r.RoutingHistory(ctx, 5)
	if err != nil {
		return governance.Result{}, clawops.E(NameProviderRouting, err)
	}
	data := struct {
		Current *fleet.RoutingVersion  `json:"current,omitempty"`
		History []fleet.RoutingVersion `json:"history"`
		Scores  []fleet.ProviderScore  `json:"scores"`
	}{History: hist, Scores: scores}
	var b strings.Builder
	cur, err := t.r.RoutingPolicy(ctx)
	switch {
	case err == nil:
		data.Current = &cur
		fmt.Fprintf(&b, "Routing v%d by %s (%s): %s.", cur.Version, cur.Author, cur.Reason, describePolicy(cur.Policy))
	case clawops.ReasonOf(err) == fleet.ReasonNoPlacement:
		b.WriteString("No routing policy is set.")
	default:
		return governance.Result{}, clawops.E(NameProviderRouting, err)
	}
	var sc []string
	for _, s := range scores {
		x := fmt.Sprintf("%s %d", s.Provider, s.Score)
		if s.Degraded {
			x += " (degraded)"
		}
		sc = append(sc, x)
	}
	fmt.Fprintf(&b, " Provider scores (7 days): %s.", strings.Join(sc, ", "))
	return governance.Result{Summary: b.String(), Data: canonical(data)}, nil
}

// describePolicy renders e.g. "eu: primary hetzner/fsn1 > vultr/ams, standby vultr/ams".
func describePolicy(p fleet.RoutingPolicy) string {
	groups := make([]string, 0, len(p.Groups))
	for g := range p.Groups {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	pl := func(ps []fleet.Placement) string {
		var s []string
		for _, x := range ps {
			s = append(s, x.Provider+"/"+x.Region)
		}
		return strings.Join(s, " > ")
	}
	var parts []string
	for _, g := range groups {
		r := p.Groups[g]
		parts = append(parts, fmt.Sprintf("%s: primary %s, standby %s", g, pl(r.Primary), pl(r.Standby)))
	}
	s := strings.Join(parts, "; ")
	if p.AvoidBelowScore > 0 {
		s += fmt.Sprintf("; avoid providers scoring below %d", p.AvoidBelowScore)
	}
	return s
}

// routingSetTool is gf_provider_routing_set: a new routing policy version. A routing
// change is a change of the control plane's own config that decides where every future
// pair goes, so it is governed as a config push (the Commander needs approval; no other
// agent may do it), though it touches no running instance.
type routingSetTool struct{ r router }

func (t *routingSetTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NameProviderRoutingSet, Action: governance.ActionConfigPush, Risk: clawops.RiskMedium,
		Description: "Store a new provider routing policy version (who and why are recorded; the version number goes up " +
			"by one). Applies to new provisions only; existing instances are unaffected.",
		Schema: schemaRoutingSet}
}

type routingSetArgs struct {
	Policy      fleet.RoutingPolicy `json:"policy"`
	Reason      string              `json:"reason"`
	BaseVersion int                 `json:"base_version"`
	RequestedBy string              `json:"requested_by"`
}

func (t *routingSetTool) Plan(ctx context.Context, actor clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	const op = NameProviderRoutingSet + " plan"
	m, err := decodeObjectLimit(op, args, 64<<10, "policy", "reason", "base_version", "requested_by")
	if err != nil {
		return governance.Plan{}, err
	}
	raw, ok := m["policy"]
	if !ok {
		return governance.Plan{}, badArgs(op, "argument \"policy\" is required")
	}
	var a routingSetArgs
	if a.RequestedBy, err = requesterArg(op, m, actor); err != nil {
		return governance.Plan{}, err
	}
	base, err := intArg(op, m, "base_version", 0, 1<<30, -1)
	if err != nil {
		return governance.Plan{}, err
	}
	if err := decodeStrict(op, "policy", raw, &a.Policy); err != nil {
		return governance.Plan{}, err
	}
	if a.Reason, err = stringArg(op, m, "reason", reasonRE, ""); err != nil {
		return governance.Plan{}, err
	}
	if strings.TrimSpace(a.Reason) == "" {
		return governance.Plan{}, badArgs(op, "argument \"reason\" is required: say why the routing changes")
	}
	if checker, ok := t.r.(interface {
		CheckRoutingPolicy(fleet.RoutingPolicy) error
	}); ok {
		if err := checker.CheckRoutingPolicy(a.Policy); err != nil {
			return governance.Plan{}, clawops.E(op, err)
		}
	}
	was := "no policy"
	cur, err := t.r.RoutingPolicy(ctx)
	switch {
	case err == nil:
		a.BaseVersion = cur.Version
		was = fmt.Sprintf("v%d: %s", cur.Version, describePolicy(cur.Policy))
	case clawops.ReasonOf(err) != fleet.ReasonNoPlacement:
		return governance.Plan{}, clawops.E(op, err)
	}
	if base >= 0 && base != a.BaseVersion {
		return governance.Plan{}, clawops.E(op, clawops.KindDenied, clawops.ReasonPlanMismatch,
			fmt.Errorf("planned against routing v%d, the policy is v%d now", base, a.BaseVersion))
	}
	return governance.Plan{Tool: NameProviderRoutingSet, Args: canonical(a), Reversible: true,
		Summary: fmt.Sprintf("Set provider routing v%d: %s (was %s); new provisions only, existing instances unaffected",
			a.BaseVersion+1, describePolicy(a.Policy), was),
		Effects: []governance.Effect{{Kind: EffectConfigChange, Target: "routing",
			Detail: fmt.Sprintf("new version after v%d, by %s: %s", a.BaseVersion, a.RequestedBy, a.Reason)}}}, nil
}

func (t *routingSetTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	var a routingSetArgs
	if err := decodeStrict(NameProviderRoutingSet, "plan arguments", p.Args, &a); err != nil {
		return governance.Result{}, err
	}
	reason := a.Reason
	if g := grantNote(ctx); g != "" {
		reason += " [" + g + "]"
	}
	v, err := t.r.SetRoutingPolicy(ctx, fleet.RoutingChange{Policy: a.Policy, Author: a.RequestedBy, Reason: reason, BaseVersion: a.BaseVersion})
	if err != nil {
		return governance.Result{}, clawops.E(NameProviderRoutingSet, err)
	}
	return governance.Result{Summary: fmt.Sprintf("Routing policy is v%d now: %s", v.Version, describePolicy(v.Policy)), Data: canonical(v)}, nil
}
