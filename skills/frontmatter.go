package skills

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/goccy/go-yaml/ast"

	"github.com/gatewayforge/clawops/internal/yamlstrict"
)

// ParseError is a problem in one SKILL.md, tied to the file and the line.
type ParseError struct {
	Path string // e.g. skills/auto-heal/SKILL.md
	Line int    // 1-based line in the file, 0 when the whole file is at fault
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return e.Path + ": " + e.Msg
}

// splitFrontmatter separates the YAML frontmatter between the opening and closing "---"
// lines from the Markdown body. It returns the frontmatter text, the file line its first
// line is on, and the body. A UTF-8 byte order mark and CRLF line ends are accepted.
func splitFrontmatter(path string, data []byte) (front string, firstLine int, body string, err error) {
	text := string(bytes.TrimPrefix(data, []byte("\ufeff")))
	text = strings.ReplaceAll(text, "\r\n", "\n")
	first, rest, _ := strings.Cut(text, "\n")
	if strings.TrimRight(first, " \t") != "---" {
		return "", 0, "", &ParseError{Path: path, Line: 1, Msg: "no frontmatter: the file must start with a --- line, then name: and description:, then another --- line"}
	}
	var fm []string
	for n := 2; ; n++ {
		var line string
		var more bool
		line, rest, more = strings.Cut(rest, "\n")
		if strings.TrimRight(line, " \t") == "---" {
			return strings.Join(fm, "\n") + "\n", 2, rest, nil
		}
		if !more {
			return "", 0, "", &ParseError{Path: path, Line: 1, Msg: "the frontmatter opened on line 1 is never closed: add a --- line after it"}
		}
		fm = append(fm, line)
	}
}

// frontmatter is what a SKILL.md header says, before validation.
type frontmatter struct {
	name, description    string
	nameLine, descLine   int
	meta                 openclawMeta
	userInvocable        *bool
	disableModelInvoking bool
}

// openclawMeta is metadata.openclaw (or its older aliases clawdbot and clawdis).
type openclawMeta struct {
	always  bool
	emoji   string
	env     []string
	bins    []string
	anyBins []string
	os      []string
}

// fmParser reads frontmatter from a YAML syntax tree. Unknown keys are kept out of the
// Skill but are not errors: OpenClaw skills carry more keys (version, homepage, install
// instructions...) than ClawOps needs.
type fmParser struct {
	path   string
	offset int // file line of the frontmatter's first line, minus one
	// fixedLine, when set, is used for every error: positions inside a JSON string
	// (metadata written as a quoted JSON object) are not file positions.
	fixedLine int
}

