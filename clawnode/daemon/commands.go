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
	decode func(paramsJSON []byte) (any, error)
	run    func(ctx context.Context, params any) (any, error)
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
		decode: func(paramsJSON []byte) (any, error) {
			var p P
			if err := decodeParams(paramsJSON, &p); err != nil {
				return nil, err
			}
			return p, nil
		},
		run: func(ctx context.Context, params any) (any, error) { return fn(ctx, params.(P)) },
	}
}

const paramsOp = "decode command params"

func decodeParams(paramsJSON []byte, into any) error {
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
	if _, ok := generic.(map[string]any); !ok {
		return clawops.E(paramsOp, clawops.KindInvalid, clawops.ReasonBadParams, "params must be a JSON object")
	}
	if s, bad := findMetachar(generic); bad {
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
const ShellMetacharacters = ";|&$<>`'\"\\\n\r\x00(){}[]*?~!#"

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
	if c.decode == nil || c.run == nil {
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

// Names of the standard commands.
const (
	CmdHealth  = "openclaw.health"
	CmdRestart = "openclaw.restart"
	CmdLogs    = "openclaw.logs"
	CmdMetrics = "vps.metrics"
)

// NoParams is the params type of commands that take none: only {} is accepted.
type NoParams struct{}

// LogsParams are the params of openclaw.logs.
type LogsParams struct {
	Tail *int `json:"tail,omitempty"` // lines, 1..5000, default 200
}

// Validate checks the tail range.
func (p LogsParams) Validate() error {
	if p.Tail != nil && (*p.Tail < 1 || *p.Tail > 5000) {
		return fmt.Errorf("tail %d: must be between 1 and 5000", *p.Tail)
	}
	return nil
}

// LogsResult is the result of openclaw.logs.
type LogsResult struct {
	Lines []string `json:"lines"`
}

// RestartResult is the result of openclaw.restart.
type RestartResult struct {
	Restarted bool   `json:"restarted"`
	Container string `json:"container"`
}

// StandardCommands is gf-clawnode's allowlist: openclaw.health, openclaw.restart,
// openclaw.logs and vps.metrics.
func StandardCommands(rt Runtime, health *HealthChecker, metrics *Sampler) *Allowlist {
	a := NewAllowlist()
	a.Register(CmdHealth, Handle(func(ctx context.Context, _ NoParams) (any, error) {
		return health.Check(ctx), nil
	}))
	a.Register(CmdMetrics, Handle(func(ctx context.Context, _ NoParams) (any, error) {
		return metrics.Sample(ctx)
	}))
	a.Register(CmdRestart, Handle(func(ctx context.Context, _ NoParams) (any, error) {
		if err := rt.Restart(ctx); err != nil {
			return nil, err
		}
		st, _ := rt.Status(ctx)
		return RestartResult{Restarted: true, Container: st}, nil
	}))
	a.Register(CmdLogs, Handle(func(ctx context.Context, p LogsParams) (any, error) {
		tail := 200
		if p.Tail != nil {
			tail = *p.Tail
		}
		lines, err := rt.Logs(ctx, tail)
		if err != nil {
			return nil, err
		}
		if lines == nil {
			lines = []string{}
		}
		return LogsResult{Lines: lines}, nil
	}))
	return a
}
