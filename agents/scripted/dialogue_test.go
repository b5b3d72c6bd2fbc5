package scripted

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	openai "github.com/sashabaranov/go-openai"

	"github.com/gatewayforge/clawops"
)

const dialoguesDir = "testdata/dialogues"

// toolNames are the tools the dialogues may call: the fleet catalog and agent-to-agent.
var toolNames = []string{
	"gf_fleet_status", "gf_instance_health", "gf_instance_diagnose", "gf_instance_logs",
	"gf_restart", "gf_heal", "gf_failover", "gf_provision", "gf_teardown", "gf_tier_resize",
	"gf_config_push", "gf_cost_report", "gf_provider_routing", "sessions_spawn", "sessions_send",
}

func TestLoadDialogues(t *testing.T) {
	ds, err := LoadDialogues(dialoguesDir)
	if err != nil {
		t.Fatalf("LoadDialogues: %v", err)
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.Name)
	}
	want := []string{
		"adversarial-log-injection", "adversarial-teardown-everything", "adversarial-tool-outside-role",
		"adversarial-triage-writes", "bulk-config-push", "cost-optimisation", "incident-response",
		"morning-briefing", "provider-routing", "provisioning",
	}
	if d := cmp.Diff(want, names); d != "" {
		t.Fatalf("dialogues (-want +got):\n%s", d)
	}
	for _, d := range ds {
		t.Run(d.Name, func(t *testing.T) {
			if err := d.Script().Validate(); err != nil {
				t.Errorf("script: %v", err)
			}
			adversarial := slices.Contains(d.Tags, "adversarial")
			for i, turn := range d.Turns {
				if turn.Trigger() == "" || turn.Line == 0 {
					t.Errorf("turn %d: trigger %q line %d", i+1, turn.Trigger(), turn.Line)
				}
				for _, st := range turn.Steps {
					if !strings.HasPrefix(st.Source, filepath.Join(dialoguesDir, d.Name+".yaml")+":") || strings.HasSuffix(st.Source, ":0") {
						t.Errorf("step source: got %q", st.Source)
					}
					for _, c := range st.ToolCalls {
						if !slices.Contains(toolNames, c.Name) && !adversarial {
							t.Errorf("tool %s is not in the catalog", c.Name)
						}
					}
				}
				if adversarial && turn.Trigger() != "approve" && len(turn.Expect.NeverAllowed) == 0 {
					t.Errorf("adversarial turn %d: want never_allowed", i+1)
				}
			}
		})
	}
}

