package tools

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/governance"
)

// Defaults of gf_config_push.
const (
	DefaultMaxFailPercent = 5
	// TargetsAllActive selects every ACTIVE primary and standby.
	TargetsAllActive = "all_active"
)

var (
	versionRE        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)
	schemaConfigPush = schema(rolloutProps(map[string]any{
		"config": map[string]any{"type": "object", "description": "The whole OpenClaw config to apply (openclaw.json as JSON)."},
		"version": map[string]any{"type": "string", "pattern": versionRE.String(),
			"description": "Name of this config version; default cfg-<sha256 prefix>."},
	}), []string{"config", "targets"})
	schemaPushStatus = schema(map[string]any{
		"push": map[string]any{"type": "integer", "minimum": 1, "description": "Push ID; omit for the most recent pushes."},
	}, nil)
	schemaPushControl = schema(map[string]any{
		"push":   map[string]any{"type": "integer", "minimum": 1},
		"action": map[string]any{"type": "string", "enum": []string{"pause", "abort"}},
	}, []string{"push", "action"})
	schemaPushResume = schema(map[string]any{
		"push":   map[string]any{"type": "integer", "minimum": 1},
		"reason": reasonProp,
	}, []string{"push"})
)

// rolloutProps adds to props the arguments every rolling push takes: targets, rolling,
// batch_size, max_fail_percent and reason.
func rolloutProps(props map[string]any) map[string]any {
	props["targets"] = map[string]any{"description": "\"all_active\", or a list of instance IDs.",
		"oneOf": []any{
			map[string]any{"type": "string", "enum": []string{TargetsAllActive}},
			map[string]any{"type": "array", "minItems": 1, "maxItems": fleet.MaxPushTargets, "uniqueItems": true,
				"items": map[string]any{"type": "string", "pattern": fleet.InstanceIDPattern}},
		}}
	props["rolling"] = map[string]any{"type": "boolean", "default": true,
		"description": "Go in validated batches. More than 100 instances must be rolling."}
	props["batch_size"] = map[string]any{"type": "integer", "minimum": 1, "maximum": fleet.MaxBatchSize, "default": fleet.DefaultBatchSize}
	props["max_fail_percent"] = map[string]any{"type": "integer", "minimum": 0, "maximum": 100, "default": DefaultMaxFailPercent,
		"description": "Stop after a batch when more than this percentage of the instances done so far failed."}
	props["reason"] = reasonProp
	return props
}

// configPushTool is gf_config_push: a config pushed to many instances, batch by batch.
type configPushTool struct {
	f Fleet
	p pusher
}

func (t *configPushTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NameConfigPush, Action: governance.ActionConfigPush, Risk: clawops.RiskMedium,
		Description: "Push an OpenClaw config to instances as a rolling push: batches (default 50), each validated " +
			"(config version and health) before the next, stopping when more than max_fail_percent failed; the node " +
			"rolls back a config that fails its health check. Pause or abort with gf_push_control, resume with gf_push_resume. A push " +
			"to more than 100 instances is only allowed as a rolling push.",
		Schema: schemaConfigPush}
}

// rolloutArgs are the arguments every rolling push shares, canonical and resolved, as a
// plan carries them.
type rolloutArgs struct {
	Targets        []clawops.InstanceID `json:"targets"`
	Rolling        bool                 `json:"rolling"`
	BatchSize      int                  `json:"batch_size"`
	MaxFailPercent int                  `json:"max_fail_percent"`
	RequestedBy    string               `json:"requested_by"`
	Reason         string               `json:"reason,omitempty"`
}

// pushArgs is the canonical, resolved form of gf_config_push in a plan.
type pushArgs struct {
	Config  json.RawMessage `json:"config"`
	Version string          `json:"version"`
	rolloutArgs
}

