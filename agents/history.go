// Package agents runs the operator team: six agents (Commander, Guardian, Ledger, Triage,
// Forge, Briefer), each a loop over an inbox of operator messages, fleet events, schedule
// triggers and messages from the other agents. A run builds a prompt from the agent's
// persona (souls), its skills and its memory, asks a Model, and carries out the tool calls
// the model asks for: every gf_* call passes the governance gate, which decides; the agent
// only proposes. Agents talk to each other with sessions_spawn and sessions_send.
//
// Sessions are keyed by (agent, channel, identity); one run at a time per session; every
// message in and out is persisted with its time, and the model's transcript beside it.
// Runs are bounded by steps, seconds, cost and gate refusals.
//
// Without a model, the Commander answers slash commands (every tool stays reachable),
// events get deterministic handling (the Guardian heals, the Briefer alerts) and
// briefings come from templates.
package agents

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

// Direction says whether a message came in to an agent or went out from it.
type Direction string

// Directions.
const (
	In  Direction = "in"
	Out Direction = "out"
)

// DefaultHistoryRead and MaxHistoryRead bound how much history one read returns.
const (
	DefaultHistoryRead = 50
	MaxHistoryRead     = 200
)

// SessionKey identifies one conversation: an agent talking with one identity on one
// channel. Scheduled runs use Channel "" and Identity "agent:<role>".
type SessionKey struct {
	Agent    clawops.AgentRole
	Channel  string
	Identity string
}

// Message is one persisted message of a session.
type Message struct {
	ID        uint64    `json:"id"`
	Direction Direction `json:"direction"`
	Text      string    `json:"text"`
	At        time.Time `json:"at"`
}

// messageRow is the table agent_messages; ID order is insertion order.
type messageRow struct {
	ID        uint64    `gorm:"primaryKey;autoIncrement"`
	Agent     string    `gorm:"size:32;not null;index:idx_agent_messages_session,priority:1"`
	Channel   string    `gorm:"size:64;not null;index:idx_agent_messages_session,priority:2"`
	Identity  string    `gorm:"size:255;not null;index:idx_agent_messages_session,priority:3"`
	Direction string    `gorm:"size:8;not null"`
	Text      string    `gorm:"type:text;not null"`
	At        time.Time `gorm:"not null"`
}

func (messageRow) TableName() string { return "agent_messages" }

// Migrate creates or updates the agents' tables.
func Migrate(db *gorm.DB) error {
	if err := db.AutoMigrate(&messageRow{}, &turnRow{}, &runRow{}); err != nil {
		return fmt.Errorf("migrate agents: %w", err)
	}
	return nil
}

// History persists session messages.
type History struct {
	db    *gorm.DB
	clock clawops.Clock
}

// NewHistory returns a History over db (migrated with Migrate).
func NewHistory(db *gorm.DB, clock clawops.Clock) *History {
	return &History{db: db, clock: clawops.ClockOrSystem(clock)}
}

// Append stores texts as messages of one direction, in order, in one transaction.
func (h *History) Append(ctx context.Context, key SessionKey, dir Direction, texts ...string) error {
	if len(texts) == 0 {
		return nil
	}
	now := h.clock.Now().UTC()
	rows := make([]messageRow, len(texts))
	for i, t := range texts {
		rows[i] = messageRow{Agent: string(key.Agent), Channel: key.Channel, Identity: key.Identity,
			Direction: string(dir), Text: storable(t), At: now}
	}
	if err := h.db.WithContext(ctx).Create(&rows).Error; err != nil {
		return fmt.Errorf("append history: %w", err)
	}
	return nil
}

// Recent returns the newest messages of a session, oldest first. limit ≤ 0 means
// DefaultHistoryRead; it is capped at MaxHistoryRead.
func (h *History) Recent(ctx context.Context, key SessionKey, limit int) ([]Message, error) {
	if limit <= 0 {
		limit = DefaultHistoryRead
	}
	limit = min(limit, MaxHistoryRead)
	var rows []messageRow
	err := h.db.WithContext(ctx).
		Where("agent = ? AND channel = ? AND identity = ?", string(key.Agent), key.Channel, key.Identity).
		Order("id DESC").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	out := make([]Message, len(rows))
	for i, r := range rows {
		out[i] = Message{ID: r.ID, Direction: Direction(r.Direction), Text: r.Text, At: r.At.UTC()}
	}
	slices.Reverse(out)
	return out, nil
}

// storable makes text safe for every supported database: PostgreSQL rejects NUL bytes and
// invalid UTF-8 in text columns.
func storable(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}
