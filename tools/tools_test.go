package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/governance"
)

var update = flag.Bool("update", false, "rewrite the golden plans in testdata/")

var actor = clawops.Actor{Identity: "alice", Role: clawops.RoleOperator, Agent: clawops.Commander}

func toolByName(t *testing.T, f Fleet, name string) governance.Tool {
	t.Helper()
	for _, tl := range All(f) {
		if tl.Spec().Name == name {
			return tl
		}
	}
	t.Fatalf("no tool %s", name)
	return nil
}

func wantReason(t *testing.T, err error, reason clawops.ReasonCode) {
	t.Helper()
	if got := clawops.ReasonOf(err); got != reason {
		t.Fatalf("reason: got %q (err %v), want %q", got, err, reason)
	}
}

func TestSpecs(t *testing.T) {
	want := []struct {
		name     string
		action   governance.Action
		risk     clawops.RiskClass
		required []string
	}{
		{NameFleetStatus, governance.ActionRead, clawops.RiskLow, nil},
		{NameInstanceHealth, governance.ActionRead, clawops.RiskLow, []string{"instance"}},
		{NameInstanceLogs, governance.ActionRead, clawops.RiskLow, []string{"instance"}},
		{NameRestart, governance.ActionRestart, clawops.RiskMedium, []string{"instance"}},
		{NameTeardown, governance.ActionTeardown, clawops.RiskHigh, []string{"instance"}},
	}
	all := All(newMemFleet())
	if len(all) != len(want) {
		t.Fatalf("tools: got %d, want %d", len(all), len(want))
	}
	for i, w := range want {
		s := all[i].Spec()
		if s.Name != w.name || s.Action != w.action || s.Risk != w.risk || s.Description == "" {
			t.Errorf("spec %d: got %s %s %s, want %s %s %s", i, s.Name, s.Action, s.Risk, w.name, w.action, w.risk)
		}
		var sch struct {
			Type       string                     `json:"type"`
			Props      map[string]json.RawMessage `json:"properties"`
			Required   []string                   `json:"required"`
			Additional *bool                      `json:"additionalProperties"`
		}
		if err := json.Unmarshal(s.Schema, &sch); err != nil {
			t.Fatalf("%s schema: %v", s.Name, err)
		}
		if sch.Type != "object" || sch.Additional == nil || *sch.Additional || !slices.Equal(sch.Required, w.required) {
			t.Errorf("%s schema: got %s", s.Name, s.Schema)
		}
		if p, ok := sch.Props["instance"]; ok && !strings.Contains(string(p), `"pattern":"^[a-z0-9][a-z0-9-]{1,39}$"`) {
			t.Errorf("%s instance schema: got %s, want the instance pattern", s.Name, p)
		}
	}
}

func TestBadArguments(t *testing.T) {
	instanceBad := []string{
		`{}`, `{"instance":5}`, `{"instance":null}`, `{"instance":["demo1-pri"]}`,
		`{"instance":"demo1-pri","force":true}`, `{"INSTANCE":"demo1-pri"}`, `{"Instance":"demo1-pri"}`,
		`{"instance":"demo1-pri","instance":"demo2-pri"}`,
		`{"instance":"demo1-pri; rm -rf /"}`, `{"instance":"$(reboot)"}`, `{"instance":"demo1-pri|sh"}`,
		`{"instance":"../etc/passwd"}`, `{"instance":"Demo1-pri"}`, `{"instance":"demo1-pri\n"}`,
		`{"instance":"x"}`, `{"instance":"` + strings.Repeat("a", 41) + `"}`,
		`[]`, `"demo1-pri"`, `42`, `{`, `{"instance":"demo1-pri"} {}`, `{"instance":"demo1-pri"}x`,
		`{"instance":"` + strings.Repeat("a", 5000) + `"}`,
	}
	cases := map[string][]string{
		NameFleetStatus:    {`{"x":1}`, `[]`, `{"instance":"demo1-pri"}`, `{} {}`, `{`, `"x"`},
		NameInstanceHealth: append(slices.Clone(instanceBad), `{"instance":"demo1-pri","lines":10}`),
		NameRestart:        instanceBad,
		NameTeardown:       instanceBad,
		NameInstanceLogs: append(slices.Clone(instanceBad),
			`{"instance":"demo1-pri","lines":0}`, `{"instance":"demo1-pri","lines":5001}`,
			`{"instance":"demo1-pri","lines":-1}`, `{"instance":"demo1-pri","lines":"100"}`,
			`{"instance":"demo1-pri","lines":1.5}`, `{"instance":"demo1-pri","lines":1e2}`,
			`{"instance":"demo1-pri","lines":null}`, `{"instance":"demo1-pri","lines":99999999999999999999}`,
			`{"instance":"demo1-pri","lines":10,"lines":20}`, `{"instance":"demo1-pri","Lines":10}`),
	}
	for name, bad := range cases {
		for _, args := range bad {
			t.Run(name+"/"+args[:min(len(args), 60)], func(t *testing.T) {
				f := newMemFleet()
				tl := toolByName(t, f, name)
				_, err := tl.Plan(context.Background(), actor, json.RawMessage(args))
				wantReason(t, err, clawops.ReasonBadArguments)
				if k := clawops.KindOf(err); k != clawops.KindInvalid {
					t.Errorf("kind: got %v, want invalid", k)
				}
				// Apply of a forged plan with these args runs nothing either (status ignores args).
				if name != NameFleetStatus {
					_, err = tl.Apply(context.Background(), governance.Plan{Tool: name, Args: json.RawMessage(args)})
					wantReason(t, err, clawops.ReasonBadArguments)
				}
				if c := f.recorded(); len(c) != 0 {
					t.Errorf("fleet calls: got %v, want none", c)
				}
			})
		}
	}
}

