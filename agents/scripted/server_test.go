package scripted

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	openai "github.com/sashabaranov/go-openai"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents/llm"
)

func startServer(t *testing.T, s Script, opts ...Option) *Server {
	t.Helper()
	srv := NewServer(s, opts...)
	t.Cleanup(srv.Close)
	return srv
}

func openaiClient(srv *Server, key string) *openai.Client {
	cfg := openai.DefaultConfig(key)
	cfg.BaseURL = srv.BaseURL()
	return openai.NewClientWithConfig(cfg)
}

func strp(s string) *string { return &s }

var healthTool = openai.Tool{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
	Name: "gf_instance_health", Description: "Health of one instance.",
	Parameters: json.RawMessage(`{"type":"object","properties":{"instance":{"type":"string"}}}`),
}}

func TestReplayToolCallsWithGoOpenAI(t *testing.T) {
	srv := startServer(t, Script{Name: "t", Steps: []Step{
		{When: Match{LastUserContains: "how is DEMO1", ToolsOffered: []string{"gf_instance_health"}},
			ToolCalls: []Call{{Name: "gf_instance_health", Args: map[string]any{"instance": "demo1-pri", "deep": true}}, {Name: "gf_fleet_status"}}},
		{When: Match{LastToolContains: `"ok":true`}, Reply: "demo1-pri is healthy."},
	}}, WithClock(fixedClock{time.Unix(1_700_000_000, 0)}))
	c := openaiClient(srv, "")
	ctx := context.Background()
	msgs := []openai.ChatCompletionMessage{{Role: "system", Content: "You are Commander."}, {Role: "user", Content: "How is demo1?"}}
	resp, err := c.CreateChatCompletion(ctx, openai.ChatCompletionRequest{Model: "scripted", Messages: msgs, Tools: []openai.Tool{healthTool}})
	if err != nil {
		t.Fatalf("first call: %v", err)
	}
	ch := resp.Choices[0]
	if ch.FinishReason != openai.FinishReasonToolCalls || resp.Model != "scripted" || resp.Created != 1_700_000_000 {
		t.Errorf("response: got finish %q model %q created %d", ch.FinishReason, resp.Model, resp.Created)
	}
	want := []openai.ToolCall{
		{ID: "call_1", Type: "function", Function: openai.FunctionCall{Name: "gf_instance_health", Arguments: `{"deep":true,"instance":"demo1-pri"}`}},
		{ID: "call_2", Type: "function", Function: openai.FunctionCall{Name: "gf_fleet_status", Arguments: `{}`}},
	}
	if d := cmp.Diff(want, ch.Message.ToolCalls); d != "" {
		t.Errorf("tool calls (-want +got):\n%s", d)
	}
	if resp.Usage.PromptTokens <= 0 || resp.Usage.CompletionTokens <= 0 {
		t.Errorf("usage: got %+v, want estimates > 0", resp.Usage)
	}

	msgs = append(msgs, ch.Message,
		openai.ChatCompletionMessage{Role: "tool", ToolCallID: "call_1", Content: `{"ok":true}`},
		openai.ChatCompletionMessage{Role: "tool", ToolCallID: "call_2", Content: `{"instances":2}`})
	resp, err = c.CreateChatCompletion(ctx, openai.ChatCompletionRequest{Model: "scripted", Messages: msgs, Tools: []openai.Tool{healthTool}})
	if err != nil {
		t.Fatalf("second call: %v", err)
	}
	if got := resp.Choices[0].Message.Content; got != "demo1-pri is healthy." {
		t.Errorf("reply: got %q", got)
	}
	if err := srv.Verify(); err != nil {
		t.Errorf("Verify: %v", err)
	}

	reqs := srv.Requests()
	if len(reqs) != 2 {
		t.Fatalf("recorded: got %d, want 2", len(reqs))
	}
	if got := reqs[0].ToolsOffered(); !cmp.Equal(got, []string{"gf_instance_health"}) {
		t.Errorf("tools offered: got %v", got)
	}
	if reqs[0].Agent != clawops.Commander || reqs[0].Step != 0 || reqs[1].Step != 1 || reqs[0].Status != 200 {
		t.Errorf("recorded: got %+v", reqs[0])
	}
	wantResults := []ToolResult{{CallID: "call_1", Name: "gf_instance_health", Content: `{"ok":true}`}, {CallID: "call_2", Name: "gf_fleet_status", Content: `{"instances":2}`}}
	if d := cmp.Diff(wantResults, reqs[1].ToolResults()); d != "" {
		t.Errorf("tool results (-want +got):\n%s", d)
	}
	if got := reqs[1].LastUser(); got != "How is demo1?" {
		t.Errorf("last user: got %q", got)
	}
}

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

