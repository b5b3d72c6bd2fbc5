package scripted

import (
	"encoding/json"
	"fmt"
	"net/http"

	openai "github.com/sashabaranov/go-openai"
)

// writeStream sends msg as server-sent events the way the API streams: a role chunk, the
// text, one chunk per tool call (with its index), a finish chunk, an optional usage chunk
// (stream_options.include_usage) and "data: [DONE]".
func writeStream(w http.ResponseWriter, id string, created int64, req openai.ChatCompletionRequest,
	msg openai.ChatCompletionMessage, finish openai.FinishReason, usage openai.Usage) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	send := func(choices []openai.ChatCompletionStreamChoice, u *openai.Usage) {
		chunk := openai.ChatCompletionStreamResponse{
			ID: id, Object: "chat.completion.chunk", Created: created, Model: req.Model,
			Choices: choices, Usage: u,
		}
		b, _ := json.Marshal(chunk)
		fmt.Fprintf(w, "data: %s\n\n", b)
		if flusher != nil {
			flusher.Flush()
		}
	}
	delta := func(d openai.ChatCompletionStreamChoiceDelta) []openai.ChatCompletionStreamChoice {
		return []openai.ChatCompletionStreamChoice{{Index: 0, Delta: d}}
	}

	send(delta(openai.ChatCompletionStreamChoiceDelta{Role: openai.ChatMessageRoleAssistant}), nil)
	// Text in two pieces, so that clients are exercised on accumulation.
	if c := msg.Content; c != "" {
		half := len(c) / 2
		for half > 0 && c[half]&0xC0 == 0x80 {
			half--
		}
		for _, part := range []string{c[:half], c[half:]} {
			if part != "" {
				send(delta(openai.ChatCompletionStreamChoiceDelta{Content: part}), nil)
			}
		}
	}
	for i, tc := range msg.ToolCalls {
		idx := i
		tc.Index = &idx
		send(delta(openai.ChatCompletionStreamChoiceDelta{ToolCalls: []openai.ToolCall{tc}}), nil)
	}
	send([]openai.ChatCompletionStreamChoice{{Index: 0, FinishReason: finish}}, nil)
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		send([]openai.ChatCompletionStreamChoice{}, &usage)
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}