// readRollout reads the rollout arguments of m (targets, rolling, batch_size,
// max_fail_percent, reason, requested_by) and resolves the targets.
func readRollout(ctx context.Context, f Fleet, op string, actor clawops.Actor, m map[string]json.RawMessage) (rolloutArgs, []fleet.InstanceView, error) {
	var a rolloutArgs
	var err error
	if a.RequestedBy, err = requesterArg(op, m, actor); err != nil {
		return a, nil, err
	}
	if a.Rolling, err = boolArg(op, m, "rolling", true); err != nil {
		return a, nil, err
	}
	if a.BatchSize, err = intArg(op, m, "batch_size", 1, fleet.MaxBatchSize, fleet.DefaultBatchSize); err != nil {
		return a, nil, err
	}
	if a.MaxFailPercent, err = intArg(op, m, "max_fail_percent", 0, 100, DefaultMaxFailPercent); err != nil {
		return a, nil, err
	}
	if a.Reason, err = stringArg(op, m, "reason", reasonRE, ""); err != nil {
		return a, nil, err
	}
	views, err := pushTargets(ctx, f, op, m["targets"])
	if err != nil {
		return a, nil, err
	}
	for _, v := range views {
		a.Targets = append(a.Targets, v.ID)
	}
	return a, views, nil
}

// plan is the governance plan of a rolling push of tool to views, without its Args,
// Summary and Effects, and how it goes in words. A push that is not rolling is one
// batch: the gate refuses it above 100 instances.
func (a *rolloutArgs) plan(tool string, views []fleet.InstanceView, perBatch time.Duration) (governance.Plan, string) {
	n := len(a.Targets)
	if !a.Rolling {
		a.BatchSize = n
	}
	batches := (n + a.BatchSize - 1) / a.BatchSize
	p := governance.Plan{Tool: tool, Rolling: a.Rolling, BatchSize: a.BatchSize,
		Reversible: true, ExpectedDuration: time.Duration(batches) * perBatch}
	accounts := map[string]bool{}
	for _, v := range views {
		// No state in these targets: a push does not depend on it (an instance without a
		// node when its turn comes is skipped), and an approval must survive a heartbeat.
		p.Targets = append(p.Targets, governance.Target{Instance: v.ID, Account: v.Account, Role: string(v.Role), Users: fleet.UsersPerAccount})
		accounts[v.Account] = true
	}
	p.UsersAffected = len(accounts) * fleet.UsersPerAccount
	how := fmt.Sprintf("all at once (%d instances in one batch)", n)
	if a.Rolling {
		how = fmt.Sprintf("rolling: %d batch(es) of %d, each validated", batches, a.BatchSize)
	}
	return p, how
}

// reasonFor is the reason a push records: the caller's, and the grant it runs under. It
// refuses a push that is not rolling above governance.MaxDirectConfigPush instances.
func (a rolloutArgs) reasonFor(ctx context.Context, tool string) (string, error) {
	if !a.Rolling && len(a.Targets) > governance.MaxDirectConfigPush {
		return "", clawops.E(tool, clawops.KindDenied, clawops.ReasonRollingRequired,
			fmt.Errorf("%d instances need a rolling push", len(a.Targets)))
	}
	reason := a.Reason
	if g := grantNote(ctx); g != "" {
		reason = strings.TrimSpace(reason + " [" + g + "]")
	}
	return reason, nil
}

func (t *configPushTool) Plan(ctx context.Context, actor clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	const op = NameConfigPush + " plan"
	m, err := decodeObjectLimit(op, args, maxOpArgsBytes, "config", "version", "targets", "rolling", "batch_size",
		"max_fail_percent", "reason", "requested_by")
	if err != nil {
		return governance.Plan{}, err
	}
	var a pushArgs
	cfg, ok := m["config"]
	if !ok || !bytes.HasPrefix(bytes.TrimSpace(cfg), []byte("{")) {
		return governance.Plan{}, badArgs(op, "argument \"config\" must be a JSON object")
	}
	// The gate stores arguments with sorted keys; sorting here too makes the default
	// version and the plan the same whichever order the caller wrote the keys in.
	if cfg, err = governance.CanonicalArgs(cfg); err != nil {
		return governance.Plan{}, badArgs(op, "argument \"config\": %v", err)
	}
	if a.Version, err = stringArg(op, m, "version", versionRE, ""); err != nil {
		return governance.Plan{}, err
	}
	var views []fleet.InstanceView
	if a.rolloutArgs, views, err = readRollout(ctx, t.f, op, actor, m); err != nil {
		return governance.Plan{}, err
	}
	spec, err := fleet.NormalizePushSpec(fleet.PushSpec{Config: cfg, Version: a.Version, Targets: a.Targets,
		BatchSize: a.BatchSize, MaxFailPercent: a.MaxFailPercent})
	if err != nil {
		return governance.Plan{}, clawops.E(op, err)
	}
	a.Config, a.Version = spec.Config, spec.Version
	p, how := a.plan(NameConfigPush, views, time.Minute)
	p.Args = canonical(a)
	what := fmt.Sprintf("%d instances", len(a.Targets))
	p.Effects = []governance.Effect{
		{Kind: EffectNodeCommand, Target: what, Detail: fmt.Sprintf("%s version %s (config sha256 %.12s…)", fleet.CmdConfigApply, a.Version, sha256hex(a.Config))},
		{Kind: EffectNodeCommand, Target: what, Detail: fmt.Sprintf("%s and %s after each batch", fleet.CmdConfigGet, fleet.CmdHealth)},
	}
	if a.Rolling {
		how += " (config version + health) before the next"
	}
	p.Summary = fmt.Sprintf("Push OpenClaw config %s to %d instance(s) (%d user(s)), %s; stop above %d%% failed; the node rolls back a config that fails its health check",
		a.Version, len(a.Targets), p.UsersAffected, how, a.MaxFailPercent)
	return p, nil
}