func TestOffScriptIsAReadable400(t *testing.T) {
	srv := startServer(t, Script{Name: "t", Steps: []Step{
		{When: Match{LastUserContains: "Provision 20"}, Reply: "Roger.", Source: "provisioning.yaml:9"},
	}})
	c := openaiClient(srv, "")
	_, err := c.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
		Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "Tear everything down"}},
	})
	var apiErr *openai.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("got %v, want an *openai.APIError", err)
	}
	if apiErr.HTTPStatusCode != 400 || apiErr.Code != "off_script" || apiErr.Type != "invalid_request_error" {
		t.Errorf("error: got status %d code %v type %q", apiErr.HTTPStatusCode, apiErr.Code, apiErr.Type)
	}
	for _, want := range []string{"off script", "request 1", "agent commander", "provisioning.yaml:9", `"Tear everything down"`, `does not contain "Provision 20"`} {
		if !strings.Contains(apiErr.Message, want) {
			t.Errorf("message %q: want it to contain %q", apiErr.Message, want)
		}
	}
	verr := srv.Verify()
	if verr == nil || !strings.Contains(verr.Error(), "off script") || !strings.Contains(verr.Error(), "was never used") {
		t.Errorf("Verify: got %v, want the off-script request and the unused step", verr)
	}
	if got := len(srv.Unused()); got != 1 {
		t.Errorf("unused: got %d, want 1", got)
	}
	if got := len(srv.OffScript()); got != 1 {
		t.Errorf("off script: got %d, want 1", got)
	}

	// The step is still there for a request that matches.
	resp, err := c.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
		Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "provision 20 pairs"}},
	})
	if err != nil || resp.Choices[0].Message.Content != "Roger." {
		t.Fatalf("matching request: got %v, %v", resp, err)
	}
	_, err = c.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
		Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "and then?"}},
	})
	if err == nil || !strings.Contains(err.Error(), "all 1 steps for agent commander were used") {
		t.Errorf("past the end: got %v", err)
	}
}

