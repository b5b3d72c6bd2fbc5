package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents"
	"github.com/gatewayforge/clawops/governance"
)

// Fleet is the fixture fleet the dialogues run against: three pairs (demo1, demo2,
// idle01), every instance ACTIVE, and the cost figures of seed 003 §4.1. It is an
// evaluation fixture: its tools plan like the real ones (targets, users, cost, effects),
// so the real gate decides on real plans, but applying them only changes this in-memory
// fleet, and every result says so ("fixture": true).
type Fleet struct {
	mu   sync.Mutex
	inst map[clawops.InstanceID]*instance
	logs map[string]string
}

type instance struct {
	ID       clawops.InstanceID `json:"id"`
	Pair     string             `json:"pair"`
	Role     string             `json:"role"`
	State    string             `json:"state"`
	Provider string             `json:"provider"`
	Region   string             `json:"region"`
	Tier     string             `json:"tier"`
}

// NewFleet returns the fixture fleet; logs maps an instance to what gf_instance_logs
// returns for it.
func NewFleet(logs map[string]string) *Fleet {
	f := &Fleet{inst: map[clawops.InstanceID]*instance{}, logs: map[string]string{}}
	for k, v := range logs {
		f.logs[k] = v
	}
	for _, pair := range []string{"demo1", "demo2", "idle01"} {
		f.inst[clawops.InstanceID(pair+"-pri")] = &instance{ID: clawops.InstanceID(pair + "-pri"), Pair: pair, Role: "primary",
			State: "ACTIVE", Provider: "hetzner", Region: "eu-central", Tier: "standard"}
		f.inst[clawops.InstanceID(pair+"-sby")] = &instance{ID: clawops.InstanceID(pair + "-sby"), Pair: pair, Role: "standby",
			State: "ACTIVE", Provider: "vultr", Region: "eu-west", Tier: "standard"}
	}
	return f
}

// Tools returns the fixture's governed tools, one per fleet tool name.
func (f *Fleet) Tools() []governance.Tool {
	var out []governance.Tool
	for _, s := range agents.FleetCatalog() {
		out = append(out, &fixtureTool{f: f, spec: fixtureSpec(s)})
	}
	return out
}

// fixtureSpec takes the catalog's spec and opens its schema: dialogues (and models) name
// arguments in several ways, and the fixture accepts any object whose known keys have
// the right types.
func fixtureSpec(s governance.ToolSpec) governance.ToolSpec {
	if s.Name == agents.ToolFailover {
		s.Risk = clawops.RiskMedium // the Guardian fails over alone; the rubric may still raise it
	}
	s.Schema = bytes.Replace(s.Schema, []byte(`"additionalProperties":false,`), nil, 1)
	return s
}

type fixtureTool struct {
	f    *Fleet
	spec governance.ToolSpec
}

func (t *fixtureTool) Spec() governance.ToolSpec { return t.spec }

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// args is a decoded arguments object.
type args map[string]any

func bad(op, format string, a ...any) error {
	return clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, fmt.Sprintf(format, a...))
}

func decode(op string, raw json.RawMessage) (args, error) {
	a := args{}
	if len(bytes.TrimSpace(raw)) == 0 {
		return a, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&a); err != nil {
		return nil, bad(op, "arguments must be a JSON object: %v", err)
	}
	return a, nil
}

func (a args) str(op, key string) (string, error) {
	v, ok := a[key]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", bad(op, "%s must be a string", key)
	}
	return s, nil
}

func (a args) int(op, key string) (int, bool, error) {
	v, ok := a[key]
	if !ok || v == nil {
		return 0, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, false, bad(op, "%s must be a number", key)
	}
	i, err := n.Int64()
	if err != nil {
		return 0, false, bad(op, "%s must be a whole number", key)
	}
	return int(i), true, nil
}

func (a args) bool(op, key string) (bool, error) {
	v, ok := a[key]
	if !ok || v == nil {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, bad(op, "%s must be true or false", key)
	}
	return b, nil
}

func canonical(a args) json.RawMessage {
	b, _ := json.Marshal(a)
	return b
}

