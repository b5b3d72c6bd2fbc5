package agents_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents"
)

// TestMessageTool: gf_send_message through the real gate: who may send is the role
// table's decision, and malformed arguments deliver nothing.
func TestMessageTool(t *testing.T) {
	e := newTeamEnv(t, envOptions{noRun: true})
	ctx := context.Background()
	agent := func(r clawops.AgentRole) clawops.Actor {
		return clawops.Actor{Identity: "agent:" + string(r), Agent: r}
	}
	tests := []struct {
		name   string
		actor  clawops.Actor
		args   string
		reason clawops.ReasonCode // "" means sent
	}{
		{"briefer", agent(clawops.Briefer), `{"text":"Morning: all ACTIVE.","priority":"normal"}`, ""},
		{"commander for omar", func() clawops.Actor { a := omar; a.Agent = clawops.Commander; return a }(), `{"text":"done","to":"omar"}`, ""},
		{"guardian may not", agent(clawops.Guardian), `{"text":"hi"}`, clawops.ReasonRoleNotPermitted},
		{"triage may not", agent(clawops.Triage), `{"text":"hi"}`, clawops.ReasonRoleNotPermitted},
		{"no text", agent(clawops.Briefer), `{"priority":"high"}`, clawops.ReasonBadArguments},
		{"blank text", agent(clawops.Briefer), `{"text":"   "}`, clawops.ReasonBadArguments},
		{"unknown key", agent(clawops.Briefer), `{"text":"x","channel":"sms"}`, clawops.ReasonBadArguments},
		{"bad priority", agent(clawops.Briefer), `{"text":"x","priority":"urgent"}`, clawops.ReasonBadArguments},
		{"newline in to", agent(clawops.Briefer), `{"text":"x","to":"a\nb"}`, clawops.ReasonBadArguments},
		{"too long", agent(clawops.Briefer), `{"text":"` + strings.Repeat("x", agents.MaxNoticeBytes+1) + `"}`, clawops.ReasonBadArguments},
		{"not an object", agent(clawops.Briefer), `["x"]`, clawops.ReasonBadArguments},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.gate.Invoke(ctx, tt.actor, agents.ToolSendMessage, json.RawMessage(tt.args))
			notices := e.rec.takeNotices()
			if tt.reason == "" {
				if err != nil || len(notices) != 1 {
					t.Fatalf("got %v and %d notices, want one sent", err, len(notices))
				}
				if notices[0].Agent != tt.actor.Agent {
					t.Errorf("notice from %q, want %q", notices[0].Agent, tt.actor.Agent)
				}
				return
			}
			if got := clawops.ReasonOf(err); got != tt.reason {
				t.Errorf("got %v (%s), want %s", err, got, tt.reason)
			}
			if len(notices) != 0 {
				t.Errorf("a refused message was delivered: %+v", notices)
			}
		})
	}
}
