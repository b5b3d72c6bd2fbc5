package governance

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

// DefaultApprovalTTL is how long an approval waits for a decision unless GateOptions says.
const DefaultApprovalTTL = 30 * time.Minute

// GateOptions configure a Gate.
type GateOptions struct {
	DB          *gorm.DB      // required; call Migrate on it first
	Clock       clawops.Clock // nil: the system clock
	Logger      *slog.Logger  // nil: discard
	ApprovalTTL time.Duration // 0: DefaultApprovalTTL
	Notifier    Notifier      // optional: told when an approval is created or changes
	Roles       RoleTable     // nil: DefaultRoles()
	Rand        io.Reader     // source of approval IDs; nil: crypto/rand
	Audit       *AuditLog     // nil: NewAuditLog(DB, Clock)
}

// Gate is the single door every tool call passes: permission, plan, invariants, decision,
// audit, then apply. It is safe for concurrent use.
type Gate struct {
	db       *gorm.DB
	clock    clawops.Clock
	log      *slog.Logger
	ttl      time.Duration
	notifier Notifier
	roles    RoleTable
	rand     io.Reader
	audit    *AuditLog

	mu    sync.RWMutex
	tools map[string]Tool
}

// NewGate returns a gate over opts.DB. It does not create tables: call Migrate first.
func NewGate(opts GateOptions) (*Gate, error) {
	if opts.DB == nil {
		return nil, errors.New("new gate: DB is required")
	}
	if opts.ApprovalTTL < 0 {
		return nil, fmt.Errorf("new gate: approval TTL %s is negative", opts.ApprovalTTL)
	}
	g := &Gate{
		db:       opts.DB,
		clock:    clawops.ClockOrSystem(opts.Clock),
		log:      opts.Logger,
		ttl:      opts.ApprovalTTL,
		notifier: opts.Notifier,
		roles:    opts.Roles.Clone(),
		rand:     opts.Rand,
		audit:    opts.Audit,
		tools:    make(map[string]Tool),
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.ttl == 0 {
		g.ttl = DefaultApprovalTTL
	}
	if opts.Roles == nil {
		g.roles = DefaultRoles()
	}
	if g.rand == nil {
		g.rand = rand.Reader
	}
	if g.audit == nil {
		g.audit = NewAuditLog(opts.DB, g.clock)
	}
	return g, nil
}

// Audit returns the gate's audit log.
func (g *Gate) Audit() *AuditLog { return g.audit }

var toolNameRE = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)