func (p *fmParser) errAt(n ast.Node, format string, args ...any) *ParseError {
	line := p.fixedLine
	if line == 0 {
		line = p.offset + nodeLine(n)
	}
	return &ParseError{Path: p.path, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// mappingOf parses src and returns its single top-level mapping (nil for an empty
// document).
func (p *fmParser) mappingOf(src string) (*ast.MappingNode, error) {
	f, err := yamlstrict.Parse([]byte(src))
	if err != nil {
		if line, msg, ok := yamlstrict.SyntaxError(err); ok {
			if p.fixedLine != 0 {
				line = p.fixedLine
			} else {
				line += p.offset
			}
			return nil, &ParseError{Path: p.path, Line: line, Msg: "invalid YAML: " + msg}
		}
		return nil, &ParseError{Path: p.path, Line: max(p.fixedLine, p.offset+1), Msg: "invalid YAML: " + err.Error()}
	}
	bodies := yamlstrict.Documents(f)
	if len(bodies) == 0 {
		return nil, nil
	}
	if len(bodies) > 1 {
		return nil, p.errAt(bodies[1], "more than one YAML document")
	}
	m, ok := yamlstrict.Unwrap(bodies[0]).(*ast.MappingNode)
	if !ok {
		return nil, p.errAt(bodies[0], "expected key: value lines, got %s", yamlstrict.Kind(bodies[0]))
	}
	return m, nil
}

// parse reads the frontmatter text.
func (p *fmParser) parse(src string) (frontmatter, error) {
	var fm frontmatter
	m, err := p.mappingOf(src)
	if err != nil {
		return fm, err
	}
	if m == nil {
		return fm, &ParseError{Path: p.path, Line: p.offset, Msg: "the frontmatter is empty: add name: and description:"}
	}
	for _, mv := range m.Values {
		key, ok := yamlstrict.Scalar(yamlstrict.Unwrap(mv.Key))
		if !ok {
			return fm, p.errAt(mv.Key, "keys must be plain words, got %s", yamlstrict.Kind(mv.Key))
		}
		if _, isAlias := mv.Value.(*ast.AliasNode); isAlias {
			return fm, p.errAt(mv.Value, "%s: YAML aliases are not supported", key)
		}
		v := yamlstrict.Unwrap(mv.Value)
		switch key {
		case "name":
			if fm.name, ok = yamlstrict.Scalar(v); !ok {
				return fm, p.errAt(v, "name: expected a string, got %s", yamlstrict.Kind(v))
			}
			fm.nameLine = p.offset + nodeLine(mv.Key)
		case "description":
			if fm.description, ok = yamlstrict.Scalar(v); !ok {
				return fm, p.errAt(v, "description: expected a string, got %s", yamlstrict.Kind(v))
			}
			fm.descLine = p.offset + nodeLine(mv.Key)
		case "user-invocable":
			b, err := p.boolean(v, key)
			if err != nil {
				return fm, err
			}
			fm.userInvocable = &b
		case "disable-model-invocation":
			if fm.disableModelInvoking, err = p.boolean(v, key); err != nil {
				return fm, err
			}
		case "metadata":
			if fm.meta, err = p.metadata(v); err != nil {
				return fm, err
			}
		}
	}
	return fm, nil
}

// metadata reads the metadata key: a mapping, or a string holding a JSON object (the
// single-line form OpenClaw documents).
func (p *fmParser) metadata(v ast.Node) (openclawMeta, error) {
	if _, ok := v.(*ast.NullNode); ok {
		return openclawMeta{}, nil
	}
	if s, ok := v.(*ast.StringNode); ok {
		inner := &fmParser{path: p.path, offset: p.offset, fixedLine: p.offset + nodeLine(v)}
		m, err := inner.mappingOf(s.Value)
		if err != nil {
			return openclawMeta{}, err
		}
		if m == nil {
			return openclawMeta{}, nil
		}
		return inner.metadata(m)
	}
	m, ok := v.(*ast.MappingNode)
	if !ok {
		return openclawMeta{}, p.errAt(v, "metadata: expected a mapping or a JSON object, got %s", yamlstrict.Kind(v))
	}
	var meta openclawMeta
	for _, mv := range m.Values {
		key, _ := yamlstrict.Scalar(yamlstrict.Unwrap(mv.Key))
		switch key {
		case "openclaw", "clawdbot", "clawdis":
		default:
			continue // metadata for other tools
		}
		oc, ok := yamlstrict.Unwrap(mv.Value).(*ast.MappingNode)
		if !ok {
			return meta, p.errAt(mv.Value, "metadata.%s: expected a mapping, got %s", key, yamlstrict.Kind(yamlstrict.Unwrap(mv.Value)))
		}
		if err := p.openclaw(oc, "metadata."+key, &meta); err != nil {
			return meta, err
		}
	}
	return meta, nil
}

func (p *fmParser) openclaw(m *ast.MappingNode, path string, meta *openclawMeta) error {
	var err error
	for _, mv := range m.Values {
		key, _ := yamlstrict.Scalar(yamlstrict.Unwrap(mv.Key))
		v := yamlstrict.Unwrap(mv.Value)
		switch key {
		case "always":
			meta.always, err = p.boolean(v, path+".always")
		case "emoji":
			var ok bool
			if meta.emoji, ok = yamlstrict.Scalar(v); !ok {
				err = p.errAt(v, "%s.emoji: expected a string, got %s", path, yamlstrict.Kind(v))
			}
		case "os":
			meta.os, err = p.strings(v, path+".os")
		case "requires":
			req, ok := v.(*ast.MappingNode)
			if !ok {
				if _, null := v.(*ast.NullNode); null {
					continue
				}
				return p.errAt(v, "%s.requires: expected a mapping, got %s", path, yamlstrict.Kind(v))
			}
			for _, rv := range req.Values {
				rk, _ := yamlstrict.Scalar(yamlstrict.Unwrap(rv.Key))
				switch rk {
				case "env":
					meta.env, err = p.strings(yamlstrict.Unwrap(rv.Value), path+".requires.env")
				case "bins":
					meta.bins, err = p.strings(yamlstrict.Unwrap(rv.Value), path+".requires.bins")
				case "anyBins":
					meta.anyBins, err = p.strings(yamlstrict.Unwrap(rv.Value), path+".requires.anyBins")
				}
				if err != nil {
					return err
				}
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *fmParser) boolean(v ast.Node, key string) (bool, error) {
	b, ok := v.(*ast.BoolNode)
	if !ok {
		return false, p.errAt(v, "%s: expected true or false, got %s", key, yamlstrict.Kind(v))
	}
	return b.Value, nil
}

// strings reads a list of non-empty strings (a single string counts as a list of one).
func (p *fmParser) strings(v ast.Node, key string) ([]string, error) {
	if _, ok := v.(*ast.NullNode); ok {
		return nil, nil
	}
	if s, ok := yamlstrict.Scalar(v); ok && s != "" {
		return []string{s}, nil
	}
	seq, ok := v.(*ast.SequenceNode)
	if !ok {
		return nil, p.errAt(v, "%s: expected a list of strings, got %s", key, yamlstrict.Kind(v))
	}
	var out []string
	for _, item := range seq.Values {
		s, ok := yamlstrict.Scalar(yamlstrict.Unwrap(item))
		if !ok {
			return nil, p.errAt(item, "%s: expected a list of strings, got %s in it", key, yamlstrict.Kind(yamlstrict.Unwrap(item)))
		}
		if strings.TrimSpace(s) == "" {
			return nil, p.errAt(item, "%s: an item is empty; remove it or name what is required", key)
		}
		out = append(out, s)
	}
	return out, nil
}

// nodeLine is the line n starts on within the parsed text, 1 when unknown.
func nodeLine(n ast.Node) int { return max(yamlstrict.Line(n), 1) }