func TestPlanRefusals(t *testing.T) {
	for _, tc := range []struct {
		tool, args string
		reason     clawops.ReasonCode
	}{
		{NameInstanceHealth, `{"instance":"ghost-pri"}`, clawops.ReasonUnknownInstance},
		{NameInstanceLogs, `{"instance":"ghost-pri"}`, clawops.ReasonUnknownInstance},
		{NameRestart, `{"instance":"ghost-pri"}`, clawops.ReasonUnknownInstance},
		{NameTeardown, `{"instance":"ghost-pri"}`, clawops.ReasonUnknownInstance},
		{NameInstanceHealth, `{"instance":"demo3-pri"}`, clawops.ReasonNodeOffline},
		{NameInstanceLogs, `{"instance":"demo3-pri","lines":5}`, clawops.ReasonNodeOffline},
		{NameRestart, `{"instance":"demo3-pri"}`, clawops.ReasonNodeOffline},
		{NameRestart, `{"instance":"demo3-sby"}`, clawops.ReasonInstanceNotActive},
		{NameTeardown, `{"instance":"demo3-sby"}`, clawops.ReasonInstanceNotActive},
	} {
		t.Run(tc.tool+"/"+tc.args, func(t *testing.T) {
			f := newMemFleet()
			_, err := toolByName(t, f, tc.tool).Plan(context.Background(), actor, json.RawMessage(tc.args))
			wantReason(t, err, tc.reason)
			for _, c := range f.recorded() {
				if !strings.HasPrefix(c, "Instance ") {
					t.Errorf("plan made a fleet call other than a read: %s", c)
				}
			}
		})
	}
}

// TestPlanGolden pins each tool's plan for a known fleet; -update rewrites the files.
func TestPlanGolden(t *testing.T) {
	for _, tc := range []struct{ file, tool, args string }{
		{"status", NameFleetStatus, `{}`},
		{"health", NameInstanceHealth, `{"instance":"demo1-pri"}`},
		{"logs_default", NameInstanceLogs, `{"instance":"demo1-sby"}`},
		{"logs_20", NameInstanceLogs, ` { "lines" : 20, "instance":"demo2-pri" } `},
		{"restart", NameRestart, `{"instance":"demo1-pri"}`},
		{"teardown_standby", NameTeardown, `{"instance":"demo1-sby"}`},
		{"teardown_primary_standby_degraded", NameTeardown, `{"instance":"demo2-pri"}`},
		{"teardown_failed_never_created", NameTeardown, `{"instance":"demo4-sby"}`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f := newMemFleet()
			tl := toolByName(t, f, tc.tool)
			p, err := tl.Plan(context.Background(), actor, json.RawMessage(tc.args))
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			again, _ := tl.Plan(context.Background(), actor, json.RawMessage(tc.args))
			if diff := cmp.Diff(p, again); diff != "" {
				t.Errorf("plan is not deterministic (-first +second):\n%s", diff)
			}
			path := filepath.Join("testdata", tc.file+".plan.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./tools -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("plan differs from %s (-want +got):\n%s", path, diff)
			}
		})
	}
}

