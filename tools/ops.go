package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/governance"
)

// Names of the fleet operation tools.
const (
	NameDiagnose           = "gf_instance_diagnose"
	NameHeal               = "gf_heal"
	NameFailover           = "gf_failover"
	NameProvision          = "gf_provision"
	NameTierResize         = "gf_tier_resize"
	NameConfigPush         = "gf_config_push"
	NamePushStatus         = "gf_push_status"
	NamePushControl        = "gf_push_control"
	NamePushResume         = "gf_push_resume"
	NameUpgrade            = "gf_upgrade"
	NameCostReport         = "gf_cost_report"
	NameProviderRouting    = "gf_provider_routing"
	NameProviderRoutingSet = "gf_provider_routing_set"
)

// Effect kinds of the operation tools, beside the ones in tools.go.
const (
	EffectProviderCreate = "provider.create"
	EffectProviderResize = "provider.resize"
	EffectConfigChange   = "config.change"
)

// What each operation tool needs of the fleet; *fleet.Service has all of it. All adds a
// tool only when its fleet has what the tool needs.
type (
	diagnoser interface {
		Diagnose(ctx context.Context, id clawops.InstanceID) (fleet.Diagnosis, error)
	}
	healer interface {
		Heal(ctx context.Context, id clawops.InstanceID, opts fleet.HealOptions) (fleet.HealReport, error)
	}
	failoverer interface {
		Pair(ctx context.Context, id string) (fleet.PairView, error)
		Failover(ctx context.Context, pair string) (fleet.FailoverReport, error)
		Prices() fleet.PriceTable
	}
	provisioner interface {
		PlanProvision(ctx context.Context, req fleet.ProvisionRequest) (fleet.ProvisionPlan, error)
		EnqueueProvision(ctx context.Context, plan fleet.ProvisionPlan, by, reason string) (fleet.ProvisionBatchView, error)
	}
	resizer interface {
		Pair(ctx context.Context, id string) (fleet.PairView, error)
		Resize(ctx context.Context, id clawops.InstanceID, tier string) (fleet.ResizeResult, error)
		Prices() fleet.PriceTable
	}
	pusher interface {
		StartPush(ctx context.Context, spec fleet.PushSpec) (fleet.PushView, error)
	}
	upgrader interface {
		StartUpgrade(ctx context.Context, spec fleet.UpgradeSpec) (fleet.PushView, error)
	}
	pushController interface {
		PushStatus(ctx context.Context, id uint) (fleet.PushView, error)
		Pushes(ctx context.Context, limit int) ([]fleet.PushView, error)
		PausePush(ctx context.Context, id uint, by string) (fleet.PushView, error)
		ResumePush(ctx context.Context, id uint, by string) (fleet.PushView, error)
		AbortPush(ctx context.Context, id uint, by string) (fleet.PushView, error)
	}
	coster interface {
		CostReport(ctx context.Context, q fleet.CostQuery) (fleet.CostReport, error)
		Now() time.Time
	}
	router interface {
		RoutingPolicy(ctx context.Context) (fleet.RoutingVersion, error)
		RoutingHistory(ctx context.Context, limit int) ([]fleet.RoutingVersion, error)
		ProviderScores(ctx context.Context) ([]fleet.ProviderScore, error)
		SetRoutingPolicy(ctx context.Context, change fleet.RoutingChange) (fleet.RoutingVersion, error)
	}
	archivingTeardown interface {
		TeardownWith(ctx context.Context, id clawops.InstanceID, opts fleet.TeardownOptions) (fleet.TeardownResult, error)
	}
)

var (
	_ diagnoser         = (*fleet.Service)(nil)
	_ healer            = (*fleet.Service)(nil)
	_ failoverer        = (*fleet.Service)(nil)
	_ provisioner       = (*fleet.Service)(nil)
	_ resizer           = (*fleet.Service)(nil)
	_ pusher            = (*fleet.Service)(nil)
	_ upgrader          = (*fleet.Service)(nil)
	_ pushController    = (*fleet.Service)(nil)
	_ coster            = (*fleet.Service)(nil)
	_ router            = (*fleet.Service)(nil)
	_ archivingTeardown = (*fleet.Service)(nil)
)

// Options tune the catalog.
type Options struct {
	// Roles is the gate's autonomy table. gf_heal includes the failover step only for an
	// actor whose agent may fail over alone in it. Nil: governance.DefaultRoles().
	Roles governance.RoleTable
}

