package llm

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	openai "github.com/sashabaranov/go-openai"

	"github.com/gatewayforge/clawops"
)

func TestCompleteText(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, _ int, req openai.ChatCompletionRequest) {
		writeCompletion(w, req.Model+"-2025-01-01", openai.ChatCompletionMessage{Content: "  Fleet is green.  "}, "stop", 1200, 300)
	})
	c, _, _ := newTestClient(t, f, func(o *Options) {
		o.PriceTable = PriceTable{"model-a": {InputPerMTok: 2.5, OutputPerMTok: 10}}
	})
	req := userReq("status?")
	req.MaxTokens = 256
	req.User = "commander:telegram:omar"
	resp, err := c.Complete(context.Background(), req)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if got, want := resp.Text(), "Fleet is green."; got != want {
		t.Errorf("text: got %q, want %q", got, want)
	}
	if resp.Message.Role != RoleAssistant || resp.Model != "model-a" || resp.ServedModel != "model-a-2025-01-01" ||
		resp.FinishReason != "stop" || resp.Attempts != 1 {
		t.Errorf("response: got %+v", resp)
	}
	if got, want := resp.Usage, (Usage{Prompt: 1200, Completion: 300}); got != want {
		t.Errorf("usage: got %+v, want %+v", got, want)
	}
	if got, want := resp.CostUSD, (1200*2.5+300*10)/1e6; math.Abs(got-want) > 1e-12 {
		t.Errorf("cost: got %v, want %v", got, want)
	}
	r := f.requests()[0]
	if got, want := r.Path, "/v1/chat/completions"; got != want {
		t.Errorf("path: got %q, want %q", got, want)
	}
	if got, want := r.Header.Get("Authorization"), "Bearer "+testKey; got != want {
		t.Errorf("auth header: got %q, want %q", got, want)
	}
	if got, want := r.Raw["user"], "commander:telegram:omar"; got != want {
		t.Errorf("user: got %v, want %v", got, want)
	}
	if got, want := r.Raw["max_tokens"], float64(256); got != want {
		t.Errorf("max_tokens: got %v, want %v", got, want)
	}
	wantMsgs := []openai.ChatCompletionMessage{
		{Role: "system", Content: "You are Commander."},
		{Role: "user", Content: "status?"},
	}
	if d := cmp.Diff(wantMsgs, r.Req.Messages); d != "" {
		t.Errorf("messages (-want +got):\n%s", d)
	}
}

func TestCompleteToolCalls(t *testing.T) {
	schema := `{"type":"object","properties":{"instance":{"type":"string"}},"required":["instance"]}`
	f := newFakeAPI(t, func(w http.ResponseWriter, n int, req openai.ChatCompletionRequest) {
		if n == 0 {
			writeCompletion(w, req.Model, openai.ChatCompletionMessage{ToolCalls: []openai.ToolCall{
				{ID: "call_1", Type: "function", Function: openai.FunctionCall{Name: "gf_instance_health", Arguments: `{"instance":"demo1-pri"}`}},
				{ID: "call_2", Type: "function", Function: openai.FunctionCall{Name: "gf_fleet_status", Arguments: `{}`}},
			}}, "tool_calls", 50, 20)
			return
		}
		writeText(w, req.Model, "demo1-pri is healthy.")
	})
	c, _, _ := newTestClient(t, f, nil)
	tools := []ToolDef{
		{Name: "gf_instance_health", Description: "Health of one instance.", Schema: []byte(schema)},
		{Name: "gf_fleet_status", Description: "Fleet overview."},
	}
	req := Request{System: "sys", Messages: []Message{{Role: RoleUser, Content: "how is demo1?"}}, Tools: tools, ToolChoice: "auto"}
	resp, err := c.Complete(context.Background(), req)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	want := []ToolCall{
		{ID: "call_1", Name: "gf_instance_health", Arguments: `{"instance":"demo1-pri"}`},
		{ID: "call_2", Name: "gf_fleet_status", Arguments: `{}`},
	}
	if d := cmp.Diff(want, resp.Message.ToolCalls); d != "" {
		t.Errorf("tool calls (-want +got):\n%s", d)
	}
	if resp.FinishReason != "tool_calls" {
		t.Errorf("finish: got %q, want tool_calls", resp.FinishReason)
	}

	r0 := f.requests()[0]
	if got, want := len(r0.Req.Tools), 2; got != want {
		t.Fatalf("tools offered: got %d, want %d", got, want)
	}
	params, _ := json.Marshal(r0.Raw["tools"].([]any)[0].(map[string]any)["function"].(map[string]any)["parameters"])
	var gotSchema, wantSchema any
	_ = json.Unmarshal(params, &gotSchema)
	_ = json.Unmarshal([]byte(schema), &wantSchema)
	if d := cmp.Diff(wantSchema, gotSchema); d != "" {
		t.Errorf("schema sent (-want +got):\n%s", d)
	}
	if got, want := r0.Raw["tool_choice"], "auto"; got != want {
		t.Errorf("tool_choice: got %v, want %v", got, want)
	}

	// Second turn: the tool results go back, paired with their calls.
	req.Messages = append(req.Messages, resp.Message,
		Message{Role: RoleTool, ToolCallID: "call_1", Name: "gf_instance_health", Content: `{"ok":true}`},
		Message{Role: RoleTool, ToolCallID: "call_2", Content: `{"instances":2}`})
	resp, err = c.Complete(context.Background(), req)
	if err != nil {
		t.Fatalf("Complete 2: %v", err)
	}
	if got, want := resp.Text(), "demo1-pri is healthy."; got != want {
		t.Errorf("text: got %q, want %q", got, want)
	}
	msgs := f.requests()[1].Req.Messages
	if got, want := len(msgs), 5; got != want {
		t.Fatalf("messages sent: got %d, want %d", got, want)
	}
	if got := msgs[2].ToolCalls; len(got) != 2 || got[0].ID != "call_1" || got[0].Function.Arguments != `{"instance":"demo1-pri"}` {
		t.Errorf("assistant tool calls sent: got %+v", got)
	}
	if msgs[3].Role != "tool" || msgs[3].ToolCallID != "call_1" || msgs[3].Content != `{"ok":true}` {
		t.Errorf("tool result sent: got %+v", msgs[3])
	}
}

