package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/governance"
)

// Expected durations of provisioning and resizing.
const (
	provisionDuration = 8 * time.Minute
	resizeDuration    = 5 * time.Minute
)

var (
	placementProp = map[string]any{
		"type": "object", "additionalProperties": false, "required": []string{"provider", "region"},
		"properties": map[string]any{
			"provider": map[string]any{"type": "string", "pattern": slugRE.String()},
			"region":   map[string]any{"type": "string", "pattern": slugRE.String()},
		},
	}
	reasonProp = map[string]any{"type": "string", "minLength": 1, "maxLength": 500,
		"description": "Why, in the operator's words; recorded with the change."}
	schemaProvision = schema(map[string]any{
		"accounts": map[string]any{"type": "array", "minItems": 1, "maxItems": fleet.MaxProvisionBatch, "uniqueItems": true,
			"items": map[string]any{"type": "string", "pattern": fleet.InstanceIDPattern}, "description": "Account IDs to create."},
		"prefix": map[string]any{"type": "string", "pattern": fleet.InstanceIDPattern,
			"description": "With count: accounts <prefix>-001, -002, ... numbered after the highest existing one."},
		"count":   map[string]any{"type": "integer", "minimum": 1, "maximum": fleet.MaxProvisionBatch},
		"tier":    map[string]any{"type": "string", "pattern": slugRE.String(), "description": "Tier, e.g. nano, small, standard, large."},
		"region":  map[string]any{"type": "string", "pattern": slugRE.String(), "description": "Region group for the routing policy, e.g. eu or us."},
		"primary": placementProp, "standby": placementProp, "reason": reasonProp,
	}, []string{"tier"})
	schemaResize = schema(map[string]any{
		"instance": instanceProp,
		"pair":     map[string]any{"type": "string", "pattern": fleet.InstanceIDPattern, "description": "Resize both instances of a pair."},
		"tier":     map[string]any{"type": "string", "pattern": slugRE.String()},
	}, []string{"tier"})
)

// provisionTool is gf_provision: new account pairs, placed by the routing policy.
type provisionTool struct {
	p      provisioner
	prices interface{ Prices() fleet.PriceTable }
}

func (t *provisionTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NameProvision, Action: governance.ActionProvision, Risk: clawops.RiskMedium,
		Description: "Provision new account pairs (a primary and a standby on different providers), by account IDs or " +
			"by prefix and count, in a tier and a region group placed by the provider routing policy (or explicit " +
			"primary and standby placements). Runs in the background with progress events; two retries per server.",
		Schema: schemaProvision}
}

func placementArg(op string, m map[string]json.RawMessage, key string) (*fleet.Placement, error) {
	raw, ok := m[key]
	if !ok {
		return nil, nil
	}
	pm, err := decodeObject(op, raw, "provider", "region")
	if err != nil {
		return nil, badArgs(op, "%s: %v", key, err)
	}
	prov, err := stringArg(op, pm, "provider", slugRE, "")
	if err != nil {
		return nil, err
	}
	region, err := stringArg(op, pm, "region", slugRE, "")
	if err != nil {
		return nil, err
	}
	if prov == "" || region == "" {
		return nil, badArgs(op, "%s needs provider and region", key)
	}
	return &fleet.Placement{Provider: prov, Region: region}, nil
}

func accountsArg(op string, m map[string]json.RawMessage) ([]string, error) {
	raw, ok := m["accounts"]
	if !ok {
		return nil, nil
	}
	var list []string
	if string(raw) == "null" || json.Unmarshal(raw, &list) != nil {
		return nil, badArgs(op, "argument \"accounts\" must be an array of account IDs")
	}
	if len(list) == 0 {
		return nil, badArgs(op, "argument \"accounts\" is empty")
	}
	return list, nil
}

// provisionCall is a gf_provision call as read from its arguments.
type provisionCall struct {
	req            fleet.ProvisionRequest
	reason         string
	requestedBy    string
	routingVersion *int // when given: the routing version the plan was made with
}

