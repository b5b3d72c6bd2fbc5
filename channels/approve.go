package channels

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

// Decider decides a pending approval; *governance.Gate implements it. The decider actor is
// the ClawOps identity the button presser resolved to; the gate checks the role (NOT_APPROVER),
// self-approval, expiry and the plan hash.
type Decider interface {
	Decide(ctx context.Context, decider clawops.Actor, approvalID string, approve bool, reason string) (governance.Outcome, error)
}

// ScopeDecider is a Decider that can also "approve for scope": approve this request and grant
// a time-bound permission for similar ones. A Decider without it answers an "Approve for
// scope" press with NOT_IMPLEMENTED; nothing is approved.
type ScopeDecider interface {
	DecideScope(ctx context.Context, decider clawops.Actor, approvalID string, reason string) (governance.Outcome, error)
}

// Auditor appends to the audit log; *governance.AuditLog implements it.
type Auditor interface {
	Append(ctx context.Context, e governance.AuditEntry) (governance.AuditEntry, error)
}

// Choice is what an approver pressed.
type Choice string

// Choices offered on an approval card.
const (
	ChoiceApprove      Choice = "once"  // approve this plan once
	ChoiceApproveScope Choice = "scope" // approve and grant for a scope
	ChoiceDeny         Choice = "deny"
)

// Press is one button press (or approval reply) from a chat platform.
type Press struct {
	Channel    string // the adapter's Name()
	Sender     string // the platform's id of the presser
	ApprovalID string
	Choice     Choice
	Reason     string // optional words of the decider
}

// PressResult says what became of a press and what to tell the presser.
type PressResult struct {
	// Ignored is set when the presser is not in allowFrom: nothing was decided, the attempt
	// was audited, and the adapter shows nothing beyond the platform's mandatory ack.
	Ignored bool
	// Refused is set when the gate (or this package) refused the press: the card does not
	// change state, so the adapter shows Text on the card as a notice.
	Refused bool
	Actor   clawops.Actor
	Outcome governance.Outcome
	Reason  clawops.ReasonCode
	// Text is one line for the presser (and for the card when Refused).
	Text string
}

// ApprovalsOptions configure Approvals.
type ApprovalsOptions struct {
	Resolver Resolver
	Decider  Decider
	Auditor  Auditor // optional; unknown pressers are then only logged
	Clock    clawops.Clock
	Logger   *slog.Logger
}

// Approvals turns platform button presses into gate decisions: it resolves the presser
// through allowFrom, ignores and audits unknown ones, calls the Decider and words the result.
// Every adapter shares this logic so a press means the same on every platform.
type Approvals struct {
	resolver Resolver
	decider  Decider
	unknown  *UnknownAudit
	log      *slog.Logger
}

// NewApprovals builds an Approvals.
func NewApprovals(o ApprovalsOptions) *Approvals {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Approvals{resolver: o.Resolver, decider: o.Decider, log: o.Logger,
		unknown: NewUnknownAudit(o.Auditor, o.Clock, o.Logger)}
}

// Press handles one press. It never returns an error: every failure is a PressResult whose
// Text says what happened.
func (a *Approvals) Press(ctx context.Context, p Press) PressResult {
	if a == nil || a.resolver == nil || a.decider == nil {
		return PressResult{Refused: true, Reason: clawops.ReasonNotImplemented,
			Text: "Approvals are not connected to the gate on this gateway (NOT_IMPLEMENTED)."}
	}
	actor, err := a.resolver.Resolve(p.Channel, p.Sender)
	if err != nil {
		a.unknown.Record(ctx, p.Channel, p.Sender, "approval press on "+shortID(p.ApprovalID))
		return PressResult{Ignored: true, Reason: clawops.ReasonUnknownSender}
	}
	actor.Channel = p.Channel
	res := PressResult{Actor: actor}
	var out governance.Outcome
	switch p.Choice {
	case ChoiceApprove, ChoiceDeny:
		out, err = a.decider.Decide(ctx, actor, p.ApprovalID, p.Choice == ChoiceApprove, p.Reason)
	case ChoiceApproveScope:
		sd, ok := a.decider.(ScopeDecider)
		if !ok {
			res.Refused, res.Reason = true, clawops.ReasonNotImplemented
			res.Text = "Approve for scope is not available on this gateway yet (NOT_IMPLEMENTED): nothing was approved. Use Approve once or Deny."
			return res
		}
		out, err = sd.DecideScope(ctx, actor, p.ApprovalID, p.Reason)
	default:
		res.Refused, res.Reason = true, clawops.ReasonMalformedRequest
		res.Text = fmt.Sprintf("Unknown choice %q (MALFORMED_REQUEST).", string(p.Choice))
		return res
	}
	res.Outcome = out
	res.Reason = out.Reason
	if err != nil && res.Reason == "" {
		res.Reason = clawops.ReasonOf(err)
		if res.Reason == "" {
			res.Reason = clawops.ReasonInternal
		}
	}
	res.Refused, res.Text = pressText(actor, p.Choice, out, res.Reason, err)
	a.log.InfoContext(ctx, "approval press", "channel", p.Channel, "identity", actor.Identity,
		"approval", shortID(p.ApprovalID), "choice", string(p.Choice), "reason", res.Reason)
	return res
}

