package proto

import (
	"strings"
	"testing"

	"github.com/gatewayforge/clawops"
)

func TestSSHCommandLineRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		command string
		params  map[string]any
		line    string
		json    string
	}{
		{CmdHealth, nil, "gf-clawnode exec openclaw.health", `{}`},
		{CmdLogs, map[string]any{"tail": 200}, "gf-clawnode exec openclaw.logs --tail 200", `{"tail":200}`},
		{CmdLogs, map[string]any{"tail": float64(5)}, "gf-clawnode exec openclaw.logs --tail 5", `{"tail":5}`},
		{CmdUpgrade, map[string]any{"image": "ghcr.io/openclaw/openclaw:2026.9.6"},
			"gf-clawnode exec openclaw.upgrade --image ghcr.io/openclaw/openclaw:2026.9.6", `{"image":"ghcr.io/openclaw/openclaw:2026.9.6"}`},
	} {
		line, err := SSHCommandLine(tc.command, tc.params)
		if err != nil || line != tc.line {
			t.Errorf("SSHCommandLine(%s, %v) = %q, %v; want %q", tc.command, tc.params, line, err, tc.line)
			continue
		}
		cmd, params, err := ParseSSHCommandLine("/usr/local/bin/" + line)
		if err != nil || cmd != tc.command || string(params) != tc.json {
			t.Errorf("Parse(%q) = %s %s, %v; want %s %s", line, cmd, params, err, tc.command, tc.json)
		}
	}
}

func TestParseSSHCommandLineRejects(t *testing.T) {
	for _, tc := range []struct {
		line string
		want clawops.ReasonCode
	}{
		{"", clawops.ReasonMalformedRequest},
		{"gf-clawnode", clawops.ReasonMalformedRequest},
		{"gf-clawnode run openclaw.health", clawops.ReasonMalformedRequest},
		{"bash exec openclaw.health", clawops.ReasonMalformedRequest},
		{"gf-clawnode exec openclaw.health && reboot", clawops.ReasonShellMetachar},
		{"gf-clawnode exec openclaw.health\nreboot", clawops.ReasonShellMetachar},
		{"gf-clawnode exec openclaw.health #", clawops.ReasonShellMetachar},
		{"gf-clawnode exec openclaw.logs --tail ~", clawops.ReasonShellMetachar},
		{"gf-clawnode exec config.apply", clawops.ReasonNotAllowlisted},
		{"gf-clawnode exec openclaw.logs --tail", clawops.ReasonBadParams},
		{"gf-clawnode exec openclaw.logs --tail 0", clawops.ReasonBadParams},
		{"gf-clawnode exec openclaw.logs --lines 5", clawops.ReasonBadParams},
		{"gf-clawnode exec openclaw.upgrade --image -oProxyCommand=x", clawops.ReasonBadParams},
		{"gf-clawnode exec openclaw.health " + strings.Repeat("x", 1100), clawops.ReasonMalformedRequest},
	} {
		_, _, err := ParseSSHCommandLine(tc.line)
		if clawops.ReasonOf(err) != tc.want {
			t.Errorf("Parse(%.60q) = %v, want %s", tc.line, err, tc.want)
		}
	}
}

func FuzzParseSSHCommandLine(f *testing.F) {
	f.Add("gf-clawnode exec openclaw.logs --tail 5")
	f.Add("gf-clawnode exec openclaw.upgrade --image a/b:1")
	f.Add("gf-clawnode exec openclaw.health; id")
	f.Fuzz(func(t *testing.T, line string) {
		cmd, params, err := ParseSSHCommandLine(line)
		if err != nil {
			return
		}
		if strings.ContainsAny(line, ShellMetacharacters) {
			t.Fatalf("accepted a line with a metacharacter: %q", line)
		}
		if _, ok := SSHArgs(cmd); !ok || len(params) == 0 {
			t.Fatalf("accepted %q as %q %s", line, cmd, params)
		}
	})
}
