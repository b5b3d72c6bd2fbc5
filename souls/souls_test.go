package souls

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./souls -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

func TestShippedPersonas(t *testing.T) {
	set, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	all := set.All()
	if len(all) != len(clawops.AgentRoles) {
		t.Fatalf("got %d personas, want %d", len(all), len(clawops.AgentRoles))
	}
	rules, _ := shipped.ReadFile(RulesFile)
	rulesSum := sha256.Sum256(rules)
	names := map[string]bool{}
	for i, p := range all {
		if p.Role != clawops.AgentRoles[i] {
			t.Errorf("persona %d: got role %s, want %s", i, p.Role, clawops.AgentRoles[i])
		}
		raw, _ := shipped.ReadFile(string(p.Role) + ".md")
		sum := sha256.Sum256(raw)
		if p.SoulHash != hex.EncodeToString(sum[:]) || p.RulesHash != hex.EncodeToString(rulesSum[:]) {
			t.Errorf("%s: hashes do not match the shipped files", p.Role)
		}
		if p.SoulSource != Shipped || p.RulesSource != Shipped || p.SoulPath != "souls/"+string(p.Role)+".md" {
			t.Errorf("%s: got %s from %s, want shipped souls/%s.md", p.Role, p.SoulPath, p.SoulSource, p.Role)
		}
		if p.Identity.Name == "" || p.Identity.Emoji == "" || p.Identity.Mission == "" || strings.Contains(p.Identity.Mission, "\n") {
			t.Errorf("%s: incomplete identity %+v", p.Role, p.Identity)
		}
		if names[p.Identity.Name] {
			t.Errorf("%s: name %q used twice", p.Role, p.Identity.Name)
		}
		names[p.Identity.Name] = true
		if strings.Contains(p.Soul, "---") || !strings.HasPrefix(p.Soul, "# ") {
			t.Errorf("%s: soul should be the text after the identity block, got %.40q", p.Role, p.Soul)
		}
		golden, _ := json.MarshalIndent(struct {
			Role      clawops.AgentRole `json:"role"`
			Identity  Identity          `json:"identity"`
			SoulHash  string            `json:"soul_hash"`
			SoulLines int               `json:"soul_lines"`
			RulesHash string            `json:"rules_hash"`
			Hash      string            `json:"hash"`
		}{p.Role, p.Identity, p.SoulHash, strings.Count(p.Soul, "\n"), p.RulesHash, p.Hash()}, "", "  ")
		checkGolden(t, filepath.Join("testdata", "golden", string(p.Role)+".json"), append(golden, '\n'))
	}
	cmd, _ := set.Persona(clawops.Commander)
	checkGolden(t, filepath.Join("testdata", "golden", "commander.prompt.txt"), []byte(cmd.Prompt()))
}

