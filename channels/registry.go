package channels

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

// Env is what a factory gets from the gateway to build its adapter.
type Env struct {
	Logger *slog.Logger
	Clock  clawops.Clock
	// Deliver is where the adapter hands inbound messages (usually Dispatcher.Deliver).
	Deliver func(ctx context.Context, in Inbound) error

	// Resolver turns the presser of an approval button into a ClawOps identity (usually the
	// same Directory the Dispatcher uses). Decider decides approvals (the *governance.Gate).
	// Auditor records presses and messages from senders not in allowFrom (the gate's audit
	// log). Adapters that show approval cards need the first two; without them a press is
	// answered with NOT_IMPLEMENTED.
	Resolver Resolver
	Decider  Decider
	Auditor  Auditor
	// LookupEnv reads the environment for SecretRef settings; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// SQL and SQLDialect ("sqlite" or "postgres") are the project database, for adapters that
	// keep state there (the WhatsApp session store).
	SQL        *sql.DB
	SQLDialect string
	// DB is the same database through gorm, for the channels room's own tables (posted
	// approval cards, see Migrate). Nil keeps posted cards in memory only: after a restart
	// an update posts a fresh card.
	DB *gorm.DB
}

// Approvals builds the approval-press handler from the environment's Resolver, Decider and
// Auditor.
func (e Env) Approvals() *Approvals {
	return NewApprovals(ApprovalsOptions{Resolver: e.Resolver, Decider: e.Decider, Auditor: e.Auditor,
		Clock: e.Clock, Logger: e.Logger})
}

// Factory builds one adapter from its settings (a JSON object, possibly empty).
type Factory func(env Env, settings json.RawMessage) (Channel, error)

// Spec says which adapter to build: Type is a registered name such as "channels.web".
type Spec struct {
	Type     string          `json:"type"`
	Settings json.RawMessage `json:"settings,omitempty"`
}

// Registry maps namespaced adapter names ("channels.telegram") to their factories. Config
// decides which are built; main registers the factories it links in.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{factories: map[string]Factory{}} }

// Register adds a factory. It panics on an empty or un-namespaced name, a nil factory or a
// duplicate name: those are programming errors found at start-up.
func (r *Registry) Register(name string, f Factory) {
	if !strings.HasPrefix(name, "channels.") || len(name) == len("channels.") {
		panic(fmt.Sprintf("channels: adapter name %q must look like channels.<adapter>", name))
	}
	if f == nil {
		panic(fmt.Sprintf("channels: nil factory for %s", name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.factories[name]; dup {
		panic(fmt.Sprintf("channels: adapter %s registered twice", name))
	}
	r.factories[name] = f
}

// Types lists the registered names, sorted.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.factories))
	for n := range r.factories {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Build builds one adapter per spec, in order. An unknown type, a factory error or two
// adapters with the same Name() is an error naming the spec.
func (r *Registry) Build(env Env, specs []Spec) ([]Channel, error) {
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	env.Clock = clawops.ClockOrSystem(env.Clock)
	var out []Channel
	seen := map[string]bool{}
	for i, s := range specs {
		r.mu.RLock()
		f := r.factories[s.Type]
		r.mu.RUnlock()
		if f == nil {
			return nil, fmt.Errorf("channels[%d]: unknown type %q (known: %s)", i, s.Type, strings.Join(r.Types(), ", "))
		}
		sub := env
		sub.Logger = env.Logger.With("channel", s.Type)
		ch, err := f(sub, s.Settings)
		if err != nil {
			return nil, fmt.Errorf("channels[%d] %s: %w", i, s.Type, err)
		}
		if seen[ch.Name()] {
			return nil, fmt.Errorf("channels[%d] %s: a channel named %q is already configured", i, s.Type, ch.Name())
		}
		seen[ch.Name()] = true
		out = append(out, ch)
	}
	return out, nil
}

// DecodeSettings decodes an adapter's settings into v strictly: unknown fields and trailing
// data are errors. Empty settings leave v unchanged.
func DecodeSettings(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("settings: unexpected data after the object")
	}
	return nil
}
