package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/governance"
)

// upgradeBatchTime is how long the plan expects one batch of an upgrade to take: each
// node pulls the image and waits up to 90 s for the new container to be healthy,
// PushConcurrency instances at a time.
const upgradeBatchTime = 5 * time.Minute

var schemaUpgrade = schema(rolloutProps(map[string]any{
	"image": map[string]any{"type": "string", "minLength": 3, "maxLength": 255,
		"description": "The OpenClaw container image, pinned by a version tag or a digest, e.g. ghcr.io/openclaw/openclaw:2026.9.6. " +
			"No tag and the tag latest are refused."},
}), []string{"image", "targets"})

// upgradeTool is gf_upgrade: OpenClaw switched to a new image on many instances, batch by
// batch, as a journaled rolling push of kind upgrade.
type upgradeTool struct {
	f Fleet
	u upgrader
}

// Spec: the risk is medium, not high, because the change is contained at every level: a
// node pulls the image before touching anything (a failed pull changes nothing), health
// checks the new container and rolls back to the previous image by itself, and the
// rolling push validates each batch and stops at the failure threshold. The gate still
// asks a human above 10 users, and the score raises the class for large plans; a high
// floor would make every upgrade need approval, which the autonomy table (the Commander
// upgrades alone) does not intend.
func (t *upgradeTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NameUpgrade, Action: governance.ActionUpgrade, Risk: clawops.RiskMedium,
		Description: "Upgrade OpenClaw to a pinned container image on instances as a rolling push: batches (default 50), " +
			"each node pulls the image, recreates the container and health-checks it, rolling back to the previous image " +
			"on its own if the new one fails; each batch is validated (vps.info image + health) before the next, stopping " +
			"when more than max_fail_percent failed. Risk medium: nothing changes if the pull fails, a failing image is " +
			"rolled back by the node, and batches bound the harm; more than 10 users still need approval. More than 100 " +
			"instances only as a rolling push. Pause or abort with gf_push_control, resume with gf_push_resume; follow with gf_push_status.",
		Schema: schemaUpgrade}
}

// upgradeArgs is the canonical, resolved form of gf_upgrade in a plan.
type upgradeArgs struct {
	Image string `json:"image"`
	rolloutArgs
}

func (t *upgradeTool) Plan(ctx context.Context, actor clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	const op = NameUpgrade + " plan"
	m, err := decodeObjectLimit(op, args, maxOpArgsBytes, "image", "targets", "rolling", "batch_size",
		"max_fail_percent", "reason", "requested_by")
	if err != nil {
		return governance.Plan{}, err
	}
	var a upgradeArgs
	if _, ok := m["image"]; !ok {
		return governance.Plan{}, badArgs(op, "argument \"image\" is required: a pinned image such as ghcr.io/openclaw/openclaw:2026.9.6")
	}
	if a.Image, err = stringArg(op, m, "image", nil, ""); err != nil {
		return governance.Plan{}, err
	}
	var views []fleet.InstanceView
	if a.rolloutArgs, views, err = readRollout(ctx, t.f, op, actor, m); err != nil {
		return governance.Plan{}, err
	}
	if _, err := fleet.NormalizeUpgradeSpec(fleet.UpgradeSpec{Image: a.Image, Targets: a.Targets,
		BatchSize: a.BatchSize, MaxFailPercent: a.MaxFailPercent}); err != nil {
		return governance.Plan{}, clawops.E(op, err)
	}
	p, how := a.plan(NameUpgrade, views, upgradeBatchTime)
	p.Args = canonical(a)
	what := fmt.Sprintf("%d instances", len(a.Targets))
	p.Effects = []governance.Effect{
		{Kind: EffectNodeCommand, Target: what, Detail: fmt.Sprintf("%s image %s (pull, recreate the openclaw container, health check; the node rolls back to the previous image on failure)",
			fleet.CmdUpgrade, a.Image)},
		{Kind: EffectNodeCommand, Target: what, Detail: fmt.Sprintf("%s (image) and %s after each batch", fleet.CmdInfo, fleet.CmdHealth)},
	}
	if a.Rolling {
		how += " (image + health) before the next"
	}
	p.Summary = fmt.Sprintf("Upgrade OpenClaw to %s on %d instance(s) (%d user(s)), %s; stop above %d%% failed; the node rolls back an image that fails its health check",
		a.Image, len(a.Targets), p.UsersAffected, how, a.MaxFailPercent)
	return p, nil
}

func (t *upgradeTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	var a upgradeArgs
	if err := decodeStrict(NameUpgrade, "plan arguments", p.Args, &a); err != nil {
		return governance.Result{}, err
	}
	reason, err := a.reasonFor(ctx, NameUpgrade)
	if err != nil {
		return governance.Result{}, err
	}
	v, err := t.u.StartUpgrade(ctx, fleet.UpgradeSpec{Image: a.Image, Targets: a.Targets, BatchSize: a.BatchSize,
		MaxFailPercent: a.MaxFailPercent, RequestedBy: a.RequestedBy, Reason: reason})
	if err != nil {
		return governance.Result{}, clawops.E(NameUpgrade, err)
	}
	return governance.Result{Summary: fmt.Sprintf("Push %d started: upgrade to %s on %d instances in %d batch(es) of %d; progress follows batch by batch",
		v.ID, v.Image, v.Total, v.Batches, v.BatchSize), Data: canonical(v)}, nil
}