// pressText words a decision for the presser; refused reports that the approval did not
// change state because of this press.
func pressText(actor clawops.Actor, choice Choice, out governance.Outcome, reason clawops.ReasonCode, err error) (refused bool, text string) {
	who := actor.Identity
	if err == nil {
		if choice == ChoiceDeny {
			return false, "Denied by " + who + "."
		}
		if out.Decision == clawops.NeedsApproval {
			return false, "Approved by " + who + "; another approver must approve too."
		}
		s := "Approved by " + who
		if choice == ChoiceApproveScope {
			s += " for scope"
			if out.Message != "" {
				s += " (granted " + out.Message + ")"
			}
		}
		if out.Result != nil && out.Result.Summary != "" {
			s += ": " + out.Result.Summary
		}
		return false, s + "."
	}
	msg := out.Message
	if msg == "" {
		msg = innerText(err)
	}
	switch reason {
	case clawops.ReasonDenied:
		return false, "Denied by " + who + "."
	case clawops.ReasonNotApprover:
		return true, fmt.Sprintf("%s may not decide approvals (NOT_APPROVER); the request is still pending.", who)
	case clawops.ReasonSelfApproval:
		return true, fmt.Sprintf("%s asked for this and may not decide it (SELF_APPROVAL).", who)
	case clawops.ReasonApprovalExpired:
		return true, "This approval has expired (APPROVAL_EXPIRED); ask again."
	case clawops.ReasonAlreadyDecided:
		return true, "This approval was already decided (APPROVAL_ALREADY_DECIDED)."
	case clawops.ReasonApprovalNotFound:
		return true, "There is no such approval (APPROVAL_NOT_FOUND)."
	case clawops.ReasonNotImplemented:
		return true, "That decision is not available on this gateway (NOT_IMPLEMENTED): " + msg
	case governance.ReasonSecondFactorRequired:
		return true, "This approval needs a second factor: decide it in the web console (SECOND_FACTOR_REQUIRED)."
	}
	if choice != ChoiceDeny && out.Decision == clawops.Deny && out.Tool != "" {
		// Approved, then refused or failed on the way to running (plan drift, failure).
		return false, fmt.Sprintf("Approved by %s, but it did not run (%s): %s", who, reason, msg)
	}
	return true, fmt.Sprintf("Refused (%s): %s", reason, msg)
}

func innerText(err error) string {
	var e *clawops.Error
	if errors.As(err, &e) && e.Err != nil {
		return e.Err.Error()
	}
	return err.Error()
}

// shortID cuts an outside-supplied approval id for logs and audit rows.
func shortID(id string) string {
	if len(id) > 64 {
		return id[:64] + "…"
	}
	return id
}

// EncodeAction packs a choice and an approval id into a button payload ("once|apr_…"). It fits
// Telegram's 64-byte callback data, Slack's action value and Discord's 100-character custom id.
func EncodeAction(c Choice, approvalID string) string { return string(c) + "|" + approvalID }

// DecodeAction unpacks a button payload made by EncodeAction. Anything else — an unknown
// choice, an empty, long or oddly spelled id — is an error with reason MALFORMED_REQUEST.
func DecodeAction(s string) (Choice, string, error) {
	bad := func(why string) (Choice, string, error) {
		return "", "", clawops.E("decode action", clawops.KindInvalid, clawops.ReasonMalformedRequest, why)
	}
	c, id, ok := strings.Cut(s, "|")
	if !ok {
		return bad("no separator")
	}
	switch Choice(c) {
	case ChoiceApprove, ChoiceApproveScope, ChoiceDeny:
	default:
		return bad("unknown choice")
	}
	if !ValidApprovalID(id) {
		return bad("bad approval id")
	}
	return Choice(c), id, nil
}

// ValidApprovalID reports whether id looks like an approval id: 1 to 64 letters, digits,
// '_' or '-'.
func ValidApprovalID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// UnknownAudit records attempts by senders not in allowFrom: one audit row per sender per
// Window at most, so a stranger cannot flood the audit log, and a log line every time.
type UnknownAudit struct {
	auditor Auditor
	clock   clawops.Clock
	log     *slog.Logger
	// Window is the least time between two audit rows for one sender.
	Window time.Duration

	mu   sync.Mutex
	seen map[senderKey]time.Time
}

// NewUnknownAudit builds an UnknownAudit; a nil auditor only logs.
func NewUnknownAudit(a Auditor, clock clawops.Clock, logger *slog.Logger) *UnknownAudit {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &UnknownAudit{auditor: a, clock: clawops.ClockOrSystem(clock), log: logger,
		Window: 10 * time.Minute, seen: map[senderKey]time.Time{}}
}

// maxUnknownTracked bounds the memory an attacker can make us spend on distinct senders.
const maxUnknownTracked = 4096

// Record notes that sender on channel tried what (a short description with no message text).
func (u *UnknownAudit) Record(ctx context.Context, channel, sender, what string) {
	if u == nil {
		return
	}
	u.log.InfoContext(ctx, "ignored sender not in allowFrom", "channel", channel, "sender", shortID(sender), "what", what)
	if u.auditor == nil {
		return
	}
	now := u.clock.Now()
	k := senderKey{channel, sender}
	u.mu.Lock()
	if last, ok := u.seen[k]; ok && now.Sub(last) < u.Window {
		u.mu.Unlock()
		return
	}
	if len(u.seen) >= maxUnknownTracked {
		for key, t := range u.seen {
			if now.Sub(t) >= u.Window {
				delete(u.seen, key)
			}
		}
		if len(u.seen) >= maxUnknownTracked {
			u.mu.Unlock()
			return // flooded: the log line above is all we keep
		}
	}
	u.seen[k] = now
	u.mu.Unlock()
	_, err := u.auditor.Append(ctx, governance.AuditEntry{
		Actor:    channel + ":" + shortID(sender),
		Tool:     "-",
		Target:   channel,
		Event:    governance.EventViolation,
		Decision: clawops.Deny,
		Reason:   clawops.ReasonUnknownSender,
		Detail:   "ignored " + what + " from a sender not in allowFrom",
	})
	if err != nil {
		u.log.ErrorContext(ctx, "audit unknown sender", "channel", channel, "err", err)
	}
}
