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
