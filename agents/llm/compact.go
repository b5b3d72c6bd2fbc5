package llm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// SummaryPrefix starts the content of every summary message Compact inserts, so that a
// later Compact recognises it and folds it into the next summary.
const SummaryPrefix = "[Earlier conversation, compacted]"

// minSummaryTokens is the smallest room reserved for the summary message.
const minSummaryTokens = 48

// Summariser condenses the dropped messages into text of at most about maxTokens tokens
// (longer text is cut). It returns the body only; Compact adds SummaryPrefix.
type Summariser func(ctx context.Context, dropped []Message, maxTokens int) (string, error)

// IsSummary reports whether m is a summary message inserted by Compact.
func IsSummary(m Message) bool {
	return m.Role == RoleSystem && strings.HasPrefix(m.Content, SummaryPrefix)
}

// Compact shrinks msgs to fit budget estimated tokens (see EstimateMessages):
//
//   - the leading system messages (the system prompt) are kept as they are;
//   - the most recent messages are kept intact, as many as fit;
//   - an assistant message with tool calls is never separated from its tool results:
//     both are kept or both are dropped;
//   - the older messages, including an earlier summary, are replaced by one system
//     message, SummaryPrefix followed by what summarise wrote (nil means Digest), placed
//     right after the system prompt.
//
// msgs within budget come back unchanged (as a copy). The most recent exchange is always
// kept, so when it alone does not fit the result is over budget; callers check with
// EstimateMessages. Compact does not modify msgs.
func Compact(ctx context.Context, msgs []Message, budget int, summarise Summariser) ([]Message, error) {
	if budget < 0 {
		return nil, fmt.Errorf("compact: budget %d is negative", budget)
	}
	if EstimateMessages(msgs) <= budget {
		return slices.Clone(msgs), nil
	}
	if summarise == nil {
		summarise = Digest
	}
	h := 0
	for h < len(msgs) && msgs[h].Role == RoleSystem && !IsSummary(msgs[h]) {
		h++
	}
	head, rest := msgs[:h], msgs[h:]

	// Cut points: a kept tail may start anywhere that does not separate a tool call from
	// its result, nor a stray result from the message before it.
	forbid := make([]bool, len(rest)+1)
	callAt := map[string]int{}
	for j, m := range rest {
		for _, tc := range m.ToolCalls {
			callAt[tc.ID] = j
		}
		if m.Role != RoleTool {
			continue
		}
		k, ok := callAt[m.ToolCallID]
		if !ok {
			k = j - 1
		}
		for i := max(k+1, 1); i <= j; i++ {
			forbid[i] = true
		}
	}
	var starts []int
	for i := range rest {
		if !forbid[i] {
			starts = append(starts, i)
		}
	}
	if len(starts) < 2 {
		return slices.Clone(msgs), nil // one exchange: nothing can go
	}
	reserve := max(budget/5, minSummaryTokens)
	fixed := EstimateMessages(head) + reserve
	cut := starts[len(starts)-1]
	for _, s := range starts[1:] {
		if fixed+EstimateMessages(rest[s:]) <= budget {
			cut = s
			break
		}
	}

	room := reserve - tokensPerMessage - textTokens(SummaryPrefix+"\n")
	body, err := summarise(ctx, rest[:cut], max(room, 1))
	if err != nil {
		return nil, fmt.Errorf("compact: summarise %d messages: %w", cut, err)
	}
	body = truncateBytes(strings.TrimSpace(body), max(room, 1)*bytesPerToken)

	out := make([]Message, 0, len(head)+1+len(rest)-cut)
	out = append(out, head...)
	out = append(out, Message{Role: RoleSystem, Content: SummaryPrefix + "\n" + body})
	out = append(out, rest[cut:]...)
	return out, nil
}

