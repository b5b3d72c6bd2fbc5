// Package redact removes secrets and personal data from text before it is stored in traces
// and audit details, written to logs, or sent to an LLM: bearer tokens, API keys of known
// shapes (sk-…, xoxb-…, ghp_…, AKIA…, bot tokens, JWTs, private keys), long hex and base64
// secrets, key=value pairs whose key names a secret, phone numbers and e-mail addresses.
//
// A Redactor is an immutable list of named rules. Default returns the shipped rules; With
// adds rules and Without removes them by name, each returning a new Redactor, so one can be
// shared by goroutines without locking.
//
// What is deliberately kept: ClawOps identifiers (instance IDs, approval/grant/trace IDs,
// 64-digit hex SHA-256 digests such as plan hashes, audit hashes and node IDs) and
// timestamps. A 64-digit hex string is treated as a digest, not a secret, unless it follows
// a secret-naming key (token=…, secret: …), which the key=value rule catches.
package redact

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Mask is what a redacted value is replaced with by the shipped rules.
const Mask = "[REDACTED]"

// Rule is one named pattern. Every match of Pattern for which Check (if set) returns true is
// replaced by Replace, in which $1, ${name} etc. expand to the match's submatches (as in
// regexp.Regexp.Expand), so a rule can keep a prefix such as "Bearer ".
type Rule struct {
	Name    string
	Pattern *regexp.Regexp
	Replace string
	// Check, when set, decides for each match whether it really is sensitive; it lets a rule
	// express what RE2 cannot (e.g. "mixed letters and digits").
	Check func(match string) bool
}

// Redactor applies rules in order. The zero value redacts nothing; use Default.
type Redactor struct {
	rules []Rule
}

// New returns a Redactor with exactly the given rules. A rule without a name or pattern, or
// a duplicate name, is an error.
func New(rules ...Rule) (*Redactor, error) {
	r := &Redactor{}
	return r.With(rules...)
}

// Default returns the shipped rules (see Names for the list).
func Default() *Redactor {
	r, err := New(defaultRules()...)
	if err != nil {
		panic("redact: default rules: " + err.Error()) // the shipped table is fixed
	}
	return r
}

// With returns a copy of r with the rules added after r's own.
func (r *Redactor) With(rules ...Rule) (*Redactor, error) {
	out := &Redactor{rules: slices.Clone(r.rules)}
	for _, rule := range rules {
		if rule.Name == "" || rule.Pattern == nil {
			return nil, fmt.Errorf("redact: rule %q needs a name and a pattern", rule.Name)
		}
		if out.has(rule.Name) {
			return nil, fmt.Errorf("redact: rule %q defined twice", rule.Name)
		}
		out.rules = append(out.rules, rule)
	}
	return out, nil
}

// WithPattern returns a copy of r with one more rule that replaces every match of pattern
// by Mask. It is the form configuration uses.
func (r *Redactor) WithPattern(name, pattern string) (*Redactor, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("redact: rule %q: %w", name, err)
	}
	return r.With(Rule{Name: name, Pattern: re, Replace: Mask})
}

// Without returns a copy of r without the named rules. Naming a rule r does not have is an
// error, so a typo in configuration is not silently ignored.
func (r *Redactor) Without(names ...string) (*Redactor, error) {
	out := &Redactor{rules: slices.Clone(r.rules)}
	for _, n := range names {
		if !out.has(n) {
			return nil, fmt.Errorf("redact: no rule named %q (have %s)", n, strings.Join(r.Names(), ", "))
		}
		out.rules = slices.DeleteFunc(out.rules, func(x Rule) bool { return x.Name == n })
	}
	return out, nil
}

func (r *Redactor) has(name string) bool {
	return slices.ContainsFunc(r.rules, func(x Rule) bool { return x.Name == name })
}

// Names lists the rules in the order they apply.
func (r *Redactor) Names() []string {
	out := make([]string, len(r.rules))
	for i, x := range r.rules {
		out[i] = x.Name
	}
	return out
}

// String returns s with every sensitive match replaced. A nil Redactor returns s unchanged.
func (r *Redactor) String(s string) string {
	if r == nil || s == "" {
		return s
	}
	for _, rule := range r.rules {
		s = apply(rule, s)
	}
	return s
}

// Changed reports whether String would change s.
func (r *Redactor) Changed(s string) bool { return r.String(s) != s }

func apply(rule Rule, s string) string {
	idx := rule.Pattern.FindAllStringSubmatchIndex(s, -1)
	if len(idx) == 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range idx {
		match := s[m[0]:m[1]]
		if rule.Check != nil && !rule.Check(match) {
			continue
		}
		b.WriteString(s[last:m[0]])
		b.Write(rule.Pattern.ExpandString(nil, rule.Replace, s, m))
		last = m[1]
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}
