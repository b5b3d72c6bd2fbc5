// Package skills holds the SKILL.md playbooks ClawOps ships for its agents and the loader
// that reads them: OpenClaw-compatible frontmatter, gating on required environment
// variables and binaries, a content hash per skill, overrides from a workspace folder,
// and the table of which agent role uses which skill.
//
// A skill is a folder <name>/ holding SKILL.md: YAML frontmatter between two --- lines
// (name, description, optional metadata.openclaw and user-invocable) and a Markdown body of
// plain instructions. An agent's prompt carries only PromptList (one line per skill); the
// agent reads a body on demand with Body. Skills teach; they grant nothing: every action
// still passes the governance gate.
package skills

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Source says where a skill was loaded from.
type Source string

// Skill sources. A workspace skill replaces a shipped one of the same name.
const (
	Shipped   Source = "shipped"
	Workspace Source = "workspace"
)

// Requires is what a skill needs on this machine to be usable.
type Requires struct {
	Env     []string `json:"env,omitempty"`      // every variable must be set and non-empty
	Bins    []string `json:"bins,omitempty"`     // every binary must be on PATH
	AnyBins []string `json:"any_bins,omitempty"` // at least one must be on PATH
	OS      []string `json:"os,omitempty"`       // runtime.GOOS values (linux, darwin, win32 is windows)
}

// Skill is one parsed SKILL.md.
type Skill struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Emoji       string `json:"emoji,omitempty"`
	// Always makes a skill available even when its requirements are missing.
	Always bool `json:"always,omitempty"`
	// UserInvocable says operators may call the skill by name as a slash command
	// (OpenClaw's default is true).
	UserInvocable bool `json:"user_invocable"`
	// ModelInvocable is false when the frontmatter sets disable-model-invocation: the
	// skill is then left out of PromptList.
	ModelInvocable bool     `json:"model_invocable"`
	Requires       Requires `json:"requires"`
	// Path names the file in messages, e.g. skills/auto-heal/SKILL.md.
	Path   string `json:"path"`
	Source Source `json:"source"`
	// Hash is the hex SHA-256 of the whole SKILL.md file.
	Hash string `json:"hash"`
	// Available is false when a requirement is missing (and Always is not set);
	// Unavailable then says which.
	Available   bool   `json:"available"`
	Unavailable string `json:"unavailable,omitempty"`

	body string
}

// Body returns the skill's Markdown instructions, without the frontmatter.
func (s Skill) Body() string { return s.body }

// MaxFileSize bounds a SKILL.md: a skill is a page of instructions, not a data dump.
const MaxFileSize = 256 << 10

var nameRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// Parse reads one SKILL.md. file is the path used in messages and must end in
// <folder>/SKILL.md: the frontmatter name must equal the folder name. Parse does not gate;
// the returned skill is Available until a Loader checks its requirements.
func Parse(file string, data []byte) (Skill, error) {
	if len(data) > MaxFileSize {
		return Skill{}, &ParseError{Path: file, Msg: fmt.Sprintf("the file has %d bytes; a skill holds at most %d", len(data), MaxFileSize)}
	}
	front, firstLine, body, err := splitFrontmatter(file, data)
	if err != nil {
		return Skill{}, err
	}
	p := &fmParser{path: file, offset: firstLine - 1}
	fm, err := p.parse(front)
	if err != nil {
		return Skill{}, err
	}
	folder := path.Base(path.Dir(strings.ReplaceAll(file, "\\", "/")))
	switch {
	case fm.name == "":
		return Skill{}, &ParseError{Path: file, Line: max(fm.nameLine, 1), Msg: "name is required: add name: " + folder}
	case len(fm.name) > 64 || !nameRE.MatchString(fm.name):
		return Skill{}, &ParseError{Path: file, Line: fm.nameLine, Msg: fmt.Sprintf("name %q must be 1 to 64 characters of a-z, 0-9 and single hyphens inside", fm.name)}
	case fm.name != folder:
		return Skill{}, &ParseError{Path: file, Line: fm.nameLine, Msg: fmt.Sprintf("name %q must equal the folder name %q", fm.name, folder)}
	}
	desc := strings.Join(strings.Fields(fm.description), " ")
	switch {
	case desc == "":
		return Skill{}, &ParseError{Path: file, Line: max(fm.descLine, 1), Msg: "description is required: say in one line what the skill is for and when to use it"}
	case len(desc) > 1024:
		return Skill{}, &ParseError{Path: file, Line: fm.descLine, Msg: fmt.Sprintf("description has %d characters; keep it under 1024", len(desc))}
	}
	sum := sha256.Sum256(data)
	return Skill{
		Name:           fm.name,
		Description:    desc,
		Emoji:          fm.meta.emoji,
		Always:         fm.meta.always,
		UserInvocable:  fm.userInvocable == nil || *fm.userInvocable,
		ModelInvocable: !fm.disableModelInvoking,
		Requires: Requires{
			Env: fm.meta.env, Bins: fm.meta.bins, AnyBins: fm.meta.anyBins, OS: fm.meta.os,
		},
		Path:      file,
		Hash:      hex.EncodeToString(sum[:]),
		Available: true,
		body:      strings.TrimLeft(body, "\n"),
	}, nil
}
