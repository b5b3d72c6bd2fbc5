package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
)

// maxArgsBytes bounds the arguments a tool will read.
const maxArgsBytes = 4096

// badArgs is the error every malformed argument becomes.
func badArgs(op string, format string, a ...any) error {
	return clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, fmt.Errorf(format, a...))
}

// decodeObject reads raw as one JSON object whose keys are all in allowed, each at most
// once, with nothing after it. encoding/json alone would accept keys in any letter case,
// repeated keys and unknown keys; a governed tool accepts none of them. Empty input and
// null are the empty object.
func decodeObject(op string, raw json.RawMessage, allowed ...string) (map[string]json.RawMessage, error) {
	return decodeObjectLimit(op, raw, maxArgsBytes, allowed...)
}

// decodeObjectLimit is decodeObject for tools whose arguments may be longer (a config, a
// list of accounts).
func decodeObjectLimit(op string, raw json.RawMessage, limit int, allowed ...string) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	out := map[string]json.RawMessage{}
	if len(raw) == 0 || string(raw) == "null" {
		return out, nil
	}
	if len(raw) > limit {
		return nil, badArgs(op, "arguments are %d bytes, more than %d", len(raw), limit)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, badArgs(op, "arguments must be a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, badArgs(op, "arguments are not valid JSON: %v", err)
		}
		key, _ := tok.(string)
		if !slices.Contains(allowed, key) {
			return nil, badArgs(op, "unknown argument %.40q (allowed: %v)", key, allowed)
		}
		if _, dup := out[key]; dup {
			return nil, badArgs(op, "argument %q given twice", key)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, badArgs(op, "argument %q is not valid JSON: %v", key, err)
		}
		out[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, badArgs(op, "arguments are not valid JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, badArgs(op, "arguments have data after the JSON object")
	}
	return out, nil
}

// instanceArg reads the required "instance" argument and checks its form, which also
// keeps shell metacharacters, spaces and path separators out.
func instanceArg(op string, m map[string]json.RawMessage) (clawops.InstanceID, error) {
	v, ok := m["instance"]
	if !ok {
		return "", badArgs(op, "argument \"instance\" is required")
	}
	var s string
	if string(v) == "null" || json.Unmarshal(v, &s) != nil {
		return "", badArgs(op, "argument \"instance\" must be a string")
	}
	if !fleet.ValidInstanceID(s) {
		return "", badArgs(op, "instance %.48q is not an instance id (pattern %s)", s, fleet.InstanceIDPattern)
	}
	return clawops.InstanceID(s), nil
}

// linesArg reads the optional "lines" argument: an integer in fleet's bounds.
func linesArg(op string, m map[string]json.RawMessage) (int, error) {
	v, ok := m["lines"]
	if !ok {
		return fleet.DefaultLogLines, nil
	}
	var n int
	if string(v) == "null" || json.Unmarshal(v, &n) != nil {
		return 0, badArgs(op, "argument \"lines\" must be an integer")
	}
	if n < fleet.MinLogLines || n > fleet.MaxLogLines {
		return 0, badArgs(op, "lines %d is outside %d..%d", n, fleet.MinLogLines, fleet.MaxLogLines)
	}
	return n, nil
}

// instanceOnly decodes {"instance": ID}.
func instanceOnly(op string, raw json.RawMessage) (clawops.InstanceID, error) {
	m, err := decodeObject(op, raw, "instance")
	if err != nil {
		return "", err
	}
	return instanceArg(op, m)
}

// canonical marshals validated arguments; these become the plan's Args.
func canonical(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		// Only maps of strings and ints reach here.
		panic(fmt.Sprintf("tools: marshal args: %v", err))
	}
	return b
}

// JSON Schemas of the arguments.
var (
	instanceProp = map[string]any{
		"type":        "string",
		"pattern":     fleet.InstanceIDPattern,
		"description": "Instance ID, e.g. demo1-pri or demo1-sby.",
	}
	schemaTeardown = schema(map[string]any{
		"instance": instanceProp,
		"skip_archive": map[string]any{"type": "boolean", "default": false,
			"description": "Delete without archiving the workspace first. Only when the workspace may be lost."},
	}, []string{"instance"})
	schemaEmpty    = schema(map[string]any{}, nil)
	schemaInstance = schema(map[string]any{"instance": instanceProp}, []string{"instance"})
	schemaLogs     = schema(map[string]any{
		"instance": instanceProp,
		"lines": map[string]any{
			"type": "integer", "minimum": fleet.MinLogLines, "maximum": fleet.MaxLogLines,
			"default": fleet.DefaultLogLines, "description": "How many of the newest log lines to return.",
		},
	}, []string{"instance"})
)

func schema(props map[string]any, required []string) json.RawMessage {
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		s["required"] = required
	}
	return canonical(s)
}
