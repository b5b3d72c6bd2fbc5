package agents_test

import (
	"context"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents"
	"github.com/gatewayforge/clawops/agents/llm"
	"github.com/gatewayforge/clawops/agents/scripted"
)

func TestRunLimits(t *testing.T) {
	status := call(agents.ToolFleetStatus, nil)
	tests := []struct {
		name   string
		steps  []scripted.Step
		team   func(*agents.TeamOptions)
		llm    func(*llm.Options)
		want   string // in the reply
		denied int    // calls refused
	}{
		{
			name:  "steps",
			steps: []scripted.Step{toolStep("", status), toolStep("", status), toolStep("", status)},
			team:  func(o *agents.TeamOptions) { o.Limits.MaxSteps = 3 },
			want:  "Stopped (RUN_STEP_LIMIT): the run reached its limit of 3 model steps",
		},
		{
			name: "cost",
			steps: []scripted.Step{{ToolCalls: []scripted.Call{status},
				Usage: &scripted.StepUsage{Prompt: 40000, Completion: 1000}}},
			llm: func(o *llm.Options) {
				o.PriceTable = llm.PriceTable{"scripted-model": {InputPerMTok: 10, OutputPerMTok: 30}}
			},
			team: func(o *agents.TeamOptions) { o.Limits.MaxCostUSD = 0.25 },
			want: "Stopped (RUN_COST_LIMIT): the run cost $0.4300, its limit is $0.25",
		},
		{
			name: "refusals",
			steps: []scripted.Step{toolStep("",
				call("gf_delete_provider", map[string]any{"provider": "hetzner"}),
				call(agents.ToolSessionsSpawn, map[string]any{"agent": "commander", "task": "loop"}),
				call(agents.ToolTeardown, map[string]any{"instance": "nope-pri"}))},
			want:   "Stopped (RUN_TOO_MANY_REFUSALS): the gate refused 3 calls in this run",
			denied: 3,
		},
		{
			name:  "model down",
			steps: []scripted.Step{{Error: &scripted.Fault{Status: 401, Message: "bad key"}}},
			want:  "Stopped (LLM_AUTH_FAILED): the model did not answer: ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script := scripted.Script{Name: tt.name, Steps: tt.steps}
			e := newTeamEnv(t, envOptions{script: &script, team: tt.team, llm: tt.llm})
			got := e.say(omar, "what is going on?")
			if !strings.Contains(got, tt.want) {
				t.Errorf("reply: got %q, want it to contain %q", got, tt.want)
			}
			e.verify()
			denied := 0
			for _, c := range e.rec.takeCalls() {
				if c.Decision == clawops.Deny {
					denied++
				}
			}
			if denied != tt.denied {
				t.Errorf("refused calls: got %d, want %d", denied, tt.denied)
			}
			// Every run is recorded with what it cost and why it stopped.
			var runs []struct {
				Agent   string
				CostUSD float64
				Stopped string
				Steps   int
			}
			if err := e.db.Raw("SELECT agent, cost_usd, stopped, steps FROM agent_runs").Scan(&runs).Error; err != nil {
				t.Fatal(err)
			}
			if len(runs) != 1 || runs[0].Agent != "commander" || !strings.Contains(tt.want, runs[0].Stopped) || runs[0].Stopped == "" {
				t.Errorf("agent_runs: got %+v", runs)
			}
			if tt.name == "cost" && math.Abs(runs[0].CostUSD-0.43) > 1e-9 {
				t.Errorf("recorded cost: got %v, want 0.43", runs[0].CostUSD)
			}
		})
	}
}

func TestRunTimeLimit(t *testing.T) {
	script := scripted.Script{Name: "slow", Steps: []scripted.Step{replyStep("", "late")}}
	e := newTeamEnv(t, envOptions{script: &script,
		handler: func(h *scripted.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// Read the body, so the server notices when the client hangs up.
				io.Copy(io.Discard, r.Body)
				<-r.Context().Done() // a model that never answers
			})
		},
		team: func(o *agents.TeamOptions) { o.Limits.MaxDuration = 150 * time.Millisecond },
	})
	got := e.say(omar, "hello?")
	if !strings.Contains(got, "Stopped (RUN_TIME_LIMIT): the run reached its time limit of 150ms") {
		t.Errorf("reply: got %q", got)
	}
}

