// Package scripted is a scripted model for tests and evals: a real HTTP server speaking
// OpenAI's chat-completions wire format (plain and streaming) that replays a script of
// assistant turns instead of thinking. Agent loops point their ordinary model client at
// it and run unchanged.
//
// A Script is a list of Steps, each belonging to one agent. The server tells agents apart
// by the request's `user` field ("<role>" or "<role>:<anything>"), and replays each agent's
// steps in order: every incoming request takes the next step of its agent, if the step's
// When conditions hold, and gets the step's reply, tool calls or error. A request that
// matches nothing gets a 400 in OpenAI's error shape that says which step expected what,
// and Verify reports such requests and the steps left unused.
//
// Dialogues (dialogue.go) are YAML files that hold a script together with the operator's
// turns and what is expected to happen; see README.md.
package scripted

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/gatewayforge/clawops"
)

// Script is what a Server replays.
type Script struct {
	Name string
	// DefaultAgent owns steps that name no agent and requests without a `user` field;
	// "" means commander.
	DefaultAgent clawops.AgentRole
	Steps        []Step
}

// Step is one assistant turn of the script: a reply, tool calls (or both), or an error.
type Step struct {
	// Agent is the agent whose request this step answers; "" means the script's default.
	Agent clawops.AgentRole `yaml:"agent,omitempty" json:"agent,omitempty"`
	// When must hold for the request, or the request is off script.
	When         Match      `yaml:"when,omitempty" json:"when,omitempty"`
	Reply        string     `yaml:"reply,omitempty" json:"reply,omitempty"`
	ToolCalls    []Call     `yaml:"tool_calls,omitempty" json:"tool_calls,omitempty"`
	Error        *Fault     `yaml:"error,omitempty" json:"error,omitempty"`
	Usage        *StepUsage `yaml:"usage,omitempty" json:"usage,omitempty"`
	FinishReason string     `yaml:"finish_reason,omitempty" json:"finish_reason,omitempty"`
	// Source says where the step was written ("provisioning.yaml:14") for messages.
	Source string `yaml:"-" json:"-"`
}

// Call is one scripted tool call.
type Call struct {
	// ID is the tool call id; "" means call_<n>, numbered across the server.
	ID   string         `yaml:"id,omitempty" json:"id,omitempty"`
	Name string         `yaml:"name" json:"name"`
	Args map[string]any `yaml:"args,omitempty" json:"args,omitempty"`
	// RawArgs is sent verbatim as the arguments string instead of Args, to play a model
	// that writes malformed JSON.
	RawArgs *string `yaml:"raw_args,omitempty" json:"raw_args,omitempty"`
}

// Match holds the conditions a request must meet to take a step. Text conditions are
// case-insensitive substring matches; empty conditions always hold.
type Match struct {
	// LastUserContains is matched against the last user message.
	LastUserContains string `yaml:"last_user_contains,omitempty" json:"last_user_contains,omitempty"`
	// LastToolContains is matched against the tool results after the last assistant
	// message (any of them); it fails when the request ends with no tool results.
	LastToolContains string `yaml:"last_tool_contains,omitempty" json:"last_tool_contains,omitempty"`
	// SystemContains is matched against the system (and developer) messages.
	SystemContains string `yaml:"system_contains,omitempty" json:"system_contains,omitempty"`
	// ToolsOffered must all be among the tools of the request.
	ToolsOffered []string `yaml:"tools_offered,omitempty" json:"tools_offered,omitempty"`
	// ToolsNotOffered must all be absent from the tools of the request.
	ToolsNotOffered []string `yaml:"tools_not_offered,omitempty" json:"tools_not_offered,omitempty"`
	// Model must equal the request's model.
	Model string `yaml:"model,omitempty" json:"model,omitempty"`
}

// Fault is a scripted API error, to exercise retries and failover.
type Fault struct {
	Status  int    `yaml:"status" json:"status"`
	Type    string `yaml:"type,omitempty" json:"type,omitempty"`
	Code    string `yaml:"code,omitempty" json:"code,omitempty"`
	Message string `yaml:"message,omitempty" json:"message,omitempty"`
	// RetryAfter is sent as the Retry-After header when set (seconds or an HTTP date).
	RetryAfter string `yaml:"retry_after,omitempty" json:"retry_after,omitempty"`
}

