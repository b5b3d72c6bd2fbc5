package agents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/agents/memory"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/governance/redact"
	"github.com/gatewayforge/clawops/skills"
	"github.com/gatewayforge/clawops/souls"
)

// TeamGate is what the team needs of the governance gate: the Commander's calls plus the
// catalog of registered tools, which becomes the tool definitions offered to the model.
// *governance.Gate implements it.
type TeamGate interface {
	Gate
	Tools() []governance.ToolSpec
}

// Redactor removes secrets from text before it is shown to a model or written to a
// transcript. *redact.Redactor implements it.
type Redactor interface {
	String(s string) string
}

// Observer is told about every tool call an agent makes and what became of it; evals and
// tests use it. It must not block.
type Observer func(CallRecord)

// CallRecord is one tool call of an agent run.
type CallRecord struct {
	// Seq numbers calls across the team in the order they started (a sessions_spawn
	// starts before the calls of the run it spawns, though it ends after them).
	Seq        uint64             `json:"seq"`
	RunID      string             `json:"run_id"`
	Agent      clawops.AgentRole  `json:"agent"`
	Session    string             `json:"session"`
	Tool       string             `json:"tool"`
	Args       string             `json:"args"`
	Decision   clawops.Decision   `json:"decision"`
	Reason     clawops.ReasonCode `json:"reason,omitempty"`
	ApprovalID string             `json:"approval_id,omitempty"`
	Message    string             `json:"message,omitempty"`
}

// TeamOptions configure a Team. Gate and DB are required; everything else has a default.
type TeamOptions struct {
	Gate TeamGate
	DB   *gorm.DB // migrated with Migrate
	// Model answers the agents. Nil runs the team without a model: the Commander takes
	// slash commands only, events are handled by code (the Guardian heals, the Briefer
	// alerts) and briefings come from templates.
	Model Model
	// Souls and Skills are the personas and skills; nil loads the shipped ones.
	Souls  *souls.Set
	Skills *skills.Set
	// Memory keeps MEMORY.md and the daily notes per agent; nil: no memory.
	Memory *memory.Store
	// Deliverer carries late replies, briefings and alerts to people; nil logs and drops
	// them. Briefings and alerts go through the gf_send_message tool (register
	// MessageTool(deliverer) on the gate).
	Deliverer Deliverer
	// Roles decides which tools each agent is offered (a tool whose action the role may
	// never do is not offered); the gate still decides every call. Nil: the gate's
	// defaults, governance.DefaultRoles().
	Roles governance.RoleTable
	// Peers says which agents each agent may spawn or message; nil: DefaultPeers().
	Peers map[clawops.AgentRole][]clawops.AgentRole
	// Routes is the event routing table; nil: DefaultRoutes().
	Routes []Route
	// Schedules are the cron triggers; nil: DefaultSchedules(). An empty, non-nil slice
	// schedules nothing.
	Schedules []Schedule
	Limits    Limits
	// Redactor cleans tool results, events and agent messages before a model sees
	// them; nil: redact.Default().
	Redactor Redactor
	// MaxConcurrentRuns bounds how many runs (operator, event, schedule, spawned) execute
	// at once across the team; 0 means 4. 1 makes the team's work strictly sequential,
	// which evals use to get a reproducible order.
	MaxConcurrentRuns int
	// QueueSize bounds the background work waiting for a run slot; 0 means 256.
	QueueSize int
	// AlertDedup suppresses a second alert for the same event type and subject within
	// this window; 0 means 10 minutes.
	AlertDedup time.Duration
	// Observer is told about every tool call.
	Observer Observer
	Clock    clawops.Clock
	// Sleep is the scheduler's wait (nil: a timer); tests advance a fake clock with it.
	Sleep  func(ctx context.Context, d time.Duration) error
	Logger *slog.Logger
}

// DefaultPeers is who may talk to whom: the Commander reaches every specialist; the
// specialists report to the Commander and may ask the Briefer to tell people; the Guardian
// may ask Triage for a diagnosis. Triage, read-only, can only answer the Commander, so it
// cannot have a writer act for it.
func DefaultPeers() map[clawops.AgentRole][]clawops.AgentRole {
	return map[clawops.AgentRole][]clawops.AgentRole{
		clawops.Commander: {clawops.Guardian, clawops.Ledger, clawops.Triage, clawops.Forge, clawops.Briefer},
		clawops.Guardian:  {clawops.Commander, clawops.Triage, clawops.Briefer},
		clawops.Ledger:    {clawops.Commander, clawops.Briefer},
		clawops.Triage:    {clawops.Commander},
		clawops.Forge:     {clawops.Commander, clawops.Briefer},
		clawops.Briefer:   {clawops.Commander},
	}
}

