package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/governance"
)

func TestOpSpecs(t *testing.T) {
	r := newOpsRig(t)
	want := map[string]struct {
		action governance.Action
		risk   clawops.RiskClass
	}{
		NameDiagnose: {governance.ActionRead, clawops.RiskLow}, NameHeal: {governance.ActionHeal, clawops.RiskMedium},
		NameFailover: {governance.ActionFailover, clawops.RiskMedium}, NameProvision: {governance.ActionProvision, clawops.RiskMedium},
		NameTierResize: {governance.ActionTierChange, clawops.RiskMedium}, NameConfigPush: {governance.ActionConfigPush, clawops.RiskMedium},
		NamePushStatus: {governance.ActionRead, clawops.RiskLow}, NamePushControl: {governance.ActionHalt, clawops.RiskLow},
		NamePushResume: {governance.ActionConfigPush, clawops.RiskMedium},
		NameCostReport: {governance.ActionRead, clawops.RiskLow}, NameProviderRouting: {governance.ActionRead, clawops.RiskLow},
		NameProviderRoutingSet: {governance.ActionConfigPush, clawops.RiskMedium},
		NameUpgrade:            {governance.ActionUpgrade, clawops.RiskMedium},
	}
	all := All(r.svc)
	if len(all) != 5+len(want) {
		t.Fatalf("tools over *fleet.Service: got %d, want %d", len(all), 5+len(want))
	}
	for _, tl := range all[5:] {
		s := tl.Spec()
		w, ok := want[s.Name]
		if !ok || s.Action != w.action || s.Risk != w.risk || s.Description == "" {
			t.Errorf("%s: got %s %s, want %+v", s.Name, s.Action, s.Risk, w)
		}
		var sch struct {
			Type       string `json:"type"`
			Additional *bool  `json:"additionalProperties"`
		}
		if err := json.Unmarshal(s.Schema, &sch); err != nil || sch.Type != "object" || sch.Additional == nil || *sch.Additional {
			t.Errorf("%s schema is not a strict object: %s", s.Name, s.Schema)
		}
	}
}

