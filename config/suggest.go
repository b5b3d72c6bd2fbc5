package config

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// unknownKeyHint says what the writer of an unknown key probably meant.
func unknownKeyHint(t reflect.Type, path, name string) string {
	if t == reflect.TypeFor[TokenRef]() {
		switch strings.ToLower(name) {
		case "token", "secret", "value", "password", "key":
			return "secrets are never written in the config file: put the token in an environment variable named by token_env, or in a file named by token_file"
		}
	}
	siblings := structKeys(t)
	if m := closeMatches(name, siblings, 1); len(m) > 0 {
		return fmt.Sprintf("did you mean %q?", m[0])
	}
	// The key may exist in another section, or be a whole path written as one key.
	var elsewhere []string
	for _, f := range fields() {
		last := f.path[strings.LastIndex(f.path, ".")+1:]
		if last == name || f.path == name || f.path == join(path, name) {
			elsewhere = append(elsewhere, f.path)
		}
	}
	if len(elsewhere) > 0 {
		return fmt.Sprintf("did you mean %q?", elsewhere[0])
	}
	return "known keys here are " + strings.Join(siblings, ", ")
}

// closeMatches returns up to n candidates within a small edit distance of s, closest
// first. Case and the difference between - and _ do not count.
func closeMatches(s string, candidates []string, n int) []string {
	norm := func(x string) string { return strings.ReplaceAll(strings.ToLower(x), "-", "_") }
	type scored struct {
		c string
		d int
	}
	limit := max(2, len(s)/4)
	var found []scored
	for _, c := range candidates {
		if d := editDistance(norm(s), norm(c)); d <= limit {
			found = append(found, scored{c, d})
		}
	}
	slices.SortStableFunc(found, func(a, b scored) int { return cmp.Compare(a.d, b.d) })
	var out []string
	for _, f := range found[:min(len(found), n)] {
		out = append(out, f.c)
	}
	return out
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
