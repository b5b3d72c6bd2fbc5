package agents_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents"
	"github.com/gatewayforge/clawops/agents/eval"
	"github.com/gatewayforge/clawops/agents/llm"
	"github.com/gatewayforge/clawops/agents/memory"
	"github.com/gatewayforge/clawops/agents/scripted"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/store"
)

// clock is a settable clock for the team tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// recorder is the team's deliverer and observer.
type recorder struct {
	mu      sync.Mutex
	notices []agents.Notice
	calls   []agents.CallRecord
}

func (r *recorder) Deliver(_ context.Context, n agents.Notice) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notices = append(r.notices, n)
	return nil
}

func (r *recorder) observe(c agents.CallRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

func (r *recorder) takeNotices() []agents.Notice {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.notices
	r.notices = nil
	return n
}

func (r *recorder) takeCalls() []agents.CallRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// teamEnv is a team over the real gate on a SQLite file, the fixture fleet's tools, and
// (when a script is given) the scripted model over HTTP with the real client.
type teamEnv struct {
	t     *testing.T
	clock *clock
	db    *gorm.DB
	gate  *governance.Gate
	rec   *recorder
	team  *agents.Team
	mem   *memory.Store
	sh    *scripted.Handler
	dir   string
}

type envOptions struct {
	script  *scripted.Script
	handler func(h *scripted.Handler) http.Handler // wraps the scripted handler
	skip    []string                               // fixture tools not to register
	team    func(*agents.TeamOptions)
	llm     func(*llm.Options)
	noRun   bool
}

var (
	omar = clawops.Actor{Identity: "omar", Role: clawops.RoleOperator, Channel: "telegram"}
	// t0 is a Monday morning.
	start = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
)

func newTeamEnv(t *testing.T, o envOptions) *teamEnv {
	t.Helper()
	e := &teamEnv{t: t, clock: &clock{now: start}, rec: &recorder{}, dir: t.TempDir()}
	ctx := context.Background()
	var err error
	e.db, err = store.Open(ctx, store.Options{DataDir: e.dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(e.db) })
	if err := governance.Migrate(e.db); err != nil {
		t.Fatal(err)
	}
	if err := agents.Migrate(e.db); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fwd := &forward{}
	e.gate, err = governance.NewGate(governance.GateOptions{DB: e.db, Clock: e.clock, Logger: log, Notifier: fwd})
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range eval.NewFleet(map[string]string{
		"demo2-pri": "openclaw | started\nopenclaw | auth header Bearer sk-live-abcdefghijklmnopqrstuvwxyz123456 rejected\n",
	}).Tools() {
		if !contains(o.skip, tool.Spec().Name) {
			e.gate.Register(tool)
		}
	}
	e.gate.Register(agents.MessageTool(e.rec))
	e.mem, err = memory.New(filepath.Join(e.dir, "memory"), e.clock)
	if err != nil {
		t.Fatal(err)
	}
	opts := agents.TeamOptions{Gate: e.gate, DB: e.db, Memory: e.mem, Deliverer: e.rec, Observer: e.rec.observe,
		MaxConcurrentRuns: 2, Clock: e.clock, Logger: log,
		// The scheduler waits on this instead of a timer, so nothing fires on its own.
		Sleep: func(ctx context.Context, _ time.Duration) error { <-ctx.Done(); return ctx.Err() }}
	if o.script != nil || o.handler != nil {
		var h http.Handler
		sh := scripted.NewHandler(*o.script)
		h = sh
		if o.handler != nil {
			h = o.handler(sh)
		}
		e.sh = sh
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		lo := llm.Options{BaseURL: srv.URL + "/v1", Models: []string{"scripted-model"}, MaxRetries: -1}
		if o.llm != nil {
			o.llm(&lo)
		}
		client, err := llm.New(lo)
		if err != nil {
			t.Fatal(err)
		}
		opts.Model = client
	}
	if o.team != nil {
		o.team(&opts)
	}
	e.team, err = agents.NewTeam(opts)
	if err != nil {
		t.Fatal(err)
	}
	fwd.set(e.team)
	if !o.noRun {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := e.team.Run(ctx); err != nil {
				t.Errorf("team run: %v", err)
			}
		}()
		t.Cleanup(func() {
			cancel()
			<-done
		})
	}
	return e
}

// idle waits for the team's background work, with a deadline.
func (e *teamEnv) idle() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.team.WaitIdle(ctx); err != nil {
		e.t.Fatalf("team did not go idle: %v", err)
	}
}

// say sends an operator message and returns the one reply.
func (e *teamEnv) say(actor clawops.Actor, text string) string {
	e.t.Helper()
	replies, err := e.team.Commander().Handle(context.Background(), actor, text)
	if err != nil {
		e.t.Fatalf("Handle(%q): %v", text, err)
	}
	if len(replies) != 1 {
		e.t.Fatalf("Handle(%q): got %d replies, want 1", text, len(replies))
	}
	return replies[0]
}

// verify checks the script was followed to the end.
func (e *teamEnv) verify() {
	e.t.Helper()
	if e.sh == nil {
		return
	}
	if err := e.sh.Verify(); err != nil {
		e.t.Errorf("script: %v", err)
	}
}

type forward struct {
	mu   sync.Mutex
	team *agents.Team
}

func (f *forward) set(t *agents.Team) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.team = t
}

func (f *forward) ApprovalChanged(ctx context.Context, a governance.Approval) {
	f.mu.Lock()
	t := f.team
	f.mu.Unlock()
	if t != nil {
		t.ApprovalChanged(ctx, a)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func call(name string, args map[string]any) scripted.Call {
	return scripted.Call{Name: name, Args: args}
}

func toolStep(agent clawops.AgentRole, calls ...scripted.Call) scripted.Step {
	return scripted.Step{Agent: agent, ToolCalls: calls}
}

func replyStep(agent clawops.AgentRole, text string) scripted.Step {
	return scripted.Step{Agent: agent, Reply: text}
}

func toolNames(calls []agents.CallRecord) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.Tool
	}
	return out
}
