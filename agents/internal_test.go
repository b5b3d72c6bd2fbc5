package agents

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents/llm"
)

func TestRepairCalls(t *testing.T) {
	call := func(id string) llm.ToolCall { return llm.ToolCall{ID: id, Name: "gf_fleet_status", Arguments: "{}"} }
	in := []llm.Message{
		{Role: llm.RoleUser, Content: "q"},
		{Role: llm.RoleAssistant, ToolCalls: []llm.ToolCall{call("a"), call("b")}},
		{Role: llm.RoleTool, ToolCallID: "a", Content: "ra"},
		// b's result was never written (the process stopped)
		{Role: llm.RoleTool, ToolCallID: "zz", Content: "orphan"},
		{Role: llm.RoleAssistant, Content: "thinking", ToolCalls: []llm.ToolCall{call("c")}},
		{Role: llm.RoleUser, Content: "next"},
	}
	want := []llm.Message{
		{Role: llm.RoleUser, Content: "q"},
		{Role: llm.RoleAssistant, ToolCalls: []llm.ToolCall{call("a")}},
		{Role: llm.RoleTool, ToolCallID: "a", Content: "ra"},
		{Role: llm.RoleAssistant, Content: "thinking", ToolCalls: []llm.ToolCall{}},
		{Role: llm.RoleUser, Content: "next"},
	}
	if diff := cmp.Diff(want, repairCalls(in)); diff != "" {
		t.Errorf("repairCalls (-want +got):\n%s", diff)
	}
}

func TestSessionKeys(t *testing.T) {
	for _, k := range []SessionKey{
		{Agent: clawops.Commander, Channel: "telegram", Identity: "omar"},
		{Agent: clawops.Guardian, Channel: "", Identity: "agent:guardian"},
		{Agent: clawops.Forge, Channel: "spawn", Identity: "commander-20261123T090000-1"},
	} {
		got, err := ParseSessionKey(k.String())
		if err != nil || got != k {
			t.Errorf("round trip of %v: got %v, %v", k, got, err)
		}
	}
	for _, bad := range []string{"", "commander", "janitor:web:x", "commander:web:", strings.Repeat("a", 500)} {
		if _, err := ParseSessionKey(bad); clawops.ReasonOf(err) != ReasonUnknownSession {
			t.Errorf("ParseSessionKey(%.20q): got %v, want %s", bad, err, ReasonUnknownSession)
		}
	}
	if isOperatorSession(mainSession(clawops.Guardian)) || !isOperatorSession(SessionKey{Agent: clawops.Commander, Identity: "omar"}) {
		t.Error("isOperatorSession: an agent's main session is not a person's, a person's is")
	}
}

func TestAsJSONObject(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"a":1}`, `{"a":1}`},
		{`"provision"`, `{"request":"provision"}`},
		{`[1,2]`, `{"request":[1,2]}`},
		{`  {"b":2} `, `{"b":2}`},
	}
	for _, tt := range tests {
		if got := string(asJSONObject(json.RawMessage(tt.in))); got != tt.want {
			t.Errorf("asJSONObject(%s): got %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestCutBytes(t *testing.T) {
	s := strings.Repeat("é", 10) // 20 bytes
	got := cutBytes(s, 9)
	if len(got) > 9 || !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "éé") {
		t.Errorf("cutBytes: got %q (%d bytes)", got, len(got))
	}
	if cutBytes("short", 10) != "short" {
		t.Error("cutBytes changed a short string")
	}
}

func FuzzParseSessionKey(f *testing.F) {
	for _, s := range []string{"commander:telegram:omar", "guardian::agent:guardian", "x", "forge:spawn:a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseSessionKey(s)
		if err != nil {
			return
		}
		if k.String() != s {
			t.Errorf("ParseSessionKey(%q).String() = %q", s, k.String())
		}
	})
}

func FuzzEventValidate(f *testing.F) {
	f.Add("PAIR_FAILED", "demo1-pri", "critical", `{"a":1}`)
	f.Add("x", "", "", "")
	f.Fuzz(func(t *testing.T, typ, subject, sev, payload string) {
		e := Event{Type: typ, Subject: subject, Severity: Severity(sev), Payload: json.RawMessage(payload)}
		if err := e.validate(); err != nil {
			if clawops.ReasonOf(err) != clawops.ReasonMalformedRequest {
				t.Errorf("validate: got %v, want MALFORMED_REQUEST", err)
			}
			return
		}
		if !eventTypeRE.MatchString(typ) || (payload != "" && !json.Valid([]byte(payload))) {
			t.Errorf("validate accepted %q / %q", typ, payload)
		}
	})
}

func FuzzMessageArgs(f *testing.F) {
	f.Add(`{"text":"hello","priority":"high"}`)
	f.Add(`{"text":""}`)
	f.Add(`{"text":"x","to":"a\nb"}`)
	f.Fuzz(func(t *testing.T, raw string) {
		a, err := decodeMessageArgs("fuzz", json.RawMessage(raw))
		if err != nil {
			if clawops.ReasonOf(err) != clawops.ReasonBadArguments {
				t.Errorf("got %v, want BAD_ARGUMENTS", err)
			}
			return
		}
		if strings.TrimSpace(a.Text) == "" || len(a.Text) > MaxNoticeBytes || strings.ContainsAny(a.To, "\n\r\x00") {
			t.Errorf("accepted %+v", a)
		}
	})
}
