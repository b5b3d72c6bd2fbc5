package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
)

// TestHaltAloneResumeWithApproval: stopping a rolling push is one person's call (the
// Commander's or the Guardian's), resuming it re-starts the change and needs an approval,
// and agents that do not watch the fleet may not touch it.
func TestHaltAloneResumeWithApproval(t *testing.T) {
	r := newOpsRig(t)
	r.activePairs(t, "acct", 6) // 12 instances, 6 users
	ctx := context.Background()
	commander := clawops.Actor{Identity: "alice", Role: clawops.RoleOperator, Agent: clawops.Commander}

	out, err := r.invoke(t, commander, NameConfigPush, `{"config":{"model":{"primary":"moonshot/kimi-k2.5"}},"version":"v48","targets":"all_active","batch_size":4}`)
	if err != nil || out.ApprovalID == "" {
		t.Fatalf("push: got %+v, %v", out, err)
	}
	if out, err = r.gate.Decide(ctx, approver, out.ApprovalID, true, "go"); err != nil || out.Result == nil {
		t.Fatalf("approve push: %+v, %v", out, err)
	}
	var v fleet.PushView
	if err := json.Unmarshal(out.Result.Data, &v); err != nil || v.State != fleet.PushRunning {
		t.Fatalf("push started: %+v, %v", v, err)
	}
	state := func() string {
		pv, err := r.svc.PushStatus(ctx, v.ID)
		if err != nil {
			t.Fatal(err)
		}
		return pv.State
	}
	push := func(action string) string { return fmt.Sprintf(`{"push":%d,"action":%q}`, v.ID, action) }

	// The Ledger and Triage may not stop it; the Commander pauses it alone.
	for _, a := range []clawops.Actor{ledger, triage} {
		_, err := r.invoke(t, a, NamePushControl, push("pause"))
		wantReason(t, err, clawops.ReasonRoleNotPermitted)
	}
	out, err = r.invoke(t, commander, NamePushControl, push("pause"))
	if err != nil || out.Decision != clawops.Allow || state() != fleet.PushPaused {
		t.Fatalf("commander pause: got %+v, %v, state %s; want paused without approval", out, err, state())
	}
	// Resume is not a gf_push_control action; gf_push_resume needs an approval.
	_, err = r.invoke(t, commander, NamePushControl, push("resume"))
	wantReason(t, err, clawops.ReasonBadArguments)
	if err == nil || !strings.Contains(err.Error(), NamePushResume) {
		t.Errorf("resume through gf_push_control: %v, want a pointer to %s", err, NamePushResume)
	}
	out, err = r.invoke(t, commander, NamePushResume, fmt.Sprintf(`{"push":%d,"reason":"fix verified"}`, v.ID))
	if err != nil || out.Decision != clawops.NeedsApproval || state() != fleet.PushPaused {
		t.Fatalf("commander resume: got %+v, %v, state %s; want an approval request, still paused", out, err, state())
	}
	if out, err = r.gate.Decide(ctx, approver, out.ApprovalID, true, "ok"); err != nil || out.Result == nil || state() != fleet.PushRunning {
		t.Fatalf("approve resume: %+v, %v, state %s", out, err, state())
	}
	// The Guardian, watching the fleet, aborts it alone.
	_, err = r.invoke(t, guardian, NamePushResume, fmt.Sprintf(`{"push":%d}`, v.ID))
	wantReason(t, err, clawops.ReasonRoleNotPermitted)
	out, err = r.invoke(t, guardian, NamePushControl, push("abort"))
	if err != nil || out.Decision != clawops.Allow || state() != fleet.PushAborted {
		t.Fatalf("guardian abort: got %+v, %v, state %s; want aborted without approval", out, err, state())
	}
	_, err = r.invoke(t, commander, NamePushResume, fmt.Sprintf(`{"push":%d}`, v.ID))
	wantReason(t, err, fleet.ReasonPushState)
}
