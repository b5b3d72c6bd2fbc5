// Package eval plays dialogues (agents/scripted's YAML format) against the agent team:
// real sessions, the real governance gate on SQLite, and a model — the scripted server
// in tests, a real endpoint for `clawops eval`. Each turn's trigger (an operator message,
// a schedule, a fleet event, an approver's decision) is fed to the team, the team runs
// until idle, and what was observed (tool calls, the gate's decisions, what the operator
// received) is checked against the turn's expectations.
//
// Fleet tools the caller does not supply come from the fixture fleet (see Fleet); the
// gate decides on their plans exactly as on the real tools'.
package eval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents"
	"github.com/gatewayforge/clawops/agents/memory"
	"github.com/gatewayforge/clawops/agents/scripted"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/store"
)

// Options configure Run.
type Options struct {
	// Model answers the agents. Required.
	Model agents.Model
	// Dir holds the dialogue's SQLite database and memory folders. Required; use a fresh
	// folder per dialogue.
	Dir string
	// Tools are registered on the gate before the fixture's; a fixture tool of the same
	// name is then left out. Use it to run dialogues over real tools.
	Tools []governance.Tool
	// Operator sends the operator turns; Approver decides approvals. Defaults:
	// omar (operator) and bob (approver) on channel "eval".
	Operator clawops.Actor
	Approver clawops.Actor
	// Limits bound each run (zero fields take the team's defaults).
	Limits agents.Limits
	// TurnTimeout bounds one turn, waiting for background runs included; 0 means 5 minutes.
	TurnTimeout time.Duration
	Clock       clawops.Clock
	Logger      *slog.Logger
}

// Result is the outcome of one dialogue.
type Result struct {
	Dialogue string
	Turns    []TurnResult
	// Err is set when the dialogue could not be played at all (setup failed).
	Err error
}

// TurnResult is the outcome of one turn.
type TurnResult struct {
	Index       int
	Trigger     string
	Observation scripted.Observation
	// Err lists every expectation the turn missed; nil when it passed.
	Err error
}

// Passed counts the turns that met their expectations.
func (r Result) Passed() int {
	n := 0
	for _, t := range r.Turns {
		if t.Err == nil {
			n++
		}
	}
	return n
}

// Score is the share of turns that passed, 0 when the dialogue could not run.
func (r Result) Score() float64 {
	if r.Err != nil || len(r.Turns) == 0 {
		return 0
	}
	return float64(r.Passed()) / float64(len(r.Turns))
}

// OK reports whether every turn passed.
func (r Result) OK() bool { return r.Err == nil && len(r.Turns) > 0 && r.Passed() == len(r.Turns) }

// recorder collects what the operators received and the calls the agents made.
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

