package agents

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents/llm"
)

// Reason codes of agent runs and agent-to-agent calls.
const (
	ReasonRunStepLimit    clawops.ReasonCode = "RUN_STEP_LIMIT"
	ReasonRunTimeLimit    clawops.ReasonCode = "RUN_TIME_LIMIT"
	ReasonRunCancelled    clawops.ReasonCode = "RUN_CANCELLED"
	ReasonRunCostLimit    clawops.ReasonCode = "RUN_COST_LIMIT"
	ReasonRunDenials      clawops.ReasonCode = "RUN_TOO_MANY_REFUSALS"
	ReasonModelFailed     clawops.ReasonCode = "MODEL_FAILED"
	ReasonNoModel         clawops.ReasonCode = "NO_MODEL"
	ReasonQueueFull       clawops.ReasonCode = "QUEUE_FULL"
	ReasonPeerNotAllowed  clawops.ReasonCode = "PEER_NOT_ALLOWED"
	ReasonDepthLimit      clawops.ReasonCode = "DELEGATION_DEPTH"
	ReasonSpawnLimit      clawops.ReasonCode = "SPAWN_LIMIT"
	ReasonPingPongLimit   clawops.ReasonCode = "PINGPONG_LIMIT"
	ReasonExchangeEnded   clawops.ReasonCode = "EXCHANGE_ENDED"
	ReasonSessionBusy     clawops.ReasonCode = "SESSION_BUSY"
	ReasonUnknownSession  clawops.ReasonCode = "UNKNOWN_SESSION"
	ReasonSessionNotShown clawops.ReasonCode = "SESSION_NOT_VISIBLE"
)

// ReplySkip is the reply with which an agent ends an agent-to-agent exchange.
const ReplySkip = "REPLY_SKIP"

// runKind says what started a run.
type runKind string

const (
	kindOperator runKind = "operator" // a chat message from a person
	kindEvent    runKind = "event"    // a fleet event
	kindSchedule runKind = "schedule" // a cron trigger
	kindTask     runKind = "task"     // sessions_spawn
	kindMessage  runKind = "message"  // sessions_send
	kindAnnounce runKind = "announce" // a spawned session's result, back to its parent
	kindApproval runKind = "approval" // an approval the agent asked for was decided
)

// runInput is one run to execute.
type runInput struct {
	key   SessionKey
	actor clawops.Actor // Agent is key.Agent
	kind  runKind
	text  string // the user message of the run
	// parent is the run that caused this one; depth how many delegations deep it is.
	parent string
	depth  int
	// chain lists the sessions held by the synchronous runs above this one.
	chain []SessionKey
	// locked: the caller holds the session lock already (Commander.Handle).
	locked bool
	// record: write the text in and the reply out to agent_messages.
	record bool
	// deliver: send the reply to the session's person as a notice (a late answer).
	deliver bool
	// carried are notes (approvals, refusals) of runs this one reports on.
	carried []callNote
	// event and schedule are what started an event or schedule run, for the code
	// fallback; fallback forces it even with a model (a briefing the model failed).
	event    *Event
	schedule *Schedule
	fallback bool
}

// callNote is a tool call that a person must hear about: an approval asked for, or a refusal.
type callNote struct {
	Agent      clawops.AgentRole  `json:"agent"`
	Tool       string             `json:"tool"`
	Decision   clawops.Decision   `json:"decision"`
	Reason     clawops.ReasonCode `json:"reason,omitempty"`
	ApprovalID string             `json:"approval_id,omitempty"`
	Message    string             `json:"message,omitempty"`
}

// runResult is what a run produced.
type runResult struct {
	id      string
	reply   string // the model's final text ("" when it stopped before one)
	notes   []callNote
	stopped clawops.ReasonCode // why the run ended early, "" when it finished
	stopMsg string
	err     error // an error of the machinery (history, lock), not of the model
}

// text renders the result for a person: the reply, then what code says they must know.
func (r runResult) text() string {
	var b strings.Builder
	b.WriteString(strings.TrimSpace(r.reply))
	footer := renderNotes(r.notes)
	if r.stopped != "" {
		footer = append(footer, fmt.Sprintf("Stopped (%s): %s", r.stopped, r.stopMsg))
	}
	if len(footer) > 0 {
		if b.Len() > 0 {
			b.WriteString("\n\n")
		}
		b.WriteString(strings.Join(footer, "\n"))
	}
	if b.Len() == 0 {
		return "(no reply)"
	}
	return b.String()
}

