package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/gatewayforge/clawops/internal/syncbuf"
)

// fakeAPI is an OpenAI-compatible endpoint on 127.0.0.1 speaking the real chat-completions
// JSON. Each test sets handle; every request is recorded.
type fakeAPI struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []gotRequest
	handle func(w http.ResponseWriter, n int, req openai.ChatCompletionRequest)
}

type gotRequest struct {
	Path   string
	Query  string
	Header http.Header
	Raw    map[string]any
	Req    openai.ChatCompletionRequest
}

func newFakeAPI(t *testing.T, handle func(w http.ResponseWriter, n int, req openai.ChatCompletionRequest)) *fakeAPI {
	t.Helper()
	f := &fakeAPI{handle: handle}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req openai.ChatCompletionRequest
		if err := json.Unmarshal(body, &req); err != nil {
			writeAPIError(w, http.StatusBadRequest, "invalid_request_error", "bad json: "+err.Error(), nil)
			return
		}
		var raw map[string]any
		_ = json.Unmarshal(body, &raw)
		f.mu.Lock()
		n := len(f.reqs)
		f.reqs = append(f.reqs, gotRequest{Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Raw: raw, Req: req})
		f.mu.Unlock()
		f.handle(w, n, req)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) requests() []gotRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]gotRequest(nil), f.reqs...)
}

func (f *fakeAPI) models() []string {
	var out []string
	for _, r := range f.requests() {
		out = append(out, r.Req.Model)
	}
	return out
}

func writeCompletion(w http.ResponseWriter, model string, msg openai.ChatCompletionMessage, finish string, prompt, completion int) {
	msg.Role = openai.ChatMessageRoleAssistant
	resp := openai.ChatCompletionResponse{
		ID: "chatcmpl-test", Object: "chat.completion", Created: 1700000000, Model: model,
		Choices: []openai.ChatCompletionChoice{{Index: 0, Message: msg, FinishReason: openai.FinishReason(finish)}},
		Usage:   openai.Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion},
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func writeText(w http.ResponseWriter, model, text string) {
	writeCompletion(w, model, openai.ChatCompletionMessage{Content: text}, "stop", 10, 5)
}

func writeAPIError(w http.ResponseWriter, status int, typ, msg string, hdr map[string]string) {
	for k, v := range hdr {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": nil}})
}

// sleeps records the waits the client asked for instead of sleeping.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer = syncbuf.Buffer

const testKey = "sk-test-SECRET-0123456789"

// newTestClient builds a client on f with recorded sleeps, fixed jitter and a debug log
// captured in logs (checked for secrets).
func newTestClient(t *testing.T, f *fakeAPI, mutate func(*Options)) (*Client, *sleeps, *syncBuffer) {
	t.Helper()
	sl := &sleeps{}
	logs := &syncBuffer{}
	opts := Options{
		BaseURL:    f.srv.URL + "/v1",
		APIKey:     testKey,
		Models:     []string{"model-a", "model-b"},
		MaxRetries: 2,
		Backoff:    100 * time.Millisecond,
		Sleep:      sl.sleep,
		Rand:       func() float64 { return 0.5 },
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mutate != nil {
		mutate(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if bytes.Contains([]byte(logs.String()), []byte(testKey)) {
			t.Errorf("API key found in logs:\n%s", logs.String())
		}
	})
	return c, sl, logs
}

func userReq(text string) Request {
	return Request{System: "You are Commander.", Messages: []Message{{Role: RoleUser, Content: text}}}
}
