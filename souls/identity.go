package souls

import (
	"bytes"
	"fmt"
	"strings"
)

// ParseError is a problem in a persona file, tied to the file and the line.
type ParseError struct {
	Path string
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg) }

// parseIdentity splits a persona file into its identity block and the soul text after it.
// The block is deliberately simple — "key: value" lines between two --- lines, with the
// keys name, emoji and mission each exactly once — so it needs no YAML parser.
func parseIdentity(path string, data []byte) (Identity, string, error) {
	text := string(bytes.TrimPrefix(data, []byte("\ufeff")))
	text = strings.ReplaceAll(text, "\r\n", "\n")
	lines := strings.Split(text, "\n")
	fail := func(line int, format string, args ...any) (Identity, string, error) {
		return Identity{}, "", &ParseError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	if strings.TrimSpace(lines[0]) != "---" {
		return fail(1, "the file must start with an identity block: a --- line, name:, emoji:, mission:, and another --- line")
	}
	var id Identity
	seen := map[string]int{}
	for i := 1; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		n := i + 1
		if l == "---" {
			for _, k := range []string{"name", "emoji", "mission"} {
				if _, ok := seen[k]; !ok {
					return fail(n, "the identity block has no %s: add %s: on its own line", k, k)
				}
			}
			soul := strings.TrimLeft(strings.Join(lines[i+1:], "\n"), "\n")
			if strings.TrimSpace(soul) == "" {
				return fail(n, "no persona text after the identity block")
			}
			return id, soul, nil
		}
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		key, val, ok := strings.Cut(l, ":")
		if !ok {
			return fail(n, "expected key: value, got %q", l)
		}
		key = strings.TrimSpace(key)
		val = unquote(strings.TrimSpace(val))
		if prev, dup := seen[key]; dup {
			return fail(n, "%s is set twice (first on line %d)", key, prev)
		}
		seen[key] = n
		if val == "" {
			return fail(n, "%s is empty", key)
		}
		switch key {
		case "name":
			id.Name = val
		case "emoji":
			id.Emoji = val
		case "mission":
			id.Mission = val
		default:
			return fail(n, "unknown key %q: the identity block holds name, emoji and mission", key)
		}
	}
	return fail(1, "the identity block opened on line 1 is never closed: add a --- line after it")
}

// unquote removes one pair of matching quotes, so `emoji: "🛡️"` and `emoji: 🛡️` agree.
func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}
