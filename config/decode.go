package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/gatewayforge/clawops/internal/yamlstrict"
)

// yamlDecoder sets the fields of a Config from a YAML syntax tree. It walks the tree
// itself, rather than using a generic unmarshaller, so that every problem can name the
// full key path and the line, and an unknown key can come with a suggestion.
type yamlDecoder struct {
	file  string
	lines map[string]int // key path → line where the file set it
	errs  []error
}

// decodeYAML overlays the YAML document in src on c. file names the source in messages.
func decodeYAML(file string, src []byte, c *Config) (lines map[string]int, err error) {
	d := &yamlDecoder{file: file, lines: map[string]int{}}
	f, err := yamlstrict.Parse(src)
	if err != nil {
		if line, msg, ok := yamlstrict.SyntaxError(err); ok {
			return nil, &Error{Source: file, Line: line, Msg: "invalid YAML: " + msg}
		}
		return nil, &Error{Source: file, Msg: "invalid YAML: " + err.Error()}
	}
	docs := yamlstrict.Documents(f)
	switch len(docs) {
	case 0:
		return d.lines, nil // an empty file keeps the defaults
	case 1:
	default:
		return nil, &Error{Source: file, Line: yamlstrict.Line(docs[1]), Msg: "the file holds more than one YAML document; keep one"}
	}
	body := yamlstrict.Unwrap(docs[0])
	if _, ok := body.(*ast.MappingNode); !ok {
		return nil, &Error{Source: file, Line: yamlstrict.Line(body), Msg: fmt.Sprintf("the file must be a mapping of keys (listen: ..., nodes: ...), not %s", yamlstrict.Kind(body))}
	}
	d.decode(docs[0], reflect.ValueOf(c).Elem(), "")
	return d.lines, errors.Join(d.errs...)
}

func (d *yamlDecoder) fail(n ast.Node, key, format string, args ...any) {
	e := keyError(key, format, args...)
	e.Source, e.Line = d.file, yamlstrict.Line(n)
	d.errs = append(d.errs, e)
}

// decode sets v from node n; path is the key path of v.
func (d *yamlDecoder) decode(n ast.Node, v reflect.Value, path string) {
	if _, ok := n.(*ast.AliasNode); ok {
		d.fail(n, path, "YAML aliases (*name) are not supported in the config; write the value out")
		return
	}
	n = yamlstrict.Unwrap(n)
	if path != "" {
		d.lines[path] = yamlstrict.Line(n)
	}
	if _, ok := n.(*ast.NullNode); ok {
		return // an empty value keeps the default
	}
	switch {
	case v.Type() == settingsType:
		d.settings(n, v, path)
	case v.Type() == durationType:
		d.duration(n, v, path)
	case v.Kind() == reflect.Struct:
		d.mapping(n, v, path)
	case v.Kind() == reflect.Slice:
		d.sequence(n, v, path)
	case v.Kind() == reflect.String:
		s, ok := yamlstrict.Scalar(n)
		if !ok {
			d.fail(n, path, "expected a string, got %s", yamlstrict.Kind(n))
			return
		}
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, ok := n.(*ast.BoolNode)
		if !ok {
			d.fail(n, path, "expected true or false, got %s", yamlstrict.Kind(n))
			return
		}
		v.SetBool(b.Value)
	case v.Kind() == reflect.Int:
		d.integer(n, v, path)
	case v.Kind() == reflect.Float64:
		d.float(n, v, path)
	default:
		d.fail(n, path, "unsupported type %s (a bug in config)", v.Type())
	}
}

func (d *yamlDecoder) mapping(n ast.Node, v reflect.Value, path string) {
	m, ok := n.(*ast.MappingNode)
	if !ok {
		d.fail(n, path, "expected a mapping of keys (%s), got %s", strings.Join(structKeys(v.Type()), ", "), yamlstrict.Kind(n))
		return
	}
	for _, mv := range m.Values {
		if mv.Key.IsMergeKey() {
			d.fail(mv.Key, path, "YAML merge keys (<<) are not supported in the config; write the keys out")
			continue
		}
		name, ok := yamlstrict.Scalar(yamlstrict.Unwrap(mv.Key))
		if !ok {
			d.fail(mv.Key, path, "keys must be plain words, got %s", yamlstrict.Kind(mv.Key))
			continue
		}
		i := fieldIndex(v.Type(), name)
		if i < 0 {
			d.unknownKey(mv.Key, v.Type(), path, name)
			continue
		}
		d.decode(mv.Value, v.Field(i), join(path, name))
	}
}