// pushTargets resolves the targets argument to live instances, in ID order for
// "all_active" and in the given order otherwise.
func pushTargets(ctx context.Context, f Fleet, op string, raw json.RawMessage) ([]fleet.InstanceView, error) {
	if raw == nil {
		return nil, badArgs(op, "argument \"targets\" is required: \"all_active\" or a list of instance IDs")
	}
	var all string
	if json.Unmarshal(raw, &all) == nil {
		if all != TargetsAllActive {
			return nil, badArgs(op, "targets %.40q: want \"all_active\" or a list of instance IDs", all)
		}
		views, err := f.Instances(ctx)
		if err != nil {
			return nil, clawops.E(op, err)
		}
		var out []fleet.InstanceView
		for _, v := range views {
			if v.State == fleet.StateActive && (v.Role == fleet.RolePrimary || v.Role == fleet.RoleStandby) && v.Node != "" {
				out = append(out, v)
			}
		}
		if len(out) == 0 {
			return nil, badArgs(op, "no ACTIVE instance to push to")
		}
		return out, nil
	}
	var ids []string
	if string(raw) == "null" || json.Unmarshal(raw, &ids) != nil || len(ids) == 0 {
		return nil, badArgs(op, "argument \"targets\" must be \"all_active\" or a non-empty list of instance IDs")
	}
	if len(ids) > fleet.MaxPushTargets {
		return nil, badArgs(op, "%d targets: at most %d", len(ids), fleet.MaxPushTargets)
	}
	out := make([]fleet.InstanceView, 0, len(ids))
	seen := map[string]bool{}
	for _, s := range ids {
		if !fleet.ValidInstanceID(s) {
			return nil, badArgs(op, "target %.48q is not an instance id", s)
		}
		if seen[s] {
			return nil, badArgs(op, "target %s is listed twice", s)
		}
		seen[s] = true
		v, err := resolve(ctx, f, op, clawops.InstanceID(s))
		if err != nil {
			return nil, err
		}
		if v.State == fleet.StateTerminated {
			return nil, clawops.E(op, clawops.KindDenied, clawops.ReasonInstanceNotActive, fmt.Errorf("target %s is terminated", s))
		}
		out = append(out, v)
	}
	return out, nil
}

func (t *configPushTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	var a pushArgs
	if err := decodeStrict(NameConfigPush, "plan arguments", p.Args, &a); err != nil {
		return governance.Result{}, err
	}
	reason, err := a.reasonFor(ctx, NameConfigPush)
	if err != nil {
		return governance.Result{}, err
	}
	v, err := t.p.StartPush(ctx, fleet.PushSpec{Config: a.Config, Version: a.Version, Targets: a.Targets,
		BatchSize: a.BatchSize, MaxFailPercent: a.MaxFailPercent, RequestedBy: a.RequestedBy, Reason: reason})
	if err != nil {
		return governance.Result{}, clawops.E(NameConfigPush, err)
	}
	return governance.Result{Summary: fmt.Sprintf("Push %d started: config %s to %d instances in %d batch(es) of %d; progress follows batch by batch",
		v.ID, v.Version, v.Total, v.Batches, v.BatchSize), Data: canonical(v)}, nil
}

