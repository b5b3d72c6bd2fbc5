package scripted

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/gatewayforge/clawops"
)

// Dialogue is one conversation for tests and evals: what happens to the agents (operator
// messages, scheduled runs, fleet events, approval decisions), what the scripted model
// answers, and what must be observed. The file format is described in README.md.
type Dialogue struct {
	Name        string   `yaml:"name"`
	Title       string   `yaml:"title,omitempty"`
	Source      string   `yaml:"source,omitempty"`
	Description string   `yaml:"description,omitempty"`
	Tags        []string `yaml:"tags,omitempty"`
	// Agent receives the operator's messages; "" means commander.
	Agent    clawops.AgentRole `yaml:"agent,omitempty"`
	Fixtures Fixtures          `yaml:"fixtures,omitempty"`

	// Shorthand for a dialogue of one operator turn; excludes Turns.
	Operator string  `yaml:"operator,omitempty"`
	Steps    []Step  `yaml:"steps,omitempty"`
	Expect   *Expect `yaml:"expect,omitempty"`

	Turns []Turn `yaml:"turns,omitempty"`

	// File is the file the dialogue was read from.
	File string `yaml:"-"`
}

// Fixtures is the state a harness sets up before the dialogue runs.
type Fixtures struct {
	// InstanceLogs maps an instance ID to the text its logs return (gf_instance_logs).
	InstanceLogs map[string]string `yaml:"instance_logs,omitempty"`
}

// Turn is one thing that happens, the steps the scripted model plays in response, and what
// must be observed by the end of it. Exactly one trigger is set: Operator, Cron, Event,
// Approve or Deny.
type Turn struct {
	// Operator is a chat message from the operator to the dialogue's agent.
	Operator string `yaml:"operator,omitempty"`
	// Cron starts a scheduled run of the named agent.
	Cron clawops.AgentRole `yaml:"cron,omitempty"`
	// Event is a fleet event delivered to an agent.
	Event *Event `yaml:"event,omitempty"`
	// Approve and Deny press the button on an approval card as an approver: "last" is the
	// newest pending approval, "all" every pending one.
	Approve string `yaml:"approve,omitempty"`
	Deny    string `yaml:"deny,omitempty"`

	Steps  []Step `yaml:"steps,omitempty"`
	Expect Expect `yaml:"expect,omitempty"`

	// Line is where the turn starts in its file.
	Line int `yaml:"-"`
}

// Event is a fleet event of the health monitor.
type Event struct {
	Type     string            `yaml:"type"`
	To       clawops.AgentRole `yaml:"to,omitempty"` // "" means the type's usual recipient
	Instance string            `yaml:"instance,omitempty"`
	Detail   string            `yaml:"detail,omitempty"`
}

// EventRecipients maps each event type to the agent that receives it by default.
var EventRecipients = map[string]clawops.AgentRole{
	"INSTANCE_DEGRADED":       clawops.Guardian,
	"PAIR_FAILED":             clawops.Guardian,
	"COST_ANOMALY":            clawops.Ledger,
	"PROVISION_QUEUE_BACKLOG": clawops.Forge,
	"PROVIDER_DEGRADED":       clawops.Commander,
}

// Trigger names the kind of turn: "operator", "cron", "event", "approve" or "deny".
func (t Turn) Trigger() string {
	switch {
	case t.Operator != "":
		return "operator"
	case t.Cron != "":
		return "cron"
	case t.Event != nil:
		return "event"
	case t.Approve != "":
		return "approve"
	case t.Deny != "":
		return "deny"
	}
	return ""
}

// Recipient is the agent the turn's trigger reaches first ("" for approval decisions).
func (d Dialogue) Recipient(t Turn) clawops.AgentRole {
	switch t.Trigger() {
	case "operator":
		return d.agent()
	case "cron":
		return t.Cron
	case "event":
		if t.Event.To != "" {
			return t.Event.To
		}
		return EventRecipients[t.Event.Type]
	}
	return ""
}

func (d Dialogue) agent() clawops.AgentRole {
	if d.Agent == "" {
		return clawops.Commander
	}
	return d.Agent
}

// Script is the dialogue's steps, all turns in order, for a Server. Steps without an
// agent belong to the agent their turn's trigger reaches.
func (d Dialogue) Script() Script {
	s := Script{Name: d.Name, DefaultAgent: d.agent()}
	for _, t := range d.Turns {
		for _, st := range t.Steps {
			if st.Agent == "" {
				st.Agent = cmpOrRole(d.Recipient(t), d.agent())
			}
			s.Steps = append(s.Steps, st)
		}
	}
	return s
}

func cmpOrRole(a, b clawops.AgentRole) clawops.AgentRole {
	if a != "" {
		return a
	}
	return b
}

