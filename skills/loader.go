package skills

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/gatewayforge/clawops"
)

// shipped holds the skills compiled into the binary.
//
//go:embed */SKILL.md
var shipped embed.FS

// Reason codes of the skills package.
const (
	ReasonUnknownSkill     clawops.ReasonCode = "UNKNOWN_SKILL"
	ReasonSkillUnavailable clawops.ReasonCode = "SKILL_UNAVAILABLE"
)

// Options configure Load. The zero value loads the shipped skills, gated against this
// process's environment and PATH, with DefaultAssignments.
type Options struct {
	// Workspace is an optional folder of <name>/SKILL.md skills. A workspace skill replaces
	// the shipped skill of the same name; a new name must be given a role in Assignments
	// to be used. A Workspace that does not exist is an error.
	Workspace string
	// Assignments says which skills each role uses, in prompt order. Nil means
	// DefaultAssignments.
	Assignments map[clawops.AgentRole][]string
	// Getenv and LookPath gate skills on their requirements; nil means os.Getenv and
	// exec.LookPath. GOOS defaults to runtime.GOOS.
	Getenv   func(string) string
	LookPath func(string) (string, error)
	GOOS     string
	Logger   *slog.Logger
}

// Set is a loaded, gated set of skills with their role assignments. It is read-only and
// safe for concurrent use.
type Set struct {
	skills map[string]Skill
	roles  map[clawops.AgentRole][]string
}

// Load reads the shipped skills and the workspace overrides, gates them and checks the
// assignments. Any malformed SKILL.md is an error naming the file and line.
func Load(opts Options) (*Set, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Set{skills: map[string]Skill{}}
	names, err := fs.Glob(shipped, "*/SKILL.md")
	if err != nil {
		return nil, fmt.Errorf("load skills: %w", err)
	}
	for _, name := range names {
		data, err := shipped.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("load skills: %w", err)
		}
		sk, err := Parse("skills/"+name, data)
		if err != nil {
			return nil, fmt.Errorf("load skills: %w", err)
		}
		sk.Source = Shipped
		s.skills[sk.Name] = sk
	}
	if opts.Workspace != "" {
		if err := s.loadWorkspace(opts.Workspace, log); err != nil {
			return nil, fmt.Errorf("load skills: %w", err)
		}
	}
	g := gate{getenv: opts.Getenv, lookPath: opts.LookPath, goos: opts.GOOS}
	for name, sk := range s.skills {
		s.skills[name] = g.apply(sk)
		if !s.skills[name].Available {
			log.Info("skill unavailable", "skill", name, "reason", s.skills[name].Unavailable)
		}
	}
	roles := opts.Assignments
	if roles == nil {
		roles = DefaultAssignments()
	}
	if err := s.assign(roles); err != nil {
		return nil, fmt.Errorf("load skills: %w", err)
	}
	log.Debug("skills loaded", "count", len(s.skills))
	return s, nil
}

func (s *Set) loadWorkspace(dir string, log *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("workspace: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if fi, err := os.Stat(filepath.Join(dir, e.Name())); err != nil || !fi.IsDir() {
			continue // loose files, and links that lead nowhere, are not skills
		}
		var file string
		var data []byte
		for _, base := range []string{"SKILL.md", "skill.md"} {
			file = filepath.Join(dir, e.Name(), base)
			data, err = os.ReadFile(file)
			if err == nil || !errors.Is(err, fs.ErrNotExist) {
				break
			}
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue // not a skill folder
		}
		if err != nil {
			return fmt.Errorf("workspace: %w", err)
		}
		sk, err := Parse(file, data)
		if err != nil {
			return err
		}
		sk.Source = Workspace
		if prev, ok := s.skills[sk.Name]; ok {
			log.Info("workspace skill overrides shipped skill", "skill", sk.Name, "file", file, "shipped_hash", prev.Hash, "hash", sk.Hash)
		}
		s.skills[sk.Name] = sk
	}
	return nil
}

