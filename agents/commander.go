package agents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

// Tool names the slash commands invoke; the tools room implements them as governed tools.
const (
	ToolFleetStatus    = "gf_fleet_status"
	ToolInstanceHealth = "gf_instance_health"
	ToolInstanceLogs   = "gf_instance_logs"
	ToolRestart        = "gf_restart"
	ToolTeardown       = "gf_teardown"
)

// MaxTextBytes is the longest message the Commander accepts.
const MaxTextBytes = 8 << 10

// Gate is what agents need of governance.Gate: every tool call and every approval decision
// goes through it.
type Gate interface {
	Invoke(ctx context.Context, actor clawops.Actor, tool string, args json.RawMessage) (governance.Outcome, error)
	Decide(ctx context.Context, decider clawops.Actor, approvalID string, approve bool, reason string) (governance.Outcome, error)
	ListApprovals(ctx context.Context, state governance.ApprovalState) ([]governance.Approval, error)
	Approval(ctx context.Context, id string) (governance.Approval, error)
}

// CommanderOptions configure a Commander.
type CommanderOptions struct {
	Gate   Gate
	DB     *gorm.DB // migrated with Migrate
	Clock  clawops.Clock
	Logger *slog.Logger
}

// Commander is the operator's entry point. Slash commands map to gate calls and their
// outcomes are rendered by code, with or without a model. Plain text goes to the Commander
// agent when the Commander belongs to a Team with a model (Team.Commander), and gets a
// pointer to /help otherwise.
type Commander struct {
	gate     Gate
	history  *History
	sessions *sessionLocks
	log      *slog.Logger
	team     *Team // nil: slash mode only
}