func TestMissingToolCallIDsAreSynthesised(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, _ int, req openai.ChatCompletionRequest) {
		writeCompletion(w, req.Model, openai.ChatCompletionMessage{ToolCalls: []openai.ToolCall{
			{Type: "function", Function: openai.FunctionCall{Name: "a", Arguments: `{}`}},
			{Type: "function", Function: openai.FunctionCall{Name: "b", Arguments: `{}`}},
		}}, "tool_calls", 1, 1)
	})
	c, _, _ := newTestClient(t, f, nil)
	resp, err := c.Complete(context.Background(), userReq("x"))
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{resp.Message.ToolCalls[0].ID, resp.Message.ToolCalls[1].ID}
	if ids[0] == "" || ids[1] == "" || ids[0] == ids[1] {
		t.Errorf("ids: got %q, want two distinct non-empty ids", ids)
	}
}

func (c fixedClock) Now() time.Time { return c.t }

func TestBadRequestsAreNotSent(t *testing.T) {
	call := []ToolCall{{ID: "c1", Name: "gf_restart", Arguments: `{}`}}
	tests := []struct {
		name string
		req  Request
	}{
		{"empty", Request{}},
		{"negative max tokens", Request{System: "s", MaxTokens: -1}},
		{"bad tool choice", Request{System: "s", ToolChoice: "always"}},
		{"required without tools", Request{System: "s", ToolChoice: "required"}},
		{"unknown role", Request{Messages: []Message{{Role: "robot", Content: "x"}}}},
		{"user with tool calls", Request{Messages: []Message{{Role: RoleUser, ToolCalls: call}}}},
		{"assistant with tool_call_id", Request{Messages: []Message{{Role: RoleAssistant, ToolCallID: "c1"}}}},
		{"tool call without id", Request{Messages: []Message{{Role: RoleAssistant, ToolCalls: []ToolCall{{Name: "x"}}}}}},
		{"tool call bad name", Request{Messages: []Message{{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "c", Name: "rm -rf"}}}}}},
		{"tool result without id", Request{Messages: []Message{{Role: RoleTool, Content: "x"}}}},
		{"orphan tool result", Request{Messages: []Message{{Role: RoleUser, Content: "x"}, {Role: RoleTool, ToolCallID: "zz", Content: "x"}}}},
		{"unanswered tool call at end", Request{Messages: []Message{{Role: RoleAssistant, ToolCalls: call}}}},
		{"unanswered tool call mid", Request{Messages: []Message{{Role: RoleAssistant, ToolCalls: call}, {Role: RoleUser, Content: "x"}}}},
		{"bad tool name", Request{System: "s", Tools: []ToolDef{{Name: "bad name"}}}},
		{"duplicate tool", Request{System: "s", Tools: []ToolDef{{Name: "a"}, {Name: "a"}}}},
		{"schema not json", Request{System: "s", Tools: []ToolDef{{Name: "a", Schema: []byte("{")}}}},
		{"schema not object", Request{System: "s", Tools: []ToolDef{{Name: "a", Schema: []byte("[1]")}}}},
	}
	f := newFakeAPI(t, func(w http.ResponseWriter, _ int, req openai.ChatCompletionRequest) { writeText(w, req.Model, "x") })
	c, _, _ := newTestClient(t, f, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Complete(context.Background(), tt.req)
			if got, want := clawops.ReasonOf(err), ReasonBadRequest; got != want {
				t.Errorf("reason: got %q, want %s (err %v)", got, want, err)
			}
		})
	}
	if got := len(f.requests()); got != 0 {
		t.Errorf("requests sent: got %d, want 0", got)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no base url", Options{Models: []string{"m"}}, "BaseURL is required"},
		{"relative url", Options{BaseURL: "api.openai.com/v1", Models: []string{"m"}}, "absolute http(s) URL"},
		{"ftp url", Options{BaseURL: "ftp://x/v1", Models: []string{"m"}}, "absolute http(s) URL"},
		{"no models", Options{BaseURL: "http://127.0.0.1/v1"}, "at least one model"},
		{"empty model", Options{BaseURL: "http://127.0.0.1/v1", Models: []string{"m", " "}}, "Models[1] is empty"},
		{"negative price", Options{BaseURL: "http://127.0.0.1/v1", Models: []string{"m"}, PriceTable: PriceTable{"m": {InputPerMTok: -1}}}, "finite and >= 0"},
		{"NaN price", Options{BaseURL: "http://127.0.0.1/v1", Models: []string{"m"}, PriceTable: PriceTable{"m": {OutputPerMTok: math.NaN()}}}, "finite and >= 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want error containing %q", err, tt.want)
			}
			if clawops.ReasonOf(err) != ReasonBadRequest {
				t.Errorf("reason: got %q, want %s", clawops.ReasonOf(err), ReasonBadRequest)
			}
		})
	}
}

