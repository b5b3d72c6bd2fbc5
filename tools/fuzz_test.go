package tools

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/governance"
)

// FuzzLogsPlan feeds arbitrary argument bytes to the richest argument shape. A plan is
// either refused with a reason code, or carries canonical args that plan to itself again
// and name a valid instance.
func FuzzLogsPlan(f *testing.F) {
	for _, s := range []string{`{"instance":"demo1-pri","lines":20}`, `{"instance":"demo1-pri"}`, `{}`, `null`,
		`{"instance":"demo1-pri","lines":1e2}`, `{"instance":"a;b"}`, `{"instance":"demo1-pri","instance":"x"}`, `[`} {
		f.Add([]byte(s))
	}
	mf := newMemFleet()
	var tl governance.Tool
	for _, x := range All(mf) {
		if x.Spec().Name == NameInstanceLogs {
			tl = x
		}
	}
	f.Fuzz(func(t *testing.T, args []byte) {
		p, err := tl.Plan(context.Background(), actor, json.RawMessage(args))
		if err != nil {
			switch clawops.ReasonOf(err) {
			case clawops.ReasonBadArguments, clawops.ReasonUnknownInstance, clawops.ReasonNodeOffline, clawops.ReasonInstanceNotActive:
				return
			}
			t.Fatalf("Plan(%q): unexpected error %v", args, err)
		}
		if len(p.Targets) != 1 || !fleet.ValidInstanceID(string(p.Targets[0].Instance)) {
			t.Fatalf("Plan(%q): targets %+v", args, p.Targets)
		}
		again, err := tl.Plan(context.Background(), actor, p.Args)
		if err != nil || string(again.Args) != string(p.Args) {
			t.Fatalf("re-plan of %s: got %s, %v", p.Args, again.Args, err)
		}
	})
}

// FuzzOpsPlans feeds arbitrary arguments to the operation tools over a real fleet. A plan
// is either refused with a known reason code, or is a fixed point: planning again from its
// canonical arguments (as the gate does before applying an approved plan) gives the same
// hash.
func FuzzOpsPlans(f *testing.F) {
	seeds := map[string][]string{
		NameHeal:               {`{"instance":"acct000-pri"}`, `{"instance":"acct000-pri","failover":false}`},
		NameDiagnose:           {`{"instance":"acct001-sby"}`},
		NameFailover:           {`{"pair":"acct001"}`, `{"pair":"nope"}`},
		NameProvision:          {`{"prefix":"beta","count":2,"tier":"standard","region":"eu"}`, `{"accounts":["x1"],"tier":"nano","primary":{"provider":"vultr","region":"ams"},"standby":{"provider":"hetzner","region":"fsn1"}}`},
		NameTierResize:         {`{"pair":"acct000","tier":"small"}`, `{"instance":"acct001-pri","tier":"large"}`},
		NameConfigPush:         {`{"config":{"b":1,"a":[2,{"d":3,"c":4}]},"targets":"all_active"}`, `{"config":{},"targets":["acct000-pri"],"rolling":false,"version":"v9"}`},
		NameCostReport:         {`{}`, `{"days":7}`},
		NameProviderRoutingSet: {`{"policy":{"groups":{"eu":{"primary":[{"provider":"vultr","region":"ams"}],"standby":[{"provider":"hetzner","region":"fsn1"}]}},"avoid_below_score":70},"reason":"slow"}`},
		NamePushControl:        {`{"push":1,"action":"pause"}`, `{"push":1,"action":"resume"}`},
		NamePushResume:         {`{"push":1}`, `{"push":1,"reason":"fixed"}`},
	}
	for name, args := range seeds {
		for _, a := range args {
			f.Add(name, []byte(a))
		}
	}
	ok := map[clawops.ReasonCode]bool{}
	for _, r := range []clawops.ReasonCode{clawops.ReasonBadArguments, clawops.ReasonUnknownInstance, fleet.ReasonUnknownPair,
		clawops.ReasonNodeOffline, clawops.ReasonInstanceNotActive, clawops.ReasonStandbyNotActive, clawops.ReasonRollingRequired,
		fleet.ReasonUnknownTier, fleet.ReasonNoPlacement, fleet.ReasonPairExists, fleet.ReasonUnknownProvider, fleet.ReasonUnknownPush,
		fleet.ReasonPushState, clawops.ReasonPlanMismatch, clawops.ReasonExecutionFailed} {
		ok[r] = true
	}
	rig := newOpsRig(f)
	rig.activePairs(f, "acct", 2)
	f.Fuzz(func(t *testing.T, name string, args []byte) {
		var tl governance.Tool
		for _, x := range All(rig.svc) {
			if x.Spec().Name == name {
				tl = x
			}
		}
		if tl == nil {
			return
		}
		p, err := tl.Plan(context.Background(), actor, json.RawMessage(args))
		if err != nil {
			if !ok[clawops.ReasonOf(err)] {
				t.Fatalf("%s Plan(%q): unexpected error %v", name, args, err)
			}
			return
		}
		seal := func(p governance.Plan) (json.RawMessage, string) {
			canon, err := governance.CanonicalArgs(p.Args)
			if err != nil {
				t.Fatalf("%s: plan args %s are not canonical JSON: %v", name, p.Args, err)
			}
			p.Args, p.Tool = canon, name
			h, err := governance.HashPlan(p)
			if err != nil {
				t.Fatal(err)
			}
			return canon, h
		}
		canon, h1 := seal(p)
		again, err := tl.Plan(context.Background(), actor, canon)
		if err != nil {
			t.Fatalf("%s re-plan of %s: %v", name, canon, err)
		}
		if _, h2 := seal(again); h1 != h2 {
			t.Fatalf("%s: plan of %s is not a fixed point:\n%s\n%s", name, args, p.Args, again.Args)
		}
	})
}