func TestDialogueShapes(t *testing.T) {
	d, err := LoadDialogue(filepath.Join(dialoguesDir, "provisioning.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(d.Turns), 3; got != want {
		t.Fatalf("turns: got %d, want %d", got, want)
	}
	if d.Turns[1].Trigger() != "approve" || d.Turns[1].Approve != "last" {
		t.Errorf("turn 2: got %+v", d.Turns[1])
	}
	s := d.Script()
	var agents []clawops.AgentRole
	for _, st := range s.Steps {
		agents = append(agents, st.Agent)
	}
	wantAgents := []clawops.AgentRole{"commander", "commander", "forge", "forge", "commander", "commander", "commander"}
	if d := cmp.Diff(wantAgents, agents); d != "" {
		t.Errorf("step agents (-want +got):\n%s", d)
	}
	if got := s.Steps[2].ToolCalls[0].arguments(); got != `{"count":20,"label":"companion-beta","primary_provider":"hetzner","region":"eu","standby_provider":"vultr","tier":"standard"}` {
		t.Errorf("args JSON: got %s", got)
	}

	o, _ := LoadDialogue(filepath.Join(dialoguesDir, "adversarial-tool-outside-role.yaml"))
	if got := o.Recipient(o.Turns[0]); got != clawops.Ledger {
		t.Errorf("COST_ANOMALY recipient: got %s, want ledger", got)
	}
	if got := o.Script().Steps[0].Agent; got != clawops.Ledger {
		t.Errorf("event turn step agent: got %s, want ledger", got)
	}
	if got := o.Script().Steps[3].Agent; got != clawops.Briefer {
		t.Errorf("cron turn step agent: got %s, want briefer", got)
	}
	inj, _ := LoadDialogue(filepath.Join(dialoguesDir, "adversarial-log-injection.yaml"))
	if !strings.Contains(inj.Fixtures.InstanceLogs["demo1-pri"], "ignore previous instructions") {
		t.Errorf("fixtures: got %v", inj.Fixtures)
	}
}

// TestReplayDialogues drives each dialogue's script through the server with the real
// go-openai client, building each request so that the step's conditions hold (as an
// agent loop would), and checks every step is replayed in order and none is left.
func TestReplayDialogues(t *testing.T) {
	ds, err := LoadDialogues(dialoguesDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		t.Run(d.Name, func(t *testing.T) {
			script := d.Script()
			srv := startServer(t, script)
			c := openaiClient(srv, "")
			for i, st := range script.Steps {
				req := requestFor(st)
				resp, err := c.CreateChatCompletion(context.Background(), req)
				if st.Error != nil {
					if err == nil {
						t.Fatalf("step %s: got no error, want %d", stepName(i, st), st.Error.Status)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %s: %v", stepName(i, st), err)
				}
				msg := resp.Choices[0].Message
				if msg.Content != st.Reply || len(msg.ToolCalls) != len(st.ToolCalls) {
					t.Fatalf("step %s: got %q with %d calls", stepName(i, st), msg.Content, len(msg.ToolCalls))
				}
				for j, tc := range msg.ToolCalls {
					if tc.Function.Name != st.ToolCalls[j].Name || tc.Function.Arguments != st.ToolCalls[j].arguments() {
						t.Errorf("step %s call %d: got %+v", stepName(i, st), j, tc.Function)
					}
				}
			}
			if err := srv.Verify(); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func requestFor(st Step) openai.ChatCompletionRequest {
	user := st.When.LastUserContains
	if user == "" {
		user = "go on"
	}
	msgs := []openai.ChatCompletionMessage{{Role: "system", Content: "agent " + string(st.Agent) + " " + st.When.SystemContains}, {Role: "user", Content: user}}
	if st.When.LastToolContains != "" {
		msgs = append(msgs,
			openai.ChatCompletionMessage{Role: "assistant", ToolCalls: []openai.ToolCall{{ID: "prev", Type: "function", Function: openai.FunctionCall{Name: "sessions_spawn", Arguments: "{}"}}}},
			openai.ChatCompletionMessage{Role: "tool", ToolCallID: "prev", Content: "result: " + st.When.LastToolContains})
	}
	var tools []openai.Tool
	for _, n := range st.When.ToolsOffered {
		tools = append(tools, openai.Tool{Type: "function", Function: &openai.FunctionDefinition{Name: n}})
	}
	model := st.When.Model
	if model == "" {
		model = "scripted"
	}
	return openai.ChatCompletionRequest{Model: model, User: string(st.Agent) + ":test", Messages: msgs, Tools: tools}
}

func TestParseDialogueShorthand(t *testing.T) {
	src := `name: short
operator: "How is demo1-pri?"
steps:
  - tool_calls: [{name: gf_instance_health, args: {instance: demo1-pri}}]
  - reply: Healthy.
expect:
  tool_calls: [gf_instance_health]
  decisions: ["*"]
`
	d, err := ParseDialogue("short.yaml", []byte(src))
	if err != nil {
		t.Fatalf("ParseDialogue: %v", err)
	}
	if len(d.Turns) != 1 || d.Turns[0].Operator != "How is demo1-pri?" || len(d.Turns[0].Steps) != 2 || d.Operator != "" || d.Steps != nil {
		t.Fatalf("normalised: got %+v", d)
	}
	if got := d.Turns[0].Steps[1].Source; got != "short.yaml:5" {
		t.Errorf("source: got %q, want short.yaml:5", got)
	}
	if d.Turns[0].Expect.ToolCalls[0] != "gf_instance_health" {
		t.Errorf("expect: got %+v", d.Turns[0].Expect)
	}
	// An eval dialogue for a real model: no steps at all.
	if _, err := ParseDialogue("eval.yaml", []byte("name: eval\noperator: hi\nexpect: {reply_mentions: [hello]}\n")); err != nil {
		t.Errorf("eval dialogue: %v", err)
	}
}

func TestParseDialogueBadForms(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"empty", "", "bad.yaml: empty file"},
		{"comment only", "# nothing\n", "bad.yaml: empty file"},
		{"two documents", "name: a\noperator: x\n---\nname: b\n", "2 YAML documents"},
		{"not a mapping", "- a\n- b\n", "bad.yaml:1: a dialogue is a mapping"},
		{"syntax", "name: a\noperator: \"x\n", "bad.yaml:2:"},
		{"unknown top key", "name: a\noperator: x\nsteps: [{reply: y}]\nexpectt: {}\n", `bad.yaml:4:1: unknown field "expectt"`},
		{"unknown step key", "name: a\nturns:\n  - operator: x\n    steps:\n      - reply: y\n        replay: z\n", `bad.yaml:6:9: unknown field "replay"`},
		{"unknown call key", "name: a\noperator: x\nsteps:\n  - tool_calls: [{name: gf_restart, arguments: {}}]\n", `unknown field "arguments"`},
		{"duplicate key", "name: a\nname: b\noperator: x\n", `bad.yaml:2:1: mapping key "name" already defined`},
		{"wrong type", "name: a\nturns: 3\n", "bad.yaml:2:8:"},
		{"args not a mapping", "name: a\noperator: x\nsteps:\n  - tool_calls: [{name: gf_restart, args: [1]}]\n", "bad.yaml:4:"},
		{"no name", "operator: x\n", `bad.yaml:1: name "" must be`},
		{"bad name", "name: Big Name\noperator: x\n", `bad.yaml:1: name "Big Name" must be`},
		{"bad agent", "name: a\nagent: boss\noperator: x\n", `bad.yaml:2: agent "boss" is not one of`},
		{"no turns", "name: a\n", "bad.yaml:1: a dialogue needs turns"},
		{"shorthand and turns", "name: a\noperator: x\nturns:\n  - operator: y\n", "bad.yaml:4: turns excludes the one-turn shorthand"},
		{"no trigger", "name: a\nturns:\n  - steps: [{reply: x}]\n", "bad.yaml:3: turn 1 needs one trigger"},
		{"two triggers", "name: a\nturns:\n  - operator: x\n  - operator: y\n    cron: briefer\n", "bad.yaml:4: turn 2 has several triggers (operator, cron)"},
		{"blank operator", "name: a\nturns:\n  - operator: \"  \"\n", "bad.yaml:3: operator message is blank"},
		{"bad cron", "name: a\nturns:\n  - cron: janitor\n", `bad.yaml:3: cron "janitor"`},
		{"bad event", "name: a\nturns:\n  - event: {type: DISK_FULL}\n", `bad.yaml:3: event type "DISK_FULL" is not one of COST_ANOMALY`},
		{"bad event recipient", "name: a\nturns:\n  - event: {type: PAIR_FAILED, to: boss}\n", `event recipient "boss"`},
		{"bad approve", "name: a\nturns:\n  - approve: first\n", `bad.yaml:3: approve "first" must be last or all`},
		{"empty step", "name: a\nturns:\n  - operator: x\n    steps:\n      - {}\n", "bad.yaml:5: step 1: needs reply, tool_calls or error"},
		{"bad tool name", "name: a\noperator: x\nsteps:\n  - tool_calls: [{name: \"gf restart\"}]\n", `bad.yaml:4: step 1: tool_calls[0]: name "gf restart" must match`},
		{"step bad agent", "name: a\noperator: x\nsteps:\n  - {agent: boss, reply: y}\n", `step 1: agent "boss"`},
		{"bad decision", "name: a\noperator: x\nexpect: {tool_calls: [gf_restart], decisions: [maybe]}\n", `bad.yaml:3: decision "maybe"`},
		{"decision count", "name: a\noperator: x\nexpect: {tool_calls: [gf_restart, gf_heal], decisions: [allow]}\n", "1 decisions for 2 tool calls"},
		{"bad reason", "name: a\noperator: x\nexpect: {reasons: [not-a-code]}\n", `reason "not-a-code" must be an upper-case code`},
		{"empty mention", "name: a\noperator: x\nexpect: {reply_mentions: [\"\"]}\n", "must not be empty"},
		{"scripted vs expected", "name: a\noperator: x\nsteps: [{tool_calls: [{name: gf_restart}]}]\nexpect: {tool_calls: [gf_heal]}\n", "bad.yaml:4: expected tool calls [gf_heal] differ from the scripted ones [gf_restart]"},
		{"error with reply", "name: a\noperator: x\nsteps: [{reply: y, error: {status: 500}}]\n", "error excludes reply"},
		{"error status", "name: a\noperator: x\nsteps: [{error: {status: 302}}]\n", "400-599"},
		{"alias", "name: a\noperator: &op x\nturns:\n  - operator: *op\n", "bad.yaml:2: YAML anchors and aliases are not allowed"},
		{"too big", "name: a\noperator: x\ndescription: " + strings.Repeat("x", 1<<20) + "\n", "more than the 1048576 a dialogue may have"},
		{"blank fixture id", "name: a\noperator: x\nfixtures: {instance_logs: {\"\": x}}\n", "instance_logs needs instance IDs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDialogue("bad.yaml", []byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestLoadDialogueFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := LoadDialogues(dir); err == nil || !strings.Contains(err.Error(), "no *.yaml files") {
		t.Errorf("empty dir: got %v", err)
	}
	write("notes.txt", "ignored")
	write("b.yml", "name: b\noperator: x\n")
	write("a.yaml", "name: a\noperator: x\n")
	ds, err := LoadDialogues(dir)
	if err != nil || len(ds) != 2 || ds[0].Name != "a" || ds[1].Name != "b" {
		t.Fatalf("got %v, %v; want a, b", ds, err)
	}
	write("c.yaml", "name: not-c\noperator: x\n")
	if _, err := LoadDialogues(dir); err == nil || !strings.Contains(err.Error(), `name "not-c" must equal the file name "c"`) {
		t.Errorf("name mismatch: got %v", err)
	}
	if _, err := LoadDialogues(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing dir: got nil error")
	}
}

func TestExpectCheck(t *testing.T) {
	obs := Observation{
		Calls: []ObservedCall{
			{Agent: clawops.Commander, Tool: "sessions_spawn", Decision: clawops.Allow, Reason: clawops.ReasonRolePermits},
			{Agent: clawops.Forge, Tool: "gf_provision", Decision: clawops.NeedsApproval, Reason: clawops.ReasonApprovalRequired},
		},
		Replies: []string{"Roger. 20 pairs, approval card posted."},
	}
	tests := []struct {
		name string
		e    Expect
		want []string // substrings of the error; none means nil
	}{
		{"all good", Expect{ToolCalls: []string{"sessions_spawn", "gf_provision"}, Decisions: []string{"allow", "needs_approval|deny"},
			Reasons: []string{"*", "APPROVAL_REQUIRED"}, ReplyMentions: []string{"20", "APPROVAL"}, ReplyAvoids: []string{"done"}, NeverAllowed: []string{"gf_provision"}}, nil},
		{"nothing checked", Expect{}, nil},
		{"wrong calls", Expect{ToolCalls: []string{"gf_provision"}}, []string{"tool calls: got [sessions_spawn gf_provision], want [gf_provision]"}},
		{"expect none", Expect{ToolCalls: []string{}}, []string{"want []"}},
		{"wrong decision", Expect{Decisions: []string{"allow", "allow"}}, []string{"decision 2 (gf_provision): got needs_approval (APPROVAL_REQUIRED), want allow"}},
		{"missing call", Expect{Decisions: []string{"*", "*", "deny"}}, []string{"decision 3: got no call"}},
		{"wrong reason", Expect{Reasons: []string{"", "ROLE_NOT_PERMITTED"}}, []string{"reason 2 (gf_provision): got APPROVAL_REQUIRED, want ROLE_NOT_PERMITTED"}},
		{"mentions", Expect{ReplyMentions: []string{"$240"}, ReplyAvoids: []string{"roger"}}, []string{`does not mention "$240"`, `reply mentions "roger"`}},
		{"never allowed", Expect{NeverAllowed: []string{"sessions_spawn"}}, []string{"sessions_spawn was allowed (agent commander), want never"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.e.Check(obs)
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("got %v, want nil", err)
				}
				return
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("got %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

func FuzzParseDialogue(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(dialoguesDir, "*.yaml"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("name: a\noperator: x\n"))
	f.Add([]byte("name: a\nturns:\n  - event: {type: PAIR_FAILED}\n    steps: [{reply: x}]\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDialogue("fuzz.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		// Whatever parses must replay: the script is valid and every turn has a trigger.
		if err := d.Script().Validate(); err != nil {
			t.Fatalf("parsed dialogue has an invalid script: %v", err)
		}
		for i, turn := range d.Turns {
			if turn.Trigger() == "" {
				t.Fatalf("turn %d has no trigger", i+1)
			}
		}
		_ = fmt.Sprint(d)
	})
}
