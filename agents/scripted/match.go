package scripted

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	openai "github.com/sashabaranov/go-openai"
)

// checkProtocol refuses what OpenAI's endpoint refuses, so that an agent loop that breaks
// the protocol (a tool result without its call, a call without its result) fails in tests
// the way it would in production.
func checkProtocol(req openai.ChatCompletionRequest) error {
	if req.Model == "" {
		return errors.New("you must provide a model parameter")
	}
	if len(req.Messages) == 0 {
		return errors.New("'messages' must contain at least one message")
	}
	if req.N > 1 {
		return errors.New("the scripted model answers with one choice; n > 1 is not supported")
	}
	pending := map[string]bool{}
	for i, m := range req.Messages {
		if m.Role != openai.ChatMessageRoleTool && len(pending) > 0 {
			return fmt.Errorf("messages[%d]: an assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id' (missing %s)", i, strings.Join(sortedKeys(pending), ", "))
		}
		switch m.Role {
		case openai.ChatMessageRoleSystem, openai.ChatMessageRoleDeveloper, openai.ChatMessageRoleUser:
		case openai.ChatMessageRoleAssistant:
			for _, tc := range m.ToolCalls {
				if tc.ID == "" || tc.Function.Name == "" {
					return fmt.Errorf("messages[%d]: every tool call needs an id and a function name", i)
				}
				pending[tc.ID] = true
			}
		case openai.ChatMessageRoleTool:
			if !pending[m.ToolCallID] {
				return fmt.Errorf("messages[%d]: messages with role 'tool' must be a response to a preceding message with 'tool_calls' (tool_call_id %q)", i, m.ToolCallID)
			}
			delete(pending, m.ToolCallID)
		default:
			return fmt.Errorf("messages[%d]: invalid role %q", i, m.Role)
		}
	}
	if len(pending) > 0 {
		return fmt.Errorf("an assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id' (missing %s)", strings.Join(sortedKeys(pending), ", "))
	}
	seen := map[string]bool{}
	for i, t := range req.Tools {
		if t.Type != openai.ToolTypeFunction || t.Function == nil {
			return fmt.Errorf("tools[%d]: only function tools are supported", i)
		}
		if !toolNameRE.MatchString(t.Function.Name) {
			return fmt.Errorf("tools[%d].function.name %q must match %s", i, t.Function.Name, toolNameRE)
		}
		if seen[t.Function.Name] {
			return fmt.Errorf("tools[%d]: duplicate function name %q", i, t.Function.Name)
		}
		seen[t.Function.Name] = true
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// match reports why req does not meet the conditions, or nil.
func (m Match) match(req openai.ChatCompletionRequest) error {
	var errs []error
	if m.Model != "" && m.Model != req.Model {
		errs = append(errs, fmt.Errorf("model is %q, want %q", req.Model, m.Model))
	}
	if m.LastUserContains != "" {
		if got := lastUser(req.Messages); !containsFold(got, m.LastUserContains) {
			errs = append(errs, fmt.Errorf("last user message %q does not contain %q", short(got), m.LastUserContains))
		}
	}
	if m.LastToolContains != "" {
		results := lastToolResults(req.Messages)
		if !slices.ContainsFunc(results, func(s string) bool { return containsFold(s, m.LastToolContains) }) {
			errs = append(errs, fmt.Errorf("no tool result after the last assistant message contains %q (got %d results: %s)", m.LastToolContains, len(results), shortList(results)))
		}
	}
	if m.SystemContains != "" {
		var sys []string
		for _, msg := range req.Messages {
			if msg.Role == openai.ChatMessageRoleSystem || msg.Role == openai.ChatMessageRoleDeveloper {
				sys = append(sys, msg.Content)
			}
		}
		if !containsFold(strings.Join(sys, "\n"), m.SystemContains) {
			errs = append(errs, fmt.Errorf("system prompt does not contain %q", m.SystemContains))
		}
	}
	offered := map[string]bool{}
	for _, t := range req.Tools {
		if t.Function != nil {
			offered[t.Function.Name] = true
		}
	}
	for _, n := range m.ToolsOffered {
		if !offered[n] {
			errs = append(errs, fmt.Errorf("tool %s is not offered (offered: %s)", n, strings.Join(sortedKeys(offered), ", ")))
		}
	}
	for _, n := range m.ToolsNotOffered {
		if offered[n] {
			errs = append(errs, fmt.Errorf("tool %s is offered but must not be", n))
		}
	}
	return errors.Join(errs...)
}

func lastUser(msgs []openai.ChatCompletionMessage) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == openai.ChatMessageRoleUser {
			return messageText(msgs[i])
		}
	}
	return ""
}

// lastToolResults returns the tool messages after the last assistant message.
func lastToolResults(msgs []openai.ChatCompletionMessage) []string {
	var out []string
	for i := len(msgs) - 1; i >= 0 && msgs[i].Role == openai.ChatMessageRoleTool; i-- {
		out = append(out, messageText(msgs[i]))
	}
	slices.Reverse(out)
	return out
}

// messageText joins the text parts of a multi-part message.
func messageText(m openai.ChatCompletionMessage) string {
	if m.Content != "" || len(m.MultiContent) == 0 {
		return m.Content
	}
	var parts []string
	for _, p := range m.MultiContent {
		if p.Type == openai.ChatMessagePartTypeText {
			parts = append(parts, p.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func shortList(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", short(s))
	}
	return "[" + strings.Join(out, ", ") + "]"
}