func plan(t *testing.T, tl governance.Tool, args string) governance.Plan {
	t.Helper()
	p, err := tl.Plan(context.Background(), actor, json.RawMessage(args))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestApply(t *testing.T) {
	ctx := context.Background()
	f := newMemFleet()
	f.logs = "line one\nline two\n"
	f.health.OK, f.health.Status, f.health.LatencyMs = true, 200, 12

	for _, tc := range []struct {
		tool, args  string
		wantCall    string
		wantSummary string
		wantData    string
	}{
		{NameInstanceHealth, `{"instance":"demo1-pri"}`, "Health demo1-pri",
			"demo1-pri: OpenClaw healthy (HTTP 200, 12 ms)",
			`{"instance":"demo1-pri","health":{"ok":true,"status":200,"latencyMs":12,"checkedAt":0}}`},
		{NameInstanceLogs, `{"instance":"demo1-pri","lines":2}`, "Logs demo1-pri 2",
			"demo1-pri: 2 log lines\nline one\nline two", `{"instance":"demo1-pri","lines":["line one","line two"]}`},
		{NameRestart, `{"instance":"demo1-sby"}`, "Restart demo1-sby",
			"Restarted OpenClaw on demo1-sby", `{"instance":"demo1-sby","restarted":true}`},
		{NameTeardown, `{"instance":"demo1-sby"}`, "Teardown demo1-sby",
			"Tore down demo1-sby; it is TERMINATED", `{"instance":"demo1-sby","state":"TERMINATED"}`},
	} {
		t.Run(tc.tool, func(t *testing.T) {
			tl := toolByName(t, f, tc.tool)
			before := len(f.recorded())
			res, err := tl.Apply(ctx, plan(t, tl, tc.args))
			if err != nil {
				t.Fatal(err)
			}
			calls := f.recorded()[before:]
			if !slices.Contains(calls, tc.wantCall) {
				t.Errorf("fleet calls: got %v, want %q", calls, tc.wantCall)
			}
			if res.Summary != tc.wantSummary {
				t.Errorf("summary: got %q, want %q", res.Summary, tc.wantSummary)
			}
			if string(res.Data) != tc.wantData {
				t.Errorf("data: got %s, want %s", res.Data, tc.wantData)
			}
		})
	}

	// Status after the teardown above: demo1-sby and demo3-sby are terminated.
	st := toolByName(t, f, NameFleetStatus)
	res, err := st.Apply(ctx, plan(t, st, `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "6 instances: 2 BOOTSTRAPPING, 2 ACTIVE, 1 DEGRADED, 1 FAILED (2 terminated not shown)"; res.Summary != want {
		t.Errorf("status summary: got %q, want %q", res.Summary, want)
	}
	var rows []map[string]any
	if err := json.Unmarshal(res.Data, &rows); err != nil || len(rows) != 6 {
		t.Fatalf("status data: got %s (%v), want 6 rows", res.Data, err)
	}
	for _, k := range []string{"id", "account", "pair", "provider", "region", "tier", "role", "state", "node", "last_heartbeat", "health"} {
		if _, ok := rows[0][k]; !ok {
			t.Errorf("status row lacks %q: %v", k, rows[0])
		}
	}
}

func TestApplyErrorsKeepReason(t *testing.T) {
	f := newMemFleet()
	ctx := context.Background()
	for _, name := range []string{NameInstanceHealth, NameInstanceLogs, NameRestart, NameTeardown} {
		tl := toolByName(t, f, name)
		p := plan(t, tl, `{"instance":"demo1-pri"}`)
		f.err = clawops.E("invoke", clawops.KindTransient, clawops.ReasonNodeOffline, "node not connected")
		_, err := tl.Apply(ctx, p)
		f.err = nil
		wantReason(t, err, clawops.ReasonNodeOffline)
		if clawops.KindOf(err) != clawops.KindTransient {
			t.Errorf("%s kind: got %v, want transient", name, clawops.KindOf(err))
		}
	}
}

func TestStatusEmptyFleet(t *testing.T) {
	f := &memFleet{views: map[clawops.InstanceID]fleet.InstanceView{}}
	st := toolByName(t, f, NameFleetStatus)
	for _, args := range []string{``, `null`, ` {} `} {
		res, err := st.Apply(context.Background(), plan(t, st, args))
		if err != nil {
			t.Fatal(err)
		}
		if res.Summary != "0 instances" || string(res.Data) != "[]" {
			t.Errorf("args %q: got %q %s, want 0 instances []", args, res.Summary, res.Data)
		}
	}
}

func TestLogsSummaryBounded(t *testing.T) {
	f := newMemFleet()
	var b bytes.Buffer
	for i := range 2000 {
		b.WriteString("log line number ")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString("\n")
	}
	f.logs = b.String()
	tl := toolByName(t, f, NameInstanceLogs)
	res, err := tl.Apply(context.Background(), plan(t, tl, `{"instance":"demo1-pri","lines":2000}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Summary) > maxSummaryLog+100 {
		t.Errorf("summary length: got %d, want at most %d", len(res.Summary), maxSummaryLog+100)
	}
	if !strings.HasPrefix(res.Summary, "demo1-pri: 2000 log lines (newest ") {
		t.Errorf("summary head: got %q", res.Summary[:80])
	}
	var data struct{ Lines []string }
	if err := json.Unmarshal(res.Data, &data); err != nil || len(data.Lines) != 2000 {
		t.Errorf("data lines: got %d (%v), want 2000", len(data.Lines), err)
	}
}
