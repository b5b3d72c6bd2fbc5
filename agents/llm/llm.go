// Package llm is the model client of the agent loops: one chat-completions call over any
// OpenAI-compatible endpoint (OpenAI, Azure OpenAI, Ollama, vLLM, llama.cpp, OpenRouter),
// with tool calling, retries with backoff, failover across a list of models, token and cost
// accounting, and context-window management (estimates, warnings, compaction).
//
// The package speaks in its own small types (Message, ToolDef, Request, Response) so that
// agents never touch go-openai directly, and it knows nothing of governance: a tool is a
// name, a description and a JSON Schema, which is what governance.ToolSpec carries.
package llm

import (
	"strings"

	"github.com/gatewayforge/clawops"
)

// Reason codes of the errors Complete returns. Every error Complete returns is a
// *clawops.Error carrying one of them.
const (
	// ReasonRateLimited: the endpoint answered 429 on every attempt of every model.
	ReasonRateLimited clawops.ReasonCode = "LLM_RATE_LIMITED"
	// ReasonUnavailable: 5xx, timeouts or transport errors on every attempt of every model.
	ReasonUnavailable clawops.ReasonCode = "LLM_UNAVAILABLE"
	// ReasonAuthFailed: the endpoint refused the credentials (401, 403). Not retried.
	ReasonAuthFailed clawops.ReasonCode = "LLM_AUTH_FAILED"
	// ReasonBadRequest: the endpoint (or the client library, or this package before
	// sending) rejected the request as malformed. Not retried.
	ReasonBadRequest clawops.ReasonCode = "LLM_BAD_REQUEST"
	// ReasonModelNotFound: the last model tried does not exist at the endpoint (404).
	ReasonModelNotFound clawops.ReasonCode = "LLM_MODEL_NOT_FOUND"
	// ReasonBadResponse: the endpoint answered 2xx with a body that is not a usable
	// completion (not JSON, no choices) on the last attempt.
	ReasonBadResponse clawops.ReasonCode = "LLM_BAD_RESPONSE"
	// ReasonCancelled: the caller's context ended before a completion arrived.
	ReasonCancelled clawops.ReasonCode = "LLM_CANCELLED"
)

// Role is the author of a message.
type Role string

// Message roles of the chat-completions API.
const (
	RoleSystem    Role = "system"
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
	RoleTool      Role = "tool"
)

// Message is one message of a conversation.
//
// An assistant message may carry text, tool calls, or both. A tool message carries the
// result of one tool call in Content and names the call it answers in ToolCallID.
type Message struct {
	Role       Role       `json:"role"`
	Content    string     `json:"content,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	// Name is the tool's name on a tool message (optional), or a participant name.
	Name string `json:"name,omitempty"`
}

// ToolCall is one function call the model asked for.
type ToolCall struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Arguments is the JSON text of the arguments exactly as the model wrote it. It is
	// not validated here: a model can write invalid JSON, and the caller (the gate) must
	// treat it as untrusted input.
	Arguments string `json:"arguments"`
}

// ToolDef offers one tool to the model. The fields are those of governance.ToolSpec, so a
// spec converts with ToolDef{Name: s.Name, Description: s.Description, Schema: s.Schema}.
type ToolDef struct {
	Name        string
	Description string
	// Schema is the JSON Schema of the arguments object; empty means no arguments.
	Schema []byte
}

// Request is one chat-completions call.
type Request struct {
	// System is sent as the first message, with role system. It may be empty.
	System   string
	Messages []Message
	Tools    []ToolDef
	// MaxTokens bounds the completion; 0 leaves it to the endpoint.
	MaxTokens int
	// ToolChoice is "", "auto", "none" or "required"; "" leaves it to the endpoint.
	ToolChoice string
	// User is sent as the API's `user` field. Agent loops set it to "<role>" or
	// "<role>:<session>", so that providers' dashboards and the scripted test server can
	// tell agents apart. It must not contain secrets or personal data.
	User string
}

// Usage counts the tokens of one completion, as the endpoint reported them.
type Usage struct {
	Prompt     int `json:"prompt_tokens"`
	Completion int `json:"completion_tokens"`
}

// Total is Prompt + Completion.
func (u Usage) Total() int { return u.Prompt + u.Completion }

// Response is the result of Complete.
type Response struct {
	// Message is the assistant's message (Role is RoleAssistant).
	Message Message
	// Model is the entry of Options.Models that answered.
	Model string
	// ServedModel is the model name the endpoint reported (may differ, e.g. a dated
	// snapshot of Model).
	ServedModel string
	// FinishReason is the endpoint's: "stop", "tool_calls", "length", "content_filter".
	FinishReason string
	Usage        Usage
	// CostUSD is computed from Options.PriceTable; 0 for a model without a price.
	CostUSD float64
	// Attempts counts HTTP attempts across all models, 1 when the first one succeeded.
	Attempts int
	// Warning is set when the request was above ContextWarnRatio of the answering
	// model's context window.
	Warning *ContextWarning
}

// Text returns the assistant's text, trimmed.
func (r Response) Text() string { return strings.TrimSpace(r.Message.Content) }