// NewCommander builds a Commander.
func NewCommander(opts CommanderOptions) (*Commander, error) {
	if opts.Gate == nil {
		return nil, errors.New("new commander: Gate is required")
	}
	if opts.DB == nil {
		return nil, errors.New("new commander: DB is required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Commander{
		gate:     opts.Gate,
		history:  NewHistory(opts.DB, opts.Clock),
		sessions: newSessionLocks(),
		log:      log.With("agent", string(clawops.Commander)),
	}, nil
}

// Handle runs one message from actor to its end and returns the replies. Runs of the same
// session (channel, identity) are serialised; the message and the replies are persisted.
// Refusals by the gate are replies, not errors: the error is for a malformed call (no
// identity, text too long), a cancelled context or a history failure.
func (c *Commander) Handle(ctx context.Context, actor clawops.Actor, text string) ([]string, error) {
	const op = "commander handle"
	if actor.Identity == "" {
		return nil, clawops.E(op, clawops.KindInvalid, clawops.ReasonMalformedRequest, "actor has no identity")
	}
	if strings.HasPrefix(actor.Identity, "agent:") {
		return nil, clawops.E(op, clawops.KindInvalid, clawops.ReasonMalformedRequest,
			"identities starting with agent: are reserved for the agents' own sessions")
	}
	if len(text) > MaxTextBytes {
		return nil, clawops.E(op, clawops.KindInvalid, clawops.ReasonMalformedRequest,
			fmt.Sprintf("message is %d bytes; the limit is %d", len(text), MaxTextBytes))
	}
	actor.Agent = clawops.Commander
	key := SessionKey{Agent: clawops.Commander, Channel: actor.Channel, Identity: actor.Identity}
	if c.conversational(text) {
		// A run slot before the session lock, in the order background runs take them.
		releaseSlot, err := c.team.acquireSlot(ctx)
		if err != nil {
			return nil, clawops.E(op, clawops.KindTransient, err)
		}
		defer releaseSlot()
	}
	release, err := c.sessions.acquire(ctx, key)
	if err != nil {
		return nil, clawops.E(op, clawops.KindTransient, err)
	}
	defer release()

	if err := c.history.Append(ctx, key, In, text); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	replies := c.run(ctx, actor, key, text)
	// The replies describe what already happened; record them even if the caller left.
	if err := c.history.Append(context.WithoutCancel(ctx), key, Out, replies...); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return replies, nil
}

// History returns the newest messages of a Commander session, oldest first.
func (c *Commander) History(ctx context.Context, channel, identity string, limit int) ([]Message, error) {
	return c.history.Recent(ctx, SessionKey{Agent: clawops.Commander, Channel: channel, Identity: identity}, limit)
}

// conversational reports whether text goes to the Commander agent's model.
func (c *Commander) conversational(text string) bool {
	text = strings.TrimSpace(text)
	return c.team != nil && c.team.model != nil && text != "" && !IsSlash(text)
}

func (c *Commander) run(ctx context.Context, actor clawops.Actor, key SessionKey, text string) []string {
	if c.conversational(text) {
		return []string{c.team.converse(ctx, actor, key, text)}
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return []string{"Empty message. Send /help for the commands."}
	}
	if !IsSlash(text) {
		return []string{"No model is configured, so I only understand slash commands.\n" + helpText()}
	}
	cmd, err := ParseSlash(text)
	if err != nil {
		var e *clawops.Error
		errors.As(err, &e)
		if e != nil && e.Reason == ReasonUnknownCommand {
			return []string{fmt.Sprintf("Unknown command (%s): %v. Send /help for the commands.", e.Reason, e.Err)}
		}
		return []string{fmt.Sprintf("Invalid (%s): %v", clawops.ReasonOf(err), unwrapMessage(err))}
	}
	c.log.Debug("slash command", "identity", actor.Identity, "command", cmd.Name)
	return []string{c.exec(ctx, actor, cmd)}
}

// instanceArgs are the arguments of the per-instance tools. Values are marshalled, never
// interpolated; the tools validate them.
type instanceArgs struct {
	Instance string `json:"instance"`
	Lines    int    `json:"lines,omitempty"`
}

func (c *Commander) exec(ctx context.Context, actor clawops.Actor, cmd Command) string {
	switch cmd.Name {
	case "help":
		return helpText()
	case "status":
		return c.invoke(ctx, actor, ToolFleetStatus, struct{}{})
	case "health":
		return c.invoke(ctx, actor, ToolInstanceHealth, instanceArgs{Instance: cmd.Args[0]})
	case "restart":
		return c.invoke(ctx, actor, ToolRestart, instanceArgs{Instance: cmd.Args[0]})
	case "teardown":
		return c.invoke(ctx, actor, ToolTeardown, instanceArgs{Instance: cmd.Args[0]})
	case "logs":
		args := instanceArgs{Instance: cmd.Args[0]}
		if len(cmd.Args) == 2 {
			fmt.Sscan(cmd.Args[1], &args.Lines) // validated by ParseSlash
		}
		return c.invoke(ctx, actor, ToolInstanceLogs, args)
	case "tools":
		return c.listTools()
	case "tool":
		raw := "{}"
		if len(cmd.Args) == 2 {
			raw = cmd.Args[1]
		}
		if !json.Valid([]byte(raw)) || !strings.HasPrefix(raw, "{") {
			return fmt.Sprintf("Invalid (%s): the arguments must be one JSON object, e.g. {\"instance\":\"demo1-pri\"}", clawops.ReasonBadArguments)
		}
		return c.invoke(ctx, actor, cmd.Args[0], json.RawMessage(raw))
	case "approvals":
		list, err := c.gate.ListApprovals(ctx, governance.ApprovalPending)
		if err != nil {
			return c.refusal(err, governance.Outcome{})
		}
		return renderApprovals(list)
	case "approve", "deny":
		reason := ""
		if len(cmd.Args) == 2 {
			reason = cmd.Args[1]
		}
		return c.decide(ctx, actor, cmd.Args[0], cmd.Name == "approve", reason)
	}
	return "Unknown command. Send /help for the commands."
}

// listTools renders the gate's tool catalog, when the gate can list it.
func (c *Commander) listTools() string {
	lister, ok := c.gate.(interface{ Tools() []governance.ToolSpec })
	if !ok {
		return "This gateway's gate does not list its tools."
	}
	specs := lister.Tools()
	if len(specs) == 0 {
		return "No tools are registered."
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d tools (call one with /tool <name> {json}):", len(specs))
	for _, s := range specs {
		fmt.Fprintf(&b, "\n- %s (%s, risk %s): %s", s.Name, s.Action, s.Risk, truncate(s.Description, 100))
	}
	return b.String()
}

func (c *Commander) invoke(ctx context.Context, actor clawops.Actor, tool string, args any) string {
	raw, err := json.Marshal(args)
	if err != nil {
		return c.refusal(err, governance.Outcome{})
	}
	out, err := c.gate.Invoke(ctx, actor, tool, raw)
	if err != nil {
		return c.refusal(err, out)
	}
	if out.Decision == clawops.NeedsApproval {
		return c.approvalRequested(ctx, out)
	}
	return renderResult(tool, out)
}

// decide passes a human's /approve or /deny to the gate. The decider carries no agent: the
// decision is the human's own words, parsed by code, never a model's choice.
func (c *Commander) decide(ctx context.Context, actor clawops.Actor, id string, approve bool, reason string) string {
	decider := actor
	decider.Agent = ""
	out, err := c.gate.Decide(ctx, decider, id, approve, reason)
	if !approve && (err == nil || clawops.ReasonOf(err) == clawops.ReasonDenied) {
		return fmt.Sprintf("Approval %s denied.", id)
	}
	if err != nil {
		return c.refusal(err, out)
	}
	if out.Result != nil && out.Result.Summary != "" {
		return fmt.Sprintf("Approval %s approved and executed: %s", id, out.Result.Summary)
	}
	return fmt.Sprintf("Approval %s approved.", id)
}

func (c *Commander) approvalRequested(ctx context.Context, out governance.Outcome) string {
	summary, risk, expires := "", out.Risk, "unknown"
	if out.Plan != nil {
		summary = out.Plan.Summary
	}
	if a, err := c.gate.Approval(ctx, out.ApprovalID); err != nil {
		c.log.Warn("read new approval", "approval", out.ApprovalID, "err", err)
	} else {
		expires = a.ExpiresAt.UTC().Format(timeLayout)
		if summary == "" {
			summary = a.Plan.Summary
		}
		if risk == "" {
			risk = a.Risk
		}
	}
	if summary == "" {
		summary = out.Tool
	}
	return fmt.Sprintf("Approval %s requested: %s, risk %s, expires %s; an approver must decide",
		out.ApprovalID, summary, risk, expires)
}

// refusal renders a gate error as "<Label> (<REASON_CODE>): <message>". Internal errors (no
// reason code, or INTERNAL) are logged, and the reply says only INTERNAL.
func (c *Commander) refusal(err error, out governance.Outcome) string {
	code := clawops.ReasonOf(err)
	if code == "" || code == clawops.ReasonInternal {
		c.log.Error("gate call failed", "err", err)
		return fmt.Sprintf("Failed (%s): the request could not be completed", clawops.ReasonInternal)
	}
	msg := out.Message
	if msg == "" {
		msg = unwrapMessage(err)
	}
	kind := clawops.KindOf(err)
	label := kindLabel(kind)
	if kind == clawops.KindOther && out.Decision == clawops.Deny {
		label = "Denied"
	}
	if msg == "" {
		return fmt.Sprintf("%s (%s)", label, code)
	}
	return fmt.Sprintf("%s (%s): %s", label, code, msg)
}