// Team is the six agents over one gate: their sessions, inbox and schedules. Build it with
// NewTeam, hand Commander() to the channels and the API, and Run it for background work
// (spawned tasks, events, schedules, follow-ups).
type Team struct {
	gate       TeamGate
	model      Model
	souls      *souls.Set
	skills     *skills.Set
	memory     *memory.Store
	deliverer  Deliverer
	roles      governance.RoleTable
	peers      map[clawops.AgentRole][]clawops.AgentRole
	routes     routeTable
	limits     Limits
	redactor   Redactor
	observer   Observer
	clock      clawops.Clock
	log        *slog.Logger
	history    *History
	transcript *transcript
	locks      *sessionLocks
	scheduler  *Scheduler
	commander  *Commander
	alertDedup time.Duration

	slots  chan struct{} // run slots (MaxConcurrentRuns)
	queue  chan job
	closed chan struct{} // closed when Run returns: spawned runs stop

	mu         sync.Mutex
	pending    int // jobs queued or running
	idle       []chan struct{}
	approvals  map[string]pendingApproval // approval id → who asked
	spawned    map[SessionKey]spawnParent // spawned session → who spawned it
	alerted    map[string]time.Time       // type|subject → last alert
	schedules  map[string]Schedule        // by name
	running    bool
	runSeq     uint64
	sessionSeq uint64
	callSeq    atomic.Uint64
}

// job is background work: one run, and what to do with its result.
type job struct {
	in   runInput
	done func(ctx context.Context, in runInput, res runResult)
}

// pendingApproval is the session whose run asked for an approval.
type pendingApproval struct {
	key SessionKey
}

type spawnParent struct {
	key   SessionKey
	actor clawops.Actor
	depth int
	from  clawops.AgentRole
}

// NewTeam builds the team. It loads the shipped personas and skills when none are given
// and checks the routes and schedules.
func NewTeam(opts TeamOptions) (*Team, error) {
	const op = "new team"
	if opts.Gate == nil {
		return nil, fmt.Errorf("%s: Gate is required", op)
	}
	if opts.DB == nil {
		return nil, fmt.Errorf("%s: DB is required", op)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Team{
		gate: opts.Gate, model: opts.Model, souls: opts.Souls, skills: opts.Skills, memory: opts.Memory,
		deliverer: opts.Deliverer, roles: opts.Roles, peers: opts.Peers, limits: opts.Limits.withDefaults(),
		redactor: opts.Redactor, observer: opts.Observer, clock: clawops.ClockOrSystem(opts.Clock),
		log: log.With("room", "agents"), locks: newSessionLocks(), alertDedup: opts.AlertDedup,
		approvals: map[string]pendingApproval{}, spawned: map[SessionKey]spawnParent{},
		alerted: map[string]time.Time{}, schedules: map[string]Schedule{},
	}
	var err error
	if t.souls == nil {
		if t.souls, err = souls.Load(souls.Options{Logger: log}); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	if t.skills == nil {
		if t.skills, err = skills.Load(skills.Options{Logger: log}); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	if t.roles == nil {
		t.roles = governance.DefaultRoles()
	}
	if t.peers == nil {
		t.peers = DefaultPeers()
	}
	for from, tos := range t.peers {
		for _, to := range append([]clawops.AgentRole{from}, tos...) {
			if !to.Valid() {
				return nil, fmt.Errorf("%s: peers: unknown agent %q", op, to)
			}
		}
	}
	routes := opts.Routes
	if routes == nil {
		routes = DefaultRoutes()
	}
	if t.routes, err = newRouteTable(routes); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if t.redactor == nil {
		t.redactor = redact.Default()
	}
	if t.alertDedup <= 0 {
		t.alertDedup = 10 * time.Minute
	}
	n := opts.MaxConcurrentRuns
	if n <= 0 {
		n = 4
	}
	q := opts.QueueSize
	if q <= 0 {
		q = 256
	}
	t.closed = make(chan struct{})
	t.slots = make(chan struct{}, n)
	t.queue = make(chan job, q)
	t.history = NewHistory(opts.DB, t.clock)
	t.transcript = &transcript{db: opts.DB, clock: t.clock}

	scheds := opts.Schedules
	if scheds == nil {
		scheds = DefaultSchedules()
	}
	for _, s := range scheds {
		t.schedules[s.Name] = s
	}
	t.scheduler, err = NewScheduler(SchedulerOptions{Schedules: scheds, Clock: t.clock, Sleep: opts.Sleep,
		Logger: t.log, Fire: func(ctx context.Context, f Firing) { t.fireSchedule(ctx, f) }})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	t.commander = &Commander{gate: opts.Gate, history: t.history, sessions: t.locks,
		log: t.log.With("agent", string(clawops.Commander)), team: t}
	return t, nil
}

// Commander returns the operator's entry point: slash commands as ever, and plain language
// through the Commander agent when a model is configured.
func (t *Team) Commander() *Commander { return t.commander }

// Scheduler returns the team's scheduler (to inspect next fire times).
func (t *Team) Scheduler() *Scheduler { return t.scheduler }

// HasModel reports whether the team runs on a model.
func (t *Team) HasModel() bool { return t.model != nil }

// Run executes background work and fires schedules until ctx ends, then waits for the
// runs in progress to finish (they see ctx cancelled).
func (t *Team) Run(ctx context.Context) error {
	t.mu.Lock()
	if t.running {
		t.mu.Unlock()
		return errors.New("team run: already running")
	}
	t.running = true
	t.mu.Unlock()
	var wg sync.WaitGroup
	for range cap(t.slots) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.worker(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = t.scheduler.Run(ctx)
	}()
	<-ctx.Done()
	close(t.closed)
	wg.Wait()
	return nil
}

func (t *Team) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-t.queue:
			res := t.runTop(ctx, j.in)
			if j.done != nil {
				j.done(ctx, j.in, res)
			}
			t.finish()
		}
	}
}

