package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Command is one entry of the node's allowlist: a typed params decoder and a handler.
// Build one with Handle.
type Command struct {
	dec      func(paramsJSON []byte, opaque []string) (any, error)
	run      func(ctx context.Context, params any) (any, error)
	readOnly bool
	opaque   []string
}

// ReadOnly returns c marked as a command that changes nothing on the node. Only read-only
// commands run unsigned, and only when the node is configured to accept that from a stock
// OpenClaw gateway (Config.AllowUnsignedReadOnly).
func (c Command) ReadOnly() Command {
	c.readOnly = true
	return c
}

// decode checks and decodes params JSON (see Handle).
func (c Command) decode(paramsJSON []byte) (any, error) { return c.dec(paramsJSON, c.opaque) }

// Execute checks params exactly as a command from the gateway is checked (shell
// metacharacters, strict decoding, validation) and runs the command. It is the entry the
// SSH fallback uses, so both paths share one allowlist and one set of checks.
func (c Command) Execute(ctx context.Context, paramsJSON []byte) (any, error) {
	p, err := c.decode(paramsJSON)
	if err != nil {
		return nil, err
	}
	return c.run(ctx, p)
}

// IsReadOnly reports whether c was marked with ReadOnly.
func (c Command) IsReadOnly() bool { return c.readOnly }

// Opaque returns c with the named top-level params fields treated as data: they are
// decoded and validated like the rest, but strings inside them are not checked for shell
// metacharacters, because they are written to a file and never reach an argv (the
// OpenClaw config of config.apply holds prompts, URLs and patterns). The field names
// themselves are still checked.
func (c Command) Opaque(fields ...string) Command {
	c.opaque = append(slices.Clone(c.opaque), fields...)
	return c
}

// Validator is implemented by params types that check their own values after decoding.
type Validator interface {
	Validate() error
}

// Handle builds a Command from a handler taking typed params P. Before fn runs, the params
// JSON must be an object (absent means {}), no string in it (key or value) may contain a
// shell metacharacter (SHELL_METACHARACTER), it must decode strictly into P with no unknown
// fields, and P.Validate, when P has one, must pass (both INVALID_PARAMS).
func Handle[P any](fn func(ctx context.Context, p P) (any, error)) Command {
	return Command{
		dec: func(paramsJSON []byte, opaque []string) (any, error) {
			var p P
			if err := decodeParams(paramsJSON, &p, opaque); err != nil {
				return nil, err
			}
			return p, nil
		},
		run: func(ctx context.Context, params any) (any, error) { return fn(ctx, params.(P)) },
	}
}

const paramsOp = "decode command params"

func decodeParams(paramsJSON []byte, into any, opaque []string) error {
	paramsJSON = bytes.TrimSpace(paramsJSON)
	if len(paramsJSON) == 0 || string(paramsJSON) == "null" {
		paramsJSON = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(paramsJSON))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return clawops.E(paramsOp, clawops.KindInvalid, clawops.ReasonBadParams, "params are not valid JSON")
	}
	obj, ok := generic.(map[string]any)
	if !ok {
		return clawops.E(paramsOp, clawops.KindInvalid, clawops.ReasonBadParams, "params must be a JSON object")
	}
	checked := make(map[string]any, len(obj))
	for k, v := range obj {
		if slices.Contains(opaque, k) {
			v = nil // data, not arguments: see Command.Opaque
		}
		checked[k] = v
	}
	if s, bad := findMetachar(checked); bad {
		return clawops.E(paramsOp, clawops.KindInvalid, clawops.ReasonShellMetachar,
			fmt.Sprintf("params string %q contains a shell metacharacter", clipString(s, 40)))
	}
	if err := proto.UnmarshalStrict(paramsJSON, into); err != nil {
		return clawops.E(paramsOp, clawops.KindInvalid, clawops.ReasonBadParams, strings.TrimPrefix(err.Error(), "decode: "))
	}
	if v, ok := into.(Validator); ok {
		if err := v.Validate(); err != nil {
			return clawops.E(paramsOp, clawops.KindInvalid, clawops.ReasonBadParams, err)
		}
	}
	return nil
}

// ShellMetacharacters are refused in every string of every command's params, even though
// no command runs a shell: a string that needs one of them has no business reaching a node.
const ShellMetacharacters = proto.ShellMetacharacters

// findMetachar walks a decoded JSON value and returns the first string (key or value)
// containing a shell metacharacter.
func findMetachar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		if strings.ContainsAny(x, ShellMetacharacters) {
			return x, true
		}
	case map[string]any:
		for k, e := range x {
			if strings.ContainsAny(k, ShellMetacharacters) {
				return k, true
			}
			if s, bad := findMetachar(e); bad {
				return s, true
			}
		}
	case []any:
		for _, e := range x {
			if s, bad := findMetachar(e); bad {
				return s, true
			}
		}
	}
	return "", false
}

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Allowlist is the explicit table of commands a node will run. What is not in it cannot
// run. Register panics on a duplicate name, so two handlers can never claim one command.
type Allowlist struct {
	cmds map[string]Command
}

// NewAllowlist returns an empty allowlist.
func NewAllowlist() *Allowlist { return &Allowlist{cmds: make(map[string]Command)} }

// Register adds a command. It panics if name is empty, malformed or already registered.
func (a *Allowlist) Register(name string, c Command) {
	if name == "" || len(name) > proto.MaxIDLen || strings.ContainsAny(name, "| \t\n") {
		panic(fmt.Sprintf("clawnode: invalid command name %q", name))
	}
	if c.dec == nil || c.run == nil {
		panic(fmt.Sprintf("clawnode: command %q has no handler: build it with Handle", name))
	}
	if _, dup := a.cmds[name]; dup {
		panic(fmt.Sprintf("clawnode: command %q registered twice", name))
	}
	a.cmds[name] = c
}

// Lookup returns the command registered under name.
func (a *Allowlist) Lookup(name string) (Command, bool) {
	c, ok := a.cmds[name]
	return c, ok
}

// Names lists the registered commands, sorted. A node declares them in connect.commands.
func (a *Allowlist) Names() []string {
	out := make([]string, 0, len(a.cmds))
	for n := range a.cmds {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