// provisionRequest reads the caller's arguments, or a plan's canonical ones (the gate
// plans again from those before applying an approved plan).
func provisionRequest(op string, raw json.RawMessage, actor clawops.Actor) (provisionCall, error) {
	m, err := decodeObjectLimit(op, raw, maxOpArgsBytes, "accounts", "prefix", "count", "tier", "region", "primary",
		"standby", "reason", "requested_by", "routing_version")
	if err != nil {
		return provisionCall{}, err
	}
	var c provisionCall
	req := &c.req
	if req.Accounts, err = accountsArg(op, m); err != nil {
		return c, err
	}
	if req.Prefix, err = stringArg(op, m, "prefix", nil, ""); err != nil {
		return c, err
	}
	if req.Count, err = intArg(op, m, "count", 1, fleet.MaxProvisionBatch, 0); err != nil {
		return c, err
	}
	if req.Tier, err = stringArg(op, m, "tier", slugRE, ""); err != nil {
		return c, err
	}
	if req.Tier == "" {
		return c, badArgs(op, "argument \"tier\" is required")
	}
	if req.Group, err = stringArg(op, m, "region", slugRE, ""); err != nil {
		return c, err
	}
	if req.Primary, err = placementArg(op, m, "primary"); err != nil {
		return c, err
	}
	if req.Standby, err = placementArg(op, m, "standby"); err != nil {
		return c, err
	}
	if req.Primary == nil && req.Group == "" {
		return c, badArgs(op, "give a region group (e.g. \"eu\") or primary and standby placements")
	}
	if req.Primary != nil && req.Group != "" {
		return c, badArgs(op, "give a region group or placements, not both")
	}
	if c.reason, err = stringArg(op, m, "reason", reasonRE, ""); err != nil {
		return c, err
	}
	if c.requestedBy, err = requesterArg(op, m, actor); err != nil {
		return c, err
	}
	if _, ok := m["routing_version"]; ok {
		v, err := intArg(op, m, "routing_version", 0, 1<<30, 0)
		if err != nil {
			return c, err
		}
		c.routingVersion = &v
	}
	return c, nil
}

// resolve plans c with the fleet and returns the plan and the canonical arguments: the
// accounts resolved, the routing version when the policy placed the pairs.
func (t *provisionTool) resolve(ctx context.Context, op string, c provisionCall) (fleet.ProvisionPlan, map[string]any, error) {
	pp, err := t.p.PlanProvision(ctx, c.req)
	if err != nil {
		return pp, nil, clawops.E(op, err)
	}
	if c.routingVersion != nil && pp.RoutingVersion != *c.routingVersion {
		return pp, nil, clawops.E(op, clawops.KindDenied, clawops.ReasonPlanMismatch,
			fmt.Errorf("planned with routing v%d, the policy is v%d now", *c.routingVersion, pp.RoutingVersion))
	}
	accounts := make([]string, len(pp.Pairs))
	for i, ps := range pp.Pairs {
		accounts[i] = ps.Account
	}
	canon := map[string]any{"accounts": accounts, "tier": c.req.Tier, "requested_by": c.requestedBy}
	if c.req.Group != "" {
		canon["region"], canon["routing_version"] = c.req.Group, pp.RoutingVersion
	} else {
		canon["primary"], canon["standby"] = c.req.Primary, c.req.Standby
	}
	if c.reason != "" {
		canon["reason"] = c.reason
	}
	return pp, canon, nil
}

func (t *provisionTool) Plan(ctx context.Context, actor clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	const op = NameProvision + " plan"
	c, err := provisionRequest(op, args, actor)
	if err != nil {
		return governance.Plan{}, err
	}
	pp, canon, err := t.resolve(ctx, op, c)
	if err != nil {
		return governance.Plan{}, err
	}
	tier := c.req.Tier
	first := pp.Pairs[0]
	p := governance.Plan{Tool: NameProvision, Args: canonical(canon), UsersAffected: len(pp.Pairs), Reversible: true,
		CostDeltaMonthlyUSD: pp.MonthlyUSD, ExpectedDuration: provisionDuration}
	var accounts, pris, sbys []string
	for _, ps := range pp.Pairs {
		accounts = append(accounts, ps.Account)
		pri, sby := ps.Pair+fleet.PrimarySuffix, ps.Pair+fleet.StandbySuffix
		pris, sbys = append(pris, pri), append(sbys, sby)
		p.Targets = append(p.Targets,
			governance.Target{Instance: clawops.InstanceID(pri), Account: ps.Account, Role: string(fleet.RolePrimary), Users: fleet.UsersPerAccount},
			governance.Target{Instance: clawops.InstanceID(sby), Account: ps.Account, Role: string(fleet.RoleStandby)})
	}
	p.Effects = []governance.Effect{
		{Kind: EffectProviderCreate, Target: first.Primary.Provider + "/" + first.Primary.Region,
			Detail: fmt.Sprintf("%d %s primaries: %s", len(pris), tier, span(pris))},
		{Kind: EffectProviderCreate, Target: first.Standby.Provider + "/" + first.Standby.Region,
			Detail: fmt.Sprintf("%d %s standbys: %s", len(sbys), tier, span(sbys))},
	}
	routing := "explicit placements"
	if pp.RoutingVersion >= 0 {
		routing = fmt.Sprintf("routing v%d", pp.RoutingVersion)
	}
	cost := "+" + money(pp.MonthlyUSD) + "/month"
	if len(pp.Unpriced) > 0 {
		cost += " (no price for " + strings.Join(pp.Unpriced, ", ") + ")"
	}
	p.Summary = fmt.Sprintf("Provision %d %s pair(s) %s: primaries at %s/%s, standbys at %s/%s (%s); %s; in the background with progress updates",
		len(pp.Pairs), tier, span(accounts), first.Primary.Provider, first.Primary.Region,
		first.Standby.Provider, first.Standby.Region, routing, cost)
	return p, nil
}

