package api

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

const (
	knownTrace   = "trc_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	unknownTrace = "trc_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	goodBG       = `{"reason_code":"INCIDENT_MITIGATION","justification":"primary db is down, restoring service now","ttl":"30m"}`
	goodBudget   = `{"scope":"account:acme","kind":"infra","soft_usd":80,"hard_usd":100}`
	goodRoles    = `{"roles":{"commander":{"read":{"mode":"alone"},"teardown":{"mode":"needs_approval"}},"forge":{"provision":{"mode":"alone","max_targets":3}}},"reason":"tighten"}`
	scopeBody    = `{"decision":"approve_scope","reason":"same batch","scope":{"accounts":["acme"],"max_users":10,"ttl":"4h"}}`
)

// TestGovernanceRoutes covers every governance route and its bad forms against the fake
// gate: malformed bodies and queries, no token, non-admins, unknown ids.
func TestGovernanceRoutes(t *testing.T) {
	tests := []struct {
		name         string
		method, path string
		token, body  string
		header       []string
		status       int
		code         string // error code; "" for success
		contains     string // a fragment the data must hold
	}{
		// Preflight.
		{name: "preflight", method: "POST", path: "/v1/preflight", token: operatorToken, body: `{"tool":"gf_teardown","args":{"instance":"inst-2"}}`,
			status: 200, contains: `"decision":"needs_approval"`},
		{name: "preflight no args", method: "POST", path: "/v1/preflight", token: viewerToken, body: `{"tool":"gf_fleet_status"}`, status: 200, contains: `"decision":"allow"`},
		{name: "preflight null args", method: "POST", path: "/v1/preflight", token: viewerToken, body: `{"tool":"gf_fleet_status","args":null}`, status: 200},
		{name: "preflight unknown tool", method: "POST", path: "/v1/preflight", token: operatorToken, body: `{"tool":"gf_nope"}`, status: 200, contains: `"reason":"UNKNOWN_TOOL"`},
		{name: "preflight no tool", method: "POST", path: "/v1/preflight", token: operatorToken, body: `{"args":{}}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "preflight bad tool name", method: "POST", path: "/v1/preflight", token: operatorToken, body: `{"tool":"rm -rf /"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "preflight args array", method: "POST", path: "/v1/preflight", token: operatorToken, body: `{"tool":"gf_teardown","args":["inst-2"]}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "preflight args string", method: "POST", path: "/v1/preflight", token: operatorToken, body: `{"tool":"gf_teardown","args":"inst-2"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "preflight malformed", method: "POST", path: "/v1/preflight", token: operatorToken, body: `{"tool":"gf_teardown",`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "preflight unknown field", method: "POST", path: "/v1/preflight", token: operatorToken, body: `{"tool":"gf_teardown","as":"admin"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "preflight bad break-glass header", method: "POST", path: "/v1/preflight", token: adminToken, body: `{"tool":"gf_teardown"}`,
			header: []string{BreakGlassHeader, "bg_nothex"}, status: 400, code: "MALFORMED_REQUEST"},
		{name: "preflight internal", method: "POST", path: "/v1/preflight", token: adminToken, body: `{"tool":"gf_boom"}`, status: 500, code: "INTERNAL"},
		{name: "preflight no token", method: "POST", path: "/v1/preflight", body: `{"tool":"gf_teardown"}`, status: 401, code: "UNAUTHENTICATED"},
		{name: "preflight GET", method: "GET", path: "/v1/preflight", token: adminToken, status: 405, code: "METHOD_NOT_ALLOWED"},

		// Traces.
		{name: "traces", method: "GET", path: "/v1/traces", token: viewerToken, status: 200, contains: knownTrace},
		{name: "traces filtered", method: "GET", path: "/v1/traces?limit=5&after=2026-11-23T00:00:00Z&identity=olga", token: viewerToken, status: 200, contains: knownTrace},
		{name: "traces zero limit", method: "GET", path: "/v1/traces?limit=0", token: viewerToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "traces huge limit", method: "GET", path: "/v1/traces?limit=1001", token: viewerToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "traces word limit", method: "GET", path: "/v1/traces?limit=ten", token: viewerToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "traces bad after", method: "GET", path: "/v1/traces?after=yesterday", token: viewerToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "traces empty identity", method: "GET", path: "/v1/traces?identity=", token: viewerToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "traces no token", method: "GET", path: "/v1/traces", status: 401, code: "UNAUTHENTICATED"},
		{name: "trace", method: "GET", path: "/v1/traces/" + knownTrace, token: viewerToken, status: 200, contains: `"spans":[`},
		{name: "trace unknown", method: "GET", path: "/v1/traces/" + unknownTrace, token: viewerToken, status: 404, code: "NOT_FOUND"},
		{name: "trace malformed id", method: "GET", path: "/v1/traces/nope", token: viewerToken, status: 404, code: "NOT_FOUND"},
		{name: "trace no token", method: "GET", path: "/v1/traces/" + knownTrace, status: 401, code: "UNAUTHENTICATED"},
		{name: "replay", method: "POST", path: "/v1/traces/" + knownTrace + "/replay", token: viewerToken, status: 200, contains: `"changed":1`},
		{name: "replay empty object", method: "POST", path: "/v1/traces/" + knownTrace + "/replay", token: viewerToken, body: `{}`, status: 200},
		{name: "replay unknown field", method: "POST", path: "/v1/traces/" + knownTrace + "/replay", token: viewerToken, body: `{"at":"now"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "replay malformed", method: "POST", path: "/v1/traces/" + knownTrace + "/replay", token: viewerToken, body: `[`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "replay unknown", method: "POST", path: "/v1/traces/" + unknownTrace + "/replay", token: viewerToken, status: 404, code: "NOT_FOUND"},
		{name: "replay no token", method: "POST", path: "/v1/traces/" + knownTrace + "/replay", status: 401, code: "UNAUTHENTICATED"},
		{name: "replay GET", method: "GET", path: "/v1/traces/" + knownTrace + "/replay", token: viewerToken, status: 405, code: "METHOD_NOT_ALLOWED"},

		// Decisions with a scope or a second factor.
		{name: "approve scope", method: "POST", path: "/v1/approvals/ap-scope/decision", token: approverToken, body: scopeBody, status: 200, contains: `"decision":"allow"`},
		{name: "approve scope no scope", method: "POST", path: "/v1/approvals/ap-scope/decision", token: approverToken, body: `{"decision":"approve_scope"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "scope with approve", method: "POST", path: "/v1/approvals/ap-scope/decision", token: approverToken,
			body: `{"decision":"approve","scope":{"accounts":["acme"],"max_users":1,"ttl":"1h"}}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "scope bad ttl", method: "POST", path: "/v1/approvals/ap-scope/decision", token: approverToken,
			body: `{"decision":"approve_scope","scope":{"accounts":["acme"],"max_users":1,"ttl":"4 hours"}}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "scope negative ttl", method: "POST", path: "/v1/approvals/ap-scope/decision", token: approverToken,
			body: `{"decision":"approve_scope","scope":{"accounts":["acme"],"max_users":1,"ttl":"-1h"}}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "scope no ttl", method: "POST", path: "/v1/approvals/ap-scope/decision", token: approverToken,
			body: `{"decision":"approve_scope","scope":{"accounts":["acme"],"max_users":1}}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "scope unknown field", method: "POST", path: "/v1/approvals/ap-scope/decision", token: approverToken,
			body: `{"decision":"approve_scope","scope":{"accounts":["acme"],"max_users":1,"ttl":"1h","tools":["*"]}}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "scope max users text", method: "POST", path: "/v1/approvals/ap-scope/decision", token: approverToken,
			body: `{"decision":"approve_scope","scope":{"accounts":["acme"],"max_users":"all","ttl":"1h"}}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "scope with totp", method: "POST", path: "/v1/approvals/ap-scope/decision", token: approverToken,
			body: `{"decision":"approve_scope","totp":"123456","scope":{"accounts":["acme"],"max_users":1,"ttl":"1h"}}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "scope no selector", method: "POST", path: "/v1/approvals/ap-scope/decision", token: approverToken,
			body: `{"decision":"approve_scope","scope":{"max_users":1,"ttl":"1h"}}`, status: 400, code: "GRANT_INVALID"},
		{name: "scope on a second-factor approval", method: "POST", path: "/v1/approvals/ap-crit/decision", token: approverToken, body: scopeBody, status: 403, code: "SECOND_FACTOR_REQUIRED"},
		{name: "scope unknown approval", method: "POST", path: "/v1/approvals/ap-404/decision", token: approverToken, body: scopeBody, status: 404, code: "APPROVAL_NOT_FOUND"},
		{name: "scope by operator", method: "POST", path: "/v1/approvals/ap-scope/decision", token: operatorToken, body: scopeBody, status: 403, code: "NOT_APPROVER"},
		{name: "scope no token", method: "POST", path: "/v1/approvals/ap-scope/decision", body: scopeBody, status: 401, code: "UNAUTHENTICATED"},
		{name: "factor missing", method: "POST", path: "/v1/approvals/ap-crit/decision", token: approverToken, body: `{"decision":"approve"}`, status: 403, code: "SECOND_FACTOR_REQUIRED"},
		{name: "factor wrong", method: "POST", path: "/v1/approvals/ap-crit/decision", token: approverToken, body: `{"decision":"approve","totp":"000000"}`, status: 403, code: "SECOND_FACTOR_INVALID"},
		{name: "factor good", method: "POST", path: "/v1/approvals/ap-crit/decision", token: approverToken, body: `{"decision":"approve","totp":" 123456 "}`, status: 200, contains: `"decision":"allow"`},
		{name: "factor empty", method: "POST", path: "/v1/approvals/ap-crit/decision", token: approverToken, body: `{"decision":"approve","totp":""}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "factor too long", method: "POST", path: "/v1/approvals/ap-crit/decision", token: approverToken, body: `{"decision":"approve","totp":"12345678901234567"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "factor number", method: "POST", path: "/v1/approvals/ap-crit/decision", token: approverToken, body: `{"decision":"approve","totp":123456}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "deny needs no factor", method: "POST", path: "/v1/approvals/ap-crit/decision", token: approverToken, body: `{"decision":"deny"}`, status: 200, contains: `"reason":"DENIED_BY_APPROVER"`},
		{name: "duplicate approver", method: "POST", path: "/v1/approvals/ap-crit/decision", token: adminToken, body: `{"decision":"approve","totp":"123456"}`, status: 403, code: "DUPLICATE_APPROVER"},

		// Grants.
		{name: "grants", method: "GET", path: "/v1/grants", token: viewerToken, status: 200, contains: `[]`},
		{name: "grants active", method: "GET", path: "/v1/grants?state=active", token: viewerToken, status: 200},
		{name: "grants bad state", method: "GET", path: "/v1/grants?state=live", token: viewerToken, status: 400, code: "MALFORMED_REQUEST"},
		{name: "grants no token", method: "GET", path: "/v1/grants", status: 401, code: "UNAUTHENTICATED"},
		{name: "revoke by approver", method: "DELETE", path: "/v1/grants/grt-1", token: approverToken, status: 403, code: "FORBIDDEN"},
		{name: "revoke by operator", method: "DELETE", path: "/v1/grants/grt-1", token: operatorToken, status: 403, code: "FORBIDDEN"},
		{name: "revoke unknown", method: "DELETE", path: "/v1/grants/grt-404", token: adminToken, status: 404, code: "GRANT_INVALID"},
		{name: "revoke malformed", method: "DELETE", path: "/v1/grants/grt-1", token: adminToken, body: `{"reason":`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "revoke long reason", method: "DELETE", path: "/v1/grants/grt-1", token: adminToken,
			body: `{"reason":"` + strings.Repeat("r", MaxReasonLength+1) + `"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "revoke no token", method: "DELETE", path: "/v1/grants/grt-1", status: 401, code: "UNAUTHENTICATED"},
		{name: "grant GET", method: "GET", path: "/v1/grants/grt-1", token: adminToken, status: 405, code: "METHOD_NOT_ALLOWED"},

		// Break-glass.
		{name: "break glass", method: "POST", path: "/v1/breakglass", token: adminToken, body: goodBG, status: 201, contains: `"reason":"INCIDENT_MITIGATION"`},
		{name: "break glass by operator", method: "POST", path: "/v1/breakglass", token: operatorToken, body: goodBG, status: 403, code: "BREAK_GLASS_INVALID"},
		{name: "break glass by approver", method: "POST", path: "/v1/breakglass", token: approverToken, body: goodBG, status: 403, code: "BREAK_GLASS_INVALID"},
		{name: "break glass reason off the list", method: "POST", path: "/v1/breakglass", token: adminToken,
			body: `{"reason_code":"BORED","justification":"primary db is down, restoring service now"}`, status: 403, code: "BREAK_GLASS_INVALID"},
		{name: "break glass short justification", method: "POST", path: "/v1/breakglass", token: adminToken,
			body: `{"reason_code":"INCIDENT_MITIGATION","justification":"because"}`, status: 403, code: "BREAK_GLASS_INVALID"},
		{name: "break glass too long", method: "POST", path: "/v1/breakglass", token: adminToken,
			body: `{"reason_code":"INCIDENT_MITIGATION","justification":"primary db is down, restoring service now","ttl":"2h"}`, status: 403, code: "BREAK_GLASS_INVALID"},
		{name: "break glass no reason", method: "POST", path: "/v1/breakglass", token: adminToken, body: `{"justification":"primary db is down, restoring service now"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "break glass bad ttl", method: "POST", path: "/v1/breakglass", token: adminToken,
			body: `{"reason_code":"INCIDENT_MITIGATION","justification":"primary db is down, restoring service now","ttl":"soon"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "break glass huge justification", method: "POST", path: "/v1/breakglass", token: adminToken,
			body: `{"reason_code":"INCIDENT_MITIGATION","justification":"` + strings.Repeat("j", MaxJustificationLength+1) + `"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "break glass empty totp", method: "POST", path: "/v1/breakglass", token: adminToken,
			body: `{"reason_code":"INCIDENT_MITIGATION","justification":"primary db is down, restoring service now","totp":""}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "break glass unknown field", method: "POST", path: "/v1/breakglass", token: adminToken,
			body: `{"reason_code":"INCIDENT_MITIGATION","justification":"primary db is down, restoring service now","admin":"ada"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "break glass malformed", method: "POST", path: "/v1/breakglass", token: adminToken, body: `{"reason_code":`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "break glass no token", method: "POST", path: "/v1/breakglass", body: goodBG, status: 401, code: "UNAUTHENTICATED"},
		{name: "end break glass unknown", method: "DELETE", path: "/v1/breakglass/bg_00000000000000000000000000000099", token: adminToken, status: 404, code: "BREAK_GLASS_INVALID"},
		{name: "end break glass by operator", method: "DELETE", path: "/v1/breakglass/bg_00000000000000000000000000000099", token: operatorToken, status: 403, code: "BREAK_GLASS_INVALID"},
		{name: "end break glass no token", method: "DELETE", path: "/v1/breakglass/bg_00000000000000000000000000000099", status: 401, code: "UNAUTHENTICATED"},

		// Budgets.
		{name: "budgets", method: "GET", path: "/v1/budgets", token: viewerToken, status: 200, contains: `"month_to_date":{"infra":12.5,"llm":0.75}`},
		{name: "budgets no token", method: "GET", path: "/v1/budgets", status: 401, code: "UNAUTHENTICATED"},
		{name: "set budget", method: "PUT", path: "/v1/budgets", token: adminToken, body: goodBudget, status: 200,
			contains: `{"scope":"account:acme","kind":"infra","soft_usd":80,"hard_usd":100,"month_to_date_usd":3}`},
		{name: "set budget by operator", method: "PUT", path: "/v1/budgets", token: operatorToken, body: goodBudget, status: 403, code: "ROLE_NOT_PERMITTED"},
		{name: "set budget by approver", method: "PUT", path: "/v1/budgets", token: approverToken, body: goodBudget, status: 403, code: "ROLE_NOT_PERMITTED"},
		{name: "set budget no hard", method: "PUT", path: "/v1/budgets", token: adminToken, body: `{"scope":"global","kind":"infra","soft_usd":80}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "set budget no scope", method: "PUT", path: "/v1/budgets", token: adminToken, body: `{"kind":"infra","soft_usd":80,"hard_usd":100}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "set budget soft above hard", method: "PUT", path: "/v1/budgets", token: adminToken,
			body: `{"scope":"global","kind":"infra","soft_usd":200,"hard_usd":100}`, status: 400, code: "BAD_ARGUMENTS"},
		{name: "set budget bad kind", method: "PUT", path: "/v1/budgets", token: adminToken,
			body: `{"scope":"global","kind":"gpu","soft_usd":1,"hard_usd":2}`, status: 400, code: "BAD_ARGUMENTS"},
		{name: "set budget text amount", method: "PUT", path: "/v1/budgets", token: adminToken,
			body: `{"scope":"global","kind":"infra","soft_usd":"80","hard_usd":100}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "set budget huge amount", method: "PUT", path: "/v1/budgets", token: adminToken,
			body: `{"scope":"global","kind":"infra","soft_usd":1e999,"hard_usd":100}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "set budget no token", method: "PUT", path: "/v1/budgets", body: goodBudget, status: 401, code: "UNAUTHENTICATED"},
		{name: "budgets POST", method: "POST", path: "/v1/budgets", token: adminToken, body: goodBudget, status: 405, code: "METHOD_NOT_ALLOWED"},

		// Policy.
		{name: "roles", method: "GET", path: "/v1/policy/roles", token: viewerToken, status: 200, contains: `"teardown":{"mode":"never"}`},
		{name: "roles no token", method: "GET", path: "/v1/policy/roles", status: 401, code: "UNAUTHENTICATED"},
		{name: "set roles", method: "PUT", path: "/v1/policy/roles", token: adminToken, body: goodRoles, status: 200, contains: `"provision":{"mode":"alone","max_targets":3}`},
		{name: "set roles by approver", method: "PUT", path: "/v1/policy/roles", token: approverToken, body: goodRoles, status: 403, code: "ROLE_NOT_PERMITTED"},
		{name: "set roles by operator", method: "PUT", path: "/v1/policy/roles", token: operatorToken, body: goodRoles, status: 403, code: "ROLE_NOT_PERMITTED"},
		{name: "set roles unknown agent", method: "PUT", path: "/v1/policy/roles", token: adminToken, body: `{"roles":{"overlord":{"read":{"mode":"alone"}}}}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "set roles unknown action", method: "PUT", path: "/v1/policy/roles", token: adminToken, body: `{"roles":{"forge":{"launch":{"mode":"alone"}}}}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "set roles bad mode", method: "PUT", path: "/v1/policy/roles", token: adminToken, body: `{"roles":{"forge":{"read":{"mode":"sometimes"}}}}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "set roles numeric mode", method: "PUT", path: "/v1/policy/roles", token: adminToken, body: `{"roles":{"forge":{"read":{"mode":1}}}}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "set roles negative bound", method: "PUT", path: "/v1/policy/roles", token: adminToken,
			body: `{"roles":{"forge":{"provision":{"mode":"alone","max_targets":-1}}}}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "set roles no table", method: "PUT", path: "/v1/policy/roles", token: adminToken, body: `{"reason":"x"}`, status: 400, code: "MALFORMED_REQUEST"},
		{name: "set roles no token", method: "PUT", path: "/v1/policy/roles", body: goodRoles, status: 401, code: "UNAUTHENTICATED"},

		// Audit checkpoints.
		{name: "checkpoints", method: "GET", path: "/v1/audit/checkpoints", token: viewerToken, status: 200, contains: `"seq":5`},
		{name: "checkpoints no token", method: "GET", path: "/v1/audit/checkpoints", status: 401, code: "UNAUTHENTICATED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.gate.addGovApprovals()
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
			if !strings.Contains(string(r.Data), tt.contains) {
				t.Errorf("data: got %s, want it to contain %s", r.Data, tt.contains)
			}
		})
	}
}

// TestGovernanceCallsReachTheGate checks what the gate is asked, not only the answer: the
// preflight actor, the factor code, the grant scope, the filters and the refusals that
// never reach it.
func TestGovernanceCallsReachTheGate(t *testing.T) {
	f := newFixture(t)
	f.gate.addGovApprovals()

	f.do(t, "POST", "/v1/preflight", operatorToken, `{"tool":"gf_teardown","args":{"instance":"inst-2"}}`)
	f.do(t, "POST", "/v1/preflight", operatorToken, `{"tool":"gf_fleet_status"}`)
	olga := clawops.Actor{Identity: "olga", Role: clawops.RoleOperator, Agent: clawops.Commander, Channel: "api"}
	want := []invokeCall{{olga, "gf_teardown", `{"instance":"inst-2"}`}, {olga, "gf_fleet_status", `{}`}}
	if diff := cmp.Diff(want, f.gate.gov.preflights); diff != "" {
		t.Errorf("preflights (-want +got):\n%s", diff)
	}
	if len(f.gate.calls) != 0 {
		t.Errorf("preflight invoked tools: %+v", f.gate.calls)
	}

	if r := f.do(t, "POST", "/v1/approvals/ap-crit/decision", approverToken, `{"decision":"approve","reason":"both checked","totp":" 123456 "}`); r.Status != 200 {
		t.Fatalf("approve with factor: got %d %s", r.Status, r.raw)
	}
	if r := f.do(t, "POST", "/v1/approvals/ap-scope/decision", approverToken, `{"decision":"approve_scope","scope":{"instances":["inst-7"],"max_users":6,"ttl":"90m"}}`); r.Status != 200 {
		t.Fatalf("approve for scope: got %d %s", r.Status, r.raw)
	}
	calls := f.gate.decideCalls
	if len(calls) != 2 || calls[0].factor == nil || *calls[0].factor != "123456" || calls[0].reason != "both checked" || calls[0].decider.Channel != "api" {
		t.Fatalf("factor decision: got %+v", calls)
	}
	wantScope := governance.GrantScope{Instances: []clawops.InstanceID{"inst-7"}, MaxUsers: 6, TTL: 90 * time.Minute}
	if calls[1].scope == nil || !cmp.Equal(*calls[1].scope, wantScope) {
		t.Errorf("scope: got %+v, want %+v", calls[1].scope, wantScope)
	}
	r := f.do(t, "GET", "/v1/grants?state=active", viewerToken, "")
	var grants []governance.ScopedGrant
	if !jsonUnmarshal(r.Data, &grants) || len(grants) != 1 || grants[0].ApprovalID != "ap-scope" || grants[0].Grantee != "olga" {
		t.Fatalf("grants: got %s", r.raw)
	}
	if r := f.do(t, "DELETE", "/v1/grants/"+grants[0].ID, adminToken, `{"reason":"batch done"}`); r.Status != 200 || !strings.Contains(string(r.Data), `"state":"revoked"`) {
		t.Errorf("revoke: got %d %s", r.Status, r.raw)
	}
	if r := f.do(t, "DELETE", "/v1/grants/"+grants[0].ID, adminToken, ""); r.Status != 404 {
		t.Errorf("revoke again: got %d %s, want 404", r.Status, r.raw)
	}
	if r := f.do(t, "GET", "/v1/grants?state=revoked", viewerToken, ""); !strings.Contains(string(r.Data), grants[0].ID) {
		t.Errorf("revoked grants: got %s", r.raw)
	}
	if want := []string{grants[0].ID + ":batch done"}; !cmp.Equal(f.gate.gov.revoked, want) {
		t.Errorf("revocations: got %q, want %q", f.gate.gov.revoked, want)
	}

	f.do(t, "GET", "/v1/traces?limit=7&after=2026-11-22T10:00:00%2B01:00&identity=olga", viewerToken, "")
	if want := []string{"list limit=7 since=2026-11-22T10:00:00+01:00 identity=olga"}; !cmp.Equal(f.gate.gov.traceCalls, want) {
		t.Errorf("trace lists: got %q, want %q", f.gate.gov.traceCalls, want)
	}

	r = f.do(t, "POST", "/v1/breakglass", adminToken, `{"reason_code":"SECURITY_RESPONSE","justification":"rotating leaked keys on all nodes","ttl":"15m","totp":"654321"}`)
	var bg governance.BreakGlass
	if r.Status != 201 || !jsonUnmarshal(r.Data, &bg) || bg.Admin != "ada" {
		t.Fatalf("break glass: got %d %s", r.Status, r.raw)
	}
	wantBG := governance.BreakGlassRequest{Reason: governance.BreakGlassSecurity, Justification: "rotating leaked keys on all nodes",
		Duration: 15 * time.Minute, SecondFactor: "654321"}
	if got := f.gate.gov.bgRequests; len(got) != 1 || got[0] != wantBG {
		t.Errorf("break-glass requests: got %+v, want %+v", got, wantBG)
	}
	if r := f.do(t, "DELETE", "/v1/breakglass/"+bg.ID, adminToken, ""); r.Status != 200 {
		t.Errorf("end break glass: got %d %s", r.Status, r.raw)
	}
	if r := f.do(t, "DELETE", "/v1/breakglass/"+bg.ID, adminToken, ""); r.Status != 404 {
		t.Errorf("end break glass again: got %d %s, want 404", r.Status, r.raw)
	}

	if r := f.do(t, "PUT", "/v1/budgets", adminToken, `{"scope":"global","kind":"llm","soft_usd":0,"hard_usd":50}`); r.Status != 200 {
		t.Fatalf("set budget: got %d %s", r.Status, r.raw)
	}
	r = f.do(t, "GET", "/v1/budgets", viewerToken, "")
	var v BudgetsView
	if !jsonUnmarshal(r.Data, &v) {
		t.Fatalf("budgets: %s", r.raw)
	}
	wantB := []BudgetView{{Budget: governance.Budget{Scope: "global", Kind: "llm", HardUSD: 50}, MonthToDateUSD: 0.75}}
	if diff := cmp.Diff(wantB, v.Budgets); diff != "" || len(v.Month) != len("2006-01") {
		t.Errorf("budgets (-want +got):\n%s month %q", diff, v.Month)
	}
	// Both limits zero removes the budget.
	f.do(t, "PUT", "/v1/budgets", adminToken, `{"scope":"global","kind":"llm","soft_usd":0,"hard_usd":0}`)
	if r := f.do(t, "GET", "/v1/budgets", viewerToken, ""); !strings.Contains(string(r.Data), `"budgets":[]`) {
		t.Errorf("budgets after removal: got %s", r.raw)
	}

	if r := f.do(t, "PUT", "/v1/policy/roles", adminToken, goodRoles); r.Status != 200 {
		t.Fatalf("set roles: got %d %s", r.Status, r.raw)
	}
	got := f.gate.RoleTable()
	if got.Lookup(clawops.Forge, governance.ActionProvision) != (governance.Rule{Mode: governance.Alone, MaxTargets: 3}) ||
		got.Lookup(clawops.Commander, governance.ActionTeardown).Mode != governance.WithApproval ||
		got.Lookup(clawops.Guardian, governance.ActionRead).Mode != governance.Never {
		t.Errorf("role table after PUT: got %+v", got)
	}
	if !cmp.Equal(f.gate.gov.roleReasons, []string{"tighten"}) {
		t.Errorf("role change reasons: got %q", f.gate.gov.roleReasons)
	}
}

func TestFourEyesOverHTTP(t *testing.T) {
	f := newFixture(t)
	f.gate.add(governance.Approval{ID: "ap-4e", Tool: "gf_teardown", Requester: clawops.Actor{Identity: "olga", Role: clawops.RoleOperator},
		Plan: governance.Plan{Tool: "gf_teardown", Summary: "Tear down 12 servers"}, Risk: clawops.RiskCritical, ApprovalsRequired: 2,
		State: governance.ApprovalPending, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)})
	r := f.do(t, "POST", "/v1/approvals/ap-4e/decision", approverToken, `{"decision":"approve"}`)
	var out governance.Outcome
	if r.Status != 202 || !jsonUnmarshal(r.Data, &out) || out.Reason != governance.ReasonAwaitingSecondApprover || out.Message != "1 of 2 approvals" {
		t.Fatalf("first approval: got %d %s, want 202 AWAITING_SECOND_APPROVER", r.Status, r.raw)
	}
	if r := f.do(t, "POST", "/v1/approvals/ap-4e/decision", approverToken, `{"decision":"approve"}`); r.Status != 403 || r.Error.Code != "DUPLICATE_APPROVER" {
		t.Errorf("same approver again: got %d %s, want 403 DUPLICATE_APPROVER", r.Status, r.raw)
	}
	if r := f.do(t, "POST", "/v1/approvals/ap-4e/decision", adminToken, `{"decision":"approve"}`); r.Status != 200 || !strings.Contains(string(r.Data), `"decision":"allow"`) {
		t.Errorf("second approver: got %d %s, want 200 allow", r.Status, r.raw)
	}
}

// TestGovernanceWithoutAbilities: a gate that has only the base methods answers every
// governance route with 501 NOT_IMPLEMENTED and does nothing; plain decisions still work.
func TestGovernanceWithoutAbilities(t *testing.T) {
	gate := newFakeGate()
	f := &fixture{gate: gate, logs: &syncBuffer{}}
	h := New(Options{Auth: testTokens(t), Gate: struct{ Gate }{gate}, Audit: struct{ AuditLog }{&fakeAudit{n: 1}},
		Commander: commanderFunc(nil), Logger: slog.New(slog.NewTextHandler(f.logs, nil))})
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	for _, c := range []struct{ method, path, token, body string }{
		{"POST", "/v1/preflight", operatorToken, `{"tool":"gf_teardown"}`},
		{"GET", "/v1/traces", viewerToken, ""},
		{"GET", "/v1/traces/" + knownTrace, viewerToken, ""},
		{"POST", "/v1/traces/" + knownTrace + "/replay", viewerToken, ""},
		{"POST", "/v1/approvals/ap-1/decision", approverToken, scopeBody},
		{"POST", "/v1/approvals/ap-1/decision", approverToken, `{"decision":"approve","totp":"123456"}`},
		{"GET", "/v1/grants", viewerToken, ""},
		{"DELETE", "/v1/grants/grt-1", adminToken, ""},
		{"POST", "/v1/breakglass", adminToken, goodBG},
		{"DELETE", "/v1/breakglass/bg_00000000000000000000000000000001", adminToken, ""},
		{"GET", "/v1/budgets", viewerToken, ""},
		{"PUT", "/v1/budgets", adminToken, goodBudget},
		{"GET", "/v1/policy/roles", viewerToken, ""},
		{"PUT", "/v1/policy/roles", adminToken, goodRoles},
		{"GET", "/v1/audit/checkpoints", viewerToken, ""},
	} {
		if r := f.do(t, c.method, c.path, c.token, c.body); r.Status != 501 || r.Error == nil || r.Error.Code != "NOT_IMPLEMENTED" {
			t.Errorf("%s %s: got %d %s, want 501 NOT_IMPLEMENTED", c.method, c.path, r.Status, r.raw)
		}
	}
	if gate.decides != 0 {
		t.Errorf("decisions reached the gate: %d", gate.decides)
	}
	if r := f.do(t, "POST", "/v1/approvals/ap-1/decision", approverToken, `{"decision":"approve"}`); r.Status != 200 {
		t.Errorf("plain decision: got %d %s, want 200", r.Status, r.raw)
	}
}

// The wire form of the role table round-trips through the gate's types.
func TestRolesViewCoversTheTable(t *testing.T) {
	v := rolesView(newFakeGate())
	b, _ := json.Marshal(v)
	var back rolesRequest
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	tbl, err := back.table()
	if err != nil {
		t.Fatal(err)
	}
	def := governance.DefaultRoles()
	for _, agent := range clawops.AgentRoles {
		for _, a := range governance.AllActions() {
			if got, want := tbl.Lookup(agent, a), def.Lookup(agent, a); got != want {
				t.Errorf("%s/%s: got %+v, want %+v", agent, a, got, want)
			}
		}
	}
}
