package agents

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/skills"
)

// Channels of the sessions agents hold among themselves. Every other channel is a person's.
const (
	// ChannelMain is an agent's own session: schedules, events and messages from other
	// agents (its Identity is "agent:<role>").
	ChannelMain = ""
	// ChannelSpawn holds the sessions sessions_spawn creates.
	ChannelSpawn = "spawn"
)

// String renders the key as "<agent>:<channel>:<identity>", the form sessions_list shows
// and sessions_send and sessions_history take.
func (k SessionKey) String() string {
	return string(k.Agent) + ":" + k.Channel + ":" + k.Identity
}

// ParseSessionKey reads a key written by SessionKey.String.
func ParseSessionKey(s string) (SessionKey, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 || !clawops.AgentRole(parts[0]).Valid() || parts[2] == "" || len(s) > 400 {
		return SessionKey{}, clawops.E("parse session key", clawops.KindInvalid, ReasonUnknownSession,
			fmt.Sprintf("%.60q is not a session key of the form agent:channel:identity", s))
	}
	return SessionKey{Agent: clawops.AgentRole(parts[0]), Channel: parts[1], Identity: parts[2]}, nil
}

// mainSession is role's own session.
func mainSession(role clawops.AgentRole) SessionKey {
	return SessionKey{Agent: role, Channel: ChannelMain, Identity: "agent:" + string(role)}
}

// isOperatorSession reports whether a person is on the other end of key: every session
// but the agents' main and spawned ones.
func isOperatorSession(k SessionKey) bool {
	switch k.Channel {
	case ChannelSpawn:
		return false
	case ChannelMain:
		return !strings.HasPrefix(k.Identity, "agent:")
	}
	return true
}

// delegate returns the actor a run for target acts as when from asks it: the same person
// (or the same autonomous origin), so a person's role limits hold through any number of
// delegations. Work handed down to a specialist is done with the specialist's autonomy;
// a request up to the Commander keeps the asker's, so that no agent gets something done
// through the Commander that it may not do itself.
func delegate(from clawops.Actor, target clawops.AgentRole) clawops.Actor {
	a := from
	if target != clawops.Commander || from.Agent == "" {
		a.Agent = target
	}
	return a
}

// agentTool runs one of the agent tools.
func (r *run) agentTool(ctx context.Context, name string, args json.RawMessage) toolReply {
	switch name {
	case ToolSkillRead:
		return r.skillRead(args)
	case ToolMemoryNote:
		return r.memoryNote(args)
	case ToolSessionsSpawn:
		return r.spawn(ctx, args)
	case ToolSessionsSend:
		return r.send(ctx, args)
	case ToolSessionsList:
		return r.list(ctx, args)
	case ToolSessionsHistory:
		return r.sessionHistory(ctx, args)
	}
	return refused(clawops.ReasonUnknownTool, "no agent tool "+name)
}

func (r *run) skillRead(args json.RawMessage) toolReply {
	var a struct {
		Name string `json:"name"`
	}
	if err := decodeStrict(args, &a); err != nil || a.Name == "" {
		return refused(clawops.ReasonBadArguments, "skill_read takes {\"name\": \"<skill>\"}")
	}
	role := r.in.key.Agent
	if !slices.Contains(r.t.skills.Assigned(role), a.Name) {
		return refused(skills.ReasonUnknownSkill, fmt.Sprintf("%.64q is not one of your skills: %s",
			a.Name, strings.Join(r.t.skills.Assigned(role), ", ")))
	}
	body, err := r.t.skills.Body(a.Name)
	if err != nil {
		return refused(clawops.ReasonOf(err), unwrapMessage(err))
	}
	return okReply(map[string]string{"skill": a.Name, "instructions": body})
}

