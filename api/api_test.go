package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/channels/web"
	"github.com/gatewayforge/clawops/governance"

	"github.com/gatewayforge/clawops/internal/syncbuf"
)

const (
	adminToken    = "admin-token-0123456789"
	approverToken = "appr-token-0123456789"
	operatorToken = "oper-token-0123456789"
	viewerToken   = "view-token-0123456789"
)

func testTokens(t testing.TB) *TokenStore {
	t.Helper()
	ts := NewTokenStore()
	for _, e := range []struct {
		tok, id string
		role    clawops.HumanRole
	}{{adminToken, "ada", clawops.RoleAdmin}, {approverToken, "bob", clawops.RoleApprover},
		{operatorToken, "olga", clawops.RoleOperator}, {viewerToken, "vic", clawops.RoleViewer}} {
		if err := ts.Add(e.tok, e.id, e.role); err != nil {
			t.Fatal(err)
		}
	}
	return ts
}

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer = syncbuf.Buffer

type fixture struct {
	srv     *httptest.Server
	gate    *fakeGate
	audit   *fakeAudit
	console *web.Console
	logs    *syncBuffer

	mu    sync.Mutex
	chats []clawops.Actor
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{gate: newFakeGate(), audit: &fakeAudit{n: 5}, console: web.New(web.Options{}), logs: &syncBuffer{}}
	cmd := commanderFunc(func(_ context.Context, a clawops.Actor, text string) ([]string, error) {
		f.mu.Lock()
		f.chats = append(f.chats, a)
		f.mu.Unlock()
		switch text {
		case "panic":
			panic("commander exploded")
		case "/huge":
			return nil, clawops.E("commander handle", clawops.KindInvalid, clawops.ReasonMalformedRequest, "message too long")
		}
		return []string{"echo: " + text}, nil
	})
	h := New(Options{Auth: testTokens(t), Gate: f.gate, Audit: f.audit, Commander: cmd, Console: f.console,
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

type response struct {
	Status int
	Header http.Header
	OK     bool            `json:"ok"`
	Data   json.RawMessage `json:"data"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	raw string
}

func (f *fixture) do(t *testing.T, method, path, token, body string, header ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := response{Status: res.StatusCode, Header: res.Header, raw: string(b)}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("%s %s: body %q is not the envelope: %v", method, path, b, err)
		}
		if r.OK == (r.Error != nil) {
			t.Fatalf("%s %s: envelope %s: ok must be true exactly when there is no error", method, path, b)
		}
	}
	return r
}

func TestRoutes(t *testing.T) {
	tests := []struct {
		name         string
		method, path string
		token, body  string
		header       []string
		status       int
		code         string // error code; "" for success
		data         string // expected data JSON when non-empty
	}{
		{name: "healthz", method: "GET", path: "/healthz", status: 200, data: `{"status":"ok"}`},
		{name: "whoami", method: "GET", path: "/v1/whoami", token: viewerToken, status: 200, data: `{"identity":"vic","role":"viewer"}`},
		{name: "chat", method: "POST", path: "/v1/chat", token: operatorToken, body: `{"text":"/status"}`, status: 200, data: `{"replies":["echo: /status"]}`},
		{name: "chat text/plain", method: "POST", path: "/v1/chat", token: operatorToken, body: `{"text":"hi"}`,
			header: []string{"Content-Type", "text/plain;charset=UTF-8"}, status: 200, data: `{"replies":["echo: hi"]}`},
		{name: "chat no content type", method: "POST", path: "/v1/chat", token: operatorToken, body: `{"text":"hi"}`,
			header: []string{"Content-Type", ""}, status: 200},
		{name: "chat malformed", method: "POST", path: "/v1/chat", token: operatorToken, body: `{"text":`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "chat unknown field", method: "POST", path: "/v1/chat", token: operatorToken, body: `{"text":"/status","as":"admin"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "chat trailing data", method: "POST", path: "/v1/chat", token: operatorToken, body: `{"text":"/status"} {"text":"/teardown x"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "chat wrong type", method: "POST", path: "/v1/chat", token: operatorToken, body: `{"text":42}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "chat array", method: "POST", path: "/v1/chat", token: operatorToken, body: `["/status"]`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "chat empty text", method: "POST", path: "/v1/chat", token: operatorToken, body: `{"text":""}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "chat no body", method: "POST", path: "/v1/chat", token: operatorToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "chat form", method: "POST", path: "/v1/chat", token: operatorToken, body: `text=/status`,
			header: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "chat too large", method: "POST", path: "/v1/chat", token: operatorToken, body: `{"text":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, status: 413, code: "BODY_TOO_LARGE"},
		{name: "chat refused by commander", method: "POST", path: "/v1/chat", token: operatorToken, body: `{"text":"/huge"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "chat no token", method: "POST", path: "/v1/chat", body: `{"text":"/status"}`, status: 401, code: "UNAUTHENTICATED"},
		{name: "fleet status", method: "GET", path: "/v1/fleet/status", token: viewerToken, status: 200,
			data: `[{"id":"inst-1","state":"ACTIVE"},{"id":"inst-2","state":"ACTIVE"}]`},
		{name: "approvals all", method: "GET", path: "/v1/approvals", token: viewerToken, status: 200},
		{name: "approvals pending", method: "GET", path: "/v1/approvals?state=pending", token: viewerToken, status: 200},
		{name: "approvals none", method: "GET", path: "/v1/approvals?state=denied", token: viewerToken, status: 200, data: `[]`},
		{name: "approvals bad state", method: "GET", path: "/v1/approvals?state=open", token: viewerToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "approvals empty state", method: "GET", path: "/v1/approvals?state=", token: viewerToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "approval", method: "GET", path: "/v1/approvals/ap-1", token: viewerToken, status: 200},
		{name: "approval unknown", method: "GET", path: "/v1/approvals/ap-404", token: viewerToken, status: 404, code: "APPROVAL_NOT_FOUND"},
		{name: "decide by operator", method: "POST", path: "/v1/approvals/ap-1/decision", token: operatorToken, body: `{"decision":"approve"}`, status: 403, code: "NOT_APPROVER"},
		{name: "decide unknown", method: "POST", path: "/v1/approvals/ap-404/decision", token: approverToken, body: `{"decision":"approve"}`, status: 404, code: "APPROVAL_NOT_FOUND"},
		{name: "decide already decided", method: "POST", path: "/v1/approvals/ap-2/decision", token: approverToken, body: `{"decision":"approve"}`, status: 409, code: "APPROVAL_ALREADY_DECIDED"},
		{name: "decide expired", method: "POST", path: "/v1/approvals/ap-3/decision", token: approverToken, body: `{"decision":"approve"}`, status: 409, code: "APPROVAL_EXPIRED"},
		{name: "decide bad value", method: "POST", path: "/v1/approvals/ap-1/decision", token: approverToken, body: `{"decision":"yes"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "decide missing value", method: "POST", path: "/v1/approvals/ap-1/decision", token: approverToken, body: `{"reason":"ok"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "decide malformed", method: "POST", path: "/v1/approvals/ap-1/decision", token: approverToken, body: `{"decision":"approve",}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "decide long reason", method: "POST", path: "/v1/approvals/ap-1/decision", token: approverToken,
			body: `{"decision":"deny","reason":"` + strings.Repeat("r", MaxReasonLength+1) + `"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "decide no token", method: "POST", path: "/v1/approvals/ap-1/decision", body: `{"decision":"approve"}`, status: 401, code: "UNAUTHENTICATED"},
		{name: "audit", method: "GET", path: "/v1/audit?after=3&limit=10", token: viewerToken, status: 200},
		{name: "audit bad after", method: "GET", path: "/v1/audit?after=x", token: viewerToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "audit negative after", method: "GET", path: "/v1/audit?after=-1", token: viewerToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "audit zero limit", method: "GET", path: "/v1/audit?limit=0", token: viewerToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "audit huge limit", method: "GET", path: "/v1/audit?limit=1001", token: viewerToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "audit float limit", method: "GET", path: "/v1/audit?limit=1.5", token: viewerToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "audit verify", method: "GET", path: "/v1/audit/verify", token: viewerToken, status: 200, data: `{"ok":true,"entries":5}`},
		{name: "messages", method: "GET", path: "/v1/messages?after=0", token: viewerToken, status: 200, data: `{"messages":[],"next":0}`},
		{name: "messages bad after", method: "GET", path: "/v1/messages?after=abc", token: viewerToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "messages bad limit", method: "GET", path: "/v1/messages?limit=100000", token: viewerToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "unknown route", method: "GET", path: "/v1/nope", token: adminToken, status: 404, code: "NOT_FOUND"},
		{name: "wrong method", method: "POST", path: "/v1/fleet/status", token: adminToken, body: `{}`, status: 405, code: "METHOD_NOT_ALLOWED"},
		{name: "wrong method decision", method: "GET", path: "/v1/approvals/ap-1/decision", token: adminToken, status: 405, code: "METHOD_NOT_ALLOWED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			r := f.do(t, tt.method, tt.path, tt.token, tt.body, tt.header...)
			if r.Status != tt.status {
				t.Fatalf("status: got %d, want %d (body %s)", r.Status, tt.status, r.raw)
			}
			if tt.code != "" {
				if r.Error == nil || r.Error.Code != tt.code {
					t.Fatalf("error: got %s, want code %s", r.raw, tt.code)
				}
				if r.Error.Message == "" {
					t.Errorf("error message is empty")
				}
				return
			}
			if !r.OK {
				t.Fatalf("got %s, want ok", r.raw)
			}
			if tt.data != "" && !jsonEqual(t, tt.data, string(r.Data)) {
				t.Errorf("data: got %s, want %s", r.Data, tt.data)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatal(err)
	}
	return cmp.Equal(x, y)
}

func TestAuthentication(t *testing.T) {
	f := newFixture(t)
	for _, h := range []struct{ name, value string }{
		{"missing", ""},
		{"wrong token", "Bearer not-a-real-token-000000"},
		{"wrong scheme", "Basic " + adminToken},
		{"bare token", adminToken},
		{"empty bearer", "Bearer "},
		{"token prefix", "Bearer " + adminToken[:len(adminToken)-1]},
	} {
		t.Run(h.name, func(t *testing.T) {
			r := f.do(t, "GET", "/v1/fleet/status", "", "", "Authorization", h.value)
			if r.Status != 401 || r.Error == nil || r.Error.Code != "UNAUTHENTICATED" {
				t.Fatalf("got %d %s, want 401 UNAUTHENTICATED", r.Status, r.raw)
			}
			if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate: got %q", r.Header.Get("WWW-Authenticate"))
			}
		})
	}
	if n := len(f.gate.calls); n != 0 {
		t.Errorf("gate calls without a valid token: got %d, want 0", n)
	}
	if r := f.do(t, "GET", "/v1/whoami", "", "", "Authorization", "bearer "+adminToken); r.Status != 200 {
		t.Errorf("lower-case scheme: got %d, want 200", r.Status)
	}
}

func TestTokenStore(t *testing.T) {
	ts := NewTokenStore()
	if err := ts.Add("short", "a", clawops.RoleAdmin); err == nil {
		t.Error("short token: got nil error")
	}
	if err := ts.Add(adminToken, "", clawops.RoleAdmin); err == nil {
		t.Error("no identity: got nil error")
	}
	if err := ts.Add(adminToken, "ada", "root"); err == nil {
		t.Error("bad role: got nil error")
	}
	if err := ts.Add(adminToken, "ada", clawops.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := ts.Add(adminToken, "eve", clawops.RoleViewer); err == nil {
		t.Error("same token twice: got nil error")
	}
	if a, ok := ts.Authenticate(adminToken); !ok || a != (clawops.Actor{Identity: "ada", Role: clawops.RoleAdmin}) {
		t.Errorf("Authenticate: got %+v %v", a, ok)
	}
	for _, bad := range []string{"", adminToken + "x", strings.ToUpper(adminToken)} {
		if _, ok := ts.Authenticate(bad); ok {
			t.Errorf("Authenticate(%q): got ok", bad)
		}
	}
}

func TestCallerIsTheActor(t *testing.T) {
	f := newFixture(t)
	f.do(t, "GET", "/v1/fleet/status", operatorToken, "")
	want := []invokeCall{{clawops.Actor{Identity: "olga", Role: clawops.RoleOperator, Channel: "api"}, "gf_fleet_status", `{}`}}
	if diff := cmp.Diff(want, f.gate.calls); diff != "" {
		t.Errorf("gate calls (-want +got):\n%s", diff)
	}
	f.do(t, "POST", "/v1/chat", adminToken, `{"text":"/status"}`)
	if want := (clawops.Actor{Identity: "ada", Role: clawops.RoleAdmin, Channel: "web"}); len(f.chats) != 1 || f.chats[0] != want {
		t.Errorf("commander actors: got %+v, want [%+v]", f.chats, want)
	}
	f.do(t, "GET", "/v1/approvals", viewerToken, "")
	f.do(t, "GET", "/v1/approvals?state=pending", viewerToken, "")
	if want := []governance.ApprovalState{"", "pending"}; !cmp.Equal(f.gate.states, want) {
		t.Errorf("ListApprovals states: got %q, want %q", f.gate.states, want)
	}
}

func TestDecisions(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "POST", "/v1/approvals/ap-1/decision", operatorToken, `{"decision":"approve"}`)
	if r.Status != 403 || r.Error.Code != "NOT_APPROVER" {
		t.Fatalf("operator approves: got %d %s, want 403 NOT_APPROVER", r.Status, r.raw)
	}
	r = f.do(t, "POST", "/v1/approvals/ap-1/decision", approverToken, `{"decision":"approve","reason":"checked"}`)
	if r.Status != 200 {
		t.Fatalf("approver approves: got %d %s", r.Status, r.raw)
	}
	var out governance.Outcome
	if err := json.Unmarshal(r.Data, &out); err != nil {
		t.Fatal(err)
	}
	if out.Decision != clawops.Allow || out.Result == nil || out.Result.Summary != "Tear down inst-2: done" {
		t.Errorf("outcome: got %+v", out)
	}
	r = f.do(t, "POST", "/v1/approvals/ap-1/decision", approverToken, `{"decision":"approve"}`)
	if r.Status != 409 || r.Error.Code != "APPROVAL_ALREADY_DECIDED" {
		t.Errorf("second approve: got %d %s, want 409", r.Status, r.raw)
	}

	// The requester cannot decide their own request.
	f.gate.add(governance.Approval{ID: "ap-9", Tool: "gf_teardown", Requester: clawops.Actor{Identity: "bob", Role: clawops.RoleApprover},
		State: governance.ApprovalPending, ExpiresAt: t0.Add(time.Hour)})
	r = f.do(t, "POST", "/v1/approvals/ap-9/decision", approverToken, `{"decision":"approve"}`)
	if r.Status != 403 || r.Error.Code != "SELF_APPROVAL" {
		t.Errorf("self approval: got %d %s, want 403 SELF_APPROVAL", r.Status, r.raw)
	}
	r = f.do(t, "POST", "/v1/approvals/ap-9/decision", adminToken, `{"decision":"deny","reason":"no"}`)
	if r.Status != 200 || !r.OK {
		t.Errorf("deny: got %d %s, want 200", r.Status, r.raw)
	}
	if a := f.gate.approvals["ap-9"]; a.State != governance.ApprovalDenied || a.Reason != "no" || a.DecidedBy != "ada" {
		t.Errorf("ap-9 after deny: got %+v", a)
	}
}

func TestGateErrorsMapToStatus(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		message string
		status  int
		code    string
		msg     string
	}{
		{"denied", clawops.E("invoke", clawops.KindDenied, clawops.ReasonRoleNotPermitted, "viewer"), "a viewer may only read", 403, "ROLE_NOT_PERMITTED", "a viewer may only read"},
		{"invalid", clawops.E("invoke", clawops.KindInvalid, clawops.ReasonBadArguments, "bad"), "", 400, "BAD_ARGUMENTS", "bad"},
		{"not found", clawops.E("invoke", clawops.KindNotFound, clawops.ReasonUnknownTool), "", 404, "UNKNOWN_TOOL", "unknown tool"},
		{"transient", clawops.E("invoke", clawops.KindTransient, clawops.ReasonNodeOffline, "node down"), "", 503, "NODE_OFFLINE", "node down"},
		{"needs approval", clawops.E("invoke", clawops.KindNeedsApproval, clawops.ReasonTooManyUsers, "12 users"), "", 202, "TOO_MANY_USERS", "12 users"},
		{"unauthorized", clawops.E("invoke", clawops.KindUnauthorized, clawops.ReasonUnauthenticated), "", 401, "UNAUTHENTICATED", "unauthenticated"},
		{"failed", clawops.E("apply", clawops.ReasonExecutionFailed, "exit 1"), "", 500, "EXECUTION_FAILED", "exit 1"},
		{"internal with code", clawops.E("governance.Decide", clawops.ReasonInternal, errors.New("database /var/lib/x.db is locked")), "", 500, "INTERNAL", "internal error"},
		{"internal", errors.New("pq: password authentication failed for user clawops"), "", 500, "INTERNAL", "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.gate.invokeFn = func(clawops.Actor, string, json.RawMessage) (governance.Outcome, error) {
				return governance.Outcome{Decision: clawops.Deny, Reason: clawops.ReasonOf(tt.err), Message: tt.message}, tt.err
			}
			r := f.do(t, "GET", "/v1/fleet/status", adminToken, "")
			if r.Status != tt.status || r.Error == nil || r.Error.Code != tt.code || r.Error.Message != tt.msg {
				t.Errorf("got %d %s, want %d %s %q", r.Status, r.raw, tt.status, tt.code, tt.msg)
			}
		})
	}
}

func TestFleetStatusNeedsApproval(t *testing.T) {
	f := newFixture(t)
	f.gate.invokeFn = func(clawops.Actor, string, json.RawMessage) (governance.Outcome, error) {
		return governance.Outcome{Decision: clawops.NeedsApproval, ApprovalID: "ap-77", Tool: "gf_fleet_status"}, nil
	}
	r := f.do(t, "GET", "/v1/fleet/status", adminToken, "")
	if r.Status != 202 || !strings.Contains(string(r.Data), `"approval_id":"ap-77"`) {
		t.Errorf("got %d %s, want 202 with the approval id", r.Status, r.raw)
	}
}

func TestPanicRecovered(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "POST", "/v1/chat", adminToken, `{"text":"panic"}`)
	if r.Status != 500 || r.Error == nil || r.Error.Code != "INTERNAL" {
		t.Fatalf("got %d %s, want 500 INTERNAL", r.Status, r.raw)
	}
	if strings.Contains(r.raw, "exploded") {
		t.Errorf("panic value leaked to the client: %s", r.raw)
	}
	if r := f.do(t, "GET", "/healthz", "", ""); r.Status != 200 {
		t.Errorf("after panic: healthz got %d", r.Status)
	}
	if !strings.Contains(f.logs.String(), "commander exploded") {
		t.Errorf("panic not logged")
	}
}

func TestLogsNameIdentityNeverToken(t *testing.T) {
	f := newFixture(t)
	f.audit.failing = true
	f.do(t, "GET", "/v1/fleet/status", adminToken, "")
	f.do(t, "GET", "/v1/audit", viewerToken, "")
	f.do(t, "GET", "/v1/fleet/status", "", "", "Authorization", "Bearer wrong-token-but-still-a-secret")
	logs := f.logs.String()
	for _, secret := range []string{adminToken, viewerToken, "wrong-token-but-still-a-secret"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains token %q:\n%s", secret, logs)
		}
	}
	for _, want := range []string{"identity=ada", "path=/v1/fleet/status", "status=200", "status=401", "status=500", "method=GET", "duration=", "disk I/O error"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log does not contain %q:\n%s", want, logs)
		}
	}
}

func TestConsoleMounted(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, "GET", "/", "", "")
	if r.Status != 200 || !strings.Contains(r.raw, "ClawOps console") {
		t.Errorf("page: got %d", r.Status)
	}
	if r := f.do(t, "GET", "/console/app.js", "", ""); r.Status != 200 {
		t.Errorf("app.js: got %d", r.Status)
	}
	if r := f.do(t, "GET", "/v1/messages", "", ""); r.Status != 401 {
		t.Errorf("messages without token: got %d, want 401", r.Status)
	}
	// Without a console: no page, no outbox.
	h := New(Options{Auth: testTokens(t), Gate: f.gate, Audit: f.audit, Commander: commanderFunc(nil)})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 404 {
		t.Errorf("no console: GET / got %d, want 404", rec.Code)
	}
}

func TestNewPanicsWithoutParts(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("got no panic, want one")
		}
	}()
	New(Options{})
}

func BenchmarkAuthenticate(b *testing.B) {
	ts := testTokens(b)
	for b.Loop() {
		if _, ok := ts.Authenticate(viewerToken); !ok {
			b.Fatal("not authenticated")
		}
	}
}
