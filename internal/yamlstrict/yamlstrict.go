// Package yamlstrict holds what ClawOps' strict YAML readers (config files, SKILL.md
// frontmatter) share. They walk goccy/go-yaml's syntax tree themselves, rather than
// unmarshalling, so that each problem can name its line. This package parses without
// letting a parser panic escape, finds the documents of a file and the position of a
// syntax error, and tells a node's line, its kind in words and its text.
package yamlstrict

import (
	"errors"
	"fmt"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Parse parses src. A panic of the parser on hostile input becomes an error.
func Parse(src []byte) (f *ast.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parser failed: %v", r)
		}
	}()
	return parser.ParseBytes(src, 0)
}

// Documents returns the bodies of f's documents, leaving out empty ones.
func Documents(f *ast.File) []ast.Node {
	var bodies []ast.Node
	for _, doc := range f.Docs {
		if doc.Body != nil {
			bodies = append(bodies, doc.Body)
		}
	}
	return bodies
}

// SyntaxError returns the line and message of a syntax error Parse returned, and false
// when err says nothing of where it is.
func SyntaxError(err error) (line int, msg string, ok bool) {
	var ye yaml.Error
	if !errors.As(err, &ye) || ye.GetToken() == nil || ye.GetToken().Position == nil {
		return 0, "", false
	}
	return ye.GetToken().Position.Line, ye.GetMessage(), true
}

// Unwrap looks through anchors (&name) and explicit tags (!!str) to the value.
func Unwrap(n ast.Node) ast.Node {
	for {
		switch x := n.(type) {
		case *ast.AnchorNode:
			n = x.Value
		case *ast.TagNode:
			n = x.Value
		default:
			return n
		}
	}
}

// Scalar is the text of a scalar that may stand for a string: a string, a block literal,
// or a number written where a string was expected (a port, a version, a numeric name).
func Scalar(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.LiteralNode:
		return x.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode:
		return x.GetToken().Value, true
	}
	return "", false
}

// Kind says what n is, for messages such as "expected a string, got a list".
func Kind(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.NullNode:
		return "nothing"
	case *ast.AliasNode:
		return "an alias"
	}
	return "a " + n.Type().String()
}

// Line is the 1-based line n starts on, 0 when unknown.
func Line(n ast.Node) int {
	if n == nil || n.GetToken() == nil || n.GetToken().Position == nil {
		return 0
	}
	return n.GetToken().Position.Line
}