func (r *run) memoryNote(args json.RawMessage) toolReply {
	var a struct {
		Note string `json:"note"`
	}
	if err := decodeStrict(args, &a); err != nil || strings.TrimSpace(a.Note) == "" {
		return refused(clawops.ReasonBadArguments, "memory_note takes {\"note\": \"<one line>\"}")
	}
	if r.t.memory == nil {
		return refused(clawops.ReasonNotImplemented, "no memory folder is configured")
	}
	if err := r.t.memory.Append(r.in.key.Agent, r.t.redactor.String(a.Note)); err != nil {
		return toolReply{Status: "error", Decision: clawops.Deny, Reason: clawops.ReasonExecutionFailed, Message: err.Error()}
	}
	return okReply(map[string]string{"noted": "memory/" + r.t.clock.Now().UTC().Format("2006-01-02") + ".md"})
}

// checkPeer refuses delegation to an agent the run's agent may not reach, or beyond the
// depth limit.
func (r *run) checkPeer(target clawops.AgentRole) *toolReply {
	from := r.in.key.Agent
	switch {
	case !target.Valid():
		rep := refused(clawops.ReasonBadArguments, fmt.Sprintf("%.32q is not an agent", target))
		return &rep
	case !r.t.peerAllowed(from, target):
		rep := refused(ReasonPeerNotAllowed, fmt.Sprintf("%s may not delegate to %s (peers: %v)", from, target, r.t.peers[from]))
		return &rep
	case r.in.depth+1 > r.t.limits.MaxDepth:
		rep := refused(ReasonDepthLimit, fmt.Sprintf("delegation is limited to %d levels", r.t.limits.MaxDepth))
		return &rep
	}
	return nil
}

// envelope is the JSON message one agent sends another.
type envelope struct {
	Type       string            `json:"type"` // task, message
	From       clawops.AgentRole `json:"from"`
	Session    string            `json:"session,omitempty"`
	OnBehalfOf string            `json:"on_behalf_of,omitempty"`
	Task       json.RawMessage   `json:"task,omitempty"`
	Payload    json.RawMessage   `json:"payload,omitempty"`
	Label      string            `json:"label,omitempty"`
	Message    json.RawMessage   `json:"message,omitempty"`
}

// spawnResult renders what a spawned run produced, for its parent.
func spawnResult(key SessionKey, kind runKind, res runResult) map[string]any {
	out := map[string]any{"type": "spawn_result", "agent": key.Agent, "session": key.String(), "trigger": string(kind)}
	switch {
	case res.err != nil:
		out["status"], out["error"] = "error", unwrapMessage(res.err)
	case res.stopped != "":
		out["status"], out["stopped"], out["reason"] = "stopped", res.stopped, res.stopMsg
	default:
		out["status"] = "done"
	}
	if strings.TrimSpace(res.reply) != "" {
		out["reply"] = asJSONValue(res.reply)
	}
	if len(res.notes) > 0 {
		out["gate"] = res.notes
	}
	return out
}

// spawn starts a specialist in a new session. The spawned run goes on in the background;
// the caller waits for it at most Limits.SpawnWait: a quick task's result comes back as
// the tool result, a long one is announced to the caller's session when it ends.
func (r *run) spawn(ctx context.Context, args json.RawMessage) toolReply {
	var a struct {
		Agent   clawops.AgentRole `json:"agent"`
		Task    json.RawMessage   `json:"task"`
		Payload json.RawMessage   `json:"payload"`
		Label   string            `json:"label"`
	}
	if err := decodeStrict(args, &a); err != nil || len(a.Task) == 0 || len(a.Label) > 64 {
		return refused(clawops.ReasonBadArguments, "sessions_spawn takes {\"agent\": \"<role>\", \"task\": {...} or \"<name>\", \"payload\": {...}}")
	}
	if len(a.Payload) > 0 && !strings.HasPrefix(strings.TrimSpace(string(a.Payload)), "{") {
		return refused(clawops.ReasonBadArguments, "sessions_spawn: payload must be a JSON object")
	}
	if rep := r.checkPeer(a.Agent); rep != nil {
		return *rep
	}
	if r.spawns >= r.t.limits.MaxSpawns {
		return refused(ReasonSpawnLimit, fmt.Sprintf("a run may spawn at most %d sessions", r.t.limits.MaxSpawns))
	}
	r.spawns++
	t := r.t
	t.mu.Lock()
	t.sessionSeq++
	key := SessionKey{Agent: a.Agent, Channel: ChannelSpawn,
		Identity: fmt.Sprintf("%s-%s-%d", r.in.key.Agent, t.clock.Now().UTC().Format("20060102T150405"), t.sessionSeq)}
	t.rememberSpawn(key, spawnParent{key: r.in.key, actor: r.in.actor, depth: r.in.depth, from: a.Agent})
	t.mu.Unlock()
	// decodeStrict checked that task and payload are JSON.
	task := json.RawMessage(strings.TrimSpace(string(a.Task)))
	env := envelope{Type: "task", From: r.in.key.Agent, Session: key.String(), OnBehalfOf: r.in.actor.Identity,
		Task: task, Payload: a.Payload, Label: a.Label}
	in := runInput{key: key, actor: delegate(r.in.actor, a.Agent), kind: kindTask, text: mustJSON(env),
		parent: r.id, depth: r.in.depth + 1, record: true}

	h := t.startChild(ctx, in)
	wait := t.limits.SpawnWait
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-h.done:
	case <-timer.C:
	case <-ctx.Done():
	}
	if res, ok := h.claim(); ok {
		r.notes = append(r.notes, res.notes...)
		out := spawnResult(key, kindTask, res)
		return okReply(out)
	}
	return okReply(map[string]any{"status": "accepted", "agent": a.Agent, "session": key.String(),
		"note": fmt.Sprintf("still running after %s; the result will be announced to you when it is done", wait)})
}

