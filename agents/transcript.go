package agents

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents/llm"
)

// turnRow is the table agent_transcript: the model's view of a session (user, assistant
// and tool messages, tool calls included), which the loop replays into the next run.
// agent_messages keeps the human-readable in/out view beside it.
type turnRow struct {
	ID         uint64    `gorm:"primaryKey;autoIncrement"`
	Agent      string    `gorm:"size:32;not null;index:idx_agent_transcript_session,priority:1"`
	Channel    string    `gorm:"size:64;not null;index:idx_agent_transcript_session,priority:2"`
	Identity   string    `gorm:"size:255;not null;index:idx_agent_transcript_session,priority:3"`
	RunID      string    `gorm:"size:40;not null;index"`
	Role       string    `gorm:"size:16;not null"`
	Content    string    `gorm:"type:text;not null"`
	ToolCalls  string    `gorm:"type:text;not null"` // JSON array of llm.ToolCall, "" when none
	ToolCallID string    `gorm:"size:128;not null"`
	Name       string    `gorm:"size:64;not null"`
	At         time.Time `gorm:"not null"`
}

func (turnRow) TableName() string { return "agent_transcript" }

// runRow is the table agent_runs: one row per agent run with what it cost and why it ended.
type runRow struct {
	ID               string    `gorm:"primaryKey;size:40"`
	Agent            string    `gorm:"size:32;not null;index"`
	Channel          string    `gorm:"size:64;not null"`
	Identity         string    `gorm:"size:255;not null"`
	Kind             string    `gorm:"size:16;not null"`
	Actor            string    `gorm:"size:300;not null"`
	Parent           string    `gorm:"size:40;not null"`
	Started          time.Time `gorm:"not null;index"`
	Ended            time.Time `gorm:"not null"`
	Steps            int       `gorm:"not null"`
	ToolCalls        int       `gorm:"not null"`
	Denials          int       `gorm:"not null"`
	PromptTokens     int       `gorm:"not null"`
	CompletionTokens int       `gorm:"not null"`
	CostUSD          float64   `gorm:"not null"`
	Models           string    `gorm:"size:255;not null"`
	Stopped          string    `gorm:"size:40;not null"` // reason code when a limit or error ended it
}

func (runRow) TableName() string { return "agent_runs" }

// transcript persists the model's view of sessions.
type transcript struct {
	db    *gorm.DB
	clock clawops.Clock
}

func (t *transcript) append(ctx context.Context, key SessionKey, runID string, msgs ...llm.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	now := t.clock.Now().UTC()
	rows := make([]turnRow, len(msgs))
	for i, m := range msgs {
		calls := ""
		if len(m.ToolCalls) > 0 {
			b, err := json.Marshal(m.ToolCalls)
			if err != nil {
				return fmt.Errorf("append transcript: %w", err)
			}
			calls = string(b)
		}
		rows[i] = turnRow{Agent: string(key.Agent), Channel: key.Channel, Identity: key.Identity, RunID: runID,
			Role: string(m.Role), Content: storable(m.Content), ToolCalls: storable(calls),
			ToolCallID: storable(m.ToolCallID), Name: storable(m.Name), At: now}
	}
	if err := t.db.WithContext(ctx).Create(&rows).Error; err != nil {
		return fmt.Errorf("append transcript: %w", err)
	}
	return nil
}

// recent returns up to limit of the newest messages of a session, oldest first, cut so
// that it starts at a user message: a replayed history never opens with tool results
// whose call was cut off.
func (t *transcript) recent(ctx context.Context, key SessionKey, limit int) ([]llm.Message, error) {
	var rows []turnRow
	err := t.db.WithContext(ctx).
		Where("agent = ? AND channel = ? AND identity = ?", string(key.Agent), key.Channel, key.Identity).
		Order("id DESC").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("read transcript: %w", err)
	}
	slices.Reverse(rows)
	out := make([]llm.Message, 0, len(rows))
	for _, r := range rows {
		m := llm.Message{Role: llm.Role(r.Role), Content: r.Content, ToolCallID: r.ToolCallID, Name: r.Name}
		if r.ToolCalls != "" {
			if err := json.Unmarshal([]byte(r.ToolCalls), &m.ToolCalls); err != nil {
				return nil, fmt.Errorf("read transcript: row %d: %w", r.ID, err)
			}
		}
		out = append(out, m)
	}
	for len(out) > 0 && out[0].Role != llm.RoleUser {
		out = out[1:]
	}
	return repairCalls(out), nil
}

// repairCalls drops assistant tool calls that have no result (a run that crashed between
// the call and its result) and results whose call is missing, so that the replayed
// history is one the API accepts.
func repairCalls(msgs []llm.Message) []llm.Message {
	answered := map[string]bool{}
	called := map[string]bool{}
	for _, m := range msgs {
		if m.Role == llm.RoleTool {
			answered[m.ToolCallID] = true
		}
		for _, c := range m.ToolCalls {
			called[c.ID] = true
		}
	}
	out := msgs[:0:0]
	for _, m := range msgs {
		switch {
		case m.Role == llm.RoleTool && !called[m.ToolCallID]:
			continue
		case m.Role == llm.RoleAssistant && len(m.ToolCalls) > 0:
			kept := m.ToolCalls[:0:0]
			for _, c := range m.ToolCalls {
				if answered[c.ID] {
					kept = append(kept, c)
				}
			}
			m.ToolCalls = kept
			if len(kept) == 0 && m.Content == "" {
				continue
			}
		}
		out = append(out, m)
	}
	return out
}

func (t *transcript) saveRun(ctx context.Context, r runRow) error {
	if err := t.db.WithContext(ctx).Create(&r).Error; err != nil {
		return fmt.Errorf("save run: %w", err)
	}
	return nil
}
