package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/store"
)

// Base32 TOTP secrets of the two approvers of the real-gate tests (20 bytes each).
const (
	bobSecret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	adaSecret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
)

// stepClock is a clock the test moves by hand: approvals, grants, break-glass and one-time
// codes all follow it, so nothing sleeps.
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// govStack is the API around the real gate on a SQLite file, with a second factor required
// for critical approvals.
type govStack struct {
	fixture
	gate     *governance.Gate
	clock    *stepClock
	teardown *testTool // high risk: one approval, may be widened into a grant
	nuke     *testTool // critical: four eyes and a second factor
}

func newGovStack(t *testing.T) *govStack {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	if err := governance.Migrate(db); err != nil {
		t.Fatal(err)
	}
	clock := &stepClock{now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	verifier, err := governance.NewTOTPVerifier(map[string]string{"bob": bobSecret, "ada": adaSecret}, clock)
	if err != nil {
		t.Fatal(err)
	}
	gate, err := governance.NewGate(governance.GateOptions{DB: db, Clock: clock, Admins: []string{"ada"},
		SecondFactor: verifier, SecondFactorFrom: clawops.RiskCritical})
	if err != nil {
		t.Fatal(err)
	}
	schema := json.RawMessage(`{"type":"object","properties":{"instance":{"type":"string"}},"required":["instance"],"additionalProperties":false}`)
	s := &govStack{gate: gate, clock: clock,
		teardown: &testTool{spec: governance.ToolSpec{Name: "gf_teardown", Description: "tear down", Action: governance.ActionTeardown, Risk: clawops.RiskHigh, Schema: schema}},
		nuke:     &testTool{spec: governance.ToolSpec{Name: "gf_nuke", Description: "delete at the provider", Action: governance.ActionTeardown, Risk: clawops.RiskCritical, Schema: schema}},
	}
	gate.Register(s.teardown)
	gate.Register(s.nuke)
	gate.Register(&testTool{spec: governance.ToolSpec{Name: "gf_fleet_status", Description: "fleet status", Action: governance.ActionRead,
		Risk: clawops.RiskLow, Schema: json.RawMessage(`{"type":"object"}`)}})
	s.logs = &syncBuffer{}
	s.srv = httptest.NewServer(New(Options{Auth: testTokens(t), Gate: gate, Audit: gate.Audit(), Clock: clock,
		Commander: commanderFunc(s.commander),
		Logger:    slog.New(slog.NewTextHandler(s.logs, nil))}))
	t.Cleanup(s.srv.Close)
	return s
}

// commander stands in for the Commander: "teardown inst-N" becomes a gf_teardown call by
// the chatting human through the Commander, with the request's context (so a break-glass
// header reaches the gate); the reply is the outcome's reason.
func (s *govStack) commander(ctx context.Context, a clawops.Actor, text string) ([]string, error) {
	instance, ok := strings.CutPrefix(text, "teardown ")
	if !ok {
		return []string{"unknown command"}, nil
	}
	a.Agent = clawops.Commander
	out, err := s.gate.Invoke(ctx, a, "gf_teardown", json.RawMessage(`{"instance":"`+instance+`"}`))
	if err != nil {
		return nil, err
	}
	return []string{string(out.Reason)}, nil
}

// code returns the current one-time code of secret. Each step is accepted once per
// identity: a test that needs a second code from the same person advances the clock.
func (s *govStack) code(t *testing.T, secret string) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, s.clock.Now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var olgaViaCommander = clawops.Actor{Identity: "olga", Role: clawops.RoleOperator, Agent: clawops.Commander, Channel: "web"}

// request asks the gate for a change as the Commander does for olga's chat message.
func (s *govStack) request(t *testing.T, ctx context.Context, tool, instance string) string {
	t.Helper()
	out, err := s.gate.Invoke(ctx, olgaViaCommander, tool, json.RawMessage(`{"instance":"`+instance+`"}`))
	if err != nil || out.Decision != clawops.NeedsApproval {
		t.Fatalf("invoke %s %s: got %+v %v, want needs_approval", tool, instance, out, err)
	}
	return out.ApprovalID
}

func (s *govStack) auditCount(t *testing.T) int64 {
	t.Helper()
	rep, err := s.gate.Audit().Verify(context.Background())
	if err != nil || !rep.OK {
		t.Fatalf("audit verify: %+v %v", rep, err)
	}
	return rep.Entries
}

func (s *govStack) auditHas(t *testing.T, event string, reason clawops.ReasonCode, actor string) bool {
	t.Helper()
	entries, err := s.gate.Audit().List(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Event == event && e.Reason == reason && strings.HasPrefix(e.Actor, actor) {
			return true
		}
	}
	return false
}

func preflightOf(t *testing.T, r response) governance.PreflightResult {
	t.Helper()
	var p governance.PreflightResult
	if r.Status != 200 || !jsonUnmarshal(r.Data, &p) {
		t.Fatalf("preflight: got %d %s", r.Status, r.raw)
	}
	return p
}

// TestRealGatePreflightAndScopedGrants: a preflight writes nothing; approving for a scope
// creates a grant that covers the next call (as the preflight shows) until an admin revokes it.
func TestRealGatePreflightAndScopedGrants(t *testing.T) {
	s := newGovStack(t)
	const teardown2 = `{"tool":"gf_teardown","args":{"instance":"inst-2"}}`
	before := s.auditCount(t)
	p := preflightOf(t, s.do(t, "POST", "/v1/preflight", operatorToken, teardown2))
	if p.Decision != clawops.NeedsApproval || p.ApprovalsRequired != 1 || p.Risk == nil || p.Risk.Class != clawops.RiskHigh || p.Plan == nil {
		t.Errorf("preflight: got %+v, want needs_approval by one approver, high risk, with the plan", p)
	}
	if p := preflightOf(t, s.do(t, "POST", "/v1/preflight", viewerToken, teardown2)); p.Decision != clawops.Deny || p.Reason != clawops.ReasonRoleNotPermitted {
		t.Errorf("viewer preflight: got %s/%s, want deny/ROLE_NOT_PERMITTED", p.Decision, p.Reason)
	}
	if p := preflightOf(t, s.do(t, "POST", "/v1/preflight", operatorToken, `{"tool":"gf_teardown","args":{"instance":"inst-9"}}`)); p.Reason != clawops.ReasonUnknownInstance {
		t.Errorf("unknown instance preflight: got %s, want UNKNOWN_INSTANCE", p.Reason)
	}
	if after := s.auditCount(t); after != before {
		t.Errorf("audit entries after preflights: got %d, want %d (no side effects)", after, before)
	}
	if list, _ := s.gate.ListApprovals(context.Background(), ""); len(list) != 0 {
		t.Errorf("approvals after preflights: got %d, want 0", len(list))
	}

	id := s.request(t, context.Background(), "gf_teardown", "inst-2")
	r := s.do(t, "POST", "/v1/approvals/"+id+"/decision", approverToken,
		`{"decision":"approve_scope","reason":"this batch","scope":{"instances":["inst-2"],"max_users":5,"ttl":"48h"}}`)
	if r.Status != 400 || r.Error.Code != "GRANT_INVALID" {
		t.Errorf("grant longer than 24h: got %d %s, want 400 GRANT_INVALID", r.Status, r.raw)
	}
	r = s.do(t, "POST", "/v1/approvals/"+id+"/decision", approverToken,
		`{"decision":"approve_scope","reason":"this batch","scope":{"instances":["inst-2"],"max_users":5,"ttl":"4h"}}`)
	if r.Status != 200 || !strings.Contains(string(r.Data), `"decision":"allow"`) {
		t.Fatalf("approve for scope: got %d %s", r.Status, r.raw)
	}
	if got := s.teardown.applied(); len(got) != 1 {
		t.Errorf("teardown applies: got %v, want one", got)
	}
	var grants []governance.ScopedGrant
	if r := s.do(t, "GET", "/v1/grants?state=active", viewerToken, ""); !jsonUnmarshal(r.Data, &grants) || len(grants) != 1 {
		t.Fatalf("grants: got %s", r.raw)
	}
	g := grants[0]
	if g.Grantee != "olga" || g.CreatedBy != "bob" || g.ApprovalID != id || g.MaxUsers != 5 || !g.ExpiresAt.Equal(s.clock.Now().Add(4*time.Hour)) {
		t.Errorf("grant: got %+v", g)
	}
	if p := preflightOf(t, s.do(t, "POST", "/v1/preflight", operatorToken, teardown2)); p.Decision != clawops.Allow || p.GrantID != g.ID {
		t.Errorf("preflight within the grant: got %s grant %q, want allow under %s", p.Decision, p.GrantID, g.ID)
	}
	if r := s.do(t, "DELETE", "/v1/grants/"+g.ID, approverToken, ""); r.Status != 403 || r.Error.Code != "FORBIDDEN" {
		t.Errorf("approver revokes: got %d %s, want 403 FORBIDDEN", r.Status, r.raw)
	}
	if r := s.do(t, "DELETE", "/v1/grants/"+g.ID, adminToken, `{"reason":"batch finished"}`); r.Status != 200 {
		t.Fatalf("admin revokes: got %d %s", r.Status, r.raw)
	}
	if r := s.do(t, "DELETE", "/v1/grants/"+g.ID, adminToken, ""); r.Status != 404 || r.Error.Code != "GRANT_INVALID" {
		t.Errorf("revoke again: got %d %s, want 404 GRANT_INVALID", r.Status, r.raw)
	}
	if p := preflightOf(t, s.do(t, "POST", "/v1/preflight", operatorToken, teardown2)); p.Decision != clawops.NeedsApproval {
		t.Errorf("preflight after revocation: got %s, want needs_approval", p.Decision)
	}
	if !s.auditHas(t, governance.EventGrantCreated, governance.ReasonGrantScope, "bob") || !s.auditHas(t, governance.EventGrantRevoked, governance.ReasonGrantInvalid, "ada") {
		t.Error("audit lacks grant.created by bob or grant.revoked by ada")
	}
}

// TestRealGateFourEyesWithSecondFactor: a critical approval needs two distinct approvers,
// each with their one-time code.
func TestRealGateFourEyesWithSecondFactor(t *testing.T) {
	s := newGovStack(t)
	id := s.request(t, context.Background(), "gf_nuke", "inst-1")
	a, err := s.gate.Approval(context.Background(), id)
	if err != nil || a.ApprovalsRequired != 2 || !a.SecondFactor {
		t.Fatalf("approval: got %+v %v, want four eyes with a second factor", a, err)
	}
	decide := func(token, body string) response {
		return s.do(t, "POST", "/v1/approvals/"+id+"/decision", token, body)
	}
	if r := decide(approverToken, `{"decision":"approve"}`); r.Status != 403 || r.Error.Code != "SECOND_FACTOR_REQUIRED" {
		t.Errorf("no code: got %d %s, want 403 SECOND_FACTOR_REQUIRED", r.Status, r.raw)
	}
	if r := decide(approverToken, `{"decision":"approve","totp":"000000"}`); r.Status != 403 || r.Error.Code != "SECOND_FACTOR_INVALID" {
		t.Errorf("wrong code: got %d %s, want 403 SECOND_FACTOR_INVALID", r.Status, r.raw)
	}
	if r := decide(approverToken, scopeBody); r.Status != 403 || r.Error.Code != "SECOND_FACTOR_REQUIRED" {
		t.Errorf("approve for scope: got %d %s, want 403 SECOND_FACTOR_REQUIRED", r.Status, r.raw)
	}
	r := decide(approverToken, `{"decision":"approve","totp":"`+s.code(t, bobSecret)+`"}`)
	var out governance.Outcome
	if r.Status != 202 || !jsonUnmarshal(r.Data, &out) || out.Reason != governance.ReasonAwaitingSecondApprover {
		t.Fatalf("first approval: got %d %s, want 202 AWAITING_SECOND_APPROVER", r.Status, r.raw)
	}
	s.clock.advance(30 * time.Second)
	if r := decide(approverToken, `{"decision":"approve","totp":"`+s.code(t, bobSecret)+`"}`); r.Status != 403 || r.Error.Code != "DUPLICATE_APPROVER" {
		t.Errorf("bob again: got %d %s, want 403 DUPLICATE_APPROVER", r.Status, r.raw)
	}
	if len(s.nuke.applied()) != 0 {
		t.Fatal("the critical plan ran after one approval")
	}
	if r := decide(adminToken, `{"decision":"approve","totp":"`+s.code(t, adaSecret)+`"}`); r.Status != 200 || !strings.Contains(string(r.Data), `"decision":"allow"`) {
		t.Fatalf("second approval: got %d %s", r.Status, r.raw)
	}
	if got := s.nuke.applied(); len(got) != 1 {
		t.Errorf("applies: got %v, want one", got)
	}
	var got governance.Approval
	if r := s.do(t, "GET", "/v1/approvals/"+id, viewerToken, ""); !jsonUnmarshal(r.Data, &got) || len(got.Decisions) != 2 ||
		!got.Decisions[0].SecondFactor || !got.Decisions[1].SecondFactor || got.State != governance.ApprovalExecuted {
		t.Errorf("approval after both: got %s", r.raw)
	}
}

// TestRealGateBreakGlass: only an admin with a second factor breaks the glass; the override
// shows in that admin's preflight and nobody else's, and ends on DELETE.
func TestRealGateBreakGlass(t *testing.T) {
	s := newGovStack(t)
	const body = `{"reason_code":"INCIDENT_MITIGATION","justification":"pair 7 is down and the approvers are asleep","ttl":"30m"`
	if r := s.do(t, "POST", "/v1/breakglass", adminToken, body+`}`); r.Status != 403 || r.Error.Code != "SECOND_FACTOR_REQUIRED" {
		t.Errorf("no code: got %d %s, want 403 SECOND_FACTOR_REQUIRED", r.Status, r.raw)
	}
	if r := s.do(t, "POST", "/v1/breakglass", operatorToken, body+`}`); r.Status != 403 || r.Error.Code != "BREAK_GLASS_INVALID" {
		t.Errorf("operator: got %d %s, want 403 BREAK_GLASS_INVALID", r.Status, r.raw)
	}
	r := s.do(t, "POST", "/v1/breakglass", adminToken, body+`,"totp":"`+s.code(t, adaSecret)+`"}`)
	var bg governance.BreakGlass
	if r.Status != 201 || !jsonUnmarshal(r.Data, &bg) || bg.Admin != "ada" || !bg.ExpiresAt.Equal(s.clock.Now().Add(30*time.Minute)) {
		t.Fatalf("break glass: got %d %s", r.Status, r.raw)
	}
	const teardown1 = `{"tool":"gf_teardown","args":{"instance":"inst-1"}}`
	if p := preflightOf(t, s.do(t, "POST", "/v1/preflight", adminToken, teardown1, BreakGlassHeader, bg.ID)); p.Decision != clawops.Allow || p.BreakGlassID != bg.ID {
		t.Errorf("admin preflight under break-glass: got %s %q, want allow under %s", p.Decision, p.BreakGlassID, bg.ID)
	}
	if p := preflightOf(t, s.do(t, "POST", "/v1/preflight", operatorToken, teardown1, BreakGlassHeader, bg.ID)); p.Decision != clawops.Deny || p.Reason != governance.ReasonBreakGlassInvalid {
		t.Errorf("someone else's break-glass: got %s/%s, want deny/BREAK_GLASS_INVALID", p.Decision, p.Reason)
	}
	if p := preflightOf(t, s.do(t, "POST", "/v1/preflight", adminToken, teardown1)); p.Decision != clawops.NeedsApproval {
		t.Errorf("admin preflight without the header: got %s, want needs_approval", p.Decision)
	}
	// Chat carries the override to the gate too: the teardown runs without an approval.
	if got := replies(t, s.do(t, "POST", "/v1/chat", adminToken, `{"text":"teardown inst-1"}`, BreakGlassHeader, bg.ID)); len(got) != 1 || got[0] != string(governance.ReasonBreakGlass) {
		t.Errorf("chat under break-glass: got %q, want [BREAK_GLASS]", got)
	}
	if got := s.teardown.applied(); len(got) != 1 {
		t.Errorf("teardown applies under break-glass: got %v, want one", got)
	}
	if r := s.do(t, "POST", "/v1/chat", adminToken, `{"text":"teardown inst-1"}`, BreakGlassHeader, "bg_1"); r.Status != 400 || r.Error.Code != "MALFORMED_REQUEST" {
		t.Errorf("chat with a malformed header: got %d %s, want 400", r.Status, r.raw)
	}
	if r := s.do(t, "DELETE", "/v1/breakglass/"+bg.ID, operatorToken, ""); r.Status != 403 || r.Error.Code != "BREAK_GLASS_INVALID" {
		t.Errorf("operator ends it: got %d %s, want 403", r.Status, r.raw)
	}
	if r := s.do(t, "DELETE", "/v1/breakglass/"+bg.ID, adminToken, ""); r.Status != 200 {
		t.Fatalf("end: got %d %s", r.Status, r.raw)
	}
	if r := s.do(t, "DELETE", "/v1/breakglass/"+bg.ID, adminToken, ""); r.Status != 404 || r.Error.Code != "BREAK_GLASS_INVALID" {
		t.Errorf("end again: got %d %s, want 404 BREAK_GLASS_INVALID", r.Status, r.raw)
	}
	if p := preflightOf(t, s.do(t, "POST", "/v1/preflight", adminToken, teardown1, BreakGlassHeader, bg.ID)); p.Decision != clawops.Deny {
		t.Errorf("preflight under an ended break-glass: got %s, want deny", p.Decision)
	}
	if !s.auditHas(t, governance.EventOverride, governance.ReasonBreakGlass, "ada") || !s.auditHas(t, governance.EventViolation, governance.ReasonBreakGlassInvalid, "olga") {
		t.Error("audit lacks the override by ada or the refused attempt by olga")
	}
}

// TestRealGateBudgetsPolicyTracesCheckpoints: budgets with month-to-date spend, the role
// table read and replaced by an admin, a trace read and replayed before and after that
// change, and the audit's signed checkpoints.
func TestRealGateBudgetsPolicyTracesCheckpoints(t *testing.T) {
	s := newGovStack(t)
	ctx := context.Background()

	// Budgets.
	if err := s.gate.RecordCost(ctx, governance.CostEntry{Account: "acme", Kind: governance.BudgetInfra, AmountUSD: 40, Source: "hetzner"}); err != nil {
		t.Fatal(err)
	}
	const acme = `{"scope":"account:acme","kind":"infra","soft_usd":30,"hard_usd":100}`
	if r := s.do(t, "PUT", "/v1/budgets", operatorToken, acme); r.Status != 403 || r.Error.Code != "ROLE_NOT_PERMITTED" {
		t.Errorf("operator sets a budget: got %d %s, want 403 ROLE_NOT_PERMITTED", r.Status, r.raw)
	}
	if r := s.do(t, "PUT", "/v1/budgets", adminToken, `{"scope":"account:acme","kind":"infra","soft_usd":300,"hard_usd":100}`); r.Status != 400 || r.Error.Code != "BAD_ARGUMENTS" {
		t.Errorf("soft above hard: got %d %s, want 400 BAD_ARGUMENTS", r.Status, r.raw)
	}
	if r := s.do(t, "PUT", "/v1/budgets", adminToken, acme); r.Status != 200 {
		t.Fatalf("admin sets a budget: got %d %s", r.Status, r.raw)
	}
	var v BudgetsView
	if r := s.do(t, "GET", "/v1/budgets", viewerToken, ""); !jsonUnmarshal(r.Data, &v) {
		t.Fatalf("budgets: %s", r.raw)
	}
	if len(v.Budgets) != 1 || v.Budgets[0].MonthToDateUSD != 40 || v.Budgets[0].HardUSD != 100 || v.MonthToDate[governance.BudgetInfra] != 40 || v.Month != "2026-11" {
		t.Errorf("budgets: got %+v", v)
	}
	if !s.auditHas(t, governance.EventPolicyChanged, governance.ReasonPolicyChanged, "ada") || !s.auditHas(t, governance.EventViolation, clawops.ReasonRoleNotPermitted, "olga") {
		t.Error("audit lacks the budget change by ada or the refused one by olga")
	}

	// A traced run: olga asks (needs approval), bob approves, the run ends.
	traceID, err := s.gate.StartTrace(ctx, governance.TraceStart{Actor: olgaViaCommander, Intent: "tear down inst-2"})
	if err != nil {
		t.Fatal(err)
	}
	id := s.request(t, governance.WithTrace(ctx, traceID), "gf_teardown", "inst-2")
	if r := s.do(t, "POST", "/v1/approvals/"+id+"/decision", approverToken, `{"decision":"approve"}`); r.Status != 200 {
		t.Fatalf("approve: got %d %s", r.Status, r.raw)
	}
	if err := s.gate.EndTrace(ctx, traceID, governance.TraceEnd{Status: governance.TraceOK, Result: "done"}); err != nil {
		t.Fatal(err)
	}
	var traces []governance.Trace
	if r := s.do(t, "GET", "/v1/traces?limit=10&identity=olga", viewerToken, ""); !jsonUnmarshal(r.Data, &traces) || len(traces) != 1 || traces[0].ID != traceID {
		t.Fatalf("traces: got %s", r.raw)
	}
	if r := s.do(t, "GET", "/v1/traces?after=2026-11-24T00:00:00Z", viewerToken, ""); string(r.Data) != "[]" {
		t.Errorf("traces after tomorrow: got %s, want []", r.Data)
	}
	var tr governance.Trace
	if r := s.do(t, "GET", "/v1/traces/"+traceID, viewerToken, ""); !jsonUnmarshal(r.Data, &tr) || len(tr.Spans) == 0 || tr.Spans[0].Decision != clawops.NeedsApproval {
		t.Fatalf("trace: got %s", r.raw)
	}
	if r := s.do(t, "GET", "/v1/traces/trc_"+strings.Repeat("0", 32), viewerToken, ""); r.Status != 404 {
		t.Errorf("unknown trace: got %d %s, want 404", r.Status, r.raw)
	}
	replay := func() governance.ReplayReport {
		t.Helper()
		var rep governance.ReplayReport
		if r := s.do(t, "POST", "/v1/traces/"+traceID+"/replay", viewerToken, ""); r.Status != 200 || !jsonUnmarshal(r.Data, &rep) {
			t.Fatalf("replay: got %d %s", r.Status, r.raw)
		}
		return rep
	}
	if rep := replay(); rep.Changed != 0 || len(rep.Steps) != len(tr.Spans) {
		t.Errorf("replay under the same policy: got %+v, want %d unchanged steps", rep, len(tr.Spans))
	}

	// Policy: read, refused for an approver, replaced by the admin.
	var roles RolesView
	if r := s.do(t, "GET", "/v1/policy/roles", viewerToken, ""); !jsonUnmarshal(r.Data, &roles) || roles.Roles[clawops.Commander][governance.ActionTeardown].Mode != ModeNeedsApproval {
		t.Fatalf("roles: got %s", r.raw)
	}
	roles.Roles[clawops.Commander][governance.ActionTeardown] = RuleView{Mode: ModeNever}
	body, _ := json.Marshal(rolesRequest{Roles: roles.Roles, Reason: "no teardowns this week"})
	if r := s.do(t, "PUT", "/v1/policy/roles", approverToken, string(body)); r.Status != 403 || r.Error.Code != "ROLE_NOT_PERMITTED" {
		t.Errorf("approver changes policy: got %d %s, want 403 ROLE_NOT_PERMITTED", r.Status, r.raw)
	}
	if r := s.do(t, "PUT", "/v1/policy/roles", adminToken, string(body)); r.Status != 200 || !strings.Contains(string(r.Data), `"teardown":{"mode":"never"}`) {
		t.Fatalf("admin changes policy: got %d %s", r.Status, r.raw)
	}
	if s.gate.RoleTable().Lookup(clawops.Commander, governance.ActionTeardown).Mode != governance.Never {
		t.Error("the gate's table did not change")
	}
	rep := replay()
	if rep.Changed == 0 || rep.Steps[0].Now == nil || rep.Steps[0].Now.Reason != clawops.ReasonRoleNotPermitted {
		t.Errorf("replay after the change: got %+v, want the teardown denied ROLE_NOT_PERMITTED now", rep)
	}
	entries, _ := s.gate.Audit().List(ctx, 0, 1000)
	found := false
	for _, e := range entries {
		found = found || e.Event == governance.EventPolicyChanged && e.Target == "roles" && strings.Contains(e.Detail, "commander/teardown") && strings.Contains(e.Detail, "no teardowns this week")
	}
	if !found {
		t.Error("audit lacks the role change, cell by cell, with its reason")
	}

	// Checkpoints.
	if r := s.do(t, "GET", "/v1/audit/checkpoints", viewerToken, ""); string(r.Data) != "[]" {
		t.Errorf("checkpoints before any: got %s, want []", r.raw)
	}
	cp, err := s.gate.Audit().Checkpoint(ctx, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	var cps []governance.Checkpoint
	if r := s.do(t, "GET", "/v1/audit/checkpoints", viewerToken, ""); !jsonUnmarshal(r.Data, &cps) || len(cps) != 1 || cps[0].Seq != cp.Seq || cps[0].Signature != cp.Signature {
		t.Errorf("checkpoints: got %s, want the one at seq %d", r.raw, cp.Seq)
	}
	if r := s.do(t, "GET", "/v1/audit/verify", viewerToken, ""); !strings.Contains(string(r.Data), `"checkpoints":1`) || !strings.Contains(string(r.Data), `"ok":true`) {
		t.Errorf("verify: got %s", r.raw)
	}
}