// maxDialogueBytes bounds a dialogue file.
const maxDialogueBytes = 1 << 20

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// ParseDialogue decodes one dialogue strictly: unknown keys, duplicate keys, wrong types,
// several documents, and every rule of README.md are errors of the form
// "file:line:col: message". file is used in messages and in Step.Source.
func ParseDialogue(file string, data []byte) (d Dialogue, err error) {
	defer func() {
		// The YAML library is fed outside input; a panic in it must not take a test
		// binary or the eval runner down.
		if r := recover(); r != nil {
			d, err = Dialogue{}, fmt.Errorf("%s: cannot parse: %v", file, r)
		}
	}()
	if len(data) > maxDialogueBytes {
		return Dialogue{}, fmt.Errorf("%s: %d bytes, more than the %d a dialogue may have", file, len(data), maxDialogueBytes)
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return Dialogue{}, yamlError(file, err)
	}
	docs := 0
	for _, doc := range f.Docs {
		if doc != nil && doc.Body != nil {
			docs++
		}
	}
	switch {
	case docs == 0:
		return Dialogue{}, fmt.Errorf("%s: empty file, want one dialogue", file)
	case docs > 1:
		return Dialogue{}, fmt.Errorf("%s: %d YAML documents, want one dialogue per file", file, docs)
	}
	// Anchors and aliases would let a small file expand without bound; dialogues are
	// written out in full.
	for _, typ := range []ast.NodeType{ast.AnchorType, ast.AliasType} {
		if ns := ast.Filter(typ, f.Docs[0].Body); len(ns) > 0 {
			return Dialogue{}, fmt.Errorf("%s:%d: YAML anchors and aliases are not allowed in dialogues", file, ns[0].GetToken().Position.Line)
		}
	}
	if _, ok := f.Docs[0].Body.(*ast.MappingNode); !ok {
		return Dialogue{}, fmt.Errorf("%s:%d: a dialogue is a mapping (name:, turns:, ...)", file, f.Docs[0].Body.GetToken().Position.Line)
	}
	if err := yaml.UnmarshalWithOptions(data, &d, yaml.Strict()); err != nil {
		return Dialogue{}, yamlError(file, err)
	}
	d.File = file
	v := validator{file: file, ast: f}
	d.normalise(&v)
	d.validate(&v)
	if v.err != nil {
		return Dialogue{}, v.err
	}
	return d, nil
}

// LoadDialogue reads and parses one file; the dialogue's name must be the file's name
// without its extension.
func LoadDialogue(path string) (Dialogue, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Dialogue{}, fmt.Errorf("load dialogue: %w", err)
	}
	d, err := ParseDialogue(path, data)
	if err != nil {
		return Dialogue{}, err
	}
	base := filepath.Base(path)
	if stem := strings.TrimSuffix(base, filepath.Ext(base)); d.Name != stem {
		return Dialogue{}, fmt.Errorf("%s: name %q must equal the file name %q", path, d.Name, stem)
	}
	return d, nil
}

// LoadDialogues loads every *.yaml and *.yml file of dir (not recursive), sorted by
// name. It fails on the first bad file, naming it.
func LoadDialogues(dir string) ([]Dialogue, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load dialogues: %w", err)
	}
	var out []Dialogue
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		d, err := LoadDialogue(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("load dialogues: no *.yaml files in %s", dir)
	}
	slices.SortFunc(out, func(a, b Dialogue) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// normalise turns the one-turn shorthand into Turns and records source lines.
func (d *Dialogue) normalise(v *validator) {
	short := d.Operator != "" || d.Steps != nil || d.Expect != nil
	if short {
		if d.Turns != nil {
			v.fail("$.turns", "turns excludes the one-turn shorthand (operator, steps, expect at the top)")
			return
		}
		t := Turn{Operator: d.Operator, Steps: d.Steps, Line: v.line("$")}
		if d.Expect != nil {
			t.Expect = *d.Expect
		}
		for j := range t.Steps {
			t.Steps[j].Source = v.source(fmt.Sprintf("$.steps[%d]", j))
		}
		d.Turns = []Turn{t}
		d.Operator, d.Steps, d.Expect = "", nil, nil
		v.shorthand = true
		return
	}
	for i := range d.Turns {
		d.Turns[i].Line = v.line(fmt.Sprintf("$.turns[%d]", i))
		for j := range d.Turns[i].Steps {
			d.Turns[i].Steps[j].Source = v.source(fmt.Sprintf("$.turns[%d].steps[%d]", i, j))
		}
	}
}

// validator collects the first semantic error with its position.
type validator struct {
	file      string
	ast       *ast.File
	shorthand bool // the dialogue used the one-turn shorthand
	err       error
}

func (v *validator) line(path string) int {
	p, err := yaml.PathString(path)
	if err != nil {
		return 0
	}
	n, err := p.FilterFile(v.ast)
	if err != nil || n == nil || n.GetToken() == nil {
		return 0
	}
	return n.GetToken().Position.Line
}

func (v *validator) source(path string) string {
	return fmt.Sprintf("%s:%d", v.file, v.line(path))
}

// fail records msg at path, or at the nearest enclosing element that exists.
func (v *validator) fail(path, msg string, args ...any) {
	if v.err != nil {
		return
	}
	line := 0
	for p := path; p != "" && line == 0; {
		line = v.line(p)
		i := strings.LastIndexAny(p, ".[")
		if i <= 0 {
			break
		}
		p = p[:i]
	}
	v.err = fmt.Errorf("%s:%d: %s", v.file, line, fmt.Sprintf(msg, args...))
}

func yamlError(file string, err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		pos := ye.GetToken().Position
		return fmt.Errorf("%s:%d:%d: %s", file, pos.Line, pos.Column, ye.GetMessage())
	}
	return fmt.Errorf("%s: %w", file, err)
}