// Digest is the default Summariser: a deterministic list of the dropped messages, one
// line each with the role and the first words (tool calls by name), earlier summaries
// carried over line by line, and the oldest lines left out when it is too long.
func Digest(_ context.Context, dropped []Message, maxTokens int) (string, error) {
	toolNames := map[string]string{}
	for _, m := range dropped {
		for _, tc := range m.ToolCalls {
			toolNames[tc.ID] = tc.Name
		}
	}
	var lines []string
	for _, m := range dropped {
		switch {
		case IsSummary(m):
			for _, l := range strings.Split(strings.TrimPrefix(m.Content, SummaryPrefix), "\n") {
				if l = strings.TrimSpace(l); strings.HasPrefix(l, "- ") {
					lines = append(lines, l)
				}
			}
		case m.Role == RoleTool:
			name := m.Name
			if name == "" {
				name = toolNames[m.ToolCallID]
			}
			if name == "" {
				name = m.ToolCallID
			}
			lines = append(lines, fmt.Sprintf("- tool %s: %s", name, firstWords(m.Content)))
		default:
			if m.Content != "" || len(m.ToolCalls) == 0 {
				lines = append(lines, fmt.Sprintf("- %s: %s", m.Role, firstWords(m.Content)))
			}
			if len(m.ToolCalls) > 0 {
				names := make([]string, len(m.ToolCalls))
				for i, tc := range m.ToolCalls {
					names[i] = tc.Name
				}
				lines = append(lines, fmt.Sprintf("- %s called %s", m.Role, strings.Join(names, ", ")))
			}
		}
	}
	header := fmt.Sprintf("%d earlier messages, oldest first:", len(dropped))
	limit := maxTokens * bytesPerToken
	size := len(header)
	for _, l := range lines {
		size += 1 + len(l)
	}
	omitted := 0
	for size > limit && omitted < len(lines) {
		size -= 1 + len(lines[omitted])
		omitted++
		if omitted == 1 {
			size += len(omittedLine(len(lines))) + 1 // the note replacing them; its width is bounded by this
		}
	}
	var b strings.Builder
	b.WriteString(header)
	if omitted > 0 {
		b.WriteString("\n" + omittedLine(omitted))
	}
	for _, l := range lines[omitted:] {
		b.WriteString("\n")
		b.WriteString(l)
	}
	return b.String(), nil
}

func omittedLine(n int) string { return fmt.Sprintf("- (%d older lines omitted)", n) }

// firstWords returns up to 10 words of s on one line, at most 80 bytes.
func firstWords(s string) string {
	const maxWords, maxBytes = 10, 80
	w := strings.Fields(s)
	more := len(w) > maxWords
	if more {
		w = w[:maxWords]
	}
	out := strings.Join(w, " ")
	if len(out) > maxBytes {
		out, more = truncateBytes(out, maxBytes), true
	}
	if more {
		out += " …"
	}
	if out == "" {
		return "(empty)"
	}
	return out
}

// truncateBytes cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Summariser returns a Summariser that asks the model to summarise, for agents that
// prefer a model-written summary to Digest. It uses this client's models and failover.
func (c *Client) Summariser() Summariser {
	return func(ctx context.Context, dropped []Message, maxTokens int) (string, error) {
		var b strings.Builder
		for _, m := range dropped {
			fmt.Fprintf(&b, "%s", m.Role)
			if m.Name != "" {
				fmt.Fprintf(&b, " (%s)", m.Name)
			}
			fmt.Fprintf(&b, ": %s\n", m.Content)
			for _, tc := range m.ToolCalls {
				fmt.Fprintf(&b, "  called %s %s\n", tc.Name, tc.Arguments)
			}
		}
		resp, err := c.Complete(ctx, Request{
			System: "Summarise this excerpt of an operations conversation for the agent that continues it. " +
				"Keep every instance ID, number, tool result, decision, approval ID and open question; drop pleasantries. " +
				"Write terse bullet lines starting with \"- \".",
			Messages:  []Message{{Role: RoleUser, Content: b.String()}},
			MaxTokens: maxTokens,
		})
		if err != nil {
			return "", err
		}
		if resp.Text() == "" {
			return "", errors.New("model returned an empty summary")
		}
		return resp.Text(), nil
	}
}