// TestPromptAndTools checks what one run sends the model: the persona, the skill list,
// memory, the tools its role is offered, and a transcript replayed from the session.
func TestPromptAndTools(t *testing.T) {
	script := scripted.Script{Name: "prompt", Steps: []scripted.Step{
		{When: scripted.Match{SystemContains: "You are Commander"}, Reply: "first"},
		{When: scripted.Match{LastUserContains: "second question"}, Reply: "second"},
		{Agent: clawops.Triage, Reply: `{"ok":true}`},
	}}
	e := newTeamEnv(t, envOptions{script: &script, skip: []string{agents.ToolHeal}})
	if err := e.mem.Append(clawops.Commander, "Hetzner fsn1 had a network incident on Nov 20"); err != nil {
		t.Fatal(err)
	}
	if got := e.say(omar, "first question"); got != "first" {
		t.Errorf("reply: got %q", got)
	}
	if got := e.say(omar, "second question"); got != "second" {
		t.Errorf("reply: got %q", got)
	}
	if err := e.team.EventTo(context.Background(), clawops.Triage, agents.Event{Type: "MANUAL_CHECK", Subject: "demo1-pri"}); err != nil {
		t.Fatal(err)
	}
	e.idle()
	e.verify()
	reqs := e.sh.Requests()
	if len(reqs) != 3 {
		t.Fatalf("got %d requests, want 3", len(reqs))
	}
	sys := reqs[0].Request.Messages[0].Content
	for _, want := range []string{"# ClawOps operating rules", "You are Commander", "clawops — ",
		"Hetzner fsn1 had a network incident", "Acting for: omar (operator)", "You may reach: guardian, ledger, triage, forge, briefer"} {
		if !strings.Contains(sys, want) {
			t.Errorf("system prompt lacks %q", want)
		}
	}
	if u := reqs[0].Request.User; !strings.HasPrefix(u, "commander:") || strings.Contains(u, "omar") {
		t.Errorf("user field: got %q, want the agent and no identity", u)
	}
	// The second run replays the first exchange.
	var texts []string
	for _, m := range reqs[1].Request.Messages[1:] {
		texts = append(texts, m.Role+":"+m.Content)
	}
	if want := []string{"user:first question", "assistant:first", "user:second question"}; !slices.Equal(texts, want) {
		t.Errorf("second request messages: got %q, want %q", texts, want)
	}
	cmd, tri := reqs[0].ToolsOffered(), reqs[2].ToolsOffered()
	for _, want := range []string{agents.ToolTeardown, agents.ToolProvision, agents.ToolSendMessage, agents.ToolHeal,
		agents.ToolSessionsSpawn, agents.ToolSkillRead, agents.ToolMemoryNote} {
		if !slices.Contains(cmd, want) {
			t.Errorf("commander is not offered %s (offered %v)", want, cmd)
		}
	}
	for _, not := range []string{agents.ToolRestart, agents.ToolTeardown, agents.ToolSendMessage, agents.ToolConfigPush, agents.ToolProvision} {
		if slices.Contains(tri, not) {
			t.Errorf("triage is offered %s", not)
		}
	}
	// A tool the gate lacks is offered under its name and says it is not wired.
	for _, tool := range reqs[0].Request.Tools {
		if tool.Function.Name == agents.ToolHeal && !strings.HasPrefix(tool.Function.Description, "[not wired") {
			t.Errorf("gf_heal description: got %q", tool.Function.Description)
		}
	}
}

