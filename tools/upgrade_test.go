package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/governance"
)

const upgradeImage = "ghcr.io/openclaw/openclaw:2026.9.6"

// upgradeArgsFor is gf_upgrade's arguments for ids (as a list) with extra arguments.
func upgradeArgsFor(ids []clawops.InstanceID, extra string) string {
	b, _ := json.Marshal(ids)
	return fmt.Sprintf(`{"image":%q,"targets":%s%s}`, upgradeImage, b, extra)
}

// runUpgrade drives the push an allowed gf_upgrade started and checks every node of ids
// runs the image, upgraded once.
func (r *opsRig) runUpgrade(t *testing.T, out governance.Outcome, ids []clawops.InstanceID) fleet.PushView {
	t.Helper()
	var started fleet.PushView
	if out.Result == nil || json.Unmarshal(out.Result.Data, &started) != nil || started.Kind != fleet.PushKindUpgrade {
		t.Fatalf("result: got %+v, want an upgrade push", out.Result)
	}
	v, err := r.svc.RunPush(context.Background(), started.ID)
	if err != nil || v.State != fleet.PushCompleted || v.Counts[fleet.TargetApplied] != len(ids) || v.Image != upgradeImage {
		t.Fatalf("upgrade run: got %+v, %v", v, err)
	}
	r.nodes.mu.Lock()
	defer r.nodes.mu.Unlock()
	for _, id := range ids {
		node := clawops.NodeID("node-" + id)
		if r.nodes.image[node] != upgradeImage || r.nodes.upgrades[node] != 1 {
			t.Errorf("%s: runs %q after %d upgrades, want %s after 1", id, r.nodes.image[node], r.nodes.upgrades[node], upgradeImage)
		}
	}
	return v
}

// TestUpgradeThroughGate runs gf_upgrade through the real gate: the Commander upgrades
// alone up to 10 users and asks a human above; more than 100 instances only rolling;
// a bad image is refused while planning, before anything runs; agents other than the
// Commander may not upgrade.
func TestUpgradeThroughGate(t *testing.T) {
	r := newOpsRig(t)
	ids := r.activePairs(t, "acct", 51) // 102 instances, 51 users
	ctx := context.Background()
	commander := clawops.Actor{Identity: "alice", Role: clawops.RoleOperator, Agent: clawops.Commander}

	t.Run("commander alone for 10 users", func(t *testing.T) {
		ten := ids[:20] // 10 accounts, primary and standby
		out, err := r.invoke(t, commander, NameUpgrade, upgradeArgsFor(ten, `,"batch_size":5,"reason":"openclaw 2026.9.6"`))
		if err != nil || out.Decision != clawops.Allow || out.Plan.UsersAffected != 10 || !out.Plan.Rolling || out.Plan.BatchSize != 5 {
			t.Fatalf("got %+v, %v; want allowed alone for 10 users", out, err)
		}
		if out.Risk != clawops.RiskMedium {
			t.Errorf("risk: got %s, want medium", out.Risk)
		}
		v := r.runUpgrade(t, out, ten)
		if v.RequestedBy != requester(commander) || !strings.HasPrefix(v.Reason, "openclaw 2026.9.6") {
			t.Errorf("journal: requested by %q, reason %q", v.RequestedBy, v.Reason)
		}
	})

	t.Run("approval above 10 users", func(t *testing.T) {
		eleven := ids[20:42] // 11 accounts
		before := r.nodeCalls()
		out, err := r.invoke(t, commander, NameUpgrade, upgradeArgsFor(eleven, ""))
		if err != nil || out.Decision != clawops.NeedsApproval || out.Reason != clawops.ReasonTooManyUsers || out.Plan.UsersAffected != 11 {
			t.Fatalf("got %+v, %v; want needs approval (TOO_MANY_USERS)", out, err)
		}
		if got := r.nodeCalls(); got != before {
			t.Fatalf("node commands while approval is pending: %d, want none", got-before)
		}
		if pushes, _ := r.svc.Pushes(ctx, 10); len(pushes) != 1 {
			t.Fatalf("pushes while approval is pending: got %d, want the first only", len(pushes))
		}
		out, err = r.gate.Decide(ctx, approver, out.ApprovalID, true, "go")
		if err != nil {
			t.Fatalf("approve: %+v, %v", out, err)
		}
		v := r.runUpgrade(t, out, eleven)
		if !strings.Contains(v.Reason, "approval") {
			t.Errorf("push reason: got %q, want the approval recorded", v.Reason)
		}
	})

	t.Run("more than 100 instances only rolling", func(t *testing.T) {
		before := r.nodeCalls()
		_, err := r.invoke(t, commander, NameUpgrade, upgradeArgsFor(ids, `,"rolling":false`))
		wantReason(t, err, clawops.ReasonRollingRequired)
		_, err = r.invoke(t, commander, NameUpgrade, `{"image":"`+upgradeImage+`","targets":"all_active","rolling":false}`)
		wantReason(t, err, clawops.ReasonRollingRequired)
		// Rolling, the same 102 instances (51 users) need a human, as any plan above 10 users.
		out, err := r.invoke(t, commander, NameUpgrade, upgradeArgsFor(ids, `,"batch_size":100`))
		if err != nil || out.Decision != clawops.NeedsApproval || len(out.Plan.Targets) != 102 {
			t.Fatalf("rolling upgrade of 102: got %+v, %v", out, err)
		}
		if got := r.nodeCalls(); got != before {
			t.Errorf("node commands: %d, want none", got-before)
		}
	})

	t.Run("bad image refused while planning", func(t *testing.T) {
		before := r.nodeCalls()
		pushes, _ := r.svc.Pushes(ctx, 100)
		for _, image := range []string{"ghcr.io/openclaw/openclaw:latest", "ghcr.io/openclaw/openclaw", "openclaw:1;reboot",
			"$(curl evil):1", "-oProxyCommand=x:1", "openclaw:1 --privileged", "OpenClaw:1"} {
			out, err := r.invoke(t, commander, NameUpgrade, fmt.Sprintf(`{"image":%q,"targets":["acct000-pri"]}`, image))
			if clawops.ReasonOf(err) != clawops.ReasonBadArguments || out.Decision != clawops.Deny || out.Result != nil {
				t.Errorf("image %q: got %+v, %v; want denied BAD_ARGUMENTS", image, out, err)
			}
		}
		if got := r.nodeCalls(); got != before {
			t.Errorf("node commands: %d, want none", got-before)
		}
		if after, _ := r.svc.Pushes(ctx, 100); len(after) != len(pushes) {
			t.Errorf("pushes: got %d, want %d", len(after), len(pushes))
		}
	})

	t.Run("only the commander upgrades", func(t *testing.T) {
		for _, a := range []clawops.Actor{guardian, forge, ledger, triage, approver} {
			_, err := r.invoke(t, a, NameUpgrade, upgradeArgsFor(ids[:2], ""))
			wantReason(t, err, clawops.ReasonRoleNotPermitted)
		}
	})

	t.Run("status and control name the upgrade", func(t *testing.T) {
		out, err := r.invoke(t, commander, NamePushStatus, `{"push":1}`)
		if err != nil || !strings.HasPrefix(out.Result.Summary, "push 1 (upgrade to "+upgradeImage+") completed: 4/4 batches, 20 applied") {
			t.Fatalf("status: got %+v, %v", out.Result, err)
		}
	})
}

// nodeCalls counts the commands the simulated nodes were sent.
func (r *opsRig) nodeCalls() int {
	r.nodes.mu.Lock()
	defer r.nodes.mu.Unlock()
	return len(r.nodes.calls)
}