// child is a spawned run the spawner may still claim.
type child struct {
	done chan struct{}
	mu   sync.Mutex
	res  *runResult
	late bool // the spawner stopped waiting; announce the result instead
}

// claim takes the result if it is there; otherwise it marks the child late, so its end
// is announced.
func (c *child) claim() (runResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.res != nil {
		return *c.res, true
	}
	c.late = true
	return runResult{}, false
}

// startChild runs in in the background. The run outlives the caller's context (it has
// its own limits) but not the team: it is cancelled when Run returns.
func (t *Team) startChild(ctx context.Context, in runInput) *child {
	c := &child{done: make(chan struct{})}
	t.mu.Lock()
	t.pending++
	t.mu.Unlock()
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-t.closed:
			cancel()
		case <-cctx.Done():
		}
	}()
	go func() {
		defer t.finish()
		defer cancel()
		res := t.run(cctx, in)
		c.mu.Lock()
		c.res = &res
		late := c.late
		c.mu.Unlock()
		close(c.done)
		if late {
			t.announceIfSpawned(cctx, in, res)
		}
	}()
	return c
}

// rememberSpawn records a spawned session's parent; t.mu is held.
func (t *Team) rememberSpawn(key SessionKey, p spawnParent) {
	const maxSpawned = 4096
	if len(t.spawned) >= maxSpawned {
		for k := range t.spawned { // forget an arbitrary old one rather than grow
			delete(t.spawned, k)
			break
		}
	}
	t.spawned[key] = p
}

// announceIfSpawned reports a finished run of a spawned session to the session that
// spawned it, as a new run there. A parent that is a person's conversation gets the
// answer delivered as a late reply.
func (t *Team) announceIfSpawned(ctx context.Context, in runInput, res runResult) {
	t.mu.Lock()
	p, ok := t.spawned[in.key]
	t.mu.Unlock()
	if !ok {
		return
	}
	op := isOperatorSession(p.key)
	next := runInput{key: p.key, actor: p.actor, kind: kindAnnounce, text: mustJSON(spawnResult(in.key, in.kind, res)),
		parent: res.id, depth: p.depth, carried: res.notes, record: !op, deliver: op}
	if err := t.enqueue(job{in: next, done: t.announceIfSpawned}); err != nil {
		t.log.Warn("spawn result not announced", "session", in.key.String(), "parent", p.key.String(), "err", err)
		if op {
			t.deliver(ctx, Notice{Agent: p.key.Agent, Channel: p.key.Channel, To: p.key.Identity,
				Text: res.text(), Priority: PriorityNormal, Kind: "reply"})
		}
	}
}

