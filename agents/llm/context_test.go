package llm

import (
	"context"
	"net/http"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"
)

func TestContextWarning(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, _ int, req openai.ChatCompletionRequest) { writeText(w, req.Model, "x") })
	c, _, logs := newTestClient(t, f, func(o *Options) {
		o.ContextWindow = map[string]int{"model-a": 1000}
	})
	small := userReq("hi")
	if _, ok := c.CheckContext(small); ok {
		t.Errorf("small request: got a warning")
	}
	resp, err := c.Complete(context.Background(), small)
	if err != nil || resp.Warning != nil {
		t.Fatalf("small request: got warning %v, err %v", resp.Warning, err)
	}

	big := userReq(strings.Repeat("x", 3400)) // ~850 tokens of content + framing
	w, ok := c.CheckContext(big)
	if !ok {
		t.Fatalf("big request (%d tokens): got no warning", EstimateTokens(big))
	}
	if w.Model != "model-a" || w.Window != 1000 || w.Estimated != EstimateTokens(big) {
		t.Errorf("warning: got %+v", w)
	}
	if want := 500 - estimateFixed(big); w.MessageBudget != want {
		t.Errorf("message budget: got %d, want %d", w.MessageBudget, want)
	}
	resp, err = c.Complete(context.Background(), big)
	if err != nil || resp.Warning == nil {
		t.Fatalf("big request: got warning %v, err %v", resp.Warning, err)
	}
	if !strings.Contains(logs.String(), "context window nearly full") {
		t.Errorf("logs: want a context warning")
	}
	// Compacting to the budget brings it back under the threshold.
	compacted, err := Compact(context.Background(), append(big.Messages, Message{Role: RoleAssistant, Content: "ok"}, Message{Role: RoleUser, Content: "next"}), w.MessageBudget, nil)
	if err != nil {
		t.Fatal(err)
	}
	big.Messages = compacted
	if _, ok := c.CheckContext(big); ok {
		t.Errorf("after compaction: still warned (%d tokens)", EstimateTokens(big))
	}
}

func TestUnknownWindowNeverWarns(t *testing.T) {
	c, err := New(Options{BaseURL: "http://127.0.0.1:1/v1", Models: []string{"m"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.CheckContext(userReq(strings.Repeat("x", 1<<20))); ok {
		t.Error("got a warning for a model without a known window")
	}
	c2, _ := New(Options{BaseURL: "http://127.0.0.1:1/v1", Models: []string{"m"}, DefaultContextWindow: 100})
	if _, ok := c2.CheckContext(userReq(strings.Repeat("x", 1000))); !ok {
		t.Error("DefaultContextWindow: got no warning")
	}
}

func TestEstimateTokens(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want int
	}{
		{"empty", Request{}, 0},
		{"system only", Request{System: "abcd"}, 4 + 1},
		{"rounds up", Request{Messages: []Message{{Role: RoleUser, Content: "abcde"}}}, 4 + 2},
		{"tool call", Request{Messages: []Message{{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "c1", Name: "gf_x", Arguments: `{"a":1}`}}}}}, 4 + 4 + 1 + 1 + 2},
		{"tool def", Request{Tools: []ToolDef{{Name: "abcd", Description: "abcdefgh", Schema: []byte("{}")}}}, 8 + 1 + 2 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EstimateTokens(tt.req); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}