// TestAutonomyInWords checks that each persona states the boundaries of DESIGN.md's
// autonomy table. The gate enforces them; the persona must not contradict it.
func TestAutonomyInWords(t *testing.T) {
	set, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		role  clawops.AgentRole
		wants []string
	}{
		{clawops.Commander, []string{"**On your own:** read anything; heal and restart instances; upgrade gateways",
			"**Only with approval:** tier changes; teardowns; anything that touches more than 10", "**Never:** delete at a provider an ACTIVE primary"}},
		{clawops.Guardian, []string{"**On your own:** read; run heal actions; restart", "trigger a\n  failover", "**Never:** delete a VPS"}},
		{clawops.Ledger, []string{"**On your own:** read; recommend.", "**Only through the Commander, with approval:** tier changes", "**Never:** provision or tear down anything."}},
		{clawops.Triage, []string{"**On your own:** read", "**Never:** any write."}},
		{clawops.Forge, []string{"**On your own:** read; provision small batches", "**Only with approval:** every teardown; any provisioning above that limit",
			"**Never:** tear down an ACTIVE primary unless its standby is ACTIVE."}},
		{clawops.Briefer, []string{"**On your own:** read; send messages", "**Never:** any fleet write"}},
	} {
		p, _ := set.Persona(tc.role)
		for _, w := range tc.wants {
			if !strings.Contains(p.Soul, w) {
				t.Errorf("%s: persona does not say %q", tc.role, w)
			}
		}
		if !strings.Contains(p.Soul, "gate enforces") {
			t.Errorf("%s: persona does not say that the gate enforces its boundaries", tc.role)
		}
	}
	rules := set.All()[0].Rules
	for _, w := range []string{"Act only through tools", "The gate decides", "Never hold credentials", "REPLY_SKIP", "JSON", "Reporting"} {
		if !strings.Contains(rules, w) {
			t.Errorf("AGENTS.md does not cover %q", w)
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWorkspaceOverride(t *testing.T) {
	ws := t.TempDir()
	writeFile(t, ws, "guardian.md", "---\nname: Warden\nemoji: \"🦉\"\nmission: Watch quietly.\n---\n# Warden\n\nLocal persona.\n")
	writeFile(t, ws, "AGENTS.md", "# Local rules\n\nBe brief.\n")
	writeFile(t, ws, "notes.md", "ignored: not a role file\n")
	set, err := Load(Options{Workspace: ws})
	if err != nil {
		t.Fatal(err)
	}
	g, _ := set.Persona(clawops.Guardian)
	if diff := cmp.Diff(Identity{Name: "Warden", Emoji: "🦉", Mission: "Watch quietly."}, g.Identity); diff != "" {
		t.Errorf("guardian identity (-want +got):\n%s", diff)
	}
	if g.Soul != "# Warden\n\nLocal persona.\n" || g.SoulSource != Workspace || g.SoulPath != filepath.Join(ws, "guardian.md") {
		t.Errorf("guardian: got soul %q from %s %s, want the workspace file", g.Soul, g.SoulSource, g.SoulPath)
	}
	for _, p := range set.All() {
		if p.Rules != "# Local rules\n\nBe brief.\n" || p.RulesSource != Workspace {
			t.Errorf("%s: got rules from %s, want the workspace AGENTS.md", p.Role, p.RulesSource)
		}
		if p.Role != clawops.Guardian && p.SoulSource != Shipped {
			t.Errorf("%s: got %s soul, want shipped", p.Role, p.SoulSource)
		}
	}
	shippedSet, _ := Load(Options{})
	sg, _ := shippedSet.Persona(clawops.Guardian)
	if sg.Hash() == g.Hash() {
		t.Errorf("persona hash did not change with the override")
	}
	if !strings.Contains(g.Prompt(), "# Local rules") || !strings.Contains(g.Prompt(), "You are Warden 🦉, the guardian agent. Mission: Watch quietly.") {
		t.Errorf("Prompt(): got\n%s", g.Prompt())
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"no block", "forge.md", "# Forge\n\nNo identity.\n", "forge.md:1: the file must start with an identity block"},
		{"unclosed", "forge.md", "---\nname: F\nemoji: x\nmission: m\n", "forge.md:1: the identity block opened on line 1 is never closed"},
		{"missing mission", "ledger.md", "---\nname: L\nemoji: x\n---\nText\n", "ledger.md:4: the identity block has no mission"},
		{"unknown key", "triage.md", "---\nname: T\nemoji: x\nmission: m\nrole: admin\n---\nText\n", `triage.md:5: unknown key "role"`},
		{"twice", "briefer.md", "---\nname: B\nname: C\nemoji: x\nmission: m\n---\nText\n", "briefer.md:3: name is set twice (first on line 2)"},
		{"empty value", "commander.md", "---\nname:\nemoji: x\nmission: m\n---\nText\n", "commander.md:2: name is empty"},
		{"no colon", "commander.md", "---\nname Commander\n---\n", `commander.md:2: expected key: value, got "name Commander"`},
		{"no soul", "guardian.md", "---\nname: G\nemoji: x\nmission: m\n---\n\n", "guardian.md:5: no persona text after the identity block"},
		{"empty rules", "AGENTS.md", "  \n", "AGENTS.md: the operating rules are empty"},
		{"too big", "forge.md", strings.Repeat("x", MaxFileSize+1), "keep it under"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := t.TempDir()
			writeFile(t, ws, tc.file, tc.content)
			set, err := Load(Options{Workspace: ws})
			if err == nil {
				t.Fatalf("got %d personas, want error containing %q", len(set.All()), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %q, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, err := Load(Options{Workspace: filepath.Join(t.TempDir(), "nope")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing workspace: got %v, want os.ErrNotExist", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	writeFile(t, filepath.Dir(f), "file", "x")
	if _, err := Load(Options{Workspace: f}); err == nil || !strings.Contains(err.Error(), "is not a folder") {
		t.Errorf("workspace is a file: got %v, want 'is not a folder'", err)
	}
}

func TestUnknownRole(t *testing.T) {
	set, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = set.Persona("janitor")
	if clawops.ReasonOf(err) != ReasonUnknownRole || clawops.KindOf(err) != clawops.KindNotFound {
		t.Errorf("Persona(janitor): got %v, want %s not found", err, ReasonUnknownRole)
	}
}

func FuzzParseIdentity(f *testing.F) {
	files, _ := filepath.Glob("*.md")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("---\nname: a\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, soul, err := parseIdentity("souls/x.md", data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 {
				t.Fatalf("got %v, want a *ParseError with a line", err)
			}
			return
		}
		if id.Name == "" || id.Emoji == "" || id.Mission == "" || strings.TrimSpace(soul) == "" {
			t.Fatalf("accepted %+v with soul %q", id, soul)
		}
	})
}