// TestToolResults: results reach the model as JSON, fleet data is marked untrusted and
// secrets in it are redacted; a tool the gate lacks is NOT_IMPLEMENTED; malformed
// arguments are refused before the gate.
func TestToolResults(t *testing.T) {
	raw := `{"instance": "demo1-pri"` // cut short
	script := scripted.Script{Name: "results", Steps: []scripted.Step{
		toolStep("",
			call(agents.ToolInstanceLogs, map[string]any{"instance": "demo2-pri"}),
			call(agents.ToolHeal, map[string]any{"instance": "demo1-pri"}),
			scripted.Call{Name: agents.ToolRestart, RawArgs: &raw},
			call(agents.ToolSkillRead, map[string]any{"name": "clawops"}),
			call(agents.ToolSkillRead, map[string]any{"name": "cost-analysis"})),
		replyStep("", "done"),
	}}
	e := newTeamEnv(t, envOptions{script: &script, skip: []string{agents.ToolHeal}})
	reply := e.say(omar, "look at demo2")
	e.verify()
	reqs := e.sh.Requests()
	results := reqs[1].ToolResults()
	if len(results) != 5 {
		t.Fatalf("got %d tool results, want 5", len(results))
	}
	logs := results[0].Content
	if !strings.Contains(logs, `"untrusted_data":true`) || strings.Contains(logs, "sk-live-abcdefghijklmnopqrstuvwxyz123456") {
		t.Errorf("logs result: got %s", logs)
	}
	if !strings.Contains(results[1].Content, `"reason":"NOT_IMPLEMENTED"`) {
		t.Errorf("gf_heal result: got %s", results[1].Content)
	}
	if !strings.Contains(results[2].Content, `"reason":"BAD_ARGUMENTS"`) {
		t.Errorf("malformed args result: got %s", results[2].Content)
	}
	if !strings.Contains(results[3].Content, `"instructions":`) {
		t.Errorf("skill_read result: got %.200s", results[3].Content)
	}
	if !strings.Contains(results[4].Content, "is not one of your skills") {
		t.Errorf("skill_read of another role's skill: got %.200s", results[4].Content)
	}
	calls := e.rec.takeCalls()
	if calls[2].Decision != clawops.Deny || calls[2].Reason != clawops.ReasonBadArguments {
		t.Errorf("malformed call: got %+v", calls[2])
	}
	if !strings.Contains(reply, "Refused (NOT_IMPLEMENTED): gf_heal by commander — gf_heal is not wired in this gateway yet; nothing ran") {
		t.Errorf("reply does not tell the operator why: %q", reply)
	}
}

// TestCompaction: when the model's client says a request is close to its context window,
// the loop compacts the replayed history; the newest turn stays intact.
func TestCompaction(t *testing.T) {
	long := strings.Repeat("fleet facts ", 400) // ~1,200 tokens per message
	var steps []scripted.Step
	for i := 0; i < 4; i++ {
		steps = append(steps, replyStep("", long))
	}
	steps = append(steps, scripted.Step{When: scripted.Match{SystemContains: "You are Commander"}, Reply: "short"})
	script := scripted.Script{Name: "compaction", Steps: steps}
	e := newTeamEnv(t, envOptions{script: &script, llm: func(o *llm.Options) {
		o.ContextWindow = map[string]int{"scripted-model": 12000}
	}})
	for i := 0; i < 5; i++ {
		e.say(omar, "question "+string(rune('a'+i))+" "+long)
	}
	e.verify()
	reqs := e.sh.Requests()
	last := reqs[len(reqs)-1].Request.Messages
	if !strings.HasPrefix(last[1].Content, llm.SummaryPrefix) {
		t.Errorf("the last request does not start with a summary: %.80q", last[1].Content)
	}
	if got := last[len(last)-1].Content; !strings.HasPrefix(got, "question e ") {
		t.Errorf("the newest message was not kept: %.40q", got)
	}
	if len(last) >= len(reqs[len(reqs)-2].Request.Messages)+2 {
		t.Errorf("history was not shortened: %d messages, before %d", len(last), len(reqs[len(reqs)-2].Request.Messages))
	}
}
