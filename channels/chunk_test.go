package channels_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gatewayforge/clawops/channels"
)

func TestChunk(t *testing.T) {
	tests := []struct {
		name string
		text string
		max  int
		want []string
	}{
		{"empty", "", 10, nil},
		{"fits", "hello", 5, []string{"hello"}},
		{"prefers newline", "aaa\nbbb\ncc", 8, []string{"aaa\nbbb\n", "cc"}},
		{"then space", "aaa bbb ccc", 8, []string{"aaa bbb ", "ccc"}},
		{"then rune", "abcdefghij", 4, []string{"abcd", "efgh", "ij"}},
		{"never inside a rune", "ééééé", 3, []string{"ééé", "éé"}},
		{"surrogate pairs count two", "🦀🦀🦀", 4, []string{"🦀🦀", "🦀"}},
		{"a pair never split", "a🦀b", 2, []string{"a", "🦀", "b"}},
		{"tiny max still progresses", "🦀🦀", 1, []string{"🦀", "🦀"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := channels.Chunk(tt.text, tt.max)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Errorf("Chunk(%q, %d): got %q, want %q", tt.text, tt.max, got, tt.want)
			}
		})
	}
}

func FuzzChunk(f *testing.F) {
	f.Add("line one\nline two with 🦀 and é\n\nend", 7)
	f.Add(strings.Repeat("x", 100), 3)
	f.Add("\xff\xfe bad utf8", 4)
	f.Fuzz(func(t *testing.T, text string, max int) {
		max = max%5000 + 1
		if max < 0 {
			max = -max + 2
		}
		parts := channels.Chunk(text, max)
		max = maxInt(max, 2) // Chunk's floor: room for any one rune
		if strings.Join(parts, "") != text {
			t.Fatalf("parts do not join to the text")
		}
		for _, p := range parts {
			if p == "" {
				t.Fatalf("empty part")
			}
			if channels.TextLen(p) > max {
				t.Fatalf("part of %d units over %d", channels.TextLen(p), max)
			}
			if utf8.ValidString(text) && !utf8.ValidString(p) {
				t.Fatalf("part %q splits a rune", p)
			}
		}
	})
}

func TestTruncate(t *testing.T) {
	if got := channels.Truncate("héllo wörld", 6); got != "héllo…" {
		t.Errorf("Truncate: got %q", got)
	}
	if got := channels.TruncateList([]string{"a", "b", "c", "d"}, 2, 10); strings.Join(got, ",") != "a,b,… and 2 more" {
		t.Errorf("TruncateList: got %q", got)
	}
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}