// renderNotes lists approvals and refusals, one line each, as the gate reported them.
func renderNotes(notes []callNote) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range notes {
		var line string
		switch {
		case n.Decision == clawops.NeedsApproval:
			line = fmt.Sprintf("Needs approval %s: %s by %s — %s; nothing runs until an approver decides (/approve %s or /deny %s).",
				n.ApprovalID, n.Tool, n.Agent, n.Message, n.ApprovalID, n.ApprovalID)
		default:
			line = fmt.Sprintf("Refused (%s): %s by %s — %s", n.Reason, n.Tool, n.Agent, n.Message)
		}
		if !seen[line] {
			seen[line] = true
			out = append(out, line)
		}
	}
	return out
}

// run holds the state of one executing run.
type run struct {
	t       *Team
	in      runInput
	id      string
	steps   int
	calls   int
	denials int
	spawns  int
	cost    float64
	usage   llm.Usage
	models  []string
	notes   []callNote
	sent    bool                // gf_send_message ran in this run
	turns   map[SessionKey]int  // sessions_send exchanges per target
	ended   map[SessionKey]bool // targets that answered REPLY_SKIP
}

// run executes one run of in.key's agent: lock the session, replay its transcript, and
// loop model → tool calls → model until the model answers without tool calls or a limit
// is reached. Without a model it runs the agent's code fallback instead.
func (t *Team) run(ctx context.Context, in runInput) runResult {
	if !in.locked {
		release, err := t.locks.acquire(ctx, in.key)
		if err != nil {
			return runResult{err: clawops.E("agent run", clawops.KindTransient, ReasonSessionBusy, err)}
		}
		defer release()
	}
	r := &run{t: t, in: in, id: t.nextRunID(), turns: map[SessionKey]int{}, ended: map[SessionKey]bool{}}
	r.notes = append(r.notes, in.carried...)
	started := t.clock.Now()
	log := t.log.With("agent", string(in.key.Agent), "run", r.id, "kind", string(in.kind))
	log.Debug("run started", "session", in.key.String(), "parent", in.parent)

	if in.record {
		if err := t.history.Append(ctx, in.key, In, in.text); err != nil {
			return runResult{id: r.id, err: err}
		}
	}
	var res runResult
	if t.model == nil || in.fallback {
		res = r.fallback(ctx)
	} else {
		res = r.loop(ctx)
	}
	res.id = r.id
	res.notes = r.notes
	if in.kind == kindSchedule && in.schedule != nil && in.schedule.Briefing != "" && !r.sent &&
		res.stopped == "" && res.err == nil && strings.TrimSpace(res.reply) != "" {
		// A briefing is for the operators: the Briefer's answer is the briefing.
		t.sendBriefing(ctx, in.schedule.Briefing, res.reply)
	}
	if res.err != nil {
		log.Error("run failed", "err", res.err)
	}
	// What follows records what already happened; it must not be lost to a caller who left.
	bg := context.WithoutCancel(ctx)
	if in.record || in.deliver {
		if err := t.history.Append(bg, in.key, Out, res.text()); err != nil && res.err == nil {
			res.err = err
		}
	}
	if in.deliver {
		t.deliver(bg, Notice{Agent: in.key.Agent, Channel: in.key.Channel, To: in.key.Identity,
			Text: res.text(), Priority: PriorityNormal, Kind: "reply"})
	}
	row := runRow{ID: r.id, Agent: string(in.key.Agent), Channel: in.key.Channel, Identity: in.key.Identity,
		Kind: string(in.kind), Actor: in.actor.String(), Parent: in.parent, Started: started.UTC(),
		Ended: t.clock.Now().UTC(), Steps: r.steps, ToolCalls: r.calls, Denials: r.denials,
		PromptTokens: r.usage.Prompt, CompletionTokens: r.usage.Completion, CostUSD: r.cost,
		Models: truncate(strings.Join(r.models, ","), 250), Stopped: string(res.stopped)}
	if err := t.transcript.saveRun(bg, row); err != nil {
		log.Warn("run not recorded", "err", err)
	}
	log.Info("run finished", "steps", r.steps, "tool_calls", r.calls, "denials", r.denials,
		"cost_usd", r.cost, "stopped", string(res.stopped))
	return res
}

