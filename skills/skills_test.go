package skills

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

// hermetic gates nothing on the real machine: no env, no binaries, linux.
func hermetic() Options {
	return Options{
		Getenv:   func(string) string { return "" },
		LookPath: func(string) (string, error) { return "", exec.ErrNotFound },
		GOOS:     "linux",
	}
}

var shippedNames = []string{
	"auto-heal", "briefings", "clawops", "cost-analysis", "fleet-overview", "gateway-manager",
	"incident-response", "instance-diagnose", "provider-routing", "provisioning",
	"rolling-config-push", "teardown", "tier-resize",
}

// knownTools are the tool names skills may tell an agent to call.
var knownTools = []string{
	"gf_fleet_status", "gf_instance_health", "gf_instance_diagnose", "gf_instance_logs",
	"gf_restart", "gf_heal", "gf_failover", "gf_provision", "gf_teardown", "gf_tier_resize",
	"gf_config_push", "gf_cost_report", "gf_provider_routing", "gf_upgrade", "gf_push_status",
}

func TestShippedSkills(t *testing.T) {
	set, err := Load(hermetic())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sk := range set.All() {
		names = append(names, sk.Name)
	}
	if diff := cmp.Diff(shippedNames, names); diff != "" {
		t.Fatalf("shipped skills (-want +got):\n%s", diff)
	}
	toolRE := regexp.MustCompile(`\bgf_[a-z_]+`)
	for _, sk := range set.All() {
		t.Run(sk.Name, func(t *testing.T) {
			raw, err := shipped.ReadFile(sk.Name + "/SKILL.md")
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(raw)
			if got, want := sk.Hash, hex.EncodeToString(sum[:]); got != want {
				t.Errorf("hash: got %s, want %s", got, want)
			}
			if n := bytes.Count(raw, []byte("\n")); n < 40 || n > 120 {
				t.Errorf("got %d lines, want 40 to 120", n)
			}
			if sk.Source != Shipped || !sk.Available || sk.Path != "skills/"+sk.Name+"/SKILL.md" {
				t.Errorf("got source %s available %v path %s, want shipped, available, skills/%s/SKILL.md", sk.Source, sk.Available, sk.Path, sk.Name)
			}
			if strings.HasPrefix(sk.Body(), "---") || !strings.HasPrefix(sk.Body(), "# ") {
				t.Errorf("body should start with a Markdown title, got %.40q", sk.Body())
			}
			for _, tool := range toolRE.FindAllString(sk.Body()+sk.Description, -1) {
				if !slices.Contains(knownTools, tool) {
					t.Errorf("mentions unknown tool %s", tool)
				}
			}
			if sk.Emoji == "" {
				t.Errorf("no metadata.openclaw.emoji")
			}
		})
	}
}

func TestShippedGolden(t *testing.T) {
	set, err := Load(hermetic())
	if err != nil {
		t.Fatal(err)
	}
	for _, sk := range set.All() {
		checkGolden(t, filepath.Join("testdata", "golden", sk.Name+".json"), goldenOf(sk, false))
	}
}