// pushStatusTool is gf_push_status.
type pushStatusTool struct{ c pushController }

func (t *pushStatusTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NamePushStatus, Action: governance.ActionRead, Risk: clawops.RiskLow,
		Description: "Show a rolling push, of a config (gf_config_push) or of an OpenClaw image (gf_upgrade): state, counts per state, batches done, failures; or the most recent pushes.",
		Schema:      schemaPushStatus}
}

func pushIDArg(op string, m map[string]json.RawMessage, required bool) (uint, error) {
	if _, ok := m["push"]; !ok && required {
		return 0, badArgs(op, "argument \"push\" is required")
	}
	n, err := intArg(op, m, "push", 1, math.MaxInt32, 0)
	return uint(n), err
}

func (t *pushStatusTool) Plan(_ context.Context, _ clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	const op = NamePushStatus + " plan"
	m, err := decodeObject(op, args, "push")
	if err != nil {
		return governance.Plan{}, err
	}
	id, err := pushIDArg(op, m, false)
	if err != nil {
		return governance.Plan{}, err
	}
	canon, what := map[string]any{}, "the most recent rolling pushes"
	if id != 0 {
		canon["push"], what = id, fmt.Sprintf("rolling push %d", id)
	}
	return governance.Plan{Tool: NamePushStatus, Args: canonical(canon), Summary: "Read " + what, Reversible: true,
		Effects: []governance.Effect{{Kind: EffectDBRead, Target: "pushes", Detail: what}}}, nil
}

func pushLine(v fleet.PushView) string {
	s := fmt.Sprintf("push %d (%s) %s: %d/%d batches, %d applied, %d failed, %d skipped, %d pending",
		v.ID, v.Label(), v.State, v.BatchesDone, v.Batches, v.Counts[fleet.TargetApplied], v.Counts[fleet.TargetFailed],
		v.Counts[fleet.TargetSkipped], v.Counts[fleet.TargetPending]+v.Counts[fleet.TargetSending])
	if v.StopReason != "" {
		s += "; " + v.StopReason
	}
	return s
}

func (t *pushStatusTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	m, err := decodeObject(NamePushStatus, p.Args, "push")
	if err != nil {
		return governance.Result{}, err
	}
	id, err := pushIDArg(NamePushStatus, m, false)
	if err != nil {
		return governance.Result{}, err
	}
	if id != 0 {
		v, err := t.c.PushStatus(ctx, id)
		if err != nil {
			return governance.Result{}, clawops.E(NamePushStatus, err)
		}
		return governance.Result{Summary: pushLine(v), Data: canonical(v)}, nil
	}
	list, err := t.c.Pushes(ctx, 10)
	if err != nil {
		return governance.Result{}, clawops.E(NamePushStatus, err)
	}
	lines := []string{fmt.Sprintf("%d recent push(es)", len(list))}
	for _, v := range list {
		lines = append(lines, pushLine(v))
	}
	return governance.Result{Summary: strings.Join(lines, "\n"), Data: canonical(list)}, nil
}

// pushControlTool is gf_push_control (pause or abort a rolling push) or, with resume,
// gf_push_resume. They are two tools because they are governed apart: stopping a change
// in progress is action halt, which the Commander and the Guardian take alone (one person
// at 3 a.m. must be able to stop a bad rollout), while resuming one re-starts the change
// and needs what starting a config push needs.
type pushControlTool struct {
	c      pushController
	resume bool
}

func (t *pushControlTool) Spec() governance.ToolSpec {
	if t.resume {
		return governance.ToolSpec{Name: NamePushResume, Action: governance.ActionConfigPush, Risk: clawops.RiskMedium,
			Description: "Resume a paused rolling push (config or upgrade) where it stopped, batch by batch. Resuming " +
				"re-starts the change, so it is governed like a config push.",
			Schema: schemaPushResume}
	}
	return governance.ToolSpec{Name: NamePushControl, Action: governance.ActionHalt, Risk: clawops.RiskLow,
		Description: "Pause or abort a rolling push (config or upgrade): it takes effect before the next instances; the " +
			"ones in flight finish. Stopping a change never needs an approval; resume a paused push with gf_push_resume.",
		Schema: schemaPushControl}
}