// operationTools returns the operation tools f supports.
func operationTools(f Fleet, o Options) []governance.Tool {
	if o.Roles == nil {
		o.Roles = governance.DefaultRoles()
	}
	var out []governance.Tool
	if d, ok := f.(diagnoser); ok {
		out = append(out, &diagnoseTool{f, d})
	}
	if h, ok := f.(healer); ok {
		out = append(out, &healTool{f, h, o.Roles})
	}
	if fo, ok := f.(failoverer); ok {
		out = append(out, &failoverTool{fo})
	}
	if p, ok := f.(provisioner); ok {
		if pr, ok := f.(interface{ Prices() fleet.PriceTable }); ok {
			out = append(out, &provisionTool{p, pr})
		}
	}
	if r, ok := f.(resizer); ok {
		out = append(out, &resizeTool{f, r})
	}
	if p, ok := f.(pusher); ok {
		out = append(out, &configPushTool{f, p})
	}
	if u, ok := f.(upgrader); ok {
		out = append(out, &upgradeTool{f, u})
	}
	if c, ok := f.(pushController); ok {
		out = append(out, &pushStatusTool{c}, &pushControlTool{c: c}, &pushControlTool{c: c, resume: true})
	}
	if c, ok := f.(coster); ok {
		out = append(out, &costTool{c})
	}
	if r, ok := f.(router); ok {
		out = append(out, &routingTool{r}, &routingSetTool{r})
	}
	return out
}

// maxOpArgsBytes bounds the arguments of the tools that carry a config or a list.
const maxOpArgsBytes = 512 << 10

var lowerKeyRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// decodeStrict decodes raw into v refusing unknown fields, and refusing keys that are
// not lowercase anywhere in it: encoding/json matches keys without regard to case, which
// would let "Primary" stand for "primary".
func decodeStrict(op, what string, raw json.RawMessage, v any) error {
	var generic any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return badArgs(op, "%s is not valid JSON: %v", what, err)
	}
	if err := checkKeys(generic); err != nil {
		return badArgs(op, "%s: %v", what, err)
	}
	dec = json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badArgs(op, "%s: %v", what, err)
	}
	return nil
}

func checkKeys(v any) error {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if !lowerKeyRE.MatchString(k) {
				return fmt.Errorf("key %.40q: want lowercase letters, digits, '_' or '-'", k)
			}
			if err := checkKeys(e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := checkKeys(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// stringArg reads an optional string argument that must match re when given.
func stringArg(op string, m map[string]json.RawMessage, key string, re *regexp.Regexp, def string) (string, error) {
	v, ok := m[key]
	if !ok {
		return def, nil
	}
	var s string
	if string(v) == "null" || json.Unmarshal(v, &s) != nil {
		return "", badArgs(op, "argument %q must be a string", key)
	}
	if re != nil && !re.MatchString(s) {
		return "", badArgs(op, "argument %q: %.60q does not match %s", key, s, re)
	}
	return s, nil
}

// intArg reads an optional integer argument within lo..hi.
func intArg(op string, m map[string]json.RawMessage, key string, lo, hi, def int) (int, error) {
	v, ok := m[key]
	if !ok {
		return def, nil
	}
	var n int
	if string(v) == "null" || json.Unmarshal(v, &n) != nil {
		return 0, badArgs(op, "argument %q must be an integer", key)
	}
	if n < lo || n > hi {
		return 0, badArgs(op, "argument %q: %d is outside %d..%d", key, n, lo, hi)
	}
	return n, nil
}

// boolArg reads an optional boolean argument.
func boolArg(op string, m map[string]json.RawMessage, key string, def bool) (bool, error) {
	v, ok := m[key]
	if !ok {
		return def, nil
	}
	var b bool
	if string(v) == "null" || json.Unmarshal(v, &b) != nil {
		return false, badArgs(op, "argument %q must be true or false", key)
	}
	return b, nil
}

// Shared argument patterns.
var (
	slugRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)
	reasonRE = regexp.MustCompile(`^[^\x00-\x08\x0b-\x1f\x7f]{1,500}$`)
)

// requester is who the gate's actor is, for journals and events.
func requester(a clawops.Actor) string { return a.String() }

// requesterArg reads the optional "requested_by" argument. Plans carry it in their
// canonical arguments (the gate plans again from them before applying an approved plan),
// so it is accepted, but only when it names the caller.
func requesterArg(op string, m map[string]json.RawMessage, actor clawops.Actor) (string, error) {
	by, err := stringArg(op, m, "requested_by", nil, requester(actor))
	if err != nil {
		return "", err
	}
	if by != requester(actor) {
		return "", badArgs(op, "requested_by %.80q does not name the caller", by)
	}
	return by, nil
}

// grantNote describes the grant an Apply runs under, e.g. "approval apr_1 by bob".
func grantNote(ctx context.Context) string {
	g, ok := governance.GrantFromContext(ctx)
	if !ok {
		return ""
	}
	s := string(g.Kind)
	if g.ID != "" {
		s += " " + g.ID
	}
	if len(g.By) > 0 {
		s += fmt.Sprintf(" by %v", g.By)
	}
	return s
}

func money(v float64) string {
	if v < 0 {
		return fmt.Sprintf("-$%.2f", -v)
	}
	return fmt.Sprintf("$%.2f", v)
}