func TestMatchConditions(t *testing.T) {
	base := openai.ChatCompletionRequest{Model: "gpt-x", Messages: []openai.ChatCompletionMessage{
		{Role: "system", Content: "You are GUARDIAN."},
		{Role: "user", Content: "sweep"},
		{Role: "assistant", ToolCalls: []openai.ToolCall{{ID: "a", Type: "function", Function: openai.FunctionCall{Name: "gf_fleet_status"}}}},
		{Role: "tool", ToolCallID: "a", Content: "2 degraded"},
	}, Tools: []openai.Tool{healthTool}}
	tests := []struct {
		name    string
		m       Match
		wantErr string
	}{
		{"empty holds", Match{}, ""},
		{"all hold", Match{Model: "gpt-x", LastUserContains: "SWEEP", LastToolContains: "Degraded", SystemContains: "guardian", ToolsOffered: []string{"gf_instance_health"}, ToolsNotOffered: []string{"gf_teardown"}}, ""},
		{"model", Match{Model: "other"}, `model is "gpt-x", want "other"`},
		{"user", Match{LastUserContains: "provision"}, `does not contain "provision"`},
		{"tool", Match{LastToolContains: "healthy"}, `no tool result after the last assistant message contains "healthy"`},
		{"system", Match{SystemContains: "Forge"}, `system prompt does not contain "Forge"`},
		{"offered", Match{ToolsOffered: []string{"gf_restart"}}, "tool gf_restart is not offered (offered: gf_instance_health)"},
		{"not offered", Match{ToolsNotOffered: []string{"gf_instance_health"}}, "tool gf_instance_health is offered but must not be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.m.match(base)
			if tt.wantErr == "" && err != nil {
				t.Errorf("got %v, want nil", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
	noTools := base
	noTools.Messages = base.Messages[:2]
	if err := (Match{LastToolContains: "x"}).match(noTools); err == nil {
		t.Error("last_tool_contains without tool results: got nil error")
	}
}

func TestBadRequestsAreRefusedLikeOpenAI(t *testing.T) {
	srv := startServer(t, Script{Name: "t", Steps: []Step{{Reply: "never"}}}, WithAPIKey("sk-right"))
	user := `[{"role":"user","content":"hi"}]`
	tests := []struct {
		name, method, path, auth, body string
		status                         int
		code, msg                      string
	}{
		{"wrong path", "POST", "/v1/completions", "sk-right", `{}`, 404, "unknown_url", "Unknown request URL"},
		{"GET", "GET", ChatPath, "sk-right", ``, 405, "method_not_allowed", "Use POST"},
		{"no key", "POST", ChatPath, "", `{"model":"m","messages":` + user + `}`, 401, "invalid_api_key", "Incorrect API key"},
		{"wrong key", "POST", ChatPath, "sk-wrong", `{"model":"m","messages":` + user + `}`, 401, "invalid_api_key", "Incorrect API key"},
		{"not json", "POST", ChatPath, "sk-right", `{"model":`, 400, "invalid_json", "could not parse"},
		{"no model", "POST", ChatPath, "sk-right", `{"messages":` + user + `}`, 400, "invalid_request", "model parameter"},
		{"no messages", "POST", ChatPath, "sk-right", `{"model":"m","messages":[]}`, 400, "invalid_request", "at least one message"},
		{"bad role", "POST", ChatPath, "sk-right", `{"model":"m","messages":[{"role":"robot","content":"x"}]}`, 400, "invalid_request", `invalid role "robot"`},
		{"orphan tool result", "POST", ChatPath, "sk-right", `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"tool","tool_call_id":"c9","content":"x"}]}`, 400, "invalid_request", "must be a response to a preceding message"},
		{"missing tool result", "POST", ChatPath, "sk-right", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"user","content":"x"}]}`, 400, "invalid_request", "missing c1"},
		{"unanswered at end", "POST", ChatPath, "sk-right", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]}]}`, 400, "invalid_request", "missing c1"},
		{"n=2", "POST", ChatPath, "sk-right", `{"model":"m","n":2,"messages":` + user + `}`, 400, "invalid_request", "n > 1"},
		{"bad tool name", "POST", ChatPath, "sk-right", `{"model":"m","messages":` + user + `,"tools":[{"type":"function","function":{"name":"rm -rf","parameters":{}}}]}`, 400, "invalid_request", "must match"},
		{"duplicate tool", "POST", ChatPath, "sk-right", `{"model":"m","messages":` + user + `,"tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"a"}}]}`, 400, "invalid_request", "duplicate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL()+tt.path, strings.NewReader(tt.body))
			if tt.auth != "" {
				req.Header.Set("Authorization", "Bearer "+tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body apiError
			raw, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("body %q is not OpenAI's error JSON: %v", raw, err)
			}
			if resp.StatusCode != tt.status || body.Error.Code == nil || *body.Error.Code != tt.code || !strings.Contains(body.Error.Message, tt.msg) {
				t.Errorf("got %d %s, want %d code %s message containing %q", resp.StatusCode, raw, tt.status, tt.code, tt.msg)
			}
		})
	}
	if got := len(srv.Unused()); got != 1 {
		t.Errorf("a refused request consumed the step: unused %d, want 1", got)
	}
	if got := len(srv.Requests()); got != len(tests) {
		t.Errorf("recorded: got %d, want %d", got, len(tests))
	}
}

func TestInvalidScriptAnswers400(t *testing.T) {
	srv := startServer(t, Script{Name: "broken", Steps: []Step{{Reply: "x", Error: &Fault{Status: 500}}}})
	_, err := openaiClient(srv, "").CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
		Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}},
	})
	if err == nil || !strings.Contains(err.Error(), "error excludes reply") {
		t.Errorf("got %v, want the script's problem", err)
	}
	if err := srv.Verify(); err == nil || !strings.Contains(err.Error(), "script broken: step 1") {
		t.Errorf("Verify: got %v", err)
	}
}