// instanceArg reads and resolves the instance argument.
func (f *Fleet) instanceArg(op string, a args) (instance, error) {
	id, err := a.str(op, "instance")
	if err != nil {
		return instance{}, err
	}
	if id == "" {
		return instance{}, bad(op, "instance is required")
	}
	if !idRE.MatchString(id) {
		return instance{}, bad(op, "instance %.40q is not an instance id (lower-case letters, digits, -)", id)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	in, ok := f.inst[clawops.InstanceID(id)]
	if !ok || in.State == "TERMINATED" {
		return instance{}, clawops.E(op, clawops.KindNotFound, clawops.ReasonUnknownInstance, fmt.Sprintf("no live instance %s", id))
	}
	return *in, nil
}

func (f *Fleet) target(in instance) governance.Target {
	f.mu.Lock()
	defer f.mu.Unlock()
	peer := "unknown"
	for _, o := range f.inst {
		if o.Pair == in.Pair && o.ID != in.ID {
			peer = o.State
		}
	}
	return governance.Target{Instance: in.ID, Account: in.Pair, Role: in.Role, State: in.State, PeerState: peer, Users: 1}
}

func (f *Fleet) live() []instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []instance
	for _, in := range f.inst {
		if in.State != "TERMINATED" {
			out = append(out, *in)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (t *fixtureTool) Plan(_ context.Context, _ clawops.Actor, raw json.RawMessage) (governance.Plan, error) {
	op := t.spec.Name + " plan"
	a, err := decode(op, raw)
	if err != nil {
		return governance.Plan{}, err
	}
	p := governance.Plan{Tool: t.spec.Name, Args: canonical(a), Reversible: true}
	switch t.spec.Name {
	case agents.ToolFleetStatus, agents.ToolCostReport:
		if period, err := a.str(op, "period"); err != nil {
			return p, err
		} else if period != "" && !slices.Contains([]string{"day", "week", "month"}, period) {
			return p, bad(op, "period must be day, week or month")
		}
		p.Summary = "Read " + strings.TrimPrefix(t.spec.Name, "gf_")
		p.Effects = []governance.Effect{{Kind: "db.read", Target: "fleet"}}
	case agents.ToolInstanceHealth, agents.ToolInstanceLogs, agents.ToolInstanceDiagnose:
		in, err := t.f.instanceArg(op, a)
		if err != nil {
			return p, err
		}
		if n, ok, err := a.int(op, "lines"); err != nil {
			return p, err
		} else if ok && (n < 1 || n > 1000) {
			return p, bad(op, "lines must be 1 to 1000")
		}
		p.Summary = fmt.Sprintf("Read %s of %s", strings.TrimPrefix(t.spec.Name, "gf_instance_"), in.ID)
		p.Effects = []governance.Effect{{Kind: "node.command", Target: string(in.ID), Detail: "read-only"}}
	case agents.ToolRestart, agents.ToolHeal, agents.ToolFailover:
		in, err := t.f.instanceArg(op, a)
		if err != nil {
			return p, err
		}
		p.Targets, p.UsersAffected = []governance.Target{t.f.target(in)}, 1
		p.ExpectedDuration = 2 * time.Minute
		p.Summary = fmt.Sprintf("%s %s (%s, %s)", verb(t.spec.Name), in.ID, in.Role, in.State)
		p.Effects = []governance.Effect{{Kind: "node.command", Target: string(in.ID), Detail: t.spec.Name}}
	case agents.ToolTeardown:
		in, err := t.f.instanceArg(op, a)
		if err != nil {
			return p, err
		}
		p.Targets, p.UsersAffected, p.Reversible, p.ProviderDelete = []governance.Target{t.f.target(in)}, 1, false, true
		p.Summary = fmt.Sprintf("Tear down %s (%s, %s) after archiving its workspace; irreversible", in.ID, in.Role, in.State)
		p.Effects = []governance.Effect{{Kind: "archive", Target: string(in.ID)},
			{Kind: "provider.delete", Target: in.Provider + "/" + string(in.ID)}}
	case agents.ToolProvision:
		return t.planProvision(op, a, p)
	case agents.ToolTierResize:
		return t.planResize(op, a, p)
	case agents.ToolConfigPush:
		return t.planPush(op, a, p)
	case agents.ToolProviderRouting:
		prov, err := a.str(op, "provider")
		if err != nil {
			return p, err
		}
		p.Summary = fmt.Sprintf("Store routing policy v48: %s", summarize(a))
		if prov != "" {
			p.Effects = []governance.Effect{{Kind: "policy.update", Target: "routing", Detail: prov}}
		}
	default:
		return p, clawops.E(op, clawops.KindNotFound, clawops.ReasonUnknownTool, "the fixture has no "+t.spec.Name)
	}
	return p, nil
}

func verb(tool string) string {
	switch tool {
	case agents.ToolRestart:
		return "Restart OpenClaw on"
	case agents.ToolHeal:
		return "Run the auto-heal runbook on"
	}
	return "Fail over the pair of"
}

func (t *fixtureTool) planProvision(op string, a args, p governance.Plan) (governance.Plan, error) {
	n, ok, err := a.int(op, "count")
	if err != nil {
		return p, err
	}
	if !ok || n < 1 || n > 500 {
		return p, bad(op, "count must be 1 to 500")
	}
	tier, err := a.str(op, "tier")
	if err != nil {
		return p, err
	}
	if tier == "" {
		tier = "standard"
	}
	region, _ := a.str(op, "region")
	pri, _ := a.str(op, "primary_provider")
	sby, _ := a.str(op, "standby_provider")
	for i := 1; i <= n; i++ {
		for _, r := range []string{"pri", "sby"} {
			p.Targets = append(p.Targets, governance.Target{Instance: clawops.InstanceID(fmt.Sprintf("new%03d-%s", i, r)),
				Account: fmt.Sprintf("new%03d", i), Role: map[string]string{"pri": "primary", "sby": "standby"}[r], Users: 1})
		}
	}
	p.UsersAffected = n
	p.CostDeltaMonthlyUSD = 12 * float64(n)
	p.ExpectedDuration = 8 * time.Minute
	p.Summary = fmt.Sprintf("Provision %d %s pairs (%d servers) in %s, primary %s, standby %s: +$%.2f/month",
		n, tier, 2*n, orDash(region), orDash(pri), orDash(sby), p.CostDeltaMonthlyUSD)
	p.Effects = []governance.Effect{{Kind: "provider.create", Target: orDash(pri) + "+" + orDash(sby), Detail: fmt.Sprintf("%d servers", 2*n)}}
	return p, nil
}

func (t *fixtureTool) planResize(op string, a args, p governance.Plan) (governance.Plan, error) {
	tier, err := a.str(op, "tier")
	if err != nil {
		return p, err
	}
	if tier == "" {
		return p, bad(op, "tier is required")
	}
	rec, err := a.str(op, "recommendation")
	if err != nil {
		return p, err
	}
	switch {
	case rec == "rec-oversized":
		for i := 1; i <= 18; i++ {
			p.Targets = append(p.Targets, governance.Target{Instance: clawops.InstanceID(fmt.Sprintf("std%02d-pri", i)),
				Account: fmt.Sprintf("std%02d", i), Role: "primary", State: "ACTIVE", PeerState: "ACTIVE", Users: 1})
		}
		p.CostDeltaMonthlyUSD = -108
	case rec != "":
		return p, clawops.E(op, clawops.KindNotFound, clawops.ReasonBadArguments, fmt.Sprintf("no recommendation %.40q", rec))
	default:
		in, err := t.f.instanceArg(op, a)
		if err != nil {
			return p, err
		}
		p.Targets = []governance.Target{t.f.target(in)}
		p.CostDeltaMonthlyUSD = -6
	}
	p.UsersAffected = len(p.Targets)
	p.Summary = fmt.Sprintf("Resize %d instance(s) to %s with zero downtime: %+.2f USD/month", len(p.Targets), tier, p.CostDeltaMonthlyUSD)
	p.Effects = []governance.Effect{{Kind: "provider.resize", Target: "instances", Detail: tier}}
	return p, nil
}

func (t *fixtureTool) planPush(op string, a args, p governance.Plan) (governance.Plan, error) {
	rolling, err := a.bool(op, "rolling")
	if err != nil {
		return p, err
	}
	batch, _, err := a.int(op, "batch_size")
	if err != nil {
		return p, err
	}
	if rolling && batch == 0 {
		batch = 50
	}
	if _, ok := a["config"]; !ok {
		if _, ok := a["patch"]; !ok {
			return p, bad(op, "config (or patch) is required")
		}
	}
	for _, in := range t.f.live() {
		if in.State == "ACTIVE" {
			p.Targets = append(p.Targets, t.f.target(in))
		}
	}
	p.UsersAffected = len(p.Targets)
	p.Rolling, p.BatchSize = rolling, batch
	how := "all at once"
	if rolling {
		how = fmt.Sprintf("rolling, batches of %d validated one by one", batch)
	}
	p.Summary = fmt.Sprintf("Push an OpenClaw config to %d active instances, %s", len(p.Targets), how)
	p.Effects = []governance.Effect{{Kind: "node.command", Target: "active instances", Detail: "config.apply"}}
	return p, nil
}

func (t *fixtureTool) Apply(_ context.Context, p governance.Plan) (governance.Result, error) {
	a, err := decode(t.spec.Name, p.Args)
	if err != nil {
		return governance.Result{}, err
	}
	data := map[string]any{"fixture": true}
	var summary string
	switch t.spec.Name {
	case agents.ToolFleetStatus:
		live := t.f.live()
		data["instances"] = live
		summary = fmt.Sprintf("%d instances: %d ACTIVE (pairs demo1, demo2, idle01)", len(live), countState(live, "ACTIVE"))
	case agents.ToolCostReport:
		data["week"] = map[string]any{"actual_usd": 1247, "projected_usd": 1190, "delta_percent": 4.8}
		data["waste"] = map[string]any{
			"idle":              map[string]any{"accounts": 31, "monthly_usd": 341, "recommendation": "rec-idle"},
			"oversized":         map[string]any{"accounts": 18, "monthly_usd": 108, "recommendation": "rec-oversized", "to_tier": "nano"},
			"provider_mismatch": map[string]any{"instances": 6, "monthly_usd": 43, "provider": "contabo"},
			"total_monthly_usd": 492,
		}
		data["providers"] = []map[string]any{
			{"provider": "hetzner", "health_score": 96, "avg_provision": "4m12s", "failed_provisions_7d": 0},
			{"provider": "hostinger", "health_score": 71, "avg_provision": "9m42s", "failed_provisions_7d": 2},
			{"provider": "vultr", "health_score": 93, "avg_provision": "5m03s", "failed_provisions_7d": 0},
		}
		summary = "This week $1,247 actual vs $1,190 projected (+4.8%); recoverable waste ~$492/month"
	case agents.ToolInstanceHealth:
		id, _ := a.str(t.spec.Name, "instance")
		summary = id + ": OpenClaw healthy (HTTP 200)"
	case agents.ToolInstanceLogs:
		id, _ := a.str(t.spec.Name, "instance")
		text, ok := t.f.logs[id]
		if !ok {
			text = "openclaw | gateway ready\nopenclaw | health ok\n"
		}
		data["instance"], data["logs"] = id, text
		summary = fmt.Sprintf("%d log lines of %s", strings.Count(strings.TrimRight(text, "\n"), "\n")+1, id)
	case agents.ToolInstanceDiagnose:
		id, _ := a.str(t.spec.Name, "instance")
		data["instance"], data["health"], data["restarts_last_hour"] = id, "degraded", 14
		summary = id + ": gateway restarts every ~4 min (14 in the last hour); memory 91%"
	case agents.ToolTeardown:
		id, _ := a.str(t.spec.Name, "instance")
		t.f.mu.Lock()
		if in, ok := t.f.inst[clawops.InstanceID(id)]; ok {
			in.State = "TERMINATED"
		}
		t.f.mu.Unlock()
		summary = "Archived and tore down " + id
	default:
		summary = p.Summary + ": done"
	}
	b, _ := json.Marshal(data)
	return governance.Result{Summary: summary, Data: b}, nil
}

func countState(in []instance, state string) int {
	n := 0
	for _, i := range in {
		if i.State == state {
			n++
		}
	}
	return n
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// summarize renders an arguments object in one short line, keys sorted.
func summarize(a args) string {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		b, _ := json.Marshal(a[k])
		parts = append(parts, k+"="+string(b))
	}
	s := strings.Join(parts, " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
