package scripted

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"

	openai "github.com/sashabaranov/go-openai"

	"github.com/gatewayforge/clawops"
)

// ChatPath is the only endpoint the server implements.
const ChatPath = "/v1/chat/completions"

// maxBody bounds a request body.
const maxBody = 8 << 20

// Option configures a Handler.
type Option func(*Handler)

// WithAPIKey makes the server demand "Authorization: Bearer key" (401 otherwise), as a
// real endpoint does.
func WithAPIKey(key string) Option { return func(h *Handler) { h.apiKey = key } }

// WithClock sets the clock of the responses' "created" field.
func WithClock(c clawops.Clock) Option { return func(h *Handler) { h.clock = c } }

// WithAgentOf replaces how a request is attributed to an agent (by default: its `user`
// field up to the first ':', or the script's default agent when that is empty).
func WithAgentOf(f func(openai.ChatCompletionRequest) clawops.AgentRole) Option {
	return func(h *Handler) { h.agentOf = f }
}

// Handler is the scripted endpoint as an http.Handler. It is safe for concurrent use.
type Handler struct {
	apiKey  string
	clock   clawops.Clock
	agentOf func(openai.ChatCompletionRequest) clawops.AgentRole

	mu      sync.Mutex
	script  Script
	invalid error
	queue   map[clawops.AgentRole][]int // step indexes per agent, in order
	next    map[clawops.AgentRole]int
	used    []bool
	reqs    []Recorded
	off     []string
	callSeq int
}

// NewHandler builds a Handler replaying script. An invalid script is not a panic: every
// request gets a 400 naming the problem, and Verify returns it.
func NewHandler(script Script, opts ...Option) *Handler {
	h := &Handler{
		script: script,
		queue:  map[clawops.AgentRole][]int{},
		next:   map[clawops.AgentRole]int{},
		used:   make([]bool, len(script.Steps)),
	}
	for _, o := range opts {
		o(h)
	}
	h.clock = clawops.ClockOrSystem(h.clock)
	h.invalid = script.Validate()
	for i, st := range script.Steps {
		a := st.Agent
		if a == "" {
			a = script.defaultAgent()
		}
		h.queue[a] = append(h.queue[a], i)
	}
	if h.agentOf == nil {
		h.agentOf = func(r openai.ChatCompletionRequest) clawops.AgentRole {
			a, _, _ := strings.Cut(r.User, ":")
			if a == "" {
				return script.defaultAgent()
			}
			return clawops.AgentRole(a)
		}
	}
	return h
}

// Server is a Handler listening on 127.0.0.1 (an httptest.Server).
type Server struct {
	*Handler
	srv *httptest.Server
}

// NewServer starts a Server replaying script. Close it when done.
func NewServer(script Script, opts ...Option) *Server {
	h := NewHandler(script, opts...)
	return &Server{Handler: h, srv: httptest.NewServer(h)}
}

// URL is the server's root, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return s.srv.URL }

// BaseURL is what OpenAI clients take as their base: URL() + "/v1".
func (s *Server) BaseURL() string { return s.srv.URL + "/v1" }

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// Recorded is one request the server received.
type Recorded struct {
	Agent clawops.AgentRole
	// Step is the index in Script.Steps of the step that answered, or -1.
	Step    int
	Request openai.ChatCompletionRequest
	Stream  bool
	Status  int
	// Refusal is why the request got an error (off script, malformed, scripted fault).
	Refusal string
}

// ToolsOffered lists the names of the tools the request offered, in order.
func (r Recorded) ToolsOffered() []string {
	var out []string
	for _, t := range r.Request.Tools {
		if t.Function != nil {
			out = append(out, t.Function.Name)
		}
	}
	return out
}

// LastUser returns the content of the request's last user message.
func (r Recorded) LastUser() string { return lastUser(r.Request.Messages) }