func (r *run) send(ctx context.Context, args json.RawMessage) toolReply {
	var a struct {
		Agent   clawops.AgentRole `json:"agent"`
		Session string            `json:"session"`
		Message json.RawMessage   `json:"message"`
	}
	if err := decodeStrict(args, &a); err != nil || len(a.Message) == 0 || (a.Agent == "") == (a.Session == "") {
		return refused(clawops.ReasonBadArguments, "sessions_send takes {\"agent\": \"<role>\" or \"session\": \"<key>\", \"message\": {...}}")
	}
	target := mainSession(a.Agent)
	if a.Session != "" {
		k, err := ParseSessionKey(a.Session)
		if err != nil {
			return refused(ReasonUnknownSession, unwrapMessage(err))
		}
		if isOperatorSession(k) {
			return refused(ReasonSessionNotShown, "agents may not write into a person's conversation")
		}
		target = k
	}
	if rep := r.checkPeer(target.Agent); rep != nil {
		return *rep
	}
	if target == r.in.key || slices.Contains(r.in.chain, target) {
		return refused(ReasonSessionBusy, fmt.Sprintf("%s is waiting on this exchange already; a reply would deadlock", target))
	}
	if r.ended[target] {
		return refused(ReasonExchangeEnded, target.String()+" ended the exchange with REPLY_SKIP")
	}
	if r.turns[target] >= r.t.limits.MaxPingPongTurns {
		return refused(ReasonPingPongLimit, fmt.Sprintf("at most %d exchanges with one session per run", r.t.limits.MaxPingPongTurns))
	}
	r.turns[target]++
	env := envelope{Type: "message", From: r.in.key.Agent, OnBehalfOf: r.in.actor.Identity, Message: asJSONObject(a.Message)}
	// Wait a bounded time for the target's session: it may be busy with its own run.
	wctx, cancel := context.WithTimeout(ctx, sendWait)
	release, err := r.t.locks.acquire(wctx, target)
	cancel()
	if err != nil {
		return refused(ReasonSessionBusy, fmt.Sprintf("%s stayed busy for %s; try later", target, sendWait))
	}
	defer release()
	in := runInput{key: target, actor: delegate(r.in.actor, target.Agent), kind: kindMessage, text: mustJSON(env),
		parent: r.id, depth: r.in.depth + 1, chain: append(slices.Clone(r.in.chain), r.in.key), locked: true, record: true}
	res := r.t.run(ctx, in)
	if res.err != nil {
		return toolReply{Status: "error", Decision: clawops.Deny, Reason: ReasonModelFailed, Message: unwrapMessage(res.err)}
	}
	r.notes = append(r.notes, res.notes...)
	reply := strings.TrimSpace(res.reply)
	out := map[string]any{"session": target.String(), "turn": r.turns[target], "max_turns": r.t.limits.MaxPingPongTurns}
	switch {
	case res.stopped != "":
		out["status"], out["stopped"], out["reason"] = "stopped", res.stopped, res.stopMsg
	case reply == ReplySkip:
		r.ended[target] = true
		out["status"] = "ended"
	default:
		out["status"] = "replied"
		out["reply"] = asJSONValue(reply)
	}
	return okReply(out)
}

// sendWait bounds how long sessions_send waits for a busy target session.
const sendWait = 30 * time.Second

// asJSONObject keeps a JSON object as it is and wraps anything else as {"request": ...},
// so that what agents exchange is always an object.
func asJSONObject(raw json.RawMessage) json.RawMessage {
	raw = json.RawMessage(strings.TrimSpace(string(raw)))
	if len(raw) > 0 && raw[0] == '{' && json.Valid(raw) {
		return raw
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		b, _ := json.Marshal(map[string]string{"request": s})
		return b
	}
	b, _ := json.Marshal(map[string]json.RawMessage{"request": raw})
	return b
}

// asJSONValue returns s as parsed JSON when it is JSON, else as a string.
func asJSONValue(s string) any {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimPrefix(t, "```json"), "```")
	t = strings.TrimSpace(t)
	if (strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[")) && json.Valid([]byte(t)) {
		return json.RawMessage(t)
	}
	return s
}