// runTop runs a top-level run in a run slot.
func (t *Team) runTop(ctx context.Context, in runInput) runResult {
	select {
	case t.slots <- struct{}{}:
	case <-ctx.Done():
		return runResult{stopped: ReasonRunCancelled, stopMsg: "the team is stopping"}
	}
	defer func() { <-t.slots }()
	return t.run(ctx, in)
}

// enqueue adds background work; it fails when the queue is full.
func (t *Team) enqueue(j job) error {
	t.mu.Lock()
	t.pending++
	t.mu.Unlock()
	select {
	case t.queue <- j:
		return nil
	default:
		t.finish()
		return clawops.E("agents enqueue", clawops.KindTransient, ReasonQueueFull,
			fmt.Sprintf("%d runs are waiting; try again later", cap(t.queue)))
	}
}

func (t *Team) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending--
	if t.pending == 0 {
		for _, c := range t.idle {
			close(c)
		}
		t.idle = nil
	}
}

// WaitIdle returns when no background work is queued or running, or when ctx ends.
func (t *Team) WaitIdle(ctx context.Context) error {
	for {
		t.mu.Lock()
		if t.pending == 0 {
			t.mu.Unlock()
			return nil
		}
		c := make(chan struct{})
		t.idle = append(t.idle, c)
		t.mu.Unlock()
		select {
		case <-c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// nextRunID returns a run id unique in this process and readable in logs.
func (t *Team) nextRunID() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.runSeq++
	return fmt.Sprintf("run-%s-%d", t.clock.Now().UTC().Format("20060102T150405"), t.runSeq)
}

// peerAllowed reports whether from may spawn or message to.
func (t *Team) peerAllowed(from, to clawops.AgentRole) bool {
	return slices.Contains(t.peers[from], to)
}

// deliver hands a notice to the deliverer, or logs that there is none.
func (t *Team) deliver(ctx context.Context, n Notice) {
	if t.deliverer == nil {
		t.log.Warn("no deliverer: notice dropped", "agent", n.Agent, "to", n.To, "kind", n.Kind)
		return
	}
	if err := t.deliverer.Deliver(ctx, n); err != nil {
		t.log.Warn("notice not delivered", "agent", n.Agent, "to", n.To, "kind", n.Kind, "err", err)
	}
}

// note appends to an agent's memory, if there is one.
func (t *Team) note(role clawops.AgentRole, text string) {
	if t.memory == nil {
		return
	}
	if err := t.memory.Append(role, t.redactor.String(text)); err != nil {
		t.log.Warn("memory note not written", "agent", role, "err", err)
	}
}

func (t *Team) observe(r CallRecord) {
	if t.observer != nil {
		t.observer(r)
	}
}

// acquireSlot takes a run slot for a run outside the workers (an operator's message).
func (t *Team) acquireSlot(ctx context.Context) (func(), error) {
	select {
	case t.slots <- struct{}{}:
		return func() { <-t.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// converse runs the Commander agent on an operator's message; Handle holds the session
// and records the message and the reply.
func (t *Team) converse(ctx context.Context, actor clawops.Actor, key SessionKey, text string) string {
	res := t.run(ctx, runInput{key: key, actor: actor, kind: kindOperator, text: strings.TrimSpace(text), locked: true})
	if res.err != nil {
		return fmt.Sprintf("Failed (%s): the request could not be completed", clawops.ReasonInternal)
	}
	return res.text()
}
