package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents"
	"github.com/gatewayforge/clawops/channels/web"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/store"
)

type fixedClock struct{}

func (fixedClock) Now() time.Time { return t0 }

// stack is the API wired as main wires it: the real Commander on a real SQLite file, the
// real web console, and the in-memory gate.
type stack struct {
	fixture
	cmd *agents.Commander
}

func newStack(t *testing.T) *stack {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	if err := agents.Migrate(db); err != nil {
		t.Fatal(err)
	}
	s := &stack{fixture: fixture{gate: newFakeGate(), audit: &fakeAudit{n: 3}, console: web.New(web.Options{}), logs: &syncBuffer{}}}
	s.cmd, err = agents.NewCommander(agents.CommanderOptions{Gate: s.gate, DB: db, Clock: fixedClock{}})
	if err != nil {
		t.Fatal(err)
	}
	h := New(Options{Auth: testTokens(t), Gate: s.gate, Audit: s.audit, Commander: s.cmd, Console: s.console,
		Logger: slog.New(slog.NewTextHandler(s.logs, nil))})
	s.srv = httptest.NewServer(h)
	t.Cleanup(s.srv.Close)
	return s
}

func jsonUnmarshal(data []byte, v any) bool { return json.Unmarshal(data, v) == nil }

func replies(t *testing.T, r response) []string {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("chat: got %d %s", r.Status, r.raw)
	}
	var body chatResponse
	if !jsonUnmarshal(r.Data, &body) {
		t.Fatalf("chat: data %s", r.Data)
	}
	return body.Replies
}

func TestChatApprovalRoundTrip(t *testing.T) {
	s := newStack(t)
	got := replies(t, s.do(t, "POST", "/v1/chat", operatorToken, `{"text":"/teardown inst-5"}`))
	want := "Approval ap-4 requested: Tear down inst-5, risk high, expires 2026-11-23 09:30 UTC; an approver must decide"
	if len(got) != 1 || got[0] != want {
		t.Fatalf("teardown reply: got %q, want %q", got, want)
	}
	r := s.do(t, "GET", "/v1/approvals?state=pending", approverToken, "")
	var pending []governance.Approval
	if !jsonUnmarshal(r.Data, &pending) || len(pending) == 0 || pending[0].ID != "ap-4" {
		t.Fatalf("pending approvals: got %s", r.raw)
	}
	if pending[0].Requester.Identity != "olga" || pending[0].Requester.Agent != clawops.Commander {
		t.Errorf("requester: got %+v, want olga via commander", pending[0].Requester)
	}
	if got := replies(t, s.do(t, "POST", "/v1/chat", operatorToken, `{"text":"/approve ap-4"}`)); got[0] != "Denied (NOT_APPROVER): olga may not approve" {
		t.Errorf("operator approves in chat: got %q", got)
	}
	if got := replies(t, s.do(t, "POST", "/v1/chat", approverToken, `{"text":"/approve ap-4 checked"}`)); got[0] != "Approval ap-4 approved and executed: Tear down inst-5: done" {
		t.Errorf("approver approves in chat: got %q", got)
	}
	r = s.do(t, "POST", "/v1/approvals/ap-4/decision", adminToken, `{"decision":"approve"}`)
	if r.Status != 409 || r.Error.Code != "APPROVAL_ALREADY_DECIDED" {
		t.Errorf("approve again over HTTP: got %d %s, want 409", r.Status, r.raw)
	}

	hist, err := s.cmd.History(context.Background(), "web", "olga", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 4 || hist[0].Text != "/teardown inst-5" || hist[1].Text != want {
		t.Errorf("olga's history: got %+v", hist)
	}

	// Notifications reach only their identity; cards reach everyone.
	if err := s.console.Send(context.Background(), "olga", "inst-5 is gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.console.PostCard(context.Background(), governance.Card{ApprovalID: "ap-4", State: governance.ApprovalExecuted}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		token string
		want  []string
	}{{operatorToken, []string{"text", "card"}}, {approverToken, []string{"card"}}} {
		var b web.Batch
		if r := s.do(t, "GET", "/v1/messages?after=0", tt.token, ""); !jsonUnmarshal(r.Data, &b) {
			t.Fatalf("messages: %s", r.raw)
		}
		var kinds []string
		for _, m := range b.Messages {
			kinds = append(kinds, m.Kind)
		}
		if strings.Join(kinds, ",") != strings.Join(tt.want, ",") {
			t.Errorf("messages kinds: got %v, want %v", kinds, tt.want)
		}
	}
}
