package agents_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents"
	"github.com/gatewayforge/clawops/agents/scripted"
)

func send(agent string, msg map[string]any) scripted.Call {
	return call(agents.ToolSessionsSend, map[string]any{"agent": agent, "message": msg})
}

// TestPingPong: sessions_send runs the target and returns its reply; REPLY_SKIP ends the
// exchange; more than MaxPingPongTurns exchanges with one session in a run are refused.
func TestPingPong(t *testing.T) {
	script := scripted.Script{Name: "pingpong", Steps: []scripted.Step{
		toolStep("", send("guardian", map[string]any{"ask": "status", "n": 1})),
		replyStep(clawops.Guardian, `{"healthy":5}`),
		{When: scripted.Match{LastToolContains: `"healthy":5`}, ToolCalls: []scripted.Call{send("guardian", map[string]any{"ask": "more", "n": 2})}},
		replyStep(clawops.Guardian, "REPLY_SKIP"),
		{When: scripted.Match{LastToolContains: `"status":"ended"`}, ToolCalls: []scripted.Call{send("guardian", map[string]any{"ask": "again", "n": 3})}},
		{When: scripted.Match{LastToolContains: "EXCHANGE_ENDED"}, ToolCalls: []scripted.Call{send("ledger", map[string]any{"n": 4})}},
		replyStep(clawops.Ledger, `{"a":1}`),
		toolStep("", send("ledger", map[string]any{"n": 5})),
		replyStep(clawops.Ledger, `{"a":2}`),
		toolStep("", send("ledger", map[string]any{"n": 6})),
		{When: scripted.Match{LastToolContains: "PINGPONG_LIMIT"}, Reply: "enough"},
	}}
	e := newTeamEnv(t, envOptions{script: &script, team: func(o *agents.TeamOptions) { o.Limits.MaxPingPongTurns = 2 }})
	reply := e.say(omar, "check")
	e.verify()
	if !strings.HasPrefix(reply, "enough") {
		t.Errorf("reply: got %q", reply)
	}
	var reasons []string
	for _, c := range e.rec.takeCalls() {
		if c.Tool == agents.ToolSessionsSend {
			reasons = append(reasons, string(c.Decision)+"/"+string(c.Reason))
		}
	}
	want := "allow/,allow/,deny/EXCHANGE_ENDED,allow/,allow/,deny/PINGPONG_LIMIT"
	if got := strings.Join(reasons, ","); got != want {
		t.Errorf("sessions_send outcomes: got %s, want %s", got, want)
	}
	// What the agents sent each other is JSON.
	for _, r := range e.sh.Requests() {
		if r.Agent == clawops.Guardian {
			var env map[string]any
			if err := json.Unmarshal([]byte(r.LastUser()), &env); err != nil || env["type"] != "message" || env["from"] != "commander" {
				t.Errorf("guardian got %q (%v)", r.LastUser(), err)
			}
		}
	}
}

// TestDelegationBounds: who may reach whom, how deep, and that a request up to the
// Commander keeps the asker's autonomy.
func TestDelegationBounds(t *testing.T) {
	script := scripted.Script{Name: "bounds", Steps: []scripted.Step{
		toolStep("", call(agents.ToolSessionsSpawn, map[string]any{"agent": "triage", "task": map[string]any{"instance": "demo1-pri"}})),
		toolStep(clawops.Triage,
			call(agents.ToolSessionsSpawn, map[string]any{"agent": "forge", "task": "provision", "payload": map[string]any{"count": 1}}),
			send("commander", map[string]any{"please": "restart demo1-pri"})),
		{Agent: clawops.Commander, When: scripted.Match{LastUserContains: "restart demo1-pri"},
			ToolCalls: []scripted.Call{call(agents.ToolRestart, map[string]any{"instance": "demo1-pri"})}},
		replyStep(clawops.Commander, `{"restarted":false}`),
		replyStep(clawops.Triage, `{"done":true}`),
		toolStep("",
			call(agents.ToolSessionsSend, map[string]any{"agent": "guardian", "session": "guardian::agent:guardian", "message": map[string]any{}}),
			call(agents.ToolSessionsSend, map[string]any{"session": "commander:telegram:omar", "message": map[string]any{"x": 1}}),
			call(agents.ToolSessionsSpawn, map[string]any{"agent": "janitor", "task": "sweep"}),
			call(agents.ToolSessionsSpawn, map[string]any{"agent": "forge"})),
		replyStep("", "ok"),
	}}
	e := newTeamEnv(t, envOptions{script: &script})
	e.say(omar, "go")
	e.idle()
	e.verify()
	got := map[string]string{}
	var order []string
	for _, c := range e.rec.takeCalls() {
		k := string(c.Agent) + " " + c.Tool
		order = append(order, k)
		got[k] += string(c.Decision) + "/" + string(c.Reason) + " "
	}
	want := map[string]string{
		"commander sessions_spawn": "allow/ deny/BAD_ARGUMENTS deny/BAD_ARGUMENTS ",
		"triage sessions_spawn":    "deny/PEER_NOT_ALLOWED ",
		"triage sessions_send":     "allow/ ",
		// The Commander, asked by Triage, acts with Triage's autonomy: read only.
		"commander gf_restart":    "deny/ROLE_NOT_PERMITTED ",
		"commander sessions_send": "deny/BAD_ARGUMENTS deny/SESSION_NOT_VISIBLE ",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %q, want %q (calls %v)", k, got[k], w, order)
		}
	}
}