// TestOpBadArguments: every malformed argument is BAD_ARGUMENTS (or the specific reason),
// nothing is recorded and no node is asked anything.
func TestOpBadArguments(t *testing.T) {
	r := newOpsRig(t)
	r.activePairs(t, "acct", 2)
	cfg := `"config":{"model":{"primary":"moonshot/kimi-k2.5"}}`
	cases := map[string][]string{
		NameDiagnose: {`{}`, `{"instance":"x"}`, `{"instance":"acct000-pri","lines":3}`},
		NameHeal: {`{}`, `{"instance":"acct000-pri","failover":"yes"}`, `{"instance":"acct000-pri","failover":null}`,
			`{"instance":"acct000-pri","Failover":true}`, `{"instance":"$(reboot)"}`},
		NameFailover: {`{}`, `{"pair":5}`, `{"pair":"acct000","force":true}`, `{"pair":"../x"}`, `{"instance":"acct000-pri"}`},
		NameProvision: {`{}`, `{"tier":"standard"}`, `{"tier":"standard","region":"EU"}`, `{"tier":"std dev","region":"eu","count":1,"prefix":"b"}`,
			`{"tier":"standard","region":"eu","count":0,"prefix":"beta"}`, `{"tier":"standard","region":"eu","count":201,"prefix":"beta"}`,
			`{"tier":"standard","region":"eu","count":1.5,"prefix":"beta"}`, `{"tier":"standard","region":"eu","accounts":[]}`,
			`{"tier":"standard","region":"eu","accounts":"a1"}`, `{"tier":"standard","region":"eu","accounts":["a1"],"prefix":"b","count":1}`,
			`{"tier":"standard","accounts":["a1"],"primary":{"provider":"hetzner"}}`,
			`{"tier":"standard","accounts":["a1"],"primary":{"provider":"hetzner","region":"fsn1","x":1},"standby":{"provider":"vultr","region":"ams"}}`,
			`{"tier":"standard","region":"eu","accounts":["a1"],"requested_by":"root"}`, `{"tier":"standard","region":"eu","accounts":["a1"],"reason":""}`,
			`{"tier":"standard","region":"eu","accounts":["a1;reboot"]}`},
		NameTierResize: {`{}`, `{"tier":"small"}`, `{"instance":"acct000-pri"}`, `{"instance":"acct000-pri","pair":"acct000","tier":"small"}`,
			`{"instance":"acct000-pri","tier":"Small"}`, `{"pair":"acct000","tier":5}`},
		NameConfigPush: {`{}`, `{` + cfg + `}`, `{"config":[1],"targets":"all_active"}`, `{"config":"x","targets":"all_active"}`,
			`{` + cfg + `,"targets":"everything"}`, `{` + cfg + `,"targets":[]}`, `{` + cfg + `,"targets":["acct000-pri","acct000-pri"]}`,
			`{` + cfg + `,"targets":["bad id"]}`, `{` + cfg + `,"targets":"all_active","batch_size":0}`,
			`{` + cfg + `,"targets":"all_active","batch_size":101}`, `{` + cfg + `,"targets":"all_active","max_fail_percent":-1}`,
			`{` + cfg + `,"targets":"all_active","version":"v 1"}`, `{` + cfg + `,"targets":"all_active","rolling":"yes"}`,
			`{` + cfg + `,"targets":"all_active","requested_by":"x"}`},
		NameUpgrade: {`{}`, `{"image":"ghcr.io/openclaw/openclaw:2026.9.6"}`, `{"targets":"all_active"}`,
			`{"image":"ghcr.io/openclaw/openclaw:latest","targets":"all_active"}`, `{"image":"ghcr.io/openclaw/openclaw","targets":"all_active"}`,
			`{"image":"ghcr.io/openclaw/openclaw:1;reboot","targets":"all_active"}`, `{"image":"$(id):1","targets":"all_active"}`,
			`{"image":"openclaw:1 --privileged","targets":"all_active"}`, `{"image":"","targets":"all_active"}`,
			`{"image":5,"targets":"all_active"}`, `{"image":null,"targets":"all_active"}`, `{"image":["a:1"],"targets":"all_active"}`,
			`{"image":"openclaw:1","targets":"everything"}`, `{"image":"openclaw:1","targets":["acct000-pri","acct000-pri"]}`,
			`{"image":"openclaw:1","targets":["acct000-pri;reboot"]}`, `{"image":"openclaw:1","targets":[]}`,
			`{"image":"openclaw:1","targets":"all_active","batch_size":0}`, `{"image":"openclaw:1","targets":"all_active","batch_size":101}`,
			`{"image":"openclaw:1","targets":"all_active","max_fail_percent":101}`, `{"image":"openclaw:1","targets":"all_active","rolling":"no"}`,
			`{"image":"openclaw:1","targets":"all_active","requested_by":"root"}`, `{"image":"openclaw:1","targets":"all_active","reason":""}`,
			`{"image":"openclaw:1","targets":"all_active","Image":"openclaw:2"}`, `{"image":"openclaw:1","targets":"all_active","version":"v1"}`},
		NamePushStatus:      {`{"push":0}`, `{"push":"1"}`, `{"push":1,"x":1}`},
		NamePushControl:     {`{}`, `{"push":1}`, `{"push":1,"action":"delete"}`, `{"push":-1,"action":"pause"}`, `{"push":1,"action":"pause","requested_by":"x"}`},
		NameCostReport:      {`{"days":0}`, `{"days":91}`, `{"days":"7"}`, `{"from":"2026-01-01"}`},
		NameProviderRouting: {`{"x":1}`},
		NameProviderRoutingSet: {`{}`, `{"policy":{}}`, `{"policy":{"groups":{}},"reason":"r"}`,
			`{"policy":{"Groups":{"eu":{"primary":[{"provider":"hetzner","region":"fsn1"}],"standby":[{"provider":"vultr","region":"ams"}]}}},"reason":"r"}`,
			`{"policy":{"groups":{"eu":{"primary":[{"provider":"hetzner","region":"fsn1","weight":2}],"standby":[{"provider":"vultr","region":"ams"}]}}},"reason":"r"}`,
			`{"policy":{"groups":{"eu":{"primary":[{"provider":"hetzner","region":"fsn1"}],"standby":[{"provider":"vultr","region":"ams"}]}}}}`,
			`{"policy":{"groups":{"eu":{"primary":[{"provider":"hetzner","region":"fsn1"}],"standby":[{"provider":"vultr","region":"ams"}]}}},"reason":"r","requested_by":"root"}`},
	}
	r.nodes.mu.Lock()
	r.nodes.calls = nil
	r.nodes.mu.Unlock()
	for name, bad := range cases {
		tl := toolByName(t, r.svc, name)
		for _, args := range bad {
			t.Run(name+"/"+args[:min(len(args), 70)], func(t *testing.T) {
				_, err := tl.Plan(context.Background(), actor, json.RawMessage(args))
				if got := clawops.ReasonOf(err); got != clawops.ReasonBadArguments && got != clawops.ReasonRollingRequired {
					t.Fatalf("reason: got %q (%v), want BAD_ARGUMENTS", got, err)
				}
			})
		}
	}
	r.nodes.mu.Lock()
	defer r.nodes.mu.Unlock()
	if len(r.nodes.calls) != 0 {
		t.Errorf("node commands during planning: got %v, want none", r.nodes.calls)
	}
	if pushes, _ := r.svc.Pushes(context.Background(), 10); len(pushes) != 0 {
		t.Errorf("pushes: got %d, want none", len(pushes))
	}
}

