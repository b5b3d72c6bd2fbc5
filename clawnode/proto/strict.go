package proto

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
)

var rawMessageType = reflect.TypeFor[json.RawMessage]()

// UnmarshalStrict decodes the JSON in data into v, which must be a pointer, and is stricter
// than encoding/json: a key must match a field's JSON name exactly (encoding/json also
// accepts other letter cases), a key may appear only once in an object, unknown keys are
// errors, and nothing may follow the value. Values typed json.RawMessage or any are not
// inspected; their consumer decodes them strictly in turn.
//
// The checks are one pass over the bytes that allocates nothing for well-formed input (the
// field tables are built once per type), followed by a single json.Unmarshal: every frame
// from 10,000 nodes goes through here.
func UnmarshalStrict(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errors.New("decode: target must be a non-nil pointer")
	}
	s := scanner{data: data}
	s.ws()
	if err := s.value(shapeOf(rv.Type().Elem())); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	s.ws()
	if s.i != len(s.data) {
		return errors.New("decode: unexpected data after the JSON value")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

// shape is what the scanner checks of a Go type: which keys a struct accepts (and the
// shape of each field), or the shape of a map's or slice's elements. A nil *shape checks
// nothing but syntax.
type shape struct {
	fields map[string]*field // struct
	elem   *shape            // map value or slice element
	isMap  bool
}

type field struct {
	index int
	shape *shape
}

// shapes caches complete shapes by type. A shape is published only once it is filled in:
// a decoder on another goroutine must never see a struct's field table half built (it
// would refuse a known key as unknown, as the first commands to a fresh gf-clawnode once
// were). Building happens under shapeMu.
var (
	shapes  sync.Map // reflect.Type → *shape, complete
	shapeMu sync.Mutex
)

func shapeOf(t reflect.Type) *shape {
	t, ok := shapedType(t)
	if !ok {
		return nil
	}
	if s, ok := shapes.Load(t); ok {
		return s.(*shape)
	}
	shapeMu.Lock()
	defer shapeMu.Unlock()
	building := map[reflect.Type]*shape{}
	s := buildShape(t, building)
	for bt, bs := range building {
		shapes.Store(bt, bs) // every shape of this build is complete now
	}
	return s
}

// shapedType strips pointers and reports whether values of t have a shape to check:
// structs, maps, slices and arrays; scalars, interfaces and json.RawMessage do not.
func shapedType(t reflect.Type) (reflect.Type, bool) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t == rawMessageType {
		return t, false
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map, reflect.Slice, reflect.Array:
		return t, true
	}
	return t, false // json.Unmarshal checks scalar types
}

// buildShape fills in t's shape; building holds the shapes of this build, so a recursive
// type finds itself.
func buildShape(t reflect.Type, building map[reflect.Type]*shape) *shape {
	t, ok := shapedType(t)
	if !ok {
		return nil
	}
	if s, ok := shapes.Load(t); ok {
		return s.(*shape)
	}
	if s, ok := building[t]; ok {
		return s
	}
	s := &shape{}
	building[t] = s
	switch t.Kind() {
	case reflect.Struct:
		s.fields = make(map[string]*field, t.NumField())
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name := f.Name
			if tag, ok := f.Tag.Lookup("json"); ok {
				n, _, _ := strings.Cut(tag, ",")
				if n == "-" {
					continue
				}
				if n != "" {
					name = n
				}
			}
			s.fields[name] = &field{index: len(s.fields), shape: buildShape(f.Type, building)}
		}
	case reflect.Map:
		s.isMap, s.elem = true, buildShape(t.Elem(), building)
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Kind() == reflect.Slice {
			return s // []byte is a base64 string
		}
		s.elem = buildShape(t.Elem(), building)
	}
	return s
}

// scanner walks one JSON value, checking object keys against shapes.
type scanner struct {
	data []byte
	i    int
}

// pathError carries the location of a failure; the path is built only on failure.
type pathError struct {
	path string
	msg  string
}

func (e *pathError) Error() string { return "$" + e.path + ": " + e.msg }

func (s *scanner) fail(format string, args ...any) error {
	return &pathError{msg: fmt.Sprintf(format, args...)}
}