// Register adds a tool. A duplicate name or an invalid spec (bad name, unknown action or
// risk class) is a wiring mistake and panics, as http.ServeMux does.
func (g *Gate) Register(t Tool) {
	spec := t.Spec()
	if !toolNameRE.MatchString(spec.Name) {
		panic(fmt.Sprintf("governance: tool name %q must match %s", spec.Name, toolNameRE))
	}
	if !validAction(spec.Action) {
		panic(fmt.Sprintf("governance: tool %q has unknown action %q", spec.Name, spec.Action))
	}
	switch spec.Risk {
	case clawops.RiskLow, clawops.RiskMedium, clawops.RiskHigh, clawops.RiskCritical:
	default:
		panic(fmt.Sprintf("governance: tool %q has unknown risk class %q", spec.Name, spec.Risk))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, dup := g.tools[spec.Name]; dup {
		panic(fmt.Sprintf("governance: tool %q registered twice", spec.Name))
	}
	g.tools[spec.Name] = t
}

// Tools returns the specs of every registered tool, sorted by name.
func (g *Gate) Tools() []ToolSpec {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make([]ToolSpec, 0, len(g.tools))
	for _, t := range g.tools {
		out = append(out, t.Spec())
	}
	slices.SortFunc(out, func(a, b ToolSpec) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (g *Gate) tool(name string) (Tool, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	t, ok := g.tools[name]
	return t, ok
}

// call carries one tool call through Invoke.
type call struct {
	actor clawops.Actor
	name  string
	spec  ToolSpec
	plan  *Plan
}

func (c *call) entry(event string, d clawops.Decision, r clawops.ReasonCode, detail string) AuditEntry {
	e := AuditEntry{Actor: c.actor.String(), Tool: c.name, Target: targetString(c.plan),
		Event: event, Decision: d, Reason: r, Detail: detail}
	if c.plan != nil {
		e.PlanHash = c.plan.Hash
	}
	return e
}

// Invoke runs one tool call through the gate:
//
//  1. the tool must exist (UNKNOWN_TOOL) and the arguments be one JSON object (BAD_ARGUMENTS);
//  2. the actor's roles must permit the action at all (ROLE_NOT_PERMITTED): the autonomy
//     table for the actor's agent, a human with no agent counting as the Commander, and the
//     human's own role (viewers and approvers only read);
//  3. the tool plans the call (a dry run); the plan is sealed with its hash;
//  4. invariants may deny it outright (STANDBY_NOT_ACTIVE, ROLLING_REQUIRED);
//  5. it needs approval when the role table says so, when it affects more than
//     MaxUsersWithoutApproval users (TOO_MANY_USERS), when Forge's provisioning exceeds its
//     limit, or when the tool's risk class is high or critical, whatever the role;
//  6. otherwise it is allowed and applied.
//
// The audit log gets "requested" before anything else happens, then the decision, then
// "completed" or "failed". If the audit log cannot be written, nothing runs.
func (g *Gate) Invoke(ctx context.Context, actor clawops.Actor, toolName string, args json.RawMessage) (Outcome, error) {
	c := &call{actor: actor, name: cleanText(toolName, 64)}
	tool, ok := g.tool(toolName)
	if !ok {
		return g.refuse(ctx, c, clawops.KindNotFound, clawops.ReasonUnknownTool,
			fmt.Sprintf("no tool named %q", c.name))
	}
	c.spec = tool.Spec()
	canon, err := CanonicalArgs(args)
	if err != nil {
		return g.refuse(ctx, c, clawops.KindInvalid, clawops.ReasonBadArguments, err.Error())
	}
	rule, err := g.roles.permit(actor, c.spec.Action)
	if err != nil {
		return g.refuse(ctx, c, clawops.KindOf(err), clawops.ReasonOf(err), innerMessage(err))
	}
	plan, err := tool.Plan(ctx, actor, canon)
	if err != nil {
		kind, reason := clawops.KindOf(err), clawops.ReasonOf(err)
		if reason == "" {
			kind, reason = clawops.KindOther, clawops.ReasonInternal
		}
		return g.refuse(ctx, c, kind, reason, "plan: "+err.Error())
	}
	plan, err = sealPlan(plan, c.spec.Name, canon)
	if err != nil {
		return g.refuse(ctx, c, clawops.KindOther, clawops.ReasonInternal, err.Error())
	}
	c.plan = &plan
	if v := checkInvariants(c.spec, plan); v != nil {
		return g.refuse(ctx, c, clawops.KindDenied, v.reason, v.msg)
	}
	if reason, why := g.needsApproval(c, rule); reason != "" {
		return g.requestApproval(ctx, c, reason, why)
	}

	rq, err := g.audit.Append(ctx, c.entry(EventRequested, "", "", plan.Summary))
	if err != nil {
		return g.auditFailed(c, err)
	}
	if _, err := g.audit.Append(ctx, c.entry(EventAllowed, clawops.Allow, clawops.ReasonRolePermits, "")); err != nil {
		return g.auditFailed(c, err)
	}
	out := Outcome{Decision: clawops.Allow, Reason: clawops.ReasonRolePermits, Tool: c.name,
		Risk: c.spec.Risk, Plan: c.plan}
	return g.execute(ctx, c, tool, rq, out)
}

// needsApproval returns why c needs a human, or "" when it may run alone.
func (g *Gate) needsApproval(c *call, rule Rule) (clawops.ReasonCode, string) {
	p := c.plan
	switch {
	case p.UsersAffected > MaxUsersWithoutApproval:
		return clawops.ReasonTooManyUsers, fmt.Sprintf("affects %d users (more than %d)",
			p.UsersAffected, MaxUsersWithoutApproval)
	case rule.Mode == WithApproval:
		return clawops.ReasonApprovalRequired, fmt.Sprintf("%s needs approval to %s",
			effectiveAgent(c.actor), c.spec.Action)
	case rule.MaxTargets > 0 && len(p.Targets) > rule.MaxTargets:
		return clawops.ReasonApprovalRequired, fmt.Sprintf("%s may %s at most %d instances alone; plan has %d",
			effectiveAgent(c.actor), c.spec.Action, rule.MaxTargets, len(p.Targets))
	case c.spec.Risk == clawops.RiskHigh || c.spec.Risk == clawops.RiskCritical:
		return clawops.ReasonApprovalRequired, fmt.Sprintf("%s risk always needs approval", c.spec.Risk)
	}
	return "", ""
}

// refuse audits a denied call ("requested", then "denied") and returns the deny outcome.
func (g *Gate) refuse(ctx context.Context, c *call, kind clawops.Kind, reason clawops.ReasonCode, msg string) (Outcome, error) {
	out := Outcome{Decision: clawops.Deny, Reason: reason, Message: msg, Tool: c.name, Risk: c.spec.Risk, Plan: c.plan}
	g.log.InfoContext(ctx, "tool call denied", "actor", c.actor.String(), "tool", c.name, "reason", reason)
	summary := ""
	if c.plan != nil {
		summary = c.plan.Summary
	}
	if _, err := g.audit.Append(ctx, c.entry(EventRequested, "", "", summary)); err != nil {
		g.log.ErrorContext(ctx, "audit denied call", "tool", c.name, "err", err)
	} else if _, err := g.audit.Append(ctx, c.entry(EventDenied, clawops.Deny, reason, msg)); err != nil {
		g.log.ErrorContext(ctx, "audit denied call", "tool", c.name, "err", err)
	}
	return out, clawops.E("governance.Invoke "+c.name, kind, reason, msg)
}

// auditFailed is the answer when the audit log cannot be written: nothing runs.
func (g *Gate) auditFailed(c *call, err error) (Outcome, error) {
	g.log.Error("audit log unavailable; refusing tool call", "tool", c.name, "err", err)
	out := Outcome{Decision: clawops.Deny, Reason: clawops.ReasonInternal, Message: "audit log unavailable",
		Tool: c.name, Risk: c.spec.Risk, Plan: c.plan}
	return out, clawops.E("governance.Invoke "+c.name, clawops.KindOther, clawops.ReasonInternal,
		fmt.Errorf("%w: %w", errAuditUnavailable, err))
}

// execute applies c.plan. rq must be the "requested" entry already in the audit log for
// this very plan: this is the only place a tool's Apply is called, so no side effect (a
// provider delete above all) can happen before its audit entry exists.
func (g *Gate) execute(ctx context.Context, c *call, tool Tool, rq AuditEntry, out Outcome) (Outcome, error) {
	if rq.Seq < 1 || rq.Event != EventRequested || rq.PlanHash == "" || rq.PlanHash != c.plan.Hash {
		return g.auditFailed(c, errors.New("no requested entry for this plan"))
	}
	res, err := tool.Apply(ctx, *c.plan)
	if err != nil {
		kind, reason := clawops.KindOf(err), clawops.ReasonOf(err)
		if reason == "" {
			reason = clawops.ReasonExecutionFailed
		}
		out.Reason, out.Message = reason, err.Error()
		if _, aerr := g.audit.Append(ctx, c.entry(EventFailed, out.Decision, reason, err.Error())); aerr != nil {
			g.log.ErrorContext(ctx, "audit failed call", "tool", c.name, "err", aerr)
		}
		g.log.WarnContext(ctx, "tool call failed", "actor", c.actor.String(), "tool", c.name, "reason", reason, "err", err)
		return out, clawops.E("governance.apply "+c.name, kind, reason, err)
	}
	out.Result = &res
	if _, aerr := g.audit.Append(ctx, c.entry(EventCompleted, out.Decision, clawops.ReasonOK, res.Summary)); aerr != nil {
		// The side effect happened; say so to the caller, but the log gap must be seen.
		g.log.ErrorContext(ctx, "audit completed call", "tool", c.name, "seq_requested", rq.Seq, "err", aerr)
	}
	g.log.InfoContext(ctx, "tool call completed", "actor", c.actor.String(), "tool", c.name, "plan", c.plan.Hash)
	return out, nil
}

// innerMessage returns the words of a *clawops.Error without its op and reason prefix.
func innerMessage(err error) string {
	var ce *clawops.Error
	if errors.As(err, &ce) && ce.Err != nil {
		return ce.Err.Error()
	}
	return err.Error()
}