// ToolResult is one tool message of a request.
type ToolResult struct {
	CallID  string
	Name    string // from the message, or from the call it answers
	Content string
}

// ToolResults returns every tool message of the request, with the name of its tool.
func (r Recorded) ToolResults() []ToolResult {
	names := map[string]string{}
	var out []ToolResult
	for _, m := range r.Request.Messages {
		for _, tc := range m.ToolCalls {
			names[tc.ID] = tc.Function.Name
		}
		if m.Role == openai.ChatMessageRoleTool {
			n := m.Name
			if n == "" {
				n = names[m.ToolCallID]
			}
			out = append(out, ToolResult{CallID: m.ToolCallID, Name: n, Content: m.Content})
		}
	}
	return out
}

// Requests returns every request received so far.
func (h *Handler) Requests() []Recorded {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.reqs)
}

// Unused returns the steps no request has taken yet.
func (h *Handler) Unused() []Step {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Step
	for i, u := range h.used {
		if !u {
			out = append(out, h.script.Steps[i])
		}
	}
	return out
}

// OffScript returns a message per request that went off script.
func (h *Handler) OffScript() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.off)
}

// Verify returns nil when the script was valid, no request went off script and every
// step was used; otherwise an error listing each problem.
func (h *Handler) Verify() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	if h.invalid != nil {
		errs = append(errs, h.invalid)
	}
	for _, o := range h.off {
		errs = append(errs, errors.New(o))
	}
	for i, u := range h.used {
		if !u {
			st := h.script.Steps[i]
			errs = append(errs, fmt.Errorf("step %s for agent %s was never used", stepName(i, st), h.agentOfStep(st)))
		}
	}
	return errors.Join(errs...)
}

func (h *Handler) agentOfStep(s Step) clawops.AgentRole {
	if s.Agent == "" {
		return h.script.defaultAgent()
	}
	return s.Agent
}

