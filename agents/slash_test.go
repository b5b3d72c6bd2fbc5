package agents

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
)

func TestParseSlash(t *testing.T) {
	tests := []struct {
		in   string
		want Command
	}{
		{"/help", Command{Name: "help", Args: []string{}}},
		{"  /STATUS  ", Command{Name: "status", Args: []string{}}},
		{"/Status@ClawOpsBot", Command{Name: "status", Args: []string{}}},
		{"/health   inst-1", Command{Name: "health", Args: []string{"inst-1"}}},
		{"\t/logs inst-1\n", Command{Name: "logs", Args: []string{"inst-1"}}},
		{"/logs inst-1 250", Command{Name: "logs", Args: []string{"inst-1", "250"}}},
		{"/Restart Inst-1", Command{Name: "restart", Args: []string{"Inst-1"}}},
		{"/teardown inst-2", Command{Name: "teardown", Args: []string{"inst-2"}}},
		{"/approvals", Command{Name: "approvals", Args: []string{}}},
		{"/approve ap-1", Command{Name: "approve", Args: []string{"ap-1"}}},
		{"/approve ap-1 looks   good to me", Command{Name: "approve", Args: []string{"ap-1", "looks good to me"}}},
		{"/DENY ap-1 not today", Command{Name: "deny", Args: []string{"ap-1", "not today"}}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSlash(tt.in)
			if err != nil {
				t.Fatalf("ParseSlash(%q): got error %v, want none", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseSlash(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseSlashErrors(t *testing.T) {
	tests := []struct {
		in     string
		reason clawops.ReasonCode
		usage  string
	}{
		{"", ReasonUnknownCommand, ""},
		{"status", ReasonUnknownCommand, ""},
		{"/", ReasonUnknownCommand, ""},
		{"/frobnicate inst-1", ReasonUnknownCommand, ""},
		{"/status now", clawops.ReasonBadArguments, "/status"},
		{"/help me", clawops.ReasonBadArguments, "/help"},
		{"/health", clawops.ReasonBadArguments, "/health <instance>"},
		{"/health a b", clawops.ReasonBadArguments, "/health <instance>"},
		{"/restart", clawops.ReasonBadArguments, "/restart <instance>"},
		{"/restart a b", clawops.ReasonBadArguments, "/restart <instance>"},
		{"/teardown a b", clawops.ReasonBadArguments, "/teardown <instance>"},
		{"/logs", clawops.ReasonBadArguments, "/logs <instance> [n]"},
		{"/logs inst-1 ten", clawops.ReasonBadArguments, "/logs <instance> [n]"},
		{"/logs inst-1 0", clawops.ReasonBadArguments, "/logs <instance> [n]"},
		{"/logs inst-1 -5", clawops.ReasonBadArguments, "/logs <instance> [n]"},
		{"/logs inst-1 +5", clawops.ReasonBadArguments, "/logs <instance> [n]"},
		{"/logs inst-1 1.5", clawops.ReasonBadArguments, "/logs <instance> [n]"},
		{"/logs inst-1 99999999999999999999", clawops.ReasonBadArguments, "/logs <instance> [n]"},
		{"/logs inst-1 5 6", clawops.ReasonBadArguments, "/logs <instance> [n]"},
		{"/approvals pending", clawops.ReasonBadArguments, "/approvals"},
		{"/approve", clawops.ReasonBadArguments, "/approve <id> [reason]"},
		{"/deny", clawops.ReasonBadArguments, "/deny <id> [reason]"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseSlash(tt.in)
			if err == nil {
				t.Fatalf("ParseSlash(%q): got nil error, want %s", tt.in, tt.reason)
			}
			if got := clawops.ReasonOf(err); got != tt.reason {
				t.Errorf("reason: got %s, want %s", got, tt.reason)
			}
			if got := clawops.KindOf(err); got != clawops.KindInvalid {
				t.Errorf("kind: got %v, want invalid", got)
			}
			if tt.usage != "" && !strings.Contains(err.Error(), "usage: "+tt.usage) {
				t.Errorf("error %q: want it to name the usage %q", err, tt.usage)
			}
		})
	}
}

func FuzzParseSlash(f *testing.F) {
	for _, s := range []string{"/help", "/logs inst-1 5", "/approve ap-1 ok then", "/Status@bot", "/", "", "/logs a -1",
		"/deny  x  y  z", "/health \x00", "/teardown inst-1 \u00a0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cmd, err := ParseSlash(s)
		if err != nil {
			if k := clawops.KindOf(err); k != clawops.KindInvalid {
				t.Fatalf("ParseSlash(%q): error kind %v, want invalid", s, k)
			}
			return
		}
		spec, ok := lookupCommand(cmd.Name)
		if !ok {
			t.Fatalf("ParseSlash(%q): unknown command %q accepted", s, cmd.Name)
		}
		if len(cmd.Args) < spec.min || len(cmd.Args) > spec.max {
			t.Fatalf("ParseSlash(%q): %d args for %s, want %d..%d", s, len(cmd.Args), cmd.Name, spec.min, spec.max)
		}
		for _, a := range cmd.Args {
			if a == "" || a != strings.TrimSpace(a) {
				t.Fatalf("ParseSlash(%q): arg %q is empty or padded", s, a)
			}
		}
		// Re-rendering the parsed command parses to the same command.
		again, err := ParseSlash("/" + cmd.Name + " " + strings.Join(cmd.Args, " "))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", s, err)
		}
		if diff := cmp.Diff(cmd, again); diff != "" {
			t.Fatalf("re-parse of %q differs (-first +again):\n%s", s, diff)
		}
	})
}

func BenchmarkParseSlash(b *testing.B) {
	for b.Loop() {
		if _, err := ParseSlash("  /approve ap-1234 looks good to me  "); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseSlashToolKeepsJSON(t *testing.T) {
	cmd, err := ParseSlash("/tool  gf_config_push   {\"config\": {\"model\": \"a  b\"}}  ")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cmd.Args, []string{"gf_config_push", `{"config": {"model": "a  b"}}`}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("args: got %q, want %q", got, want)
	}
}