// name is the tool's name, for errors.
func (t *pushControlTool) name() string {
	if t.resume {
		return NamePushResume
	}
	return NamePushControl
}

// decodeControlArgs reads the arguments: the push, the action (implicit for
// gf_push_resume), and who asked (present in a plan's canonical arguments).
func (t *pushControlTool) decodeArgs(op string, raw json.RawMessage) (uint, string, string, error) {
	keys := []string{"push", "action", "requested_by"}
	if t.resume {
		keys = []string{"push", "reason", "requested_by"}
	}
	m, err := decodeObject(op, raw, keys...)
	if err != nil {
		return 0, "", "", err
	}
	id, err := pushIDArg(op, m, true)
	if err != nil {
		return 0, "", "", err
	}
	action := "resume"
	if !t.resume {
		if action, err = stringArg(op, m, "action", nil, ""); err != nil {
			return 0, "", "", err
		}
		switch action {
		case "pause", "abort":
		case "resume":
			return 0, "", "", badArgs(op, "resume is its own tool, gf_push_resume: it re-starts the change and is governed like a push")
		default:
			return 0, "", "", badArgs(op, "action %.40q: want pause or abort", action)
		}
	} else if _, err := stringArg(op, m, "reason", reasonRE, ""); err != nil {
		return 0, "", "", err
	}
	by, err := stringArg(op, m, "requested_by", nil, "")
	return id, action, by, err
}

func (t *pushControlTool) Plan(ctx context.Context, actor clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	op := t.name() + " plan"
	id, action, by, err := t.decodeArgs(op, args)
	if err != nil {
		return governance.Plan{}, err
	}
	if by != "" && by != requester(actor) {
		return governance.Plan{}, badArgs(op, "requested_by %.80q does not name the caller", by)
	}
	v, err := t.c.PushStatus(ctx, id)
	if err != nil {
		return governance.Plan{}, clawops.E(op, err)
	}
	allowed := map[string][]string{"pause": {fleet.PushRunning}, "resume": {fleet.PushPaused}, "abort": {fleet.PushRunning, fleet.PushPaused}}
	if !slices.Contains(allowed[action], v.State) {
		return governance.Plan{}, clawops.E(op, clawops.KindInvalid, fleet.ReasonPushState, fmt.Errorf("push %d is %s: cannot %s it", id, v.State, action))
	}
	cargs := map[string]any{"push": id, "action": action, "requested_by": requester(actor)}
	if t.resume {
		delete(cargs, "action")
	}
	p := governance.Plan{Tool: t.name(), Args: canonical(cargs),
		Reversible: action != "abort",
		Effects:    []governance.Effect{{Kind: EffectDBUpdate, Target: fmt.Sprintf("push-%d", id), Detail: action}}}
	pending := v.Counts[fleet.TargetPending]
	change, done := "get the config", "configured"
	if v.Kind == fleet.PushKindUpgrade {
		change, done = "are upgraded", "upgraded"
	}
	switch action {
	case "pause":
		p.Summary = fmt.Sprintf("Pause push %d (%s) before its next instances; %d pending wait", id, v.Label(), pending)
	case "resume":
		p.UsersAffected = pending * fleet.UsersPerAccount
		p.Summary = fmt.Sprintf("Resume push %d (%s): %d pending instances %s, batch by batch", id, v.Label(), pending, change)
	case "abort":
		p.Summary = fmt.Sprintf("Abort push %d (%s): %d pending instances are skipped; the ones already %s keep it", id, v.Label(), pending, done)
	}
	return p, nil
}

func (t *pushControlTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	id, action, by, err := t.decodeArgs(t.name(), p.Args)
	if err != nil {
		return governance.Result{}, err
	}
	if g := grantNote(ctx); g != "" {
		by += " [" + g + "]"
	}
	var v fleet.PushView
	switch action {
	case "pause":
		v, err = t.c.PausePush(ctx, id, by)
	case "resume":
		v, err = t.c.ResumePush(ctx, id, by)
	default:
		v, err = t.c.AbortPush(ctx, id, by)
	}
	if err != nil {
		return governance.Result{}, clawops.E(t.name(), err)
	}
	return governance.Result{Summary: pushLine(v), Data: canonical(v)}, nil
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