// span renders a list as "a" or "a … z (n)".
func span(ids []string) string {
	switch len(ids) {
	case 0:
		return "-"
	case 1:
		return ids[0]
	case 2:
		return ids[0] + ", " + ids[1]
	}
	return fmt.Sprintf("%s … %s", ids[0], ids[len(ids)-1])
}

func (t *provisionTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	var by struct {
		RequestedBy string `json:"requested_by"`
	}
	if err := json.Unmarshal(p.Args, &by); err != nil || by.RequestedBy == "" {
		return governance.Result{}, badArgs(NameProvision, "plan arguments carry no requester")
	}
	c, err := provisionRequest(NameProvision, p.Args, clawops.Actor{Identity: by.RequestedBy})
	if err != nil {
		return governance.Result{}, err
	}
	pp, _, err := t.resolve(ctx, NameProvision, c)
	if err != nil {
		return governance.Result{}, err
	}
	// Queue exactly the pairs the plan names.
	if len(p.Targets) != 2*len(pp.Pairs) {
		return governance.Result{}, clawops.E(NameProvision, clawops.KindDenied, clawops.ReasonPlanMismatch, "the pairs differ from the plan")
	}
	for i, ps := range pp.Pairs {
		if string(p.Targets[2*i].Instance) != ps.Pair+fleet.PrimarySuffix {
			return governance.Result{}, clawops.E(NameProvision, clawops.KindDenied, clawops.ReasonPlanMismatch,
				fmt.Errorf("pair %s is not the plan's %s", ps.Pair, p.Targets[2*i].Instance))
		}
	}
	reason := c.reason
	if g := grantNote(ctx); g != "" {
		reason = strings.TrimSpace(reason + " [" + g + "]")
	}
	b, err := t.p.EnqueueProvision(ctx, pp, c.requestedBy, reason)
	if err != nil {
		return governance.Result{}, clawops.E(NameProvision, err)
	}
	return governance.Result{Summary: fmt.Sprintf("Provisioning batch %d queued: %d pair(s), %s; +%s/month",
		b.ID, len(b.Pairs), b.Summary, money(b.MonthlyUSD)), Data: canonical(b)}, nil
}

// resizeTool is gf_tier_resize: move an instance, or both of a pair, to another tier.
type resizeTool struct {
	f Fleet
	r resizer
}

func (t *resizeTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NameTierResize, Action: governance.ActionTierChange, Risk: clawops.RiskMedium,
		Description: "Move one instance, or both instances of a pair, to another tier at its provider (the provider " +
			"may restart the server). Plans carry the monthly cost change from the price table.",
		Schema: schemaResize}
}

func decodeResizeArgs(op string, raw json.RawMessage) (clawops.InstanceID, string, string, error) {
	m, err := decodeObject(op, raw, "instance", "pair", "tier")
	if err != nil {
		return "", "", "", err
	}
	_, hasI := m["instance"]
	_, hasP := m["pair"]
	if hasI == hasP {
		return "", "", "", badArgs(op, "give exactly one of \"instance\" and \"pair\"")
	}
	tier, err := stringArg(op, m, "tier", slugRE, "")
	if err != nil {
		return "", "", "", err
	}
	if tier == "" {
		return "", "", "", badArgs(op, "argument \"tier\" is required")
	}
	if hasI {
		id, err := instanceArg(op, m)
		return id, "", tier, err
	}
	pair, err := stringArg(op, m, "pair", nil, "")
	if err != nil {
		return "", "", "", err
	}
	if !fleet.ValidInstanceID(pair) {
		return "", "", "", badArgs(op, "pair %.48q is not a pair id", pair)
	}
	return "", pair, tier, nil
}

