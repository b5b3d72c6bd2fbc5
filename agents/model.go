package agents

import (
	"context"
	"time"

	"github.com/gatewayforge/clawops/agents/llm"
)

// Model is what an agent loop needs of a language model: one chat completion with tool
// calls. *llm.Client implements it.
type Model interface {
	Complete(ctx context.Context, req llm.Request) (llm.Response, error)
}

// contextChecker is the optional ability of a Model to say that a request is close to its
// context window (*llm.Client has it); the loop then compacts the history.
type contextChecker interface {
	CheckContext(req llm.Request) (llm.ContextWarning, bool)
}

var (
	_ Model          = (*llm.Client)(nil)
	_ contextChecker = (*llm.Client)(nil)
)

// Limits bound one run of an agent loop. A run that reaches a limit stops, and its reply
// says which limit stopped it.
type Limits struct {
	// MaxSteps is how many model completions one run may make.
	MaxSteps int
	// MaxDuration bounds a run's wall time, model calls and tool calls included.
	MaxDuration time.Duration
	// MaxCostUSD bounds what a run's completions may cost, from the model's price table.
	MaxCostUSD float64
	// MaxDenials stops a run after this many gate refusals: a model that keeps asking for
	// what it may not do is not going to get there by trying harder.
	MaxDenials int
	// MaxSpawns bounds sessions_spawn calls per run; MaxDepth bounds how deep agents may
	// delegate to each other (the operator's run is depth 0).
	MaxSpawns int
	MaxDepth  int
	// MaxPingPongTurns bounds the sessions_send exchanges of one run with one session.
	MaxPingPongTurns int
	// SpawnWait is how long sessions_spawn waits for the spawned run before it returns
	// "accepted" and leaves the result to be announced later.
	SpawnWait time.Duration
	// HistoryMessages is how many transcript messages of a session a run starts from.
	HistoryMessages int
	// MaxToolResultBytes cuts what one tool result puts in front of the model.
	MaxToolResultBytes int
	// MemoryBytes is the size budget of the memory section of the prompt.
	MemoryBytes int
	// MaxTokens bounds one completion (0: the endpoint decides).
	MaxTokens int
}

// DefaultLimits are the bounds used for every field of Limits left zero.
func DefaultLimits() Limits {
	return Limits{
		MaxSteps:           12,
		MaxDuration:        3 * time.Minute,
		MaxCostUSD:         0.50,
		MaxDenials:         3,
		MaxSpawns:          4,
		MaxDepth:           3,
		MaxPingPongTurns:   DefaultMaxPingPongTurns,
		SpawnWait:          30 * time.Second,
		HistoryMessages:    60,
		MaxToolResultBytes: 12 << 10,
		MemoryBytes:        6 << 10,
		MaxTokens:          1024,
	}
}

// DefaultMaxPingPongTurns is OpenClaw's default for session.agentToAgent.maxPingPongTurns.
const DefaultMaxPingPongTurns = 5

// withDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&l.MaxSteps, d.MaxSteps)
	set(&l.MaxDenials, d.MaxDenials)
	set(&l.MaxSpawns, d.MaxSpawns)
	set(&l.MaxDepth, d.MaxDepth)
	set(&l.MaxPingPongTurns, d.MaxPingPongTurns)
	set(&l.HistoryMessages, d.HistoryMessages)
	set(&l.MaxToolResultBytes, d.MaxToolResultBytes)
	set(&l.MemoryBytes, d.MemoryBytes)
	if l.MaxTokens < 0 {
		l.MaxTokens = 0
	} else if l.MaxTokens == 0 {
		l.MaxTokens = d.MaxTokens
	}
	if l.MaxDuration <= 0 {
		l.MaxDuration = d.MaxDuration
	}
	if l.SpawnWait <= 0 {
		l.SpawnWait = d.SpawnWait
	}
	if l.MaxCostUSD <= 0 {
		l.MaxCostUSD = d.MaxCostUSD
	}
	return l
}
