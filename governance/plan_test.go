package governance

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
)

func TestCanonicalArgs(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{``, `{}`},
		{"  \n", `{}`},
		{`{}`, `{}`},
		{`{"b":1,"a":[2,{"d":1,"c":2}]}`, `{"a":[2,{"c":2,"d":1}],"b":1}`},
		{" {\n  \"a\" : 12345678901234567890 }\n", `{"a":12345678901234567890}`},
		{`{"a":1,"a":2}`, `{"a":2}`},
	}
	for _, tc := range tests {
		got, err := CanonicalArgs(json.RawMessage(tc.in))
		if err != nil {
			t.Errorf("CanonicalArgs(%q): %v", tc.in, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("CanonicalArgs(%q): got %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestCanonicalArgsBad(t *testing.T) {
	for _, in := range []string{
		`{`, `nul`, `[1,2]`, `"x"`, `42`, `null`, `{"a":1} {"b":2}`, `{"a":1}x`, `{'a':1}`,
		`{"a":1,}`, "\xff\xfe", `{"a":` + strings.Repeat(" ", MaxArgsBytes) + `1}`,
	} {
		if got, err := CanonicalArgs(json.RawMessage(in)); err == nil {
			t.Errorf("CanonicalArgs(%.40q): got %s and no error, want an error", in, got)
		}
	}
}

func samplePlan() Plan {
	return Plan{
		Tool: "fleet.restart", Args: json.RawMessage(`{"instances":["i-001"],"force":true}`),
		Summary: "restart 1", UsersAffected: 1, Reversible: true, CostDeltaMonthlyUSD: 1.25,
		ExpectedDuration: time.Minute,
		Targets:          []Target{{Instance: "i-001", Role: "primary", State: "ACTIVE", PeerState: "ACTIVE", Users: 1}},
		Effects:          []Effect{{Kind: "node.command", Target: "i-001", Detail: "restart"}},
	}
}

func TestHashPlan(t *testing.T) {
	base, err := HashPlan(samplePlan())
	if err != nil {
		t.Fatal(err)
	}
	if len(base) != 64 {
		t.Fatalf("hash length: got %d, want 64", len(base))
	}
	same := samplePlan()
	same.Args = json.RawMessage("{ \"force\" : true,\n \"instances\": [ \"i-001\" ] }")
	same.Hash = "ignored"
	if got, _ := HashPlan(same); got != base {
		t.Errorf("respelled args and set Hash: got %s, want %s", got, base)
	}
	changes := map[string]func(*Plan){
		"tool":     func(p *Plan) { p.Tool = "fleet.heal" },
		"args":     func(p *Plan) { p.Args = json.RawMessage(`{"instances":["i-002"],"force":true}`) },
		"summary":  func(p *Plan) { p.Summary = "restart 2" },
		"users":    func(p *Plan) { p.UsersAffected = 2 },
		"peer":     func(p *Plan) { p.Targets[0].PeerState = "DEGRADED" },
		"effect":   func(p *Plan) { p.Effects[0].Detail = "stop" },
		"delete":   func(p *Plan) { p.ProviderDelete = true },
		"cost":     func(p *Plan) { p.CostDeltaMonthlyUSD = 1.26 },
		"duration": func(p *Plan) { p.ExpectedDuration = time.Hour },
		"rolling":  func(p *Plan) { p.Rolling, p.BatchSize = true, 10 },
	}
	for name, change := range changes {
		p := samplePlan()
		change(&p)
		if got, _ := HashPlan(p); got == base {
			t.Errorf("%s changed: hash did not change", name)
		}
	}
	bad := samplePlan()
	bad.Args = json.RawMessage(`[1]`)
	if _, err := HashPlan(bad); err == nil {
		t.Errorf("plan with non-object args: got nil error, want one")
	}
}

func TestInvariants(t *testing.T) {
	targets := func(n int, role, state, peer string) []Target {
		out := make([]Target, n)
		for i := range out {
			out[i] = Target{Instance: clawops.InstanceID("i-" + string(rune('a'+i%26))), Role: role, State: state, PeerState: peer, Users: 1}
		}
		return out
	}
	tests := []struct {
		name   string
		action Action
		plan   Plan
		want   clawops.ReasonCode
	}{
		{"teardown active primary, standby degraded", ActionTeardown, Plan{Targets: targets(1, "primary", "ACTIVE", "DEGRADED")}, clawops.ReasonStandbyNotActive},
		{"teardown active primary, standby unknown", ActionTeardown, Plan{Targets: targets(1, "primary", "ACTIVE", "")}, clawops.ReasonStandbyNotActive},
		{"teardown active primary, lower-case state", ActionTeardown, Plan{Targets: targets(1, "Primary", "active", "failed")}, clawops.ReasonStandbyNotActive},
		{"teardown active primary, standby active", ActionTeardown, Plan{Targets: targets(1, "primary", "ACTIVE", "ACTIVE")}, ""},
		{"teardown failed primary", ActionTeardown, Plan{Targets: targets(1, "primary", "FAILED", "DEGRADED")}, ""},
		{"teardown standby", ActionTeardown, Plan{Targets: targets(1, "standby", "ACTIVE", "FAILED")}, ""},
		{"provider delete by another action", ActionTierChange, Plan{ProviderDelete: true, Targets: targets(1, "primary", "ACTIVE", "DEGRADED")}, clawops.ReasonStandbyNotActive},
		{"restart of lone primary", ActionRestart, Plan{Targets: targets(1, "primary", "ACTIVE", "DEGRADED")}, ""},
		{"config push to 100", ActionConfigPush, Plan{Targets: targets(100, "primary", "ACTIVE", "ACTIVE")}, ""},
		{"config push to 101", ActionConfigPush, Plan{Targets: targets(101, "primary", "ACTIVE", "ACTIVE")}, clawops.ReasonRollingRequired},
		{"rolling config push to 500", ActionConfigPush, Plan{Rolling: true, BatchSize: 50, Targets: targets(500, "primary", "ACTIVE", "ACTIVE")}, ""},
		{"rolling push without batch size", ActionConfigPush, Plan{Rolling: true, Targets: targets(500, "primary", "ACTIVE", "ACTIVE")}, clawops.ReasonRollingRequired},
		{"rolling push with giant batches", ActionConfigPush, Plan{Rolling: true, BatchSize: 101, Targets: targets(500, "primary", "ACTIVE", "ACTIVE")}, clawops.ReasonRollingRequired},
		{"upgrade of 100", ActionUpgrade, Plan{Targets: targets(100, "primary", "ACTIVE", "ACTIVE")}, ""},
		{"upgrade of 101", ActionUpgrade, Plan{Targets: targets(101, "primary", "ACTIVE", "ACTIVE")}, clawops.ReasonRollingRequired},
		{"rolling upgrade of 500", ActionUpgrade, Plan{Rolling: true, BatchSize: 100, Targets: targets(500, "primary", "ACTIVE", "ACTIVE")}, ""},
		{"rolling upgrade without batch size", ActionUpgrade, Plan{Rolling: true, Targets: targets(500, "primary", "ACTIVE", "ACTIVE")}, clawops.ReasonRollingRequired},
		{"rolling upgrade with giant batches", ActionUpgrade, Plan{Rolling: true, BatchSize: 101, Targets: targets(2, "primary", "ACTIVE", "ACTIVE")}, clawops.ReasonRollingRequired},
		{"restart of 500", ActionRestart, Plan{Targets: targets(500, "primary", "ACTIVE", "ACTIVE")}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := checkInvariants(ToolSpec{Name: "x", Action: tc.action}, tc.plan)
			var got clawops.ReasonCode
			if v != nil {
				got = v.reason
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
