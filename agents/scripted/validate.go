package scripted

import (
	"fmt"
	"slices"
	"strings"
)

// validate applies the rules of README.md to a normalised dialogue.
func (d *Dialogue) validate(v *validator) {
	if !nameRE.MatchString(d.Name) {
		v.fail("$.name", "name %q must be lower-case letters, digits and dashes (1-64), like the file name", d.Name)
	}
	if d.Agent != "" && !d.Agent.Valid() {
		v.fail("$.agent", "agent %q is not one of %s", d.Agent, rolesList())
	}
	for _, t := range d.Tags {
		if strings.TrimSpace(t) == "" {
			v.fail("$.tags", "tags must not be empty")
		}
	}
	for id := range d.Fixtures.InstanceLogs {
		if strings.TrimSpace(id) == "" {
			v.fail("$.fixtures.instance_logs", "instance_logs needs instance IDs as keys")
		}
	}
	if len(d.Turns) == 0 {
		v.fail("$", "a dialogue needs turns (or the shorthand operator + steps)")
		return
	}
	for i, t := range d.Turns {
		path := fmt.Sprintf("$.turns[%d]", i)
		stepsPath := path + ".steps"
		expectPath := path + ".expect"
		if v.shorthand {
			path, stepsPath, expectPath = "$", "$.steps", "$.expect"
		}
		d.validateTurn(v, t, path)
		for j, st := range t.Steps {
			if err := st.Validate(); err != nil {
				v.fail(fmt.Sprintf("%s[%d]", stepsPath, j), "step %d: %v", j+1, err)
			}
		}
		t.Expect.validate(v, expectPath)
		// The scripted calls and the expected calls must agree, or the dialogue
		// contradicts itself when replayed.
		if t.Expect.ToolCalls != nil && len(t.Steps) > 0 {
			var scripted []string
			for _, st := range t.Steps {
				for _, c := range st.ToolCalls {
					scripted = append(scripted, c.Name)
				}
			}
			if !slices.Equal(scripted, t.Expect.ToolCalls) {
				v.fail(expectPath+".tool_calls", "expected tool calls %v differ from the scripted ones %v", t.Expect.ToolCalls, scripted)
			}
		}
	}
}

func (d *Dialogue) validateTurn(v *validator, t Turn, path string) {
	var triggers []string
	if strings.TrimSpace(t.Operator) != "" {
		triggers = append(triggers, "operator")
	} else if t.Operator != "" {
		v.fail(path+".operator", "operator message is blank")
	}
	if t.Cron != "" {
		triggers = append(triggers, "cron")
		if !t.Cron.Valid() {
			v.fail(path+".cron", "cron %q is not one of %s", t.Cron, rolesList())
		}
	}
	if t.Event != nil {
		triggers = append(triggers, "event")
		if _, ok := EventRecipients[t.Event.Type]; !ok {
			v.fail(path+".event.type", "event type %q is not one of %s", t.Event.Type, eventTypes())
		}
		if t.Event.To != "" && !t.Event.To.Valid() {
			v.fail(path+".event.to", "event recipient %q is not one of %s", t.Event.To, rolesList())
		}
	}
	for _, k := range []struct{ name, val string }{{"approve", t.Approve}, {"deny", t.Deny}} {
		if k.val == "" {
			continue
		}
		triggers = append(triggers, k.name)
		if k.val != "last" && k.val != "all" {
			v.fail(path+"."+k.name, "%s %q must be last or all", k.name, k.val)
		}
	}
	switch len(triggers) {
	case 0:
		v.fail(path, "turn %s needs one trigger: operator, cron, event, approve or deny", turnName(path))
	case 1:
	default:
		v.fail(path, "turn %s has several triggers (%s); give exactly one", turnName(path), strings.Join(triggers, ", "))
	}
}

func turnName(path string) string {
	if path == "$" {
		return "1"
	}
	var i int
	if _, err := fmt.Sscanf(path, "$.turns[%d]", &i); err == nil {
		return fmt.Sprint(i + 1)
	}
	return path
}

func eventTypes() string {
	var out []string
	for k := range EventRecipients {
		out = append(out, k)
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}