// StepUsage overrides the token counts the server reports (by default an estimate of
// one token per 4 bytes).
type StepUsage struct {
	Prompt     int `yaml:"prompt_tokens" json:"prompt_tokens"`
	Completion int `yaml:"completion_tokens" json:"completion_tokens"`
}

var toolNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// finishReasons are those of the API.
var finishReasons = map[string]bool{"": true, "stop": true, "length": true, "tool_calls": true, "content_filter": true}

// Validate checks a step on its own.
func (s Step) Validate() error {
	if s.Agent != "" && !s.Agent.Valid() {
		return fmt.Errorf("agent %q is not one of %s", s.Agent, rolesList())
	}
	if s.Error != nil {
		if s.Reply != "" || len(s.ToolCalls) > 0 || s.Usage != nil || s.FinishReason != "" {
			return errors.New("error excludes reply, tool_calls, usage and finish_reason")
		}
		if s.Error.Status < 400 || s.Error.Status > 599 {
			return fmt.Errorf("error.status %d must be 400-599", s.Error.Status)
		}
	} else if s.Reply == "" && len(s.ToolCalls) == 0 {
		return errors.New("needs reply, tool_calls or error")
	}
	if !finishReasons[s.FinishReason] {
		return fmt.Errorf("finish_reason %q is not one of stop, length, tool_calls, content_filter", s.FinishReason)
	}
	ids := map[string]bool{}
	for i, c := range s.ToolCalls {
		if !toolNameRE.MatchString(c.Name) {
			return fmt.Errorf("tool_calls[%d]: name %q must match %s", i, c.Name, toolNameRE)
		}
		if c.RawArgs != nil && c.Args != nil {
			return fmt.Errorf("tool_calls[%d]: args and raw_args exclude each other", i)
		}
		if c.Args != nil {
			if _, err := json.Marshal(c.Args); err != nil {
				return fmt.Errorf("tool_calls[%d]: args cannot be JSON: %w", i, err)
			}
		}
		if c.ID != "" {
			if ids[c.ID] {
				return fmt.Errorf("tool_calls[%d]: id %q used twice", i, c.ID)
			}
			ids[c.ID] = true
		}
	}
	for _, n := range append(append([]string(nil), s.When.ToolsOffered...), s.When.ToolsNotOffered...) {
		if !toolNameRE.MatchString(n) {
			return fmt.Errorf("when: tool name %q must match %s", n, toolNameRE)
		}
	}
	if s.Usage != nil && (s.Usage.Prompt < 0 || s.Usage.Completion < 0) {
		return errors.New("usage counts must be >= 0")
	}
	return nil
}

// Validate checks every step of the script.
func (s Script) Validate() error {
	if s.DefaultAgent != "" && !s.DefaultAgent.Valid() {
		return fmt.Errorf("script %s: default agent %q is not one of %s", s.Name, s.DefaultAgent, rolesList())
	}
	for i, st := range s.Steps {
		if err := st.Validate(); err != nil {
			return fmt.Errorf("script %s: step %s: %w", s.Name, stepName(i, st), err)
		}
	}
	return nil
}

func (s Script) defaultAgent() clawops.AgentRole {
	if s.DefaultAgent == "" {
		return clawops.Commander
	}
	return s.DefaultAgent
}

func stepName(i int, s Step) string {
	if s.Source != "" {
		return fmt.Sprintf("%d (%s)", i+1, s.Source)
	}
	return fmt.Sprint(i + 1)
}

func rolesList() string {
	var out []string
	for _, r := range clawops.AgentRoles {
		out = append(out, string(r))
	}
	return strings.Join(out, ", ")
}

// arguments renders a call's arguments string.
func (c Call) arguments() string {
	if c.RawArgs != nil {
		return *c.RawArgs
	}
	if c.Args == nil {
		return "{}"
	}
	b, _ := json.Marshal(c.Args) // checked by Validate
	return string(b)
}

// apiError is OpenAI's error body.
type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func writeError(w http.ResponseWriter, status int, typ, code, msg string) {
	body := apiError{Error: apiErrorBody{Message: msg, Type: typ}}
	if code != "" {
		body.Error.Code = &code
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