// take returns and clears what was recorded, calls in the order they started.
func (r *recorder) take() ([]agents.Notice, []agents.CallRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, c := r.notices, r.calls
	r.notices, r.calls = nil, nil
	slices.SortStableFunc(c, func(a, b agents.CallRecord) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return n, c
}

// notifier forwards approval changes to the team once it exists.
type notifier struct {
	mu   sync.Mutex
	team *agents.Team
}

func (n *notifier) ApprovalChanged(ctx context.Context, a governance.Approval) {
	n.mu.Lock()
	t := n.team
	n.mu.Unlock()
	if t != nil {
		t.ApprovalChanged(ctx, a)
	}
}

// Run plays d and checks every turn. It returns an error only for a dialogue that cannot
// be played (bad options, setup failure); missed expectations are in the Result.
func Run(ctx context.Context, d scripted.Dialogue, opts Options) (Result, error) {
	res := Result{Dialogue: d.Name}
	if opts.Model == nil {
		return res, errors.New("eval: Model is required")
	}
	if opts.Dir == "" {
		return res, errors.New("eval: Dir is required")
	}
	if opts.Operator.Identity == "" {
		opts.Operator = clawops.Actor{Identity: "omar", Role: clawops.RoleOperator, Channel: "eval"}
	}
	if opts.Approver.Identity == "" {
		opts.Approver = clawops.Actor{Identity: "bob", Role: clawops.RoleApprover, Channel: "eval"}
	}
	if opts.TurnTimeout <= 0 {
		opts.TurnTimeout = 5 * time.Minute
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clock := clawops.ClockOrSystem(opts.Clock)

	db, err := store.Open(ctx, store.Options{DataDir: opts.Dir})
	if err != nil {
		return res, fmt.Errorf("eval %s: %w", d.Name, err)
	}
	defer store.Close(db)
	if err := governance.Migrate(db); err != nil {
		return res, fmt.Errorf("eval %s: %w", d.Name, err)
	}
	if err := agents.Migrate(db); err != nil {
		return res, fmt.Errorf("eval %s: %w", d.Name, err)
	}
	rec := &recorder{}
	fwd := &notifier{}
	gate, err := governance.NewGate(governance.GateOptions{DB: db, Clock: clock, Logger: log.With("room", "gate"), Notifier: fwd})
	if err != nil {
		return res, fmt.Errorf("eval %s: %w", d.Name, err)
	}
	have := map[string]bool{}
	for _, tool := range opts.Tools {
		gate.Register(tool)
		have[tool.Spec().Name] = true
	}
	for _, tool := range NewFleet(d.Fixtures.InstanceLogs).Tools() {
		if !have[tool.Spec().Name] {
			gate.Register(tool)
		}
	}
	gate.Register(agents.MessageTool(rec))
	mem, err := memory.New(filepath.Join(opts.Dir, "memory"), clock)
	if err != nil {
		return res, fmt.Errorf("eval %s: %w", d.Name, err)
	}
	team, err := agents.NewTeam(agents.TeamOptions{Gate: gate, DB: db, Model: opts.Model, Memory: mem,
		Deliverer: rec, Observer: rec.observe, Limits: opts.Limits, MaxConcurrentRuns: 1,
		Clock: clock, Logger: log})
	if err != nil {
		return res, fmt.Errorf("eval %s: %w", d.Name, err)
	}
	fwd.mu.Lock()
	fwd.team = team
	fwd.mu.Unlock()

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = team.Run(runCtx)
	}()
	defer func() {
		stop()
		<-done
	}()

	for i, turn := range d.Turns {
		tr := TurnResult{Index: i + 1, Trigger: turn.Trigger()}
		tctx, cancel := context.WithTimeout(ctx, opts.TurnTimeout)
		obs, err := play(tctx, team, gate, d, turn, opts)
		if err == nil {
			err = team.WaitIdle(tctx)
		}
		cancel()
		notices, calls := rec.take()
		for _, n := range notices {
			obs.Replies = append(obs.Replies, n.Text)
		}
		for _, c := range calls {
			obs.Calls = append(obs.Calls, scripted.ObservedCall{Agent: c.Agent, Tool: c.Tool, Decision: c.Decision, Reason: c.Reason})
		}
		if turn.Trigger() == "approve" || turn.Trigger() == "deny" {
			// The decision is the turn's observation; what the approval ran is not an agent call.
			obs.Calls = obs.decisions
		}
		tr.Observation = obs.Observation
		if err != nil {
			tr.Err = fmt.Errorf("turn %d (line %d): %w", i+1, turn.Line, err)
		} else if cerr := turn.Expect.Check(obs.Observation); cerr != nil {
			tr.Err = fmt.Errorf("turn %d (line %d): %w", i+1, turn.Line, cerr)
		}
		res.Turns = append(res.Turns, tr)
	}
	return res, nil
}

// observation is what play saw directly: replies, and approval decisions.
type observation struct {
	scripted.Observation
	decisions []scripted.ObservedCall
}

// play feeds one turn's trigger to the team.
func play(ctx context.Context, team *agents.Team, gate *governance.Gate, d scripted.Dialogue, turn scripted.Turn, opts Options) (observation, error) {
	var obs observation
	switch turn.Trigger() {
	case "operator":
		actor := opts.Operator
		replies, err := team.Commander().Handle(ctx, actor, turn.Operator)
		if err != nil {
			return obs, fmt.Errorf("operator message: %w", err)
		}
		obs.Replies = append(obs.Replies, replies...)
	case "cron":
		name, ok := team.ScheduleOf(turn.Cron)
		if !ok {
			return obs, fmt.Errorf("agent %s has no schedule", turn.Cron)
		}
		if err := team.Trigger(ctx, name); err != nil {
			return obs, err
		}
	case "event":
		e := agents.Event{Type: turn.Event.Type, Subject: turn.Event.Instance, Summary: turn.Event.Detail,
			Severity: agents.SeverityWarning}
		var err error
		if turn.Event.To != "" {
			err = team.EventTo(ctx, turn.Event.To, e)
		} else {
			err = team.Event(ctx, e)
		}
		if err != nil {
			return obs, err
		}
	case "approve", "deny":
		which, approve := turn.Approve, true
		if turn.Trigger() == "deny" {
			which, approve = turn.Deny, false
		}
		ids, err := pick(ctx, gate, which)
		if err != nil {
			return obs, err
		}
		for _, id := range ids {
			out, err := gate.Decide(ctx, opts.Approver, id, approve, "eval "+d.Name)
			if err != nil && clawops.ReasonOf(err) == "" {
				return obs, fmt.Errorf("decide %s: %w", id, err)
			}
			obs.decisions = append(obs.decisions, scripted.ObservedCall{Tool: out.Tool, Decision: out.Decision, Reason: out.Reason})
		}
	default:
		return obs, errors.New("turn has no trigger")
	}
	return obs, nil
}

// pick resolves "last", "all" or an approval id to pending approvals.
func pick(ctx context.Context, gate *governance.Gate, which string) ([]string, error) {
	pending, err := gate.ListApprovals(ctx, governance.ApprovalPending)
	if err != nil {
		return nil, err
	}
	switch strings.TrimSpace(which) {
	case "last":
		if len(pending) == 0 {
			return nil, errors.New("approve last: no pending approval")
		}
		return []string{pending[0].ID}, nil // newest first
	case "all":
		ids := make([]string, len(pending))
		for i, a := range pending {
			ids[i] = a.ID
		}
		return ids, nil
	}
	return []string{which}, nil
}
