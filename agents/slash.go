package agents

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gatewayforge/clawops"
)

// ReasonUnknownCommand is the reason code of a slash command that does not exist.
const ReasonUnknownCommand clawops.ReasonCode = "UNKNOWN_COMMAND"

// Command is one parsed slash command: Name is lower case without the slash.
type Command struct {
	Name string
	Args []string
}

// commandSpec describes one slash command: its arity and, when rest is set, that the words
// after the last positional argument form one free-text argument (a reason).
type commandSpec struct {
	name    string
	usage   string
	summary string
	min     int
	max     int
	rest    bool
}

// commands is the slash-command table, in the order /help lists it.
var commands = []commandSpec{
	{name: "help", usage: "/help", summary: "list the commands"},
	{name: "status", usage: "/status", summary: "fleet status"},
	{name: "health", usage: "/health <instance>", summary: "health of one instance", min: 1, max: 1},
	{name: "logs", usage: "/logs <instance> [n]", summary: "last n log lines (n a positive whole number)", min: 1, max: 2},
	{name: "restart", usage: "/restart <instance>", summary: "restart an instance's OpenClaw", min: 1, max: 1},
	{name: "teardown", usage: "/teardown <instance>", summary: "delete an instance (needs approval)", min: 1, max: 1},
	{name: "tools", usage: "/tools", summary: "list every governed tool"},
	{name: "tool", usage: "/tool <name> [json-arguments]", summary: "call any governed tool, e.g. /tool gf_heal {\"instance\":\"demo1-pri\"}", min: 1, max: 2, rest: true},
	{name: "approvals", usage: "/approvals", summary: "list pending approvals"},
	{name: "approve", usage: "/approve <id> [reason]", summary: "approve a pending request", min: 1, max: 2, rest: true},
	{name: "deny", usage: "/deny <id> [reason]", summary: "deny a pending request", min: 1, max: 2, rest: true},
}

func lookupCommand(name string) (commandSpec, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return commandSpec{}, false
}

// IsSlash reports whether text is meant as a slash command.
func IsSlash(text string) bool { return strings.HasPrefix(strings.TrimSpace(text), "/") }

// ParseSlash parses a slash command. Parsing is tolerant of surrounding and repeated
// whitespace, of the case of the command word and of a Telegram-style "@botname" suffix;
// arguments are strict: a wrong count or a non-numeric line count is an error with reason
// BAD_ARGUMENTS naming the usage, an unknown command one with UNKNOWN_COMMAND.
func ParseSlash(text string) (Command, error) {
	fields := strings.Fields(text)
	if len(fields) == 0 || !strings.HasPrefix(fields[0], "/") {
		return Command{}, clawops.E("parse command", clawops.KindInvalid, ReasonUnknownCommand, "not a slash command")
	}
	word := strings.ToLower(strings.TrimPrefix(fields[0], "/"))
	if at := strings.IndexByte(word, '@'); at >= 0 {
		word = word[:at]
	}
	spec, ok := lookupCommand(word)
	if !ok {
		return Command{}, clawops.E("parse command", clawops.KindInvalid, ReasonUnknownCommand,
			fmt.Sprintf("unknown command %q", truncate(fields[0], 40)))
	}
	args := fields[1:]
	if spec.rest && len(args) > spec.max {
		args = append(args[:spec.max-1:spec.max-1], strings.Join(args[spec.max-1:], " "))
	}
	if len(args) < spec.min || len(args) > spec.max {
		return Command{}, usageError(spec)
	}
	if spec.name == "tool" && len(args) == 2 {
		// JSON arguments are taken verbatim: spaces inside strings are data.
		_, rest, _ := strings.Cut(strings.TrimSpace(text), fields[0])
		_, raw, _ := strings.Cut(rest, args[0])
		args[1] = strings.TrimSpace(raw)
	}
	if spec.name == "logs" && len(args) == 2 {
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 || args[1] != strconv.Itoa(n) {
			return Command{}, usageError(spec)
		}
	}
	return Command{Name: spec.name, Args: args}, nil
}

func usageError(spec commandSpec) error {
	return clawops.E("parse command", clawops.KindInvalid, clawops.ReasonBadArguments, "usage: "+spec.usage)
}

// helpText lists every command with its usage.
func helpText() string {
	var b strings.Builder
	b.WriteString("Commands:")
	for _, c := range commands {
		fmt.Fprintf(&b, "\n%s — %s", c.usage, c.summary)
	}
	return b.String()
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
