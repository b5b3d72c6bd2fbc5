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

// Expected durations shown on approval cards.
const (
	restartDuration  = 30 * time.Second
	teardownDuration = 2 * time.Minute
)

// restartTool is gf_restart: restart OpenClaw on one instance through its node.
type restartTool struct{ f Fleet }

func (t *restartTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NameRestart, Action: governance.ActionRestart, Risk: clawops.RiskMedium,
		Description: "Restart OpenClaw on one instance through its node. Its user is briefly offline.",
		Schema:      schemaInstance}
}

func (t *restartTool) Plan(ctx context.Context, _ clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	const op = NameRestart + " plan"
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
	return governance.Plan{Tool: NameRestart, Args: canonical(map[string]any{"instance": id}),
		Summary: fmt.Sprintf("Restart OpenClaw on %s via node %s; %d user briefly offline",
			describe(v), shortNode(v.Node), fleet.UsersPerAccount),
		Targets: []governance.Target{target(v)}, UsersAffected: fleet.UsersPerAccount,
		Reversible: true, ExpectedDuration: restartDuration,
		Effects: []governance.Effect{{Kind: EffectNodeCommand, Target: string(v.Node),
			Detail: fleet.CmdRestart + " for " + string(id)}}}, nil
}

func (t *restartTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	id, err := instanceOnly(NameRestart, p.Args)
	if err != nil {
		return governance.Result{}, err
	}
	if err := t.f.Restart(ctx, id); err != nil {
		return governance.Result{}, clawops.E(NameRestart, err)
	}
	data := map[string]any{"instance": id, "restarted": true}
	return governance.Result{Summary: fmt.Sprintf("Restarted OpenClaw on %s", id), Data: canonical(data)}, nil
}

// teardownTool is gf_teardown: destroy one instance's server at its provider.
type teardownTool struct{ f Fleet }

func (t *teardownTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: NameTeardown, Action: governance.ActionTeardown, Risk: clawops.RiskHigh,
		Description: "Destroy one instance's server at its provider and mark it TERMINATED. Its workspace is archived " +
			"first (backup.create on the node, stored in the archive store); if that fails nothing is deleted. " +
			"skip_archive deletes without an archive. Irreversible; an ACTIVE primary can only be torn down while " +
			"its standby is ACTIVE.",
		Schema: schemaTeardown}
}

func decodeTeardownArgs(op string, raw json.RawMessage) (clawops.InstanceID, bool, error) {
	m, err := decodeObject(op, raw, "instance", "skip_archive")
	if err != nil {
		return "", false, err
	}
	id, err := instanceArg(op, m)
	if err != nil {
		return "", false, err
	}
	skip, err := boolArg(op, m, "skip_archive", false)
	return id, skip, err
}

func (t *teardownTool) Plan(ctx context.Context, _ clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	const op = NameTeardown + " plan"
	id, skip, err := decodeTeardownArgs(op, args)
	if err != nil {
		return governance.Plan{}, err
	}
	v, err := resolve(ctx, t.f, op, id)
	if err != nil {
		return governance.Plan{}, err
	}
	if v.State == fleet.StateTerminated {
		return governance.Plan{}, clawops.E(op, clawops.KindInvalid, clawops.ReasonInstanceNotActive,
			fmt.Errorf("instance %s is already terminated", id))
	}
	canon := map[string]any{"instance": id}
	if skip {
		canon["skip_archive"] = true
	}
	p := governance.Plan{Tool: NameTeardown, Args: canonical(canon),
		Targets: []governance.Target{target(v)}, UsersAffected: fleet.UsersPerAccount,
		Reversible: false, ExpectedDuration: teardownDuration}
	archive := ""
	switch {
	case skip:
		archive = "; workspace NOT archived (skip_archive)"
	case v.Node != "":
		archive = "; workspace archived first"
		p.Effects = append(p.Effects, governance.Effect{Kind: EffectNodeCommand, Target: string(v.Node),
			Detail: fleet.CmdBackup + " for " + string(id) + ", stored in the archive store before the delete"})
	}
	what := "no server is recorded at the provider; only the record changes"
	if v.ProviderID != "" {
		p.ProviderDelete = true
		what = fmt.Sprintf("delete server %s at %s", v.ProviderID, v.Provider)
		p.Effects = append(p.Effects, governance.Effect{Kind: EffectProviderDelete,
			Target: v.Provider + "/" + v.ProviderID, Detail: "destroy the server of " + string(id)})
	}
	p.Effects = append(p.Effects, governance.Effect{Kind: EffectDBUpdate, Target: string(id),
		Detail: fmt.Sprintf("state %s → %s, node binding cleared", v.State, fleet.StateTerminated)})
	p.Summary = fmt.Sprintf("Tear down %s: %s%s; %d user affected; irreversible", describe(v), what, archive, fleet.UsersPerAccount)
	return p, nil
}

func (t *teardownTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	id, skip, err := decodeTeardownArgs(NameTeardown, p.Args)
	if err != nil {
		return governance.Result{}, err
	}
	data := map[string]any{"instance": id, "state": fleet.StateTerminated}
	summary := fmt.Sprintf("Tore down %s; it is %s", id, fleet.StateTerminated)
	if at, ok := t.f.(archivingTeardown); ok {
		res, err := at.TeardownWith(ctx, id, fleet.TeardownOptions{SkipArchive: skip})
		if err != nil {
			return governance.Result{}, clawops.E(NameTeardown, err)
		}
		if res.Archive != nil {
			data["archive"] = res.Archive
			summary += fmt.Sprintf("; workspace archived to %s (%d bytes, sha256 %.12s…)", res.Archive.Location, res.Archive.Size, res.Archive.SHA256)
		} else if res.Note != "" {
			data["note"] = res.Note
			summary += "; " + res.Note
		}
	} else if err := t.f.Teardown(ctx, id); err != nil {
		return governance.Result{}, clawops.E(NameTeardown, err)
	}
	return governance.Result{Summary: summary, Data: canonical(data)}, nil
}
