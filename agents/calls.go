package agents

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents/llm"
	"github.com/gatewayforge/clawops/governance"
)

// toolReply is the JSON a tool result puts in front of the model.
type toolReply struct {
	Status     string             `json:"status"` // ok, needs_approval, refused, error
	Decision   clawops.Decision   `json:"decision,omitempty"`
	Reason     clawops.ReasonCode `json:"reason,omitempty"`
	Message    string             `json:"message,omitempty"`
	Summary    string             `json:"summary,omitempty"`
	ApprovalID string             `json:"approval_id,omitempty"`
	Risk       clawops.RiskClass  `json:"risk,omitempty"`
	Users      int                `json:"users_affected,omitempty"`
	CostDelta  float64            `json:"cost_delta_monthly_usd,omitempty"`
	Expires    string             `json:"expires,omitempty"`
	Data       json.RawMessage    `json:"data,omitempty"`
	// Untrusted marks data that came from the fleet (logs, configs): data, not instructions.
	Untrusted bool `json:"untrusted_data,omitempty"`
}

// callTool carries out one tool call of the model and returns the tool result's content.
func (r *run) callTool(ctx context.Context, call llm.ToolCall) string {
	return r.render(r.call(ctx, call.Name, call.Arguments))
}

// call carries out one tool call: agent tools run here; everything else goes to the gate,
// which decides. Refusals are counted and kept for the person who reads the reply.
func (r *run) call(ctx context.Context, name, args string) toolReply {
	r.calls++
	args = strings.TrimSpace(args)
	if args == "" {
		args = "{}"
	}
	rec := CallRecord{Seq: r.t.callSeq.Add(1), RunID: r.id, Agent: r.in.key.Agent, Session: r.in.key.String(), Tool: name,
		Args: truncate(r.t.redactor.String(args), 2000)}
	var reply toolReply
	switch {
	case !json.Valid([]byte(args)) || !isObject(args):
		reply = refused(clawops.ReasonBadArguments, "the arguments are not a JSON object; nothing ran")
	case isAgentTool(name):
		reply = r.agentTool(ctx, name, json.RawMessage(args))
	default:
		reply = r.gateTool(ctx, name, json.RawMessage(args))
	}
	rec.Decision, rec.Reason, rec.ApprovalID, rec.Message = reply.Decision, reply.Reason, reply.ApprovalID, reply.Message
	if reply.Decision == clawops.Deny {
		// A refusal is a refusal whoever decided it: the gate, or the loop before it.
		if reply.Reason != clawops.ReasonBadArguments {
			r.denials++
		}
		r.notes = append(r.notes, callNote{Agent: r.in.key.Agent, Tool: name, Decision: clawops.Deny,
			Reason: reply.Reason, Message: reply.Message})
	}
	r.t.observe(rec)
	return reply
}

// gateTool asks the gate to run a fleet tool as the run's actor.
func (r *run) gateTool(ctx context.Context, name string, args json.RawMessage) toolReply {
	t := r.t
	out, err := t.gate.Invoke(ctx, r.in.actor, name, args)
	if err != nil {
		code := clawops.ReasonOf(err)
		if code == clawops.ReasonUnknownTool {
			if e, ok := t.catalog()[name]; ok && e.missing {
				return refused(clawops.ReasonNotImplemented,
					fmt.Sprintf("%s is not wired in this gateway yet; nothing ran", name))
			}
		}
		if code == "" || code == clawops.ReasonInternal {
			t.log.Error("gate call failed", "agent", r.in.key.Agent, "tool", name, "err", err)
			return toolReply{Status: "error", Decision: clawops.Deny, Reason: clawops.ReasonInternal,
				Message: "the request could not be completed"}
		}
		msg := unwrapMessage(err)
		if msg == "" {
			msg = out.Message
		}
		return toolReply{Status: "refused", Decision: clawops.Deny, Reason: code, Message: t.redactor.String(msg)}
	}
	if out.Decision == clawops.NeedsApproval {
		rep := toolReply{Status: "needs_approval", Decision: clawops.NeedsApproval, Reason: out.Reason,
			ApprovalID: out.ApprovalID, Risk: out.Risk,
			Message: "nothing has run; a human approver must decide"}
		if out.Plan != nil {
			rep.Summary, rep.Users, rep.CostDelta = out.Plan.Summary, out.Plan.UsersAffected, out.Plan.CostDeltaMonthlyUSD
		}
		if a, err := t.gate.Approval(ctx, out.ApprovalID); err == nil {
			rep.Expires = a.ExpiresAt.UTC().Format(timeLayout)
			if rep.Summary == "" {
				rep.Summary = a.Plan.Summary
			}
		}
		t.rememberApproval(out.ApprovalID, r)
		what := rep.Summary
		if rep.Risk != "" {
			what += fmt.Sprintf(", risk %s", rep.Risk)
		}
		if rep.Expires != "" {
			what += ", expires " + rep.Expires
		}
		r.notes = append(r.notes, callNote{Agent: r.in.key.Agent, Tool: name, Decision: clawops.NeedsApproval,
			Reason: out.Reason, ApprovalID: out.ApprovalID, Message: what})
		return rep
	}
	rep := toolReply{Status: "ok", Decision: clawops.Allow, Reason: out.Reason}
	if name == ToolSendMessage {
		r.sent = true
	}
	if out.Result != nil {
		rep.Summary = out.Result.Summary
		if len(out.Result.Data) > 0 {
			rep.Data = out.Result.Data
			rep.Untrusted = true
		}
	}
	if len(out.Warnings) > 0 {
		rep.Message = strings.Join(out.Warnings, "; ")
	}
	return rep
}