func TestStepValidate(t *testing.T) {
	tests := []struct {
		name string
		s    Step
		want string
	}{
		{"empty", Step{}, "needs reply, tool_calls or error"},
		{"bad agent", Step{Agent: "boss", Reply: "x"}, `agent "boss"`},
		{"error plus reply", Step{Reply: "x", Error: &Fault{Status: 429}}, "error excludes"},
		{"error status", Step{Error: &Fault{Status: 200}}, "400-599"},
		{"bad finish", Step{Reply: "x", FinishReason: "done"}, "finish_reason"},
		{"bad tool name", Step{ToolCalls: []Call{{Name: "rm -rf"}}}, "must match"},
		{"args and raw", Step{ToolCalls: []Call{{Name: "a", Args: map[string]any{}, RawArgs: strp("{")}}}, "exclude each other"},
		{"duplicate id", Step{ToolCalls: []Call{{ID: "x", Name: "a"}, {ID: "x", Name: "b"}}}, "used twice"},
		{"unjsonable args", Step{ToolCalls: []Call{{Name: "a", Args: map[string]any{"f": func() {}}}}}, "cannot be JSON"},
		{"bad when tool", Step{Reply: "x", When: Match{ToolsOffered: []string{"a b"}}}, "must match"},
		{"negative usage", Step{Reply: "x", Usage: &StepUsage{Prompt: -1}}, ">= 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.s.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestAgentsHaveTheirOwnQueues(t *testing.T) {
	srv := startServer(t, Script{Name: "t", Steps: []Step{
		{Reply: "commander 1"},
		{Agent: clawops.Forge, Reply: "forge 1"},
		{Reply: "commander 2"},
		{Agent: clawops.Forge, Reply: "forge 2"},
	}})
	c := openaiClient(srv, "")
	ask := func(user string) string {
		t.Helper()
		resp, err := c.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
			Model: "m", User: user, Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "x"}},
		})
		if err != nil {
			return "error: " + err.Error()
		}
		return resp.Choices[0].Message.Content
	}
	got := []string{ask("forge:session-7"), ask(""), ask("forge"), ask("commander:telegram:omar"), ask("briefer")}
	want := []string{"forge 1", "commander 1", "forge 2", "commander 2", ""}
	for i := range want[:4] {
		if got[i] != want[i] {
			t.Errorf("answer %d: got %q, want %q", i, got[i], want[i])
		}
	}
	if !strings.Contains(got[4], `has no step for agent "briefer"`) {
		t.Errorf("briefer: got %q", got[4])
	}
}

func TestRawArgsAndUsageOverride(t *testing.T) {
	srv := startServer(t, Script{Name: "t", Steps: []Step{{
		ToolCalls:    []Call{{ID: "x1", Name: "gf_restart", RawArgs: strp(`{"instance": demo1-pri`)}},
		Usage:        &StepUsage{Prompt: 1234, Completion: 56},
		FinishReason: "length",
	}}})
	resp, err := openaiClient(srv, "").CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
		Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "x"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tc := resp.Choices[0].Message.ToolCalls[0]
	if tc.ID != "x1" || tc.Function.Arguments != `{"instance": demo1-pri` {
		t.Errorf("tool call: got %+v", tc)
	}
	if resp.Usage.PromptTokens != 1234 || resp.Usage.CompletionTokens != 56 || resp.Usage.TotalTokens != 1290 {
		t.Errorf("usage: got %+v", resp.Usage)
	}
	if resp.Choices[0].FinishReason != "length" {
		t.Errorf("finish: got %q", resp.Choices[0].FinishReason)
	}
}

