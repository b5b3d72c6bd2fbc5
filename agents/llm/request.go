package llm

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	openai "github.com/sashabaranov/go-openai"
)

// toolNameRE is the function-name rule of the chat-completions API.
var toolNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// emptySchema is offered for a tool without arguments: the API wants an object schema.
var emptySchema = json.RawMessage(`{"type":"object","properties":{}}`)

// buildRequest checks req and converts it to go-openai's request (Model left empty).
// Nothing malformed is sent: a request the API would reject is refused here.
func buildRequest(req Request) (openai.ChatCompletionRequest, error) {
	var out openai.ChatCompletionRequest
	if req.System == "" && len(req.Messages) == 0 {
		return out, errors.New("request has no system prompt and no messages")
	}
	if req.MaxTokens < 0 {
		return out, fmt.Errorf("MaxTokens %d is negative", req.MaxTokens)
	}
	switch req.ToolChoice {
	case "", "auto", "none", "required":
	default:
		return out, fmt.Errorf("ToolChoice %q is not one of auto, none, required", req.ToolChoice)
	}
	if req.ToolChoice == "required" && len(req.Tools) == 0 {
		return out, errors.New(`ToolChoice "required" needs at least one tool`)
	}
	if req.System != "" {
		out.Messages = append(out.Messages, openai.ChatCompletionMessage{Role: openai.ChatMessageRoleSystem, Content: req.System})
	}
	pending := map[string]bool{} // tool call ids awaiting a result
	for i, m := range req.Messages {
		if m.Role != RoleTool && len(pending) > 0 {
			return out, fmt.Errorf("message %d: %d tool call(s) of the previous assistant message have no result", i, len(pending))
		}
		om := openai.ChatCompletionMessage{Role: string(m.Role), Content: m.Content, Name: m.Name}
		switch m.Role {
		case RoleSystem, RoleUser:
			if len(m.ToolCalls) > 0 || m.ToolCallID != "" {
				return out, fmt.Errorf("message %d: a %s message cannot carry tool calls", i, m.Role)
			}
		case RoleAssistant:
			if m.ToolCallID != "" {
				return out, fmt.Errorf("message %d: an assistant message cannot carry tool_call_id", i)
			}
			for j, tc := range m.ToolCalls {
				if tc.ID == "" || !toolNameRE.MatchString(tc.Name) {
					return out, fmt.Errorf("message %d: tool call %d needs an id and a valid name", i, j)
				}
				pending[tc.ID] = true
				om.ToolCalls = append(om.ToolCalls, openai.ToolCall{
					ID: tc.ID, Type: openai.ToolTypeFunction,
					Function: openai.FunctionCall{Name: tc.Name, Arguments: tc.Arguments},
				})
			}
		case RoleTool:
			if m.ToolCallID == "" {
				return out, fmt.Errorf("message %d: a tool message needs tool_call_id", i)
			}
			if !pending[m.ToolCallID] {
				return out, fmt.Errorf("message %d: tool result for %q answers no earlier tool call", i, m.ToolCallID)
			}
			delete(pending, m.ToolCallID)
			om.ToolCallID = m.ToolCallID
		default:
			return out, fmt.Errorf("message %d: unknown role %q", i, m.Role)
		}
		out.Messages = append(out.Messages, om)
	}
	if len(pending) > 0 {
		return out, fmt.Errorf("%d tool call(s) of the last assistant message have no result", len(pending))
	}
	seen := map[string]bool{}
	for i, t := range req.Tools {
		if !toolNameRE.MatchString(t.Name) {
			return out, fmt.Errorf("tool %d: name %q must match %s", i, t.Name, toolNameRE)
		}
		if seen[t.Name] {
			return out, fmt.Errorf("tool %d: %q offered twice", i, t.Name)
		}
		seen[t.Name] = true
		schema := json.RawMessage(t.Schema)
		if len(schema) == 0 {
			schema = emptySchema
		}
		var obj map[string]any
		if err := json.Unmarshal(schema, &obj); err != nil {
			return out, fmt.Errorf("tool %s: schema is not a JSON object: %w", t.Name, err)
		}
		out.Tools = append(out.Tools, openai.Tool{
			Type:     openai.ToolTypeFunction,
			Function: &openai.FunctionDefinition{Name: t.Name, Description: t.Description, Parameters: schema},
		})
	}
	if req.ToolChoice != "" {
		out.ToolChoice = req.ToolChoice
	}
	out.User = req.User
	return out, nil
}

// adaptMaxTokens sets the completion bound in the field the model accepts: reasoning
// models refuse max_tokens and want max_completion_tokens, while many compatible servers
// (Ollama, llama.cpp) know only max_tokens. go-openai's own validator tells them apart.
func adaptMaxTokens(r *openai.ChatCompletionRequest, n int) {
	//lint:ignore SA1019 max_tokens is what most compatible servers understand.
	r.MaxTokens, r.MaxCompletionTokens = 0, 0
	if n == 0 {
		return
	}
	//lint:ignore SA1019 the probe asks go-openai whether this model refuses max_tokens.
	probe := openai.ChatCompletionRequest{Model: r.Model, MaxTokens: n}
	if errors.Is(openai.NewReasoningValidator().Validate(probe), openai.ErrReasoningModelMaxTokensDeprecated) {
		r.MaxCompletionTokens = n
		return
	}
	//lint:ignore SA1019 see above.
	r.MaxTokens = n
}