func TestUnknownModelPriceWarnsOnce(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, _ int, req openai.ChatCompletionRequest) { writeText(w, req.Model, "x") })
	c, _, logs := newTestClient(t, f, func(o *Options) { o.PriceTable = PriceTable{"other": {1, 1}} })
	for range 3 {
		resp, err := c.Complete(context.Background(), userReq("hi"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.CostUSD != 0 {
			t.Errorf("cost: got %v, want 0", resp.CostUSD)
		}
	}
	if got := strings.Count(logs.String(), "no price for model"); got != 1 {
		t.Errorf("price warnings: got %d, want 1", got)
	}
}

func TestPriceByServedModel(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, _ int, _ openai.ChatCompletionRequest) {
		writeCompletion(w, "gpt-4o-2024-08-06", openai.ChatCompletionMessage{Content: "x"}, "stop", 1_000_000, 1_000_000)
	})
	c, _, _ := newTestClient(t, f, func(o *Options) {
		o.Models = []string{"alias"}
		o.PriceTable = PriceTable{"gpt-4o-2024-08-06": {InputPerMTok: 2.5, OutputPerMTok: 10}}
	})
	resp, err := c.Complete(context.Background(), userReq("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.CostUSD, 12.5; got != want {
		t.Errorf("cost: got %v, want %v", got, want)
	}
}

func TestMaxTokensFieldPerModel(t *testing.T) {
	tests := []struct {
		model, field string
	}{
		{"llama3.1:8b", "max_tokens"},
		{"gpt-4o", "max_tokens"},
		{"o3-mini", "max_completion_tokens"},
		{"gpt-5", "max_completion_tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			f := newFakeAPI(t, func(w http.ResponseWriter, _ int, req openai.ChatCompletionRequest) { writeText(w, req.Model, "x") })
			c, _, _ := newTestClient(t, f, func(o *Options) { o.Models = []string{tt.model} })
			req := userReq("hi")
			req.MaxTokens = 100
			if _, err := c.Complete(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			raw := f.requests()[0].Raw
			if got := raw[tt.field]; got != float64(100) {
				t.Errorf("%s: got %v, want 100 (body %v)", tt.field, got, raw)
			}
		})
	}
}

func TestAzureDialect(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, _ int, req openai.ChatCompletionRequest) {
		writeText(w, req.Model, "azure ok")
	})
	c, _, _ := newTestClient(t, f, func(o *Options) {
		o.BaseURL = f.srv.URL
		o.Models = []string{"gpt-4o"}
		o.Azure = &Azure{Deployments: map[string]string{"gpt-4o": "ops-gpt4o"}}
	})
	resp, err := c.Complete(context.Background(), userReq("hi"))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if resp.Text() != "azure ok" {
		t.Errorf("text: got %q", resp.Text())
	}
	r := f.requests()[0]
	if got, want := r.Path, "/openai/deployments/ops-gpt4o/chat/completions"; got != want {
		t.Errorf("path: got %q, want %q", got, want)
	}
	if got, want := r.Query, "api-version="+DefaultAzureVersion; got != want {
		t.Errorf("query: got %q, want %q", got, want)
	}
	if got := r.Header.Get("api-key"); got != testKey {
		t.Errorf("api-key header: got %q, want the key", got)
	}
	if got := r.Header.Get("Authorization"); got != "" {
		t.Errorf("Authorization: got %q, want none", got)
	}
}
