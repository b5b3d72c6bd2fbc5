// Package souls holds the personas of the six ClawOps agents and the operating rules they
// all share, and the loader that reads them.
//
// Each role has a file <role>.md (commander.md, guardian.md, ...): an identity block
// between two --- lines (name, emoji, mission, one "key: value" per line) and then the
// persona text, the agent's SOUL. AGENTS.md holds the rules every agent follows. The
// shipped files are compiled in; a workspace folder holding files of the same names
// overrides them one file at a time.
//
// A persona describes the boundaries of its role in words; the governance gate enforces
// them in code. Changing a persona never grants a permission.
package souls

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/gatewayforge/clawops"
)

//go:embed *.md
var shipped embed.FS

// ReasonUnknownRole is the reason code for asking about a role that has no persona.
const ReasonUnknownRole clawops.ReasonCode = "UNKNOWN_ROLE"

// RulesFile is the name of the shared operating rules.
const RulesFile = "AGENTS.md"

// MaxFileSize bounds a persona or rules file.
const MaxFileSize = 128 << 10

// Source says where a file was loaded from.
type Source string

// File sources.
const (
	Shipped   Source = "shipped"
	Workspace Source = "workspace"
)

// Identity is who an agent says it is.
type Identity struct {
	Name    string `json:"name"`
	Emoji   string `json:"emoji"`
	Mission string `json:"mission"` // one line
}

// Persona is everything about one role's character that goes into its prompt.
type Persona struct {
	Role     clawops.AgentRole `json:"role"`
	Identity Identity          `json:"identity"`
	// Soul is the persona text of <role>.md without the identity block.
	Soul       string `json:"soul"`
	SoulHash   string `json:"soul_hash"` // hex SHA-256 of the whole <role>.md file
	SoulPath   string `json:"soul_path"`
	SoulSource Source `json:"soul_source"`
	// Rules is AGENTS.md, shared by every role.
	Rules       string `json:"rules"`
	RulesHash   string `json:"rules_hash"` // hex SHA-256 of AGENTS.md
	RulesPath   string `json:"rules_path"`
	RulesSource Source `json:"rules_source"`
}

// Hash identifies this exact persona and rules together, so a session can tell that its
// prompt changed.
func (p Persona) Hash() string {
	sum := sha256.Sum256([]byte(p.RulesHash + "\n" + p.SoulHash))
	return hex.EncodeToString(sum[:])
}

// Prompt renders the persona's part of a system prompt: the shared rules, then the
// identity line, then the soul.
func (p Persona) Prompt() string {
	var b strings.Builder
	b.WriteString(strings.TrimSpace(p.Rules))
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "You are %s %s, the %s agent. Mission: %s\n\n", p.Identity.Name, p.Identity.Emoji, p.Role, p.Identity.Mission)
	b.WriteString(strings.TrimSpace(p.Soul))
	b.WriteString("\n")
	return b.String()
}

// Options configure Load.
type Options struct {
	// Workspace is an optional folder; a <role>.md or AGENTS.md in it replaces the
	// shipped file. A Workspace that does not exist is an error.
	Workspace string
	Logger    *slog.Logger
}

// Set holds the loaded personas. It is read-only and safe for concurrent use.
type Set struct {
	personas map[clawops.AgentRole]Persona
}

// Load reads AGENTS.md and the six persona files, each from the workspace when it has
// one, else from the shipped copy. A malformed file is an error naming it and the line.
func Load(opts Options) (*Set, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Workspace != "" {
		fi, err := os.Stat(opts.Workspace)
		if err != nil {
			return nil, fmt.Errorf("load souls: workspace: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("load souls: workspace %s is not a folder", opts.Workspace)
		}
	}
	rules, err := readFile(opts.Workspace, RulesFile, log)
	if err != nil {
		return nil, fmt.Errorf("load souls: %w", err)
	}
	if strings.TrimSpace(string(rules.data)) == "" {
		return nil, fmt.Errorf("load souls: %s: the operating rules are empty", rules.path)
	}
	s := &Set{personas: map[clawops.AgentRole]Persona{}}
	for _, role := range clawops.AgentRoles {
		f, err := readFile(opts.Workspace, string(role)+".md", log)
		if err != nil {
			return nil, fmt.Errorf("load souls: %w", err)
		}
		id, soul, err := parseIdentity(f.path, f.data)
		if err != nil {
			return nil, fmt.Errorf("load souls: %w", err)
		}
		s.personas[role] = Persona{
			Role: role, Identity: id,
			Soul: soul, SoulHash: f.hash, SoulPath: f.path, SoulSource: f.source,
			Rules: string(rules.data), RulesHash: rules.hash, RulesPath: rules.path, RulesSource: rules.source,
		}
	}
	return s, nil
}

// Persona returns the persona of role. An unknown role is a *clawops.Error (KindNotFound).
func (s *Set) Persona(role clawops.AgentRole) (Persona, error) {
	p, ok := s.personas[role]
	if !ok {
		return Persona{}, clawops.E("souls.Persona", clawops.KindNotFound, ReasonUnknownRole, fmt.Errorf("no persona for role %q", role))
	}
	return p, nil
}

// All returns the six personas in the order of clawops.AgentRoles.
func (s *Set) All() []Persona {
	out := make([]Persona, 0, len(clawops.AgentRoles))
	for _, r := range clawops.AgentRoles {
		out = append(out, s.personas[r])
	}
	return out
}

type file struct {
	path   string
	data   []byte
	hash   string
	source Source
}

// readFile reads name from the workspace when it is there, else from the shipped files.
func readFile(workspace, name string, log *slog.Logger) (file, error) {
	if workspace != "" {
		p := filepath.Join(workspace, name)
		data, err := os.ReadFile(p)
		switch {
		case err == nil:
			log.Info("workspace file overrides shipped persona file", "file", p)
			return newFile(p, data, Workspace)
		case !errors.Is(err, fs.ErrNotExist):
			return file{}, err
		}
	}
	data, err := shipped.ReadFile(name)
	if err != nil {
		return file{}, err
	}
	return newFile("souls/"+name, data, Shipped)
}

func newFile(path string, data []byte, src Source) (file, error) {
	if len(data) > MaxFileSize {
		return file{}, fmt.Errorf("%s: the file has %d bytes; keep it under %d", path, len(data), MaxFileSize)
	}
	sum := sha256.Sum256(data)
	return file{path: path, data: data, hash: hex.EncodeToString(sum[:]), source: src}, nil
}
