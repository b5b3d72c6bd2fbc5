package governance

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxArgsBytes bounds the size of a tool call's arguments.
const MaxArgsBytes = 1 << 20

// CanonicalArgs checks that raw is one JSON object and returns it re-encoded with sorted
// keys and no insignificant whitespace, so two spellings of the same arguments hash alike.
// Empty input is the empty object. Numbers keep their literal spelling. A duplicated key
// keeps its last value, and the tool only ever sees the canonical form, so the gate and the
// tool cannot read the same bytes differently.
func CanonicalArgs(raw json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage(`{}`), nil
	}
	if len(raw) > MaxArgsBytes {
		return nil, fmt.Errorf("arguments are %d bytes, more than %d", len(raw), MaxArgsBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("arguments are not valid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("arguments have data after the JSON object")
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, errors.New("arguments must be a JSON object")
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("re-encode arguments: %w", err)
	}
	return out, nil
}

// HashPlan returns the hex SHA-256 of p's canonical JSON: p with Hash and Forecast empty and
// Args in canonical form. Plans are deterministic, so the same call on the same state hashes alike.
func HashPlan(p Plan) (string, error) {
	args, err := CanonicalArgs(p.Args)
	if err != nil {
		return "", fmt.Errorf("hash plan: %w", err)
	}
	p.Args = args
	p.Hash = ""
	p.Forecast = nil
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("hash plan: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// sealPlan fills in the fields the gate owns (tool name, canonical args, hash).
func sealPlan(p Plan, tool string, requestArgs json.RawMessage) (Plan, error) {
	p.Tool = tool
	if len(bytes.TrimSpace(p.Args)) == 0 {
		p.Args = requestArgs
	}
	args, err := CanonicalArgs(p.Args)
	if err != nil {
		return Plan{}, fmt.Errorf("plan args: %w", err)
	}
	p.Args = args
	h, err := HashPlan(p)
	if err != nil {
		return Plan{}, err
	}
	p.Hash = h
	return p, nil
}

// targetString renders a plan's targets for an audit row: instance IDs joined by commas,
// or "-" when the plan touches no instance.
func targetString(p *Plan) string {
	if p == nil || len(p.Targets) == 0 {
		return "-"
	}
	ids := make([]string, len(p.Targets))
	for i, t := range p.Targets {
		ids[i] = string(t.Instance)
	}
	return strings.Join(ids, ",")
}
