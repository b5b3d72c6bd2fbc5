package agents

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gatewayforge/clawops"
)

// visible reports whether an agent may list and read session k: its own sessions and the
// agent-to-agent sessions of its peers; a person's conversation only when it is the
// Commander (the agent that holds those conversations).
func (t *Team) visible(role clawops.AgentRole, k SessionKey) bool {
	if isOperatorSession(k) {
		return role == clawops.Commander && k.Agent == clawops.Commander
	}
	return k.Agent == role || t.peerAllowed(role, k.Agent)
}

// SessionInfo is one session as sessions_list shows it.
type SessionInfo struct {
	Key      string            `json:"session"`
	Agent    clawops.AgentRole `json:"agent"`
	Kind     string            `json:"kind"` // main, spawn, chat
	Messages int               `json:"messages"`
	LastAt   time.Time         `json:"last_at"`
}

func sessionKind(k SessionKey) string {
	switch {
	case isOperatorSession(k):
		return "chat"
	case k.Channel == ChannelSpawn:
		return "spawn"
	}
	return "main"
}

// Sessions lists the sessions with history, newest first: all of them when role is "",
// else those role may reach.
func (t *Team) Sessions(ctx context.Context, role clawops.AgentRole, agent clawops.AgentRole, limit int) ([]SessionInfo, error) {
	if limit <= 0 || limit > 50 {
		limit = 50
	}
	type row struct {
		Agent, Channel, Identity string
		N                        int
		LastID                   uint64
	}
	var rows []row
	q := t.history.db.WithContext(ctx).Model(&messageRow{}).
		Select("agent, channel, identity, count(*) as n, max(id) as last_id").
		Group("agent, channel, identity").Order("last_id DESC").Limit(500)
	if agent != "" {
		q = q.Where("agent = ?", string(agent))
	}
	if err := q.Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	var out []SessionInfo
	var ids []uint64
	for _, r := range rows {
		k := SessionKey{Agent: clawops.AgentRole(r.Agent), Channel: r.Channel, Identity: r.Identity}
		if role != "" && !t.visible(role, k) {
			continue
		}
		out = append(out, SessionInfo{Key: k.String(), Agent: k.Agent, Kind: sessionKind(k), Messages: r.N})
		ids = append(ids, r.LastID)
		if len(out) == limit {
			break
		}
	}
	if len(ids) > 0 {
		var last []messageRow
		if err := t.history.db.WithContext(ctx).Select("id, at").Where("id IN ?", ids).Find(&last).Error; err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		at := map[uint64]time.Time{}
		for _, m := range last {
			at[m.ID] = m.At.UTC()
		}
		for i := range out {
			out[i].LastAt = at[ids[i]]
		}
	}
	return out, nil
}

func (r *run) list(ctx context.Context, args json.RawMessage) toolReply {
	var a struct {
		Agent clawops.AgentRole `json:"agent"`
		Limit int               `json:"limit"`
	}
	if err := decodeStrict(args, &a); err != nil || (a.Agent != "" && !a.Agent.Valid()) || a.Limit < 0 {
		return refused(clawops.ReasonBadArguments, "sessions_list takes {\"agent\": \"<role>\", \"limit\": n}, both optional")
	}
	list, err := r.t.Sessions(ctx, r.in.key.Agent, a.Agent, a.Limit)
	if err != nil {
		r.t.log.Error("sessions_list", "err", err)
		return toolReply{Status: "error", Decision: clawops.Deny, Reason: clawops.ReasonInternal, Message: "the sessions could not be listed"}
	}
	if list == nil {
		list = []SessionInfo{}
	}
	return okReply(map[string]any{"sessions": list})
}

func (r *run) sessionHistory(ctx context.Context, args json.RawMessage) toolReply {
	var a struct {
		Session string `json:"session"`
		Limit   int    `json:"limit"`
	}
	if err := decodeStrict(args, &a); err != nil || a.Session == "" || a.Limit < 0 {
		return refused(clawops.ReasonBadArguments, "sessions_history takes {\"session\": \"<key>\", \"limit\": n}")
	}
	k, err := ParseSessionKey(a.Session)
	if err != nil {
		return refused(ReasonUnknownSession, unwrapMessage(err))
	}
	if !r.t.visible(r.in.key.Agent, k) {
		return refused(ReasonSessionNotShown, fmt.Sprintf("%s may not read %s", r.in.key.Agent, k))
	}
	limit := a.Limit
	if limit == 0 || limit > 50 {
		limit = 20
	}
	msgs, err := r.t.history.Recent(ctx, k, limit)
	if err != nil {
		r.t.log.Error("sessions_history", "err", err)
		return toolReply{Status: "error", Decision: clawops.Deny, Reason: clawops.ReasonInternal, Message: "the history could not be read"}
	}
	type line struct {
		Direction Direction `json:"direction"`
		At        time.Time `json:"at"`
		Text      string    `json:"text"`
	}
	out := make([]line, len(msgs))
	for i, m := range msgs {
		out[i] = line{Direction: m.Direction, At: m.At, Text: truncate(r.t.redactor.String(m.Text), 2000)}
	}
	return okReply(map[string]any{"session": k.String(), "messages": out})
}