func (d *yamlDecoder) unknownKey(n ast.Node, t reflect.Type, path, name string) {
	full := join(path, name)
	msg := fmt.Sprintf("unknown key %q", full)
	if hint := unknownKeyHint(t, path, name); hint != "" {
		msg += ": " + hint
	}
	d.errs = append(d.errs, &Error{Source: d.file, Line: yamlstrict.Line(n), Key: full, Msg: msg})
}

func (d *yamlDecoder) sequence(n ast.Node, v reflect.Value, path string) {
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		d.fail(n, path, "expected a list, got %s", yamlstrict.Kind(n))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(seq.Values), len(seq.Values))
	for i, item := range seq.Values {
		d.decode(item, out.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(out)
}

func (d *yamlDecoder) duration(n ast.Node, v reflect.Value, path string) {
	if in, ok := n.(*ast.IntegerNode); ok {
		d.fail(n, path, "%s has no unit: write a Go duration such as %ss or %sm", in.GetToken().Value, in.GetToken().Value, in.GetToken().Value)
		return
	}
	s, ok := n.(*ast.StringNode)
	if !ok {
		d.fail(n, path, "expected a duration such as 30s or 5m, got %s", yamlstrict.Kind(n))
		return
	}
	dur, err := parseDuration(s.Value)
	if err != nil {
		d.fail(n, path, "%v", err)
		return
	}
	v.SetInt(int64(dur))
}

var settingsType = reflect.TypeFor[Settings]()

// settings keeps a mapping as JSON for the component that owns its schema.
func (d *yamlDecoder) settings(n ast.Node, v reflect.Value, path string) {
	if _, ok := n.(*ast.MappingNode); !ok {
		d.fail(n, path, "expected a mapping of settings, got %s", yamlstrict.Kind(n))
		return
	}
	var m map[string]any
	if err := yaml.NodeToValue(n, &m); err != nil {
		d.fail(n, path, "settings: %v", err)
		return
	}
	raw, err := json.Marshal(m)
	if err != nil {
		d.fail(n, path, "settings cannot be expressed as JSON (%v): use plain strings, numbers, booleans, lists and mappings", err)
		return
	}
	v.SetBytes(raw)
}

func (d *yamlDecoder) float(n ast.Node, v reflect.Value, path string) {
	switch x := n.(type) {
	case *ast.FloatNode:
		v.SetFloat(x.Value)
	case *ast.IntegerNode:
		text, _ := yamlstrict.Scalar(x)
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			d.fail(n, path, "expected a number, got %s", text)
			return
		}
		v.SetFloat(f)
	default:
		d.fail(n, path, "expected a number, got %s", yamlstrict.Kind(n))
	}
}

func (d *yamlDecoder) integer(n ast.Node, v reflect.Value, path string) {
	in, ok := n.(*ast.IntegerNode)
	if !ok {
		d.fail(n, path, "expected a whole number, got %s", yamlstrict.Kind(n))
		return
	}
	var i int64
	switch x := in.Value.(type) {
	case int64:
		i = x
	case uint64:
		if x > math.MaxInt64 {
			d.fail(n, path, "%d is too large", x)
			return
		}
		i = int64(x)
	default:
		d.fail(n, path, "expected a whole number, got %v", in.Value)
		return
	}
	if v.OverflowInt(i) {
		d.fail(n, path, "%d is too large", i)
		return
	}
	v.SetInt(i)
}

// parseDuration parses a Go duration string with a message that says what to write.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write a number with a unit, such as 30s, 5m or 1h", s)
	}
	return d, nil
}

// parseScalar sets v from the text of an environment variable.
func parseScalar(s string, v reflect.Value) error {
	switch {
	case v.Type() == durationType:
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a boolean: use true or false", s)
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || v.OverflowInt(i) {
			return fmt.Errorf("%q is not a whole number", s)
		}
		v.SetInt(i)
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		// A list of words from the environment is comma-separated: a,b,c.
		var items []string
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		v.Set(reflect.ValueOf(items).Convert(v.Type()))
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

// fieldIndex finds the field of struct type t whose YAML key is name, or -1.
func fieldIndex(t reflect.Type, name string) int {
	for i := range t.NumField() {
		if yamlName(t.Field(i)) == name {
			return i
		}
	}
	return -1
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
