package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents"
	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/channels/web"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/store"
)

// The contracts this room codes against, checked against the real implementations.
var (
	_ Gate                = (*governance.Gate)(nil)
	_ AuditLog            = (*governance.AuditLog)(nil)
	_ Commander           = (*agents.Commander)(nil)
	_ Console             = (*web.Console)(nil)
	_ agents.Gate         = (*governance.Gate)(nil)
	_ channels.Handler    = (*agents.Commander)(nil)
	_ governance.Notifier = (*channels.Notifier)(nil)
)

// testTool is a governed tool over a fixed two-instance fleet that records its applies.
type testTool struct {
	spec governance.ToolSpec
	mu   sync.Mutex
	runs []string
}

func (t *testTool) Spec() governance.ToolSpec { return t.spec }

func (t *testTool) Plan(_ context.Context, _ clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	if t.spec.Action == governance.ActionRead {
		return governance.Plan{Summary: "read the fleet", Reversible: true}, nil
	}
	var a struct {
		Instance string `json:"instance"`
	}
	dec := json.NewDecoder(strings.NewReader(string(args)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil || !regexp.MustCompile(`^inst-[0-9]+$`).MatchString(a.Instance) {
		return governance.Plan{}, clawops.E("plan", clawops.KindInvalid, clawops.ReasonBadArguments, "instance must look like inst-N")
	}
	if a.Instance != "inst-1" && a.Instance != "inst-2" {
		return governance.Plan{}, clawops.E("plan", clawops.KindNotFound, clawops.ReasonUnknownInstance, "no instance "+a.Instance)
	}
	return governance.Plan{
		Summary:        "Tear down " + a.Instance,
		Targets:        []governance.Target{{Instance: clawops.InstanceID(a.Instance), Role: "standby", State: "ACTIVE", PeerState: "ACTIVE", Users: 1}},
		UsersAffected:  1,
		ProviderDelete: true,
		Effects:        []governance.Effect{{Kind: "provider.delete", Target: a.Instance}},
	}, nil
}

func (t *testTool) Apply(_ context.Context, p governance.Plan) (governance.Result, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.runs = append(t.runs, p.Summary)
	if t.spec.Action == governance.ActionRead {
		return governance.Result{Summary: "2 instances: 2 ACTIVE", Data: json.RawMessage(`[{"id":"inst-1"},{"id":"inst-2"}]`)}, nil
	}
	return governance.Result{Summary: p.Summary + ": done"}, nil
}

func (t *testTool) applied() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.runs...)
}