// TestOpPlansGolden: plans are deterministic (same state, same hash) and match testdata.
func TestOpPlansGolden(t *testing.T) {
	r := newOpsRig(t)
	r.activePairs(t, "acct", 3)
	commander := clawops.Actor{Identity: "alice", Role: clawops.RoleOperator, Agent: clawops.Commander}
	for _, tc := range []struct {
		name, tool, args string
		actor            clawops.Actor
	}{
		{"heal_guardian", NameHeal, `{"instance":"acct000-pri"}`, guardian},
		{"heal_commander", NameHeal, `{"instance":"acct000-pri"}`, commander},
		{"diagnose", NameDiagnose, `{"instance":"acct001-sby"}`, triage},
		{"failover", NameFailover, `{"pair":"acct002"}`, guardian},
		{"provision_prefix", NameProvision, `{"prefix":"beta","count":3,"tier":"standard","region":"eu","reason":"COMPANION beta"}`, forge},
		{"resize_pair", NameTierResize, `{"pair":"acct001","tier":"small"}`, ledger},
		{"upgrade_all", NameUpgrade, `{"image":"ghcr.io/openclaw/openclaw:2026.9.6","targets":"all_active","batch_size":4,"reason":"openclaw 2026.9.6"}`, commander},
		{"upgrade_list_at_once", NameUpgrade, `{"image":"ghcr.io/openclaw/openclaw@sha256:` + strings.Repeat("0f", 32) + `","targets":["acct002-sby","acct000-pri"],"rolling":false}`, commander},
		{"config_push_all", NameConfigPush, `{"config":{"model":{"primary":"moonshot/kimi-k2.5"}},"version":"v48","targets":"all_active","batch_size":2}`, commander},
		{"cost_week", NameCostReport, `{}`, ledger},
		{"routing_set", NameProviderRoutingSet, `{"policy":{"groups":{"eu":{"primary":[{"provider":"vultr","region":"ams"}],"standby":[{"provider":"hetzner","region":"fsn1"}]}}},"reason":"hetzner slow this week"}`, commander},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := toolByName(t, r.svc, tc.tool)
			p1, err := tl.Plan(context.Background(), tc.actor, json.RawMessage(tc.args))
			if err != nil {
				t.Fatal(err)
			}
			p2, _ := tl.Plan(context.Background(), tc.actor, json.RawMessage(tc.args))
			h1, err1 := governance.HashPlan(p1)
			h2, _ := governance.HashPlan(p2)
			if err1 != nil || h1 != h2 {
				t.Errorf("plan is not deterministic: %s vs %s (%v)", h1, h2, err1)
			}
			golden(t, tc.name+".plan.json", p1)
		})
	}
}