func TestStreaming(t *testing.T) {
	srv := startServer(t, Script{Name: "t", Steps: []Step{
		{Reply: "Rolling push started — batch 1/17.", ToolCalls: []Call{
			{Name: "gf_config_push", Args: map[string]any{"rolling": true}}, {Name: "gf_fleet_status"},
		}},
	}})
	stream, err := openaiClient(srv, "").CreateChatCompletionStream(context.Background(), openai.ChatCompletionRequest{
		Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "push"}},
		StreamOptions: &openai.StreamOptions{IncludeUsage: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var text strings.Builder
	var calls []openai.ToolCall
	var finish openai.FinishReason
	var usage *openai.Usage
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		if chunk.Usage != nil {
			usage = chunk.Usage
		}
		for _, ch := range chunk.Choices {
			text.WriteString(ch.Delta.Content)
			for _, tc := range ch.Delta.ToolCalls {
				tc.Index = nil
				calls = append(calls, tc)
			}
			if ch.FinishReason != "" {
				finish = ch.FinishReason
			}
		}
	}
	if got, want := text.String(), "Rolling push started — batch 1/17."; got != want {
		t.Errorf("text: got %q, want %q", got, want)
	}
	want := []openai.ToolCall{
		{ID: "call_1", Type: "function", Function: openai.FunctionCall{Name: "gf_config_push", Arguments: `{"rolling":true}`}},
		{ID: "call_2", Type: "function", Function: openai.FunctionCall{Name: "gf_fleet_status", Arguments: `{}`}},
	}
	if d := cmp.Diff(want, calls); d != "" {
		t.Errorf("streamed tool calls (-want +got):\n%s", d)
	}
	if finish != openai.FinishReasonToolCalls || usage == nil || usage.TotalTokens == 0 {
		t.Errorf("got finish %q usage %v", finish, usage)
	}
	if got := srv.Requests()[0]; !got.Stream {
		t.Errorf("recorded stream: got false")
	}
}

// The project's own client, with retries: a scripted 429 then the answer.
func TestDrivenByLLMClient(t *testing.T) {
	srv := startServer(t, Script{Name: "t", Steps: []Step{
		{Error: &Fault{Status: 429, Type: "rate_limit_error", Message: "slow down", RetryAfter: "2"}},
		{When: Match{LastUserContains: "status", ToolsOffered: []string{"gf_fleet_status"}}, ToolCalls: []Call{{Name: "gf_fleet_status"}}},
		{When: Match{LastToolContains: "847"}, Reply: "847 active pairs."},
		{Agent: clawops.Forge, Error: &Fault{Status: 401, Message: "bad key"}},
	}}, WithAPIKey("sk-scripted"))
	var waits []time.Duration
	c, err := llm.New(llm.Options{
		BaseURL: srv.BaseURL(), APIKey: "sk-scripted", Models: []string{"scripted-model"},
		Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	req := llm.Request{
		System:   "You are Commander.",
		Messages: []llm.Message{{Role: llm.RoleUser, Content: "fleet status?"}},
		Tools:    []llm.ToolDef{{Name: "gf_fleet_status", Description: "Fleet overview."}},
		User:     "commander:web:omar",
	}
	resp, err := c.Complete(context.Background(), req)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if resp.Attempts != 2 || len(waits) != 1 || waits[0] != 2*time.Second {
		t.Errorf("retry: got attempts %d waits %v, want 2 and [2s]", resp.Attempts, waits)
	}
	if len(resp.Message.ToolCalls) != 1 || resp.Message.ToolCalls[0].Name != "gf_fleet_status" {
		t.Fatalf("tool calls: got %+v", resp.Message.ToolCalls)
	}
	req.Messages = append(req.Messages, resp.Message, llm.Message{Role: llm.RoleTool, ToolCallID: resp.Message.ToolCalls[0].ID, Content: `{"active_pairs":847}`})
	resp, err = c.Complete(context.Background(), req)
	if err != nil || resp.Text() != "847 active pairs." {
		t.Fatalf("second: got %q, %v", resp.Text(), err)
	}
	req.User = "forge"
	_, err = c.Complete(context.Background(), req)
	if got := clawops.ReasonOf(err); got != llm.ReasonAuthFailed {
		t.Errorf("scripted 401: got %s (%v), want %s", got, err, llm.ReasonAuthFailed)
	}
	if err := srv.Verify(); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if got := srv.Requests()[1].Request.User; got != "commander:web:omar" {
		t.Errorf("user field: got %q", got)
	}
}

func TestBodyTooLarge(t *testing.T) {
	srv := startServer(t, Script{Name: "t", Steps: []Step{{Reply: "x"}}})
	body := bytes.Repeat([]byte("x"), maxBody+1)
	resp, err := http.Post(srv.BaseURL()+"/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status: got %d, want 413", resp.StatusCode)
	}
}
