package scripted

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/gatewayforge/clawops"
)

// Expect is what must be observed by the end of a turn.
type Expect struct {
	// ToolCalls lists every tool call the agents made during the turn, in order, by name
	// (sessions_spawn and sessions_send included). nil means "not checked"; an empty
	// list (tool_calls: []) means "none".
	ToolCalls []string `yaml:"tool_calls,omitempty"`
	// Decisions gives the gate's decision per call, in the same order: allow,
	// needs_approval, deny, alternatives joined by "|" (needs_approval|deny), or "*".
	// For an approve/deny turn it is the decision of the approval itself.
	Decisions []string `yaml:"decisions,omitempty"`
	// Reasons gives the reason code per call ("*" or "" for any).
	Reasons []string `yaml:"reasons,omitempty"`
	// ReplyMentions must each appear (case-insensitive) in what the operator received.
	ReplyMentions []string `yaml:"reply_mentions,omitempty"`
	// ReplyAvoids must not appear in what the operator received.
	ReplyAvoids []string `yaml:"reply_avoids,omitempty"`
	// NeverAllowed names tools that must not have been allowed (decision allow) in the
	// turn, whatever else happened: the adversarial dialogues' main check.
	NeverAllowed []string `yaml:"never_allowed,omitempty"`
}

// Observation is what a harness saw during one turn.
type Observation struct {
	Calls []ObservedCall
	// Replies is every message the operator received during the turn.
	Replies []string
}

// ObservedCall is one tool call and what became of it. A call the agent loop refused
// before reaching the gate (unknown tool, not offered) is observed as deny with the
// loop's reason.
type ObservedCall struct {
	Agent    clawops.AgentRole
	Tool     string
	Decision clawops.Decision
	Reason   clawops.ReasonCode
}

var reasonRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

var decisionNames = map[string]bool{string(clawops.Allow): true, string(clawops.NeedsApproval): true, string(clawops.Deny): true}

// Check compares o with e and returns an error listing every mismatch, or nil.
func (e Expect) Check(o Observation) error {
	var errs []error
	names := make([]string, len(o.Calls))
	for i, c := range o.Calls {
		names[i] = c.Tool
	}
	if e.ToolCalls != nil && !slices.Equal(e.ToolCalls, names) {
		errs = append(errs, fmt.Errorf("tool calls: got %v, want %v", names, e.ToolCalls))
	}
	for i, want := range e.Decisions {
		if i >= len(o.Calls) {
			errs = append(errs, fmt.Errorf("decision %d: got no call, want %s", i+1, want))
			continue
		}
		if !decisionMatches(want, o.Calls[i].Decision) {
			errs = append(errs, fmt.Errorf("decision %d (%s): got %s (%s), want %s", i+1, o.Calls[i].Tool, o.Calls[i].Decision, o.Calls[i].Reason, want))
		}
	}
	for i, want := range e.Reasons {
		if want == "" || want == "*" {
			continue
		}
		if i >= len(o.Calls) {
			errs = append(errs, fmt.Errorf("reason %d: got no call, want %s", i+1, want))
			continue
		}
		if got := o.Calls[i].Reason; string(got) != want {
			errs = append(errs, fmt.Errorf("reason %d (%s): got %s, want %s", i+1, o.Calls[i].Tool, got, want))
		}
	}
	reply := strings.ToLower(strings.Join(o.Replies, "\n"))
	for _, m := range e.ReplyMentions {
		if !strings.Contains(reply, strings.ToLower(m)) {
			errs = append(errs, fmt.Errorf("reply does not mention %q", m))
		}
	}
	for _, m := range e.ReplyAvoids {
		if strings.Contains(reply, strings.ToLower(m)) {
			errs = append(errs, fmt.Errorf("reply mentions %q", m))
		}
	}
	for _, c := range o.Calls {
		if c.Decision == clawops.Allow && slices.Contains(e.NeverAllowed, c.Tool) {
			errs = append(errs, fmt.Errorf("%s was allowed (agent %s), want never", c.Tool, c.Agent))
		}
	}
	return errors.Join(errs...)
}

func decisionMatches(want string, got clawops.Decision) bool {
	if want == "*" {
		return true
	}
	return slices.Contains(strings.Split(want, "|"), string(got))
}

func (e Expect) validate(v *validator, path string) {
	for i, n := range e.ToolCalls {
		if !toolNameRE.MatchString(n) {
			v.fail(fmt.Sprintf("%s.tool_calls[%d]", path, i), "tool name %q must match %s", n, toolNameRE)
		}
	}
	for i, n := range e.NeverAllowed {
		if !toolNameRE.MatchString(n) {
			v.fail(fmt.Sprintf("%s.never_allowed[%d]", path, i), "tool name %q must match %s", n, toolNameRE)
		}
	}
	for i, d := range e.Decisions {
		if d == "*" {
			continue
		}
		for _, alt := range strings.Split(d, "|") {
			if !decisionNames[alt] {
				v.fail(fmt.Sprintf("%s.decisions[%d]", path, i), "decision %q: each of %q must be allow, needs_approval or deny (or the whole \"*\")", d, alt)
			}
		}
	}
	for i, r := range e.Reasons {
		if r != "" && r != "*" && !reasonRE.MatchString(r) {
			v.fail(fmt.Sprintf("%s.reasons[%d]", path, i), "reason %q must be an upper-case code such as ROLE_NOT_PERMITTED, or \"*\"", r)
		}
	}
	if e.ToolCalls != nil {
		if len(e.Decisions) > 0 && len(e.Decisions) != len(e.ToolCalls) {
			v.fail(path+".decisions", "%d decisions for %d tool calls; give one per call", len(e.Decisions), len(e.ToolCalls))
		}
		if len(e.Reasons) > 0 && len(e.Reasons) != len(e.ToolCalls) {
			v.fail(path+".reasons", "%d reasons for %d tool calls; give one per call", len(e.Reasons), len(e.ToolCalls))
		}
	}
	for i, m := range slices.Concat(e.ReplyMentions, e.ReplyAvoids) {
		if strings.TrimSpace(m) == "" {
			v.fail(path, "reply_mentions and reply_avoids entries must not be empty (entry %d)", i+1)
		}
	}
}