func within(err error, seg string) error {
	var pe *pathError
	if errors.As(err, &pe) {
		pe.path = seg + pe.path
	}
	return err
}

func (s *scanner) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) value(sh *shape) error {
	if s.i >= len(s.data) {
		return s.fail("unexpected EOF")
	}
	switch c := s.data[s.i]; {
	case c == '{':
		return s.object(sh)
	case c == '[':
		return s.array(sh)
	case c == '"':
		_, _, err := s.str()
		return err
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return s.number()
	default:
		return s.fail("invalid character %q", c)
	}
}

func (s *scanner) lit(word string) error {
	if len(s.data)-s.i < len(word) || string(s.data[s.i:s.i+len(word)]) != word {
		return s.fail("invalid literal")
	}
	s.i += len(word)
	return nil
}

func (s *scanner) number() error {
	start := s.i
	for s.i < len(s.data) {
		switch c := s.data[s.i]; {
		case c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' || ('0' <= c && c <= '9'):
			s.i++
		default:
			goto done
		}
	}
done:
	if s.i == start {
		return s.fail("invalid number")
	}
	return nil // json.Unmarshal checks the number's form
}

// str scans a string and returns its raw content (between the quotes) and whether it
// has escapes.
func (s *scanner) str() ([]byte, bool, error) {
	s.i++ // opening quote
	start := s.i
	escaped := false
	for s.i < len(s.data) {
		switch c := s.data[s.i]; {
		case c == '"':
			raw := s.data[start:s.i]
			s.i++
			return raw, escaped, nil
		case c == '\\':
			escaped = true
			s.i += 2
		case c < 0x20:
			return nil, false, s.fail("control character in string")
		default:
			s.i++
		}
	}
	return nil, false, s.fail("unexpected EOF in a string")
}

func (s *scanner) array(sh *shape) error {
	s.i++ // [
	var elem *shape
	if sh != nil {
		elem = sh.elem
	}
	s.ws()
	if s.i < len(s.data) && s.data[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if err := s.value(elem); err != nil {
			return within(err, "[]")
		}
		s.ws()
		if s.i >= len(s.data) {
			return s.fail("unexpected EOF in an array")
		}
		switch s.data[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.fail("invalid character %q in array", s.data[s.i])
		}
	}
}

func (s *scanner) object(sh *shape) error {
	s.i++ // {
	var seenBits uint64
	var seen map[string]bool // for maps, and structs of more than 64 fields
	s.ws()
	if s.i < len(s.data) && s.data[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if s.i >= len(s.data) || s.data[s.i] != '"' {
			return s.fail("object key must be a string")
		}
		raw, escaped, err := s.str()
		if err != nil {
			return err
		}
		key := raw
		if escaped {
			var k string
			if err := json.Unmarshal(s.data[s.i-len(raw)-2:s.i], &k); err != nil {
				return s.fail("invalid object key")
			}
			key = []byte(k)
		}
		var vshape *shape
		if sh != nil {
			switch {
			case sh.fields != nil:
				f, ok := sh.fields[string(key)]
				if !ok {
					return s.fail("unknown field %q", key)
				}
				if f.index < 64 {
					if seenBits&(1<<f.index) != 0 {
						return s.fail("duplicate key %q", key)
					}
					seenBits |= 1 << f.index
				} else if seen == nil {
					seen = map[string]bool{string(key): true}
				} else if seen[string(key)] {
					return s.fail("duplicate key %q", key)
				} else {
					seen[string(key)] = true
				}
				vshape = f.shape
			case sh.isMap:
				if seen == nil {
					seen = make(map[string]bool)
				}
				if seen[string(key)] {
					return s.fail("duplicate key %q", key)
				}
				seen[string(key)] = true
				vshape = sh.elem
			}
		}
		s.ws()
		if s.i >= len(s.data) || s.data[s.i] != ':' {
			return s.fail("missing ':' after object key")
		}
		s.i++
		s.ws()
		if err := s.value(vshape); err != nil {
			return within(err, "."+string(key))
		}
		s.ws()
		if s.i >= len(s.data) {
			return s.fail("unexpected EOF in an object")
		}
		switch s.data[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.fail("invalid character %q in object", s.data[s.i])
		}
	}
}