func TestDepthLimit(t *testing.T) {
	script := scripted.Script{Name: "depth", Steps: []scripted.Step{
		toolStep("", send("guardian", map[string]any{"n": 1})),
		toolStep(clawops.Guardian, send("triage", map[string]any{"n": 2})),
		replyStep(clawops.Guardian, `{"n":1}`),
		replyStep("", "done"),
	}}
	e := newTeamEnv(t, envOptions{script: &script, team: func(o *agents.TeamOptions) { o.Limits.MaxDepth = 1 }})
	e.say(omar, "go")
	e.verify()
	for _, r := range e.sh.Requests() {
		if r.Agent == clawops.Guardian {
			for _, name := range r.ToolsOffered() {
				if name == agents.ToolSessionsSend {
					t.Errorf("at the depth limit the guardian is still offered sessions_send")
				}
			}
		}
	}
	calls := e.rec.takeCalls()
	if len(calls) != 2 || calls[0].Agent != clawops.Guardian || calls[0].Reason != agents.ReasonDepthLimit {
		t.Errorf("calls: got %+v, want the guardian's send refused with DELEGATION_DEPTH", calls)
	}
}

// TestSpawnAnnouncedLate: a spawned task that outlasts SpawnWait is announced to the
// session that spawned it, and the Commander's answer reaches the operator as a late reply.
func TestSpawnAnnouncedLate(t *testing.T) {
	release := make(chan struct{})
	script := scripted.Script{Name: "late", Steps: []scripted.Step{
		toolStep("", call(agents.ToolSessionsSpawn, map[string]any{"agent": "forge", "task": map[string]any{"count": 2, "tier": "standard"}})),
		{When: scripted.Match{LastToolContains: `"status":"accepted"`}, Reply: "Spawning Forge. I'll ping you."},
		toolStep(clawops.Forge, call(agents.ToolProvision, map[string]any{"count": 2, "tier": "standard"})),
		replyStep(clawops.Forge, `{"status":"provisioning","pairs":2}`),
		{When: scripted.Match{LastUserContains: `"type":"spawn_result"`}, Reply: "Forge started 2 pairs."},
	}}
	e := newTeamEnv(t, envOptions{script: &script,
		team: func(o *agents.TeamOptions) { o.Limits.SpawnWait = time.Millisecond },
		handler: func(h *scripted.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if bytes.Contains(body, []byte(`"user":"forge:`)) {
					<-release // Forge is slow
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
				h.ServeHTTP(w, r)
			})
		}})
	if got := e.say(omar, "provision two"); got != "Spawning Forge. I'll ping you." {
		t.Errorf("first reply: got %q", got)
	}
	close(release)
	e.idle()
	e.verify()
	notices := e.rec.takeNotices()
	if len(notices) != 1 || notices[0].Kind != "reply" || notices[0].To != "omar" || notices[0].Channel != "telegram" {
		t.Fatalf("notices: got %+v, want one late reply to omar on telegram", notices)
	}
	if !strings.HasPrefix(notices[0].Text, "Forge started 2 pairs.") {
		t.Errorf("late reply: got %q", notices[0].Text)
	}
	hist, err := e.team.Commander().History(t.Context(), "telegram", "omar", 10)
	if err != nil || len(hist) != 3 || hist[2].Text != notices[0].Text {
		t.Errorf("history: got %+v (%v), want the late reply recorded", hist, err)
	}
}

// TestSessionsListAndHistory: an agent sees its own and its peers' agent sessions; only
// the Commander sees a person's conversation.
func TestSessionsListAndHistory(t *testing.T) {
	script := scripted.Script{Name: "sessions", Steps: []scripted.Step{
		replyStep("", "hello omar"),
		toolStep(clawops.Ledger,
			call(agents.ToolSessionsList, nil),
			call(agents.ToolSessionsHistory, map[string]any{"session": "commander:telegram:omar"}),
			call(agents.ToolSessionsHistory, map[string]any{"session": "not a key"})),
		replyStep(clawops.Ledger, `{}`),
		toolStep("", call(agents.ToolSessionsList, nil), call(agents.ToolSessionsHistory, map[string]any{"session": "commander:telegram:omar", "limit": 1})),
		replyStep("", "listed"),
	}}
	e := newTeamEnv(t, envOptions{script: &script})
	e.say(omar, "hi")
	if err := e.team.EventTo(t.Context(), clawops.Ledger, agents.Event{Type: "CHECK"}); err != nil {
		t.Fatal(err)
	}
	e.idle()
	e.say(omar, "list")
	e.verify()
	var ledger, commander []scripted.ToolResult
	for _, r := range e.sh.Requests() {
		if len(r.ToolResults()) == 0 {
			continue
		}
		if r.Agent == clawops.Ledger {
			ledger = r.ToolResults()
		} else {
			commander = r.ToolResults()
		}
	}
	if len(ledger) != 3 || len(commander) != 2 {
		t.Fatalf("tool results: ledger %d, commander %d", len(ledger), len(commander))
	}
	if strings.Contains(ledger[0].Content, "commander:telegram:omar") || !strings.Contains(ledger[0].Content, "ledger::agent:ledger") {
		t.Errorf("ledger's list: got %s", ledger[0].Content)
	}
	if !strings.Contains(ledger[1].Content, "SESSION_NOT_VISIBLE") || !strings.Contains(ledger[2].Content, "UNKNOWN_SESSION") {
		t.Errorf("ledger's history reads: got %s / %s", ledger[1].Content, ledger[2].Content)
	}
	if !strings.Contains(commander[0].Content, "commander:telegram:omar") || !strings.Contains(commander[1].Content, "list") {
		t.Errorf("commander's list/history: got %s / %s", commander[0].Content, commander[1].Content)
	}
}