// TestWithRealGate wires the API as main does, around the real gate on SQLite: chat,
// approval cards reaching the console through the notifier, decisions, audit.
func TestWithRealGate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	if err := governance.Migrate(db); err != nil {
		t.Fatal(err)
	}
	if err := agents.Migrate(db); err != nil {
		t.Fatal(err)
	}
	console := web.New(web.Options{})
	notifier := channels.NewNotifier(channels.NotifierOptions{Channels: []channels.Channel{console}})
	go notifier.Run(ctx)
	gate, err := governance.NewGate(governance.GateOptions{DB: db, Notifier: notifier})
	if err != nil {
		t.Fatal(err)
	}
	status := &testTool{spec: governance.ToolSpec{Name: agents.ToolFleetStatus, Description: "fleet status", Action: governance.ActionRead,
		Risk: clawops.RiskLow, Schema: json.RawMessage(`{"type":"object","additionalProperties":false}`)}}
	teardown := &testTool{spec: governance.ToolSpec{Name: agents.ToolTeardown, Description: "tear down", Action: governance.ActionTeardown,
		Risk: clawops.RiskHigh, Schema: json.RawMessage(`{"type":"object","properties":{"instance":{"type":"string"}},"required":["instance"],"additionalProperties":false}`)}}
	gate.Register(status)
	gate.Register(teardown)
	cmd, err := agents.NewCommander(agents.CommanderOptions{Gate: gate, DB: db})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{logs: &syncBuffer{}}
	f.srv = httptest.NewServer(New(Options{Auth: testTokens(t), Gate: gate, Audit: gate.Audit(), Commander: cmd, Console: console,
		Logger: slog.New(slog.NewTextHandler(f.logs, nil))}))
	t.Cleanup(f.srv.Close)

	if r := f.do(t, "GET", "/v1/fleet/status", viewerToken, ""); r.Status != 200 || string(r.Data) != `[{"id":"inst-1"},{"id":"inst-2"}]` {
		t.Errorf("fleet status: got %d %s", r.Status, r.raw)
	}
	if got := replies(t, f.do(t, "POST", "/v1/chat", operatorToken, `{"text":"/teardown inst-9"}`)); !strings.HasPrefix(got[0], "Not found (UNKNOWN_INSTANCE)") {
		t.Errorf("unknown instance: got %q", got)
	}
	got := replies(t, f.do(t, "POST", "/v1/chat", operatorToken, `{"text":"/teardown inst-2"}`))
	m := regexp.MustCompile(`^Approval (\S+) requested: Tear down inst-2, risk high, expires \d{4}-\d\d-\d\d \d\d:\d\d UTC; an approver must decide$`).FindStringSubmatch(got[0])
	if m == nil {
		t.Fatalf("teardown reply: got %q", got)
	}
	id := m[1]
	t.Logf("reply: %s", got[0])
	t.Logf("approvals: %s", replies(t, f.do(t, "POST", "/v1/chat", approverToken, `{"text":"/approvals"}`))[0])
	if r := f.do(t, "GET", "/v1/approvals/"+id, viewerToken, ""); r.Status != 200 {
		t.Fatalf("approval: got %d %s", r.Status, r.raw)
	}
	r := f.do(t, "POST", "/v1/approvals/"+id+"/decision", operatorToken, `{"decision":"approve"}`)
	if r.Status != 403 || r.Error.Code != "NOT_APPROVER" && r.Error.Code != "SELF_APPROVAL" {
		t.Errorf("requester approves: got %d %s, want 403", r.Status, r.raw)
	}
	if r := f.do(t, "GET", "/v1/approvals/nope/decision", adminToken, ""); r.Status != 405 {
		t.Errorf("GET decision: got %d", r.Status)
	}
	if r := f.do(t, "POST", "/v1/approvals/nope/decision", adminToken, `{"decision":"approve"}`); r.Status != 404 || r.Error.Code != "APPROVAL_NOT_FOUND" {
		t.Errorf("unknown approval: got %d %s", r.Status, r.raw)
	}
	if len(teardown.applied()) != 0 {
		t.Fatalf("teardown ran before approval: %v", teardown.applied())
	}
	r = f.do(t, "POST", "/v1/approvals/"+id+"/decision", approverToken, `{"decision":"approve","reason":"standby only"}`)
	if r.Status != 200 {
		t.Fatalf("approve: got %d %s", r.Status, r.raw)
	}
	if got := teardown.applied(); len(got) != 1 {
		t.Errorf("teardown applies: got %v, want exactly one", got)
	}
	r = f.do(t, "POST", "/v1/approvals/"+id+"/decision", adminToken, `{"decision":"deny"}`)
	if r.Status != 409 || r.Error.Code != "APPROVAL_ALREADY_DECIDED" {
		t.Errorf("decide again: got %d %s, want 409 APPROVAL_ALREADY_DECIDED", r.Status, r.raw)
	}

	// The notifier brought the card to every console viewer, in order.
	deadline := time.Now().Add(20 * time.Second)
	var states []string
	for {
		var b web.Batch
		if r := f.do(t, "GET", "/v1/messages", viewerToken, ""); !jsonUnmarshal(r.Data, &b) {
			t.Fatalf("messages: %s", r.raw)
		}
		states = states[:0]
		for _, m := range b.Messages {
			if m.Card != nil && m.Card.ApprovalID == id {
				states = append(states, string(m.Card.State))
			}
		}
		if len(states) > 0 && states[len(states)-1] == string(governance.ApprovalExecuted) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(states) == 0 || states[0] != "pending" || states[len(states)-1] != "executed" {
		t.Errorf("card states on the console: got %v, want pending … executed", states)
	}

	r = f.do(t, "GET", "/v1/audit?limit=1000", adminToken, "")
	var entries []governance.AuditEntry
	if !jsonUnmarshal(r.Data, &entries) || len(entries) == 0 {
		t.Fatalf("audit: %s", r.raw)
	}
	var events []string
	for _, e := range entries {
		events = append(events, e.Event)
	}
	if s := strings.Join(events, ","); !strings.Contains(s, "needs_approval") || !strings.Contains(s, "completed") {
		t.Errorf("audit events: got %s", s)
	}
	if r := f.do(t, "GET", fmt.Sprintf("/v1/audit?after=%d", entries[len(entries)-1].Seq), adminToken, ""); string(r.Data) != "[]" {
		t.Errorf("audit after the last: got %s, want []", r.Data)
	}
	r = f.do(t, "GET", "/v1/audit/verify", adminToken, "")
	var rep governance.VerifyReport
	if !jsonUnmarshal(r.Data, &rep) || !rep.OK || rep.Entries != int64(len(entries)) {
		t.Errorf("verify: got %s", r.raw)
	}
	got = replies(t, f.do(t, "POST", "/v1/chat", viewerToken, `{"text":"/teardown inst-1"}`))
	if !strings.HasPrefix(got[0], "Denied (") {
		t.Errorf("viewer teardown: got %q, want a denial", got)
	}
	t.Logf("viewer: %s", got[0])
}