// loop is the model's tool-calling loop.
func (r *run) loop(ctx context.Context) runResult {
	t, in := r.t, r.in
	lim := t.limits
	ctx, cancel := context.WithTimeout(ctx, lim.MaxDuration)
	defer cancel()

	hist, err := t.transcript.recent(ctx, in.key, lim.HistoryMessages)
	if err != nil {
		return runResult{err: err}
	}
	user := llm.Message{Role: llm.RoleUser, Content: t.redactor.String(in.text)}
	if err := t.transcript.append(ctx, in.key, r.id, user); err != nil {
		return runResult{err: err}
	}
	msgs := append(hist, user)
	system, err := t.systemPrompt(in)
	if err != nil {
		return runResult{err: err}
	}
	tools := t.toolDefs(in.key.Agent, in.actor.Agent, in.depth)
	for {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return r.stop(ReasonRunTimeLimit, fmt.Sprintf("the run reached its time limit of %s", lim.MaxDuration))
		case ctx.Err() != nil:
			return r.stop(ReasonRunCancelled, "the run was cancelled (the gateway is stopping or the caller left)")
		case r.steps >= lim.MaxSteps:
			return r.stop(ReasonRunStepLimit, fmt.Sprintf("the run reached its limit of %d model steps", lim.MaxSteps))
		case r.cost >= lim.MaxCostUSD:
			return r.stop(ReasonRunCostLimit, fmt.Sprintf("the run cost $%.4f, its limit is $%.2f", r.cost, lim.MaxCostUSD))
		}
		req := llm.Request{System: system, Messages: msgs, Tools: tools, MaxTokens: lim.MaxTokens,
			ToolChoice: "auto", User: modelUser(in.key)}
		msgs = r.compact(ctx, req)
		req.Messages = msgs
		resp, err := t.model.Complete(ctx, req)
		if err != nil {
			if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return r.stop(ReasonRunTimeLimit, fmt.Sprintf("the run reached its time limit of %s", lim.MaxDuration))
			}
			code := clawops.ReasonOf(err)
			if code == "" {
				code = ReasonModelFailed
			}
			return r.stop(code, "the model did not answer: "+unwrapMessage(err)+
				"; slash commands still work (/help)")
		}
		r.steps++
		r.cost += resp.CostUSD
		r.usage.Prompt += resp.Usage.Prompt
		r.usage.Completion += resp.Usage.Completion
		if resp.Model != "" && (len(r.models) == 0 || r.models[len(r.models)-1] != resp.Model) {
			r.models = append(r.models, resp.Model)
		}
		am := resp.Message
		am.Role = llm.RoleAssistant
		if err := t.transcript.append(context.WithoutCancel(ctx), in.key, r.id, am); err != nil {
			return runResult{err: err}
		}
		msgs = append(msgs, am)
		if len(am.ToolCalls) == 0 {
			return runResult{reply: resp.Text()}
		}
		for _, call := range am.ToolCalls {
			content := r.callTool(ctx, call)
			tm := llm.Message{Role: llm.RoleTool, ToolCallID: call.ID, Name: call.Name, Content: content}
			if err := t.transcript.append(context.WithoutCancel(ctx), in.key, r.id, tm); err != nil {
				return runResult{err: err}
			}
			msgs = append(msgs, tm)
		}
		if r.denials >= lim.MaxDenials {
			return r.stop(ReasonRunDenials, fmt.Sprintf("the gate refused %d calls in this run; nothing more is tried", r.denials))
		}
	}
}

// modelUser is the request's user field: the agent, so that providers' dashboards and the
// scripted model can tell agents apart, and a digest of the session, never the identity
// itself (it may be a phone number).
func modelUser(k SessionKey) string {
	sum := sha256.Sum256([]byte(k.String()))
	return string(k.Agent) + ":" + hex.EncodeToString(sum[:6])
}

func (r *run) stop(code clawops.ReasonCode, msg string) runResult {
	return runResult{stopped: code, stopMsg: msg}
}

// compact shrinks the history when the model says the request is close to its context
// window; the system prompt and the newest turns stay intact.
func (r *run) compact(ctx context.Context, req llm.Request) []llm.Message {
	cc, ok := r.t.model.(contextChecker)
	if !ok {
		return req.Messages
	}
	w, warn := cc.CheckContext(req)
	if !warn {
		return req.Messages
	}
	out, err := llm.Compact(ctx, req.Messages, w.MessageBudget, nil)
	if err != nil {
		r.t.log.Warn("history not compacted", "agent", r.in.key.Agent, "err", err)
		return req.Messages
	}
	r.t.log.Info("history compacted", "agent", r.in.key.Agent, "warning", w.String(),
		"messages_before", len(req.Messages), "messages_after", len(out))
	return out
}