// ServeHTTP answers POST /v1/chat/completions from the script.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := Recorded{Step: -1}
	refuse := func(status int, typ, code, msg string) {
		rec.Status, rec.Refusal = status, msg
		h.record(rec)
		writeError(w, status, typ, code, msg)
	}
	if r.URL.Path != ChatPath {
		refuse(http.StatusNotFound, "invalid_request_error", "unknown_url", fmt.Sprintf("Unknown request URL: %s %s. The scripted model serves only POST %s.", r.Method, r.URL.Path, ChatPath))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		refuse(http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", "Use POST for "+ChatPath)
		return
	}
	if h.apiKey != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(h.apiKey)) != 1 {
			refuse(http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		refuse(http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large", "request body: "+err.Error())
		return
	}
	var req openai.ChatCompletionRequest
	if err := json.Unmarshal(body, &req); err != nil {
		refuse(http.StatusBadRequest, "invalid_request_error", "invalid_json", "We could not parse the JSON body of your request: "+err.Error())
		return
	}
	rec.Request, rec.Stream = req, req.Stream
	if err := checkProtocol(req); err != nil {
		refuse(http.StatusBadRequest, "invalid_request_error", "invalid_request", err.Error())
		return
	}
	rec.Agent = h.agentOf(req)

	step, idx, err := h.take(rec.Agent, req)
	if err != nil {
		refuse(http.StatusBadRequest, "invalid_request_error", "off_script", err.Error())
		return
	}
	rec.Step = idx
	if f := step.Error; f != nil {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		msg := f.Message
		if msg == "" {
			msg = fmt.Sprintf("scripted error %d (step %s)", f.Status, stepName(idx, step))
		}
		refuse(f.Status, cmpOr(f.Type, "api_error"), f.Code, msg)
		return
	}
	msg, finish, usage := h.answer(step, req)
	rec.Status = http.StatusOK
	h.record(rec)
	id := fmt.Sprintf("chatcmpl-scripted-%d", idx+1)
	if req.Stream {
		writeStream(w, id, h.clock.Now().Unix(), req, msg, finish, usage)
		return
	}
	resp := openai.ChatCompletionResponse{
		ID: id, Object: "chat.completion", Created: h.clock.Now().Unix(), Model: req.Model,
		Choices: []openai.ChatCompletionChoice{{Index: 0, Message: msg, FinishReason: finish}},
		Usage:   usage,
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func (h *Handler) record(r Recorded) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reqs = append(h.reqs, r)
}

// take returns the agent's next step if the request matches it, and marks it used.
func (h *Handler) take(agent clawops.AgentRole, req openai.ChatCompletionRequest) (Step, int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(h.reqs) + 1
	fail := func(err error) (Step, int, error) {
		msg := fmt.Sprintf("off script: request %d (agent %s, last user message %q): %v", n, agent, short(lastUser(req.Messages)), err)
		h.off = append(h.off, msg)
		return Step{}, -1, errors.New(msg)
	}
	if h.invalid != nil {
		return fail(h.invalid)
	}
	q, k := h.queue[agent], h.next[agent]
	if k >= len(q) {
		if len(q) == 0 {
			return fail(fmt.Errorf("the script %q has no step for agent %q", h.script.Name, agent))
		}
		return fail(fmt.Errorf("all %d steps for agent %s were used", len(q), agent))
	}
	idx := q[k]
	st := h.script.Steps[idx]
	if err := st.When.match(req); err != nil {
		return fail(fmt.Errorf("step %s does not match: %w", stepName(idx, st), err))
	}
	h.next[agent] = k + 1
	h.used[idx] = true
	return st, idx, nil
}

// answer builds the assistant message of a step.
func (h *Handler) answer(st Step, req openai.ChatCompletionRequest) (openai.ChatCompletionMessage, openai.FinishReason, openai.Usage) {
	msg := openai.ChatCompletionMessage{Role: openai.ChatMessageRoleAssistant, Content: st.Reply}
	h.mu.Lock()
	for _, c := range st.ToolCalls {
		id := c.ID
		if id == "" {
			h.callSeq++
			id = fmt.Sprintf("call_%d", h.callSeq)
		}
		msg.ToolCalls = append(msg.ToolCalls, openai.ToolCall{
			ID: id, Type: openai.ToolTypeFunction,
			Function: openai.FunctionCall{Name: c.Name, Arguments: c.arguments()},
		})
	}
	h.mu.Unlock()
	finish := openai.FinishReason(st.FinishReason)
	if finish == "" {
		finish = openai.FinishReasonStop
		if len(msg.ToolCalls) > 0 {
			finish = openai.FinishReasonToolCalls
		}
	}
	var u openai.Usage
	if st.Usage != nil {
		u.PromptTokens, u.CompletionTokens = st.Usage.Prompt, st.Usage.Completion
	} else {
		u.PromptTokens = estimatePrompt(req)
		u.CompletionTokens = tokens(msg.Content)
		for _, tc := range msg.ToolCalls {
			u.CompletionTokens += 4 + tokens(tc.Function.Name) + tokens(tc.Function.Arguments)
		}
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return msg, finish, u
}

func tokens(s string) int { return (len(s) + 3) / 4 }

func estimatePrompt(req openai.ChatCompletionRequest) int {
	n := 0
	for _, m := range req.Messages {
		n += 4 + tokens(m.Content)
		for _, tc := range m.ToolCalls {
			n += 4 + tokens(tc.Function.Name) + tokens(tc.Function.Arguments)
		}
	}
	for _, t := range req.Tools {
		if t.Function != nil {
			b, _ := json.Marshal(t.Function.Parameters)
			n += 8 + tokens(t.Function.Name) + tokens(t.Function.Description) + tokens(string(b))
		}
	}
	return n
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func short(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		i := 80
		for i > 0 && s[i]&0xC0 == 0x80 {
			i--
		}
		return s[:i] + "…"
	}
	return s
}