// resizeTargets lists the live instances a resize touches.
func (t *resizeTool) resizeTargets(ctx context.Context, op string, id clawops.InstanceID, pair string) ([]fleet.InstanceView, error) {
	if id != "" {
		v, err := resolve(ctx, t.f, op, id)
		if err != nil {
			return nil, err
		}
		return []fleet.InstanceView{v}, nil
	}
	pv, err := t.r.Pair(ctx, pair)
	if err != nil {
		return nil, clawops.E(op, err)
	}
	return []fleet.InstanceView{pv.Primary, pv.Standby}, nil
}

func (t *resizeTool) Plan(ctx context.Context, _ clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	const op = NameTierResize + " plan"
	id, pair, tier, err := decodeResizeArgs(op, args)
	if err != nil {
		return governance.Plan{}, err
	}
	prices := t.r.Prices()
	if !prices.HasTier(tier) {
		return governance.Plan{}, clawops.E(op, clawops.KindInvalid, fleet.ReasonUnknownTier,
			fmt.Errorf("tier %q: want one of %s", tier, strings.Join(prices.Tiers, ", ")))
	}
	views, err := t.resizeTargets(ctx, op, id, pair)
	if err != nil {
		return governance.Plan{}, err
	}
	canon := map[string]any{"tier": tier}
	if id != "" {
		canon["instance"] = id
	} else {
		canon["pair"] = pair
	}
	p := governance.Plan{Tool: NameTierResize, Args: canonical(canon), UsersAffected: fleet.UsersPerAccount,
		Reversible: true, ExpectedDuration: resizeDuration}
	var moves []string
	for _, v := range views {
		if v.State == fleet.StateTerminated || v.Tier == tier {
			continue
		}
		if v.ProviderID == "" {
			return governance.Plan{}, clawops.E(op, clawops.KindTransient, clawops.ReasonExecutionFailed, fmt.Errorf("instance %s has no server yet", v.ID))
		}
		oldP, ok1 := prices.Monthly(v.Provider, v.Region, v.Tier)
		newP, ok2 := prices.Monthly(v.Provider, v.Region, tier)
		if ok1 && ok2 {
			p.CostDeltaMonthlyUSD += newP - oldP
		}
		p.Targets = append(p.Targets, target(v))
		p.Effects = append(p.Effects, governance.Effect{Kind: EffectProviderResize, Target: v.Provider + "/" + v.ProviderID,
			Detail: fmt.Sprintf("%s %s → %s", v.ID, v.Tier, tier)})
		moves = append(moves, fmt.Sprintf("%s %s → %s", v.ID, v.Tier, tier))
	}
	if len(p.Targets) == 0 {
		return governance.Plan{}, badArgs(op, "nothing to resize: already on %s or terminated", tier)
	}
	p.CostDeltaMonthlyUSD = math.Round(p.CostDeltaMonthlyUSD*100) / 100
	p.Summary = fmt.Sprintf("Resize %s; %s/month; the provider may restart the server(s)", strings.Join(moves, ", "),
		signed(p.CostDeltaMonthlyUSD))
	return p, nil
}

func signed(v float64) string {
	if v >= 0 {
		return "+" + money(v)
	}
	return money(v)
}

func (t *resizeTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	id, pair, tier, err := decodeResizeArgs(NameTierResize, p.Args)
	if err != nil {
		return governance.Result{}, err
	}
	views, err := t.resizeTargets(ctx, NameTierResize, id, pair)
	if err != nil {
		return governance.Result{}, err
	}
	var done []fleet.ResizeResult
	var errs []error
	for _, v := range views {
		if v.State == fleet.StateTerminated || v.Tier == tier {
			continue
		}
		r, err := t.r.Resize(ctx, v.ID, tier)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, r)
	}
	if len(errs) > 0 {
		return governance.Result{}, clawops.E(NameTierResize, fmt.Errorf("%d resized, %d failed: %w", len(done), len(errs), errors.Join(errs...)))
	}
	var parts []string
	delta := 0.0
	for _, r := range done {
		parts = append(parts, fmt.Sprintf("%s %s → %s", r.Instance, r.From, r.To))
		delta += r.MonthlyDeltaUSD
	}
	return governance.Result{Summary: fmt.Sprintf("Resized %s (%s/month)", strings.Join(parts, ", "), signed(delta)), Data: canonical(done)}, nil
}