// TestOpsThroughGate runs the operation tools through the real gate.
func TestOpsThroughGate(t *testing.T) {
	r := newOpsRig(t)
	ids := r.activePairs(t, "acct", 6) // 12 instances, 6 users
	ctx := context.Background()
	commander := clawops.Actor{Identity: "alice", Role: clawops.RoleOperator, Agent: clawops.Commander}

	// Triage reads, never heals.
	if out, err := r.invoke(t, triage, NameDiagnose, `{"instance":"acct000-pri"}`); err != nil || out.Result == nil ||
		!strings.Contains(out.Result.Summary, "recommendation none") {
		t.Fatalf("diagnose: got %+v, %v", out, err)
	}
	_, err := r.invoke(t, triage, NameHeal, `{"instance":"acct000-pri"}`)
	wantReason(t, err, clawops.ReasonRoleNotPermitted)

	// The Guardian heals alone, including the failover.
	r.nodes.mu.Lock()
	r.nodes.down["node-acct000-pri"] = true
	r.nodes.mu.Unlock()
	out, err := r.invoke(t, guardian, NameHeal, `{"instance":"acct000-pri"}`)
	if err != nil || out.Decision != clawops.Allow || out.Result == nil || !strings.Contains(out.Result.Summary, "failed_over") {
		t.Fatalf("guardian heal: got %+v, %v", out, err)
	}
	if pv, _ := r.svc.Pair(ctx, "acct000"); pv.PrimaryID != "acct000-sby" || pv.StandbyID != "acct000-r1" {
		t.Errorf("pair after guardian heal: %s/%s", pv.PrimaryID, pv.StandbyID)
	}
	// The Commander's heal stops at the escalation; its failover needs a human.
	r.nodes.mu.Lock()
	r.nodes.down["node-acct001-pri"] = true
	r.nodes.mu.Unlock()
	out, err = r.invoke(t, commander, NameHeal, `{"instance":"acct001-pri"}`)
	if err != nil || out.Result == nil || !strings.Contains(out.Result.Summary, "escalated") || !strings.Contains(out.Result.Summary, "gf_failover") {
		t.Fatalf("commander heal: got %+v, %v", out, err)
	}
	out, err = r.invoke(t, commander, NameFailover, `{"pair":"acct001"}`)
	if err != nil || out.Decision != clawops.NeedsApproval {
		t.Fatalf("commander failover: got %+v, %v", out, err)
	}
	if out, err = r.gate.Decide(ctx, approver, out.ApprovalID, true, "go"); err != nil || out.Result == nil {
		t.Fatalf("approve failover: %+v, %v", out, err)
	}
	if pv, _ := r.svc.Pair(ctx, "acct001"); pv.PrimaryID != "acct001-sby" {
		t.Errorf("pair after approved failover: primary %s", pv.PrimaryID)
	}
	if len(r.hz.deletes)+len(r.vu.deletes) != 0 {
		t.Errorf("provider deletes: %v %v, want none", r.hz.deletes, r.vu.deletes)
	}

	// Forge provisions two pairs (4 instances) alone; three pairs need a human.
	out, err = r.invoke(t, forge, NameProvision, `{"accounts":["new1","new2"],"tier":"standard","region":"eu"}`)
	if err != nil || out.Decision != clawops.Allow || out.Plan.CostDeltaMonthlyUSD != 23.98 {
		t.Fatalf("forge provision 2: got %+v, %v", out, err)
	}
	out, err = r.invoke(t, forge, NameProvision, `{"prefix":"beta","count":3,"tier":"standard","region":"eu"}`)
	if err != nil || out.Decision != clawops.NeedsApproval {
		t.Fatalf("forge provision 3: got %+v, %v", out, err)
	}
	if n, _ := r.svc.QueueDepth(ctx); n != 2+2 { // the two new pairs and the two failovers' standbys
		t.Errorf("queue depth: got %d, want 4", n)
	}

	// The Ledger reports and may only ask for a resize.
	out, err = r.invoke(t, ledger, NameCostReport, `{}`)
	if err != nil || out.Result == nil || !strings.HasPrefix(out.Result.Summary, "Spend 2026-11-02 00:00 → 2026-11-03 09:00") {
		t.Fatalf("cost report: got %+v, %v", out, err)
	}
	out, err = r.invoke(t, ledger, NameTierResize, `{"pair":"acct002","tier":"small"}`)
	if err != nil || out.Decision != clawops.NeedsApproval || out.Plan.CostDeltaMonthlyUSD != -2.4 {
		t.Fatalf("ledger resize: got %+v, %v", out, err)
	}

	// A config push to every ACTIVE instance: 12 of them, 6 users.
	cfg := `"config":{"model":{"primary":"moonshot/kimi-k2.5"}},"version":"v48"`
	out, err = r.invoke(t, commander, NameConfigPush, `{`+cfg+`,"targets":"all_active","rolling":false}`)
	if err != nil || out.Decision != clawops.NeedsApproval || out.Plan.Rolling || out.Plan.BatchSize != len(out.Plan.Targets) {
		t.Fatalf("push all at once: got %+v, %v", out, err)
	}
	out, err = r.invoke(t, commander, NameConfigPush, `{`+cfg+`,"targets":"all_active","batch_size":4}`)
	if err != nil || out.Decision != clawops.NeedsApproval || !out.Plan.Rolling || out.Plan.BatchSize != 4 {
		t.Fatalf("rolling push: got %+v, %v", out, err)
	}
	out, err = r.gate.Decide(ctx, approver, out.ApprovalID, true, "rolling, go")
	if err != nil || out.Result == nil {
		t.Fatalf("approve push: %+v, %v", out, err)
	}
	var started fleet.PushView
	json.Unmarshal(out.Result.Data, &started)
	v, err := r.svc.RunPush(ctx, started.ID)
	if err != nil || v.State != fleet.PushCompleted || v.Counts[fleet.TargetApplied] != v.Total {
		t.Fatalf("push run: got %+v, %v", v, err)
	}
	if !strings.Contains(v.Reason, "approval") {
		t.Errorf("push reason: got %q, want the grant recorded", v.Reason)
	}
	out, err = r.invoke(t, commander, NamePushStatus, fmt.Sprintf(`{"push":%d}`, v.ID))
	if err != nil || !strings.Contains(out.Result.Summary, "completed") {
		t.Errorf("push status: got %+v, %v", out, err)
	}
	_, err = r.invoke(t, commander, NamePushControl, fmt.Sprintf(`{"push":%d,"action":"pause"}`, v.ID))
	wantReason(t, err, fleet.ReasonPushState)

	// Routing: read freely; a change needs a human and records who and why.
	out, err = r.invoke(t, ledger, NameProviderRouting, `{}`)
	if err != nil || !strings.Contains(out.Result.Summary, "Routing v0 by config") {
		t.Fatalf("routing read: got %+v, %v", out, err)
	}
	_, err = r.invoke(t, ledger, NameProviderRoutingSet, `{"policy":{"groups":{"eu":{"primary":[{"provider":"vultr","region":"ams"}],"standby":[{"provider":"hetzner","region":"fsn1"}]}}},"reason":"x"}`)
	wantReason(t, err, clawops.ReasonRoleNotPermitted)
	out, err = r.invoke(t, commander, NameProviderRoutingSet, `{"policy":{"groups":{"eu":{"primary":[{"provider":"vultr","region":"ams"}],"standby":[{"provider":"hetzner","region":"fsn1"}]}}},"reason":"hetzner slow"}`)
	if err != nil || out.Decision != clawops.NeedsApproval {
		t.Fatalf("routing set: got %+v, %v", out, err)
	}
	if out, err = r.gate.Decide(ctx, approver, out.ApprovalID, true, "ok"); err != nil || !strings.Contains(out.Result.Summary, "v1") {
		t.Fatalf("approve routing: %+v, %v", out, err)
	}
	rv, _ := r.svc.RoutingPolicy(ctx)
	if rv.Version != 1 || rv.Author != "alice via commander" || !strings.HasPrefix(rv.Reason, "hetzner slow [approval") {
		t.Errorf("routing v1: got %+v", rv)
	}

	// The audit log holds each call's request and outcome.
	entries, err := r.gate.Audit().List(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var heal []string
	for _, e := range entries {
		if e.Tool == NameHeal && e.Actor == guardian.String() {
			heal = append(heal, e.Event)
		}
	}
	if !slices.Contains(heal, governance.EventRequested) || !slices.Contains(heal, governance.EventCompleted) {
		t.Errorf("audit of the guardian's heal: got %v", heal)
	}
	_ = ids
}
