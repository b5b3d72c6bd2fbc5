package yamlstrict

import (
	"strings"
	"testing"

	"github.com/goccy/go-yaml/ast"
)

// body parses src and returns its only document.
func body(t *testing.T, src string) ast.Node {
	t.Helper()
	f, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	docs := Documents(f)
	if len(docs) != 1 {
		t.Fatalf("Parse(%q): %d documents, want 1", src, len(docs))
	}
	return docs[0]
}

func TestKindAndScalar(t *testing.T) {
	tests := []struct {
		src      string
		kind     string
		text     string
		isScalar bool
	}{
		{"hello", "a string", "hello", true},
		{`"quoted"`, "a string", "quoted", true},
		{"|\n  block\n", "a string", "block\n", true},
		{"8080", "a number", "8080", true},
		{"1.5", "a number", "1.5", true},
		{".inf", "a number", "", false},
		{"true", "a boolean", "", false},
		{"null", "nothing", "", false},
		{"[a, b]", "a list", "", false},
		{"- a\n- b\n", "a list", "", false},
		{"a: 1", "a mapping", "", false},
		{"&x hello", "a string", "hello", true},
		{"!!int 42", "a number", "42", true},
		{"!!str &x hi", "a string", "hi", true},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			n := Unwrap(body(t, tt.src))
			if got := Kind(n); got != tt.kind {
				t.Errorf("Kind = %q, want %q", got, tt.kind)
			}
			text, ok := Scalar(n)
			if text != tt.text || ok != tt.isScalar {
				t.Errorf("Scalar = %q, %v; want %q, %v", text, ok, tt.text, tt.isScalar)
			}
		})
	}
}

func TestKindOfAlias(t *testing.T) {
	m := body(t, "a: &x 1\nb: *x\n").(*ast.MappingNode)
	if got := Kind(m.Values[1].Value); got != "an alias" {
		t.Errorf("Kind(alias) = %q, want an alias", got)
	}
}

func TestLine(t *testing.T) {
	m := body(t, "# comment\n\nfirst: 1\nsecond:\n  - x\n").(*ast.MappingNode)
	if got := Line(m.Values[0].Key); got != 3 {
		t.Errorf("Line(first) = %d, want 3", got)
	}
	if got := Line(m.Values[1].Value); got != 5 {
		t.Errorf("Line(second's list) = %d, want 5", got)
	}
	if got := Line(nil); got != 0 {
		t.Errorf("Line(nil) = %d, want 0", got)
	}
}

func TestDocuments(t *testing.T) {
	tests := []struct {
		src  string
		want int
	}{
		{"", 0},
		{"# only a comment\n", 0},
		{"a: 1\n", 1},
		{"a: 1\n---\nb: 2\n", 2},
	}
	for _, tt := range tests {
		f, err := Parse([]byte(tt.src))
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.src, err)
		}
		if got := len(Documents(f)); got != tt.want {
			t.Errorf("Documents(%q) = %d, want %d", tt.src, got, tt.want)
		}
	}
}

func TestSyntaxError(t *testing.T) {
	tests := []struct {
		src  string
		line int
	}{
		{"a: 1\nb: [unclosed\n", 2},
		{"a: 1\nb: 2\nc: \"\n", 3},
		{"ok: 1\n\tbad: tab\n", 2},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.src))
		if err == nil {
			t.Errorf("Parse(%q) = nil error, want a syntax error", tt.src)
			continue
		}
		line, msg, ok := SyntaxError(err)
		if !ok || line != tt.line || msg == "" {
			t.Errorf("SyntaxError(Parse(%q)) = %d, %q, %v; want line %d", tt.src, line, msg, ok, tt.line)
		}
	}
	if _, _, ok := SyntaxError(nil); ok {
		t.Error("SyntaxError(nil) reports a position")
	}
}

// FuzzParse checks that no input makes Parse panic, and that the helpers cope with
// whatever tree it returns.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"a: 1", "- [x, {y: z}]", "&a !!str b", "a: *a", "? x\n: y", "---\n...\n", strings.Repeat("[", 50)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		file, err := Parse(src)
		if err != nil {
			SyntaxError(err)
			return
		}
		for _, d := range Documents(file) {
			n := Unwrap(d)
			_ = Kind(n)
			_, _ = Scalar(n)
			_ = Line(n)
		}
	})
}