// goldenOf is what golden files record: the parsed fields and the body's size and hash,
// and the body itself when withBody (shipped bodies are the SKILL.md beside the code).
func goldenOf(sk Skill, withBody bool) []byte {
	sum := sha256.Sum256([]byte(sk.Body()))
	g := struct {
		Skill
		BodyLines  int    `json:"body_lines"`
		BodySHA256 string `json:"body_sha256"`
		Body       string `json:"body,omitempty"`
	}{Skill: sk, BodyLines: strings.Count(sk.Body(), "\n"), BodySHA256: hex.EncodeToString(sum[:])}
	if withBody {
		g.Body = sk.Body()
	}
	b, _ := json.MarshalIndent(g, "", "  ")
	return append(b, '\n')
}

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
		t.Fatalf("%v (run go test ./skills -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

// TestParseCases parses every testdata/cases/<folder>/SKILL.md: a folder with want.err
// must fail with that text; any other must match its want.json golden.
func TestParseCases(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/cases/*")
	if len(dirs) < 20 {
		t.Fatalf("got %d cases, want the testdata/cases folder", len(dirs))
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			file := filepath.ToSlash(filepath.Join(dir, "SKILL.md"))
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			sk, err := Parse(file, data)
			wantErr, readErr := os.ReadFile(filepath.Join(dir, "want.err"))
			if readErr == nil {
				want := strings.TrimSpace(string(wantErr))
				if err == nil {
					t.Fatalf("Parse: got %s, want error containing %q", sk.Name, want)
				}
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Parse error:\n got %v\nwant it to contain %q", err, want)
				}
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Path != file {
					t.Errorf("got %T %v, want a *ParseError for %s", err, err, file)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkGolden(t, filepath.Join(dir, "want.json"), goldenOf(sk, true))
		})
	}
}

func TestWorkspace(t *testing.T) {
	opts := hermetic()
	opts.Workspace = "testdata/workspace"
	opts.Getenv = func(k string) string {
		if k == "CLAWOPS_TEST_PRESENT" {
			return "1"
		}
		return ""
	}
	opts.LookPath = func(b string) (string, error) {
		if b == "present-bin" {
			return "/usr/bin/present-bin", nil
		}
		return "", exec.ErrNotFound
	}
	opts.Assignments = DefaultAssignments()
	opts.Assignments[clawops.Guardian] = append(opts.Assignments[clawops.Guardian],
		"needs-env", "needs-bin", "any-bin", "always-on", "darwin-only", "hidden-from-model")
	set, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(set.All()), len(shippedNames)+6; got != want {
		t.Errorf("got %d skills, want %d (hidden folders, loose files and folders without SKILL.md ignored)", got, want)
	}
	heal, _ := set.Get("auto-heal")
	if heal.Source != Workspace || !strings.Contains(heal.Body(), "Page the on-call human") ||
		heal.Path != filepath.Join("testdata/workspace", "auto-heal", "SKILL.md") {
		t.Errorf("auto-heal: got source %s path %s, want the workspace override", heal.Source, heal.Path)
	}
	for _, tc := range []struct {
		name      string
		available bool
		reason    string
	}{
		{"needs-env", false, "env CLAWOPS_TEST_ABSENT is not set"},
		{"needs-bin", false, "binary absent-bin is not on PATH"},
		{"any-bin", true, ""},
		{"always-on", true, ""},
		{"darwin-only", false, "runs only on darwin"},
		{"hidden-from-model", true, ""},
	} {
		sk, ok := set.Get(tc.name)
		if !ok {
			t.Errorf("%s: not loaded", tc.name)
			continue
		}
		if sk.Available != tc.available || sk.Unavailable != tc.reason {
			t.Errorf("%s: got available=%v reason %q, want %v %q", tc.name, sk.Available, sk.Unavailable, tc.available, tc.reason)
		}
	}
	list := set.PromptList(clawops.Guardian)
	want := "auto-heal — Site-specific auto-heal that replaces the shipped one.\n"
	if !strings.HasPrefix(list, want) {
		t.Errorf("PromptList(guardian): got\n%s\nwant it to start with %q", list, want)
	}
	for _, name := range []string{"needs-env", "needs-bin", "darwin-only", "hidden-from-model"} {
		if strings.Contains(list, name+" — ") {
			t.Errorf("PromptList(guardian) lists %s, which is unavailable or hidden from the model", name)
		}
	}
	for _, name := range []string{"any-bin", "always-on"} {
		if !strings.Contains(list, name+" — ") {
			t.Errorf("PromptList(guardian) does not list %s", name)
		}
	}
	if body, err := set.Body("always-on"); err != nil || body != "Always here.\n" {
		t.Errorf("Body(always-on): got %q, %v; want %q", body, err, "Always here.\n")
	}
	for _, tc := range []struct {
		name   string
		reason clawops.ReasonCode
	}{{"needs-env", ReasonSkillUnavailable}, {"no-such-skill", ReasonUnknownSkill}, {"../etc/passwd", ReasonUnknownSkill}} {
		_, err := set.Body(tc.name)
		if got := clawops.ReasonOf(err); got != tc.reason || clawops.KindOf(err) != clawops.KindNotFound {
			t.Errorf("Body(%q): got %v (reason %s), want reason %s, kind not found", tc.name, err, got, tc.reason)
		}
	}
}

func TestPromptListDefault(t *testing.T) {
	set, err := Load(hermetic())
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range clawops.AgentRoles {
		list := set.PromptList(role)
		lines := strings.Split(strings.TrimSuffix(list, "\n"), "\n")
		if got, want := len(lines), len(DefaultAssignments()[role]); got != want {
			t.Errorf("PromptList(%s): got %d lines, want %d:\n%s", role, got, want, list)
		}
		for _, l := range lines {
			if !strings.Contains(l, " — ") || strings.Contains(l, "\n") {
				t.Errorf("PromptList(%s): line %q is not name — description", role, l)
			}
		}
	}
	if !strings.HasPrefix(set.PromptList(clawops.Commander), "clawops — ") {
		t.Errorf("the Commander's list must start with the master skill, got:\n%s", set.PromptList(clawops.Commander))
	}
	// Every shipped skill is used by some role.
	used := map[string]bool{}
	for _, names := range DefaultAssignments() {
		for _, n := range names {
			used[n] = true
		}
	}
	for _, n := range shippedNames {
		if !used[n] {
			t.Errorf("shipped skill %s is assigned to no role", n)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	bad := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bad, "broken"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bad, "broken", "SKILL.md"), []byte("---\nname: broken\ndescription: [\n---\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := t.TempDir()
	if err := os.MkdirAll(filepath.Join(big, "huge"), 0o755); err != nil {
		t.Fatal(err)
	}
	huge := "---\nname: huge\ndescription: too big\n---\n" + strings.Repeat("x", MaxFileSize)
	if err := os.WriteFile(filepath.Join(big, "huge", "SKILL.md"), []byte(huge), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts func(*Options)
		want string
	}{
		{"malformed workspace skill", func(o *Options) { o.Workspace = bad }, filepath.Join(bad, "broken", "SKILL.md") + ":3: invalid YAML"},
		{"oversized skill", func(o *Options) { o.Workspace = big }, "a skill holds at most"},
		{"missing workspace", func(o *Options) { o.Workspace = filepath.Join(bad, "nope") }, "workspace: open"},
		{"unknown skill assigned", func(o *Options) {
			o.Assignments = map[clawops.AgentRole][]string{clawops.Forge: {"provisioning", "nonesuch"}}
		}, `role forge is given unknown skill "nonesuch"`},
		{"unknown role", func(o *Options) {
			o.Assignments = map[clawops.AgentRole][]string{"janitor": {"clawops"}}
		}, `unknown role "janitor"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := hermetic()
			tc.opts(&o)
			set, err := Load(o)
			if err == nil {
				t.Fatalf("got a set of %d skills, want error containing %q", len(set.All()), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("*/SKILL.md")
	cases, _ := filepath.Glob("testdata/*/*/SKILL.md")
	for _, p := range append(seeds, cases...) {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sk, err := Parse("skills/fuzz/SKILL.md", data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Path != "skills/fuzz/SKILL.md" {
				t.Fatalf("got %T %v, want a *ParseError naming the file", err, err)
			}
			return
		}
		if sk.Name != "fuzz" || sk.Description == "" || len(sk.Hash) != 64 {
			t.Fatalf("accepted a skill with name %q description %q hash %q", sk.Name, sk.Description, sk.Hash)
		}
		if strings.Contains(sk.Description, "\n") {
			t.Fatalf("description keeps a line break: %q", sk.Description)
		}
	})
}