func (s *Set) assign(roles map[clawops.AgentRole][]string) error {
	s.roles = map[clawops.AgentRole][]string{}
	var errs []error
	for role, names := range roles {
		if !role.Valid() {
			errs = append(errs, fmt.Errorf("assignments: unknown role %q", role))
			continue
		}
		for _, n := range names {
			if _, ok := s.skills[n]; !ok {
				errs = append(errs, fmt.Errorf("assignments: role %s is given unknown skill %q", role, n))
			}
		}
		var uniq []string
		for _, n := range names {
			if !slices.Contains(uniq, n) {
				uniq = append(uniq, n)
			}
		}
		s.roles[role] = uniq
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// gate checks requirements against the machine.
type gate struct {
	getenv   func(string) string
	lookPath func(string) (string, error)
	goos     string
}

func (g gate) apply(sk Skill) Skill {
	getenv, lookPath, goos := g.getenv, g.lookPath, g.goos
	if getenv == nil {
		getenv = os.Getenv
	}
	if lookPath == nil {
		lookPath = exec.LookPath
	}
	if goos == "" {
		goos = runtime.GOOS
	}
	var missing []string
	if len(sk.Requires.OS) > 0 {
		ok := false
		for _, o := range sk.Requires.OS {
			ok = ok || o == goos || (o == "win32" && goos == "windows")
		}
		if !ok {
			missing = append(missing, "runs only on "+strings.Join(sk.Requires.OS, ", "))
		}
	}
	for _, e := range sk.Requires.Env {
		if getenv(e) == "" {
			missing = append(missing, "env "+e+" is not set")
		}
	}
	for _, b := range sk.Requires.Bins {
		if _, err := lookPath(b); err != nil {
			missing = append(missing, "binary "+b+" is not on PATH")
		}
	}
	if len(sk.Requires.AnyBins) > 0 && !slices.ContainsFunc(sk.Requires.AnyBins, func(b string) bool {
		_, err := lookPath(b)
		return err == nil
	}) {
		missing = append(missing, "none of "+strings.Join(sk.Requires.AnyBins, ", ")+" is on PATH")
	}
	sk.Available, sk.Unavailable = true, ""
	if len(missing) > 0 && !sk.Always {
		sk.Available, sk.Unavailable = false, strings.Join(missing, "; ")
	}
	return sk
}

// All returns every loaded skill, available or not, sorted by name.
func (s *Set) All() []Skill {
	out := make([]Skill, 0, len(s.skills))
	for _, sk := range s.skills {
		out = append(out, sk)
	}
	slices.SortFunc(out, func(a, b Skill) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Get returns the skill called name.
func (s *Set) Get(name string) (Skill, bool) {
	sk, ok := s.skills[name]
	return sk, ok
}

// Assigned lists the names of the skills assigned to role, in prompt order, whether or
// not they are available.
func (s *Set) Assigned(role clawops.AgentRole) []string {
	return slices.Clone(s.roles[role])
}

// ForRole returns the available skills assigned to role, in prompt order.
func (s *Set) ForRole(role clawops.AgentRole) []Skill {
	var out []Skill
	for _, n := range s.roles[role] {
		if sk := s.skills[n]; sk.Available {
			out = append(out, sk)
		}
	}
	return out
}

// PromptList is the compact skill list for role's prompt: one "name — description" line
// per available skill the model may invoke. The agent reads a body with Body when it needs
// the instructions.
func (s *Set) PromptList(role clawops.AgentRole) string {
	var b strings.Builder
	for _, sk := range s.ForRole(role) {
		if !sk.ModelInvocable {
			continue
		}
		b.WriteString(sk.Name)
		b.WriteString(" — ")
		b.WriteString(sk.Description)
		b.WriteByte('\n')
	}
	return b.String()
}

// Body returns the instructions of the skill called name. An unknown or unavailable skill
// is a *clawops.Error (KindNotFound) with ReasonUnknownSkill or ReasonSkillUnavailable.
func (s *Set) Body(name string) (string, error) {
	sk, ok := s.skills[name]
	if !ok {
		return "", clawops.E("skills.Body", clawops.KindNotFound, ReasonUnknownSkill, fmt.Errorf("no skill named %q", name))
	}
	if !sk.Available {
		return "", clawops.E("skills.Body", clawops.KindNotFound, ReasonSkillUnavailable, fmt.Errorf("skill %q is unavailable: %s", name, sk.Unavailable))
	}
	return sk.body, nil
}
