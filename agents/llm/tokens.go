package llm

import "fmt"

// Token estimation is a heuristic, not a tokenizer: one token per 4 bytes of text
// (rounded up), plus a fixed framing cost per message and per tool. For English and JSON
// it lands within ~20 % of real BPE tokenizers, and it over-counts non-Latin text, which
// errs on the safe side for context management. It never calls the endpoint.
const (
	bytesPerToken     = 4
	tokensPerMessage  = 4 // role and delimiters
	tokensPerToolCall = 4 // id, type, framing
	tokensPerTool     = 8 // function wrapper of a tool definition
)

// ContextWarnRatio is the share of a model's context window above which Complete and
// CheckContext report a ContextWarning.
const ContextWarnRatio = 0.8

// compactTargetRatio is the share of the window MessageBudget aims at after compaction,
// leaving room for several more turns before the next warning.
const compactTargetRatio = 0.5

func textTokens(s string) int { return (len(s) + bytesPerToken - 1) / bytesPerToken }

// EstimateMessages estimates the tokens of msgs.
func EstimateMessages(msgs []Message) int {
	n := 0
	for _, m := range msgs {
		n += tokensPerMessage + textTokens(m.Content) + textTokens(m.Name) + textTokens(m.ToolCallID)
		for _, tc := range m.ToolCalls {
			n += tokensPerToolCall + textTokens(tc.ID) + textTokens(tc.Name) + textTokens(tc.Arguments)
		}
	}
	return n
}

// estimateFixed estimates what a request costs besides its messages: the system prompt
// and the tool definitions.
func estimateFixed(req Request) int {
	n := 0
	if req.System != "" {
		n += tokensPerMessage + textTokens(req.System)
	}
	for _, t := range req.Tools {
		n += tokensPerTool + textTokens(t.Name) + textTokens(t.Description) + textTokens(string(t.Schema))
	}
	return n
}

// EstimateTokens estimates the prompt tokens of req: system prompt, messages and tools.
func EstimateTokens(req Request) int { return estimateFixed(req) + EstimateMessages(req.Messages) }

// ContextWarning says a request is close to filling a model's context window.
type ContextWarning struct {
	Model     string
	Estimated int // estimated prompt tokens of the request
	Window    int // the model's context window
	// MessageBudget is the token budget to pass to Compact so that the request falls to
	// half the window, given its system prompt and tools. It may be small or zero when
	// the system prompt and tools alone are large.
	MessageBudget int
}

func (w ContextWarning) String() string {
	return fmt.Sprintf("request uses ~%d of %d tokens of %s's context (%.0f%%); compact to %d message tokens",
		w.Estimated, w.Window, w.Model, 100*float64(w.Estimated)/float64(w.Window), w.MessageBudget)
}

// ContextWindow returns the window configured for model, or DefaultContextWindow, or 0
// when unknown.
func (c *Client) ContextWindow(model string) int {
	if w, ok := c.opts.ContextWindow[model]; ok && w > 0 {
		return w
	}
	return max(c.opts.DefaultContextWindow, 0)
}

// CheckContext estimates req against the primary model's window and returns a warning
// when it is above ContextWarnRatio of it. Agent loops call it before Complete and
// compact the history with the warning's MessageBudget.
func (c *Client) CheckContext(req Request) (ContextWarning, bool) {
	return c.checkContext(c.opts.Models[0], req)
}

func (c *Client) checkContext(model string, req Request) (ContextWarning, bool) {
	window := c.ContextWindow(model)
	if window <= 0 {
		return ContextWarning{}, false
	}
	est := EstimateTokens(req)
	if float64(est) <= ContextWarnRatio*float64(window) {
		return ContextWarning{}, false
	}
	w := ContextWarning{
		Model:         model,
		Estimated:     est,
		Window:        window,
		MessageBudget: max(int(compactTargetRatio*float64(window))-estimateFixed(req), 0),
	}
	c.log.Warn("context window nearly full", "model", model, "estimated_tokens", est, "window", window)
	return w, true
}
