package agents

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

// Priority says how urgently a notice should reach a person.
type Priority string

// Priorities. High is for incidents: channels may use a louder path for it.
const (
	PriorityNormal Priority = "normal"
	PriorityHigh   Priority = "high"
)

// ToOperators addresses a notice to the operators' channel as a whole rather than one
// identity.
const ToOperators = "operators"

// Notice is a message an agent sends to people outside a reply: an announcement in an
// operator's conversation (Channel and To set), a briefing or an alert (To ToOperators).
type Notice struct {
	Agent    clawops.AgentRole `json:"agent"`
	Channel  string            `json:"channel,omitempty"` // "" lets the deliverer choose
	To       string            `json:"to"`                // an identity, or ToOperators
	Text     string            `json:"text"`
	Priority Priority          `json:"priority"`
	// Kind says what the notice is: "reply" (a late answer in a conversation),
	// "briefing", "alert" or "message".
	Kind string `json:"kind"`
}

// Deliverer hands notices to the channels. The gateway implements it over its channel
// adapters; it must not block for long.
type Deliverer interface {
	Deliver(ctx context.Context, n Notice) error
}

// ToolSendMessage is the governed tool through which agents message people.
const ToolSendMessage = "gf_send_message"

// MaxNoticeBytes bounds a message sent with gf_send_message.
const MaxNoticeBytes = 4000

var sendMessageSchema = json.RawMessage(`{"type":"object","additionalProperties":false,` +
	`"required":["text"],"properties":{` +
	`"text":{"type":"string","minLength":1,"maxLength":4000,"description":"The message, plain text."},` +
	`"to":{"type":"string","maxLength":255,"description":"An operator identity, or \"operators\" (default) for the operators' channel."},` +
	`"priority":{"type":"string","enum":["normal","high"],"description":"high for incidents only."}}}`)

// messageTool is gf_send_message: a governed tool, so that who may message people is the
// role table's decision (Commander and Briefer) and every message is audited.
type messageTool struct{ d Deliverer }

// MessageTool returns gf_send_message over d, for Gate.Register. The team needs it
// registered to send briefings and alerts.
func MessageTool(d Deliverer) governance.Tool { return &messageTool{d: d} }

// messageArgs are gf_send_message's canonical arguments; From is set by the plan from the
// actor, never by the caller.
type messageArgs struct {
	Text     string            `json:"text"`
	To       string            `json:"to"`
	Priority Priority          `json:"priority"`
	From     clawops.AgentRole `json:"from,omitempty"`
	Kind     string            `json:"kind,omitempty"`
}

func (t *messageTool) Spec() governance.ToolSpec {
	return governance.ToolSpec{Name: ToolSendMessage, Action: governance.ActionSendMessage, Risk: clawops.RiskLow,
		Description: "Send a plain-text message to the operators (briefings, alerts, follow-ups). " +
			"Never include credentials.",
		Schema: sendMessageSchema}
}

func (t *messageTool) Plan(_ context.Context, actor clawops.Actor, args json.RawMessage) (governance.Plan, error) {
	const op = ToolSendMessage + " plan"
	a, err := decodeMessageArgs(op, args)
	if err != nil {
		return governance.Plan{}, err
	}
	a.From = actor.Agent
	canon, _ := json.Marshal(a)
	return governance.Plan{Tool: ToolSendMessage, Args: canon,
		Summary:    fmt.Sprintf("Send a %s-priority message to %s: %s", a.Priority, a.To, truncate(a.Text, 80)),
		Reversible: false,
		Effects:    []governance.Effect{{Kind: "chat.send", Target: a.To, Detail: fmt.Sprintf("%d bytes", len(a.Text))}}}, nil
}

func (t *messageTool) Apply(ctx context.Context, p governance.Plan) (governance.Result, error) {
	var a messageArgs
	if err := json.Unmarshal(p.Args, &a); err != nil {
		return governance.Result{}, clawops.E(ToolSendMessage, clawops.KindInvalid, clawops.ReasonBadArguments, err)
	}
	kind := a.Kind
	if kind == "" {
		kind = "message"
	}
	n := Notice{Agent: a.From, To: a.To, Text: a.Text, Priority: a.Priority, Kind: kind}
	if err := t.d.Deliver(ctx, n); err != nil {
		return governance.Result{}, clawops.E(ToolSendMessage, clawops.KindTransient, clawops.ReasonExecutionFailed, err)
	}
	data, _ := json.Marshal(map[string]any{"to": a.To, "bytes": len(a.Text), "priority": a.Priority})
	return governance.Result{Summary: "Message sent to " + a.To, Data: data}, nil
}

// decodeMessageArgs reads gf_send_message's arguments strictly.
func decodeMessageArgs(op string, raw json.RawMessage) (messageArgs, error) {
	bad := func(format string, v ...any) (messageArgs, error) {
		return messageArgs{}, clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, fmt.Sprintf(format, v...))
	}
	var in struct {
		Text     *string `json:"text"`
		To       string  `json:"to"`
		Priority string  `json:"priority"`
		Kind     string  `json:"kind"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return bad("arguments must be a JSON object with text, to and priority: %v", err)
	}
	if dec.More() {
		return bad("arguments must be one JSON object")
	}
	if in.Text == nil || strings.TrimSpace(*in.Text) == "" {
		return bad("text is required")
	}
	if len(*in.Text) > MaxNoticeBytes || !utf8.ValidString(*in.Text) {
		return bad("text must be valid UTF-8 of at most %d bytes", MaxNoticeBytes)
	}
	a := messageArgs{Text: *in.Text, To: strings.TrimSpace(in.To), Priority: Priority(in.Priority), Kind: in.Kind}
	if a.To == "" {
		a.To = ToOperators
	}
	if len(a.To) > 255 || strings.ContainsAny(a.To, "\x00\n\r") {
		return bad("to must be an identity or %q", ToOperators)
	}
	switch a.Priority {
	case "":
		a.Priority = PriorityNormal
	case PriorityNormal, PriorityHigh:
	default:
		return bad("priority must be normal or high")
	}
	switch a.Kind {
	case "", "message", "briefing", "alert":
	default:
		return bad("kind must be message, briefing or alert")
	}
	return a, nil
}

// cutBytes cuts s to at most n bytes on a rune boundary, marking the cut with "…".
func cutBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n -= len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:max(n, 0)] + "…"
}