// render turns a reply into the tool message's content: JSON, secrets redacted, cut to
// the size limit (a cut result says so).
func (r *run) render(rep toolReply) string {
	b, err := json.Marshal(rep)
	if err != nil {
		// Data that is not valid JSON: show it as a string instead.
		raw := string(rep.Data)
		rep.Data = nil
		b, _ = json.Marshal(struct {
			toolReply
			Text string `json:"data_text"`
		}{rep, raw})
	}
	s := r.t.redactor.String(string(b))
	if max := r.t.limits.MaxToolResultBytes; len(s) > max {
		s = s[:max] + fmt.Sprintf("… [cut: the result had %d bytes, the limit is %d]", len(s), max)
	}
	return s
}

func refused(code clawops.ReasonCode, msg string) toolReply {
	return toolReply{Status: "refused", Decision: clawops.Deny, Reason: code, Message: msg}
}

func okReply(data any) toolReply {
	b, err := json.Marshal(data)
	if err != nil {
		return toolReply{Status: "error", Decision: clawops.Deny, Reason: clawops.ReasonInternal, Message: err.Error()}
	}
	return toolReply{Status: "ok", Decision: clawops.Allow, Data: b}
}

func isObject(s string) bool {
	s = strings.TrimSpace(s)
	return strings.HasPrefix(s, "{")
}

// decodeStrict decodes args into v, refusing unknown fields and trailing data.
func decodeStrict(args json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the arguments object")
	}
	return nil
}

// rememberApproval keeps who asked for an approval, so its decision can be reported back
// to that session.
func (t *Team) rememberApproval(id string, r *run) {
	if id == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	const maxPending = 1000
	if len(t.approvals) >= maxPending {
		for k := range t.approvals { // forget an arbitrary old one rather than grow
			delete(t.approvals, k)
			break
		}
	}
	t.approvals[id] = pendingApproval{key: r.in.key}
}

// ApprovalChanged implements governance.Notifier: when an approval an agent asked for is
// decided, the person whose conversation led to it is told by code, in that conversation
// (through the spawn chain when a specialist asked). No model runs: the decision and the
// result are facts to relay, not something to reason about. Compose it with the channels'
// notifier in the gateway.
func (t *Team) ApprovalChanged(ctx context.Context, a governance.Approval) {
	switch a.State {
	case governance.ApprovalExecuted, governance.ApprovalFailed, governance.ApprovalDenied, governance.ApprovalExpired:
	default:
		return
	}
	t.mu.Lock()
	p, ok := t.approvals[a.ID]
	delete(t.approvals, a.ID)
	key := p.key
	for i := 0; ok && i < 16 && !isOperatorSession(key); i++ {
		parent, found := t.spawned[key]
		if !found {
			break
		}
		key = parent.key
	}
	t.mu.Unlock()
	if !ok {
		return
	}
	text := t.redactor.String(approvalText(a))
	bg := context.WithoutCancel(ctx)
	if key != p.key {
		if err := t.history.Append(bg, p.key, In, text); err != nil {
			t.log.Warn("approval outcome not recorded", "approval", a.ID, "err", err)
		}
	}
	if !isOperatorSession(key) {
		t.note(p.key.Agent, text)
		return
	}
	if err := t.history.Append(bg, key, Out, text); err != nil {
		t.log.Warn("approval outcome not recorded", "approval", a.ID, "err", err)
	}
	t.deliver(bg, Notice{Agent: key.Agent, Channel: key.Channel, To: key.Identity, Text: text,
		Priority: PriorityNormal, Kind: "reply"})
}

// approvalText renders a decided approval for a person.
func approvalText(a governance.Approval) string {
	s := fmt.Sprintf("Approval %s (%s) %s", a.ID, a.Tool, a.State)
	if a.DecidedBy != "" {
		s += " by " + a.DecidedBy
	}
	if a.Result != nil && a.Result.Summary != "" {
		s += ": " + a.Result.Summary
	} else if a.Error != "" {
		s += ": " + a.Error
	}
	return s + "."
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf(`{"error":%q}`, err.Error())
	}
	return string(b)
}
