package governance

import (
	"crypto/rand"
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
	"github.com/gatewayforge/clawops/governance/redact"
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
	Audit       *AuditLog     // nil: NewAuditLogWithOptions(DB, {Clock, Redactor})

	// Environment feeds the risk score; "": production.
	Environment Environment
	// Approvers is the approver set: only these identities may decide approvals (and they
	// must hold a role that can approve). Nil: anyone whose role can approve.
	Approvers []string
	// Admins are the identities told about break-glass (BreakGlassNotifier).
	Admins []string
	// SecondFactor verifies second factors (see TOTPVerifier). Required when
	// SecondFactorFrom is set.
	SecondFactor SecondFactorVerifier
	// SecondFactorFrom makes approving any approval of this risk class or above require a
	// second factor (DecideWithFactor); a chat button alone is refused. "": never.
	SecondFactorFrom clawops.RiskClass
	// Redactor cleans trace text (and audit details, when Audit is nil); nil: redact.Default().
	Redactor *redact.Redactor
}

// Gate is the single door every tool call passes: permission, plan, scope, invariants,
// risk, budget, decision, audit, then apply. It is safe for concurrent use.
type Gate struct {
	db         *gorm.DB
	clock      clawops.Clock
	log        *slog.Logger
	ttl        time.Duration
	notifier   Notifier
	rand       io.Reader
	audit      *AuditLog
	env        Environment
	admins     []string
	factor     SecondFactorVerifier
	factorFrom clawops.RiskClass
	redactor   *redact.Redactor

	mu    sync.RWMutex
	tools map[string]Tool

	policyMu  sync.RWMutex // guards roles and approvers (SetRoleTable, SetApprovers)
	roles     RoleTable
	approvers []string
}

// NewGate returns a gate over opts.DB. It does not create tables: call Migrate first.
func NewGate(opts GateOptions) (*Gate, error) {
	if opts.DB == nil {
		return nil, errors.New("new gate: DB is required")
	}
	if opts.ApprovalTTL < 0 {
		return nil, fmt.Errorf("new gate: approval TTL %s is negative", opts.ApprovalTTL)
	}
	if opts.Environment != "" && !opts.Environment.Valid() {
		return nil, fmt.Errorf("new gate: environment %q: use production or staging", opts.Environment)
	}
	switch opts.SecondFactorFrom {
	case "":
	case clawops.RiskLow, clawops.RiskMedium, clawops.RiskHigh, clawops.RiskCritical:
		if opts.SecondFactor == nil {
			return nil, errors.New("new gate: SecondFactorFrom is set but no SecondFactor verifier is")
		}
	default:
		return nil, fmt.Errorf("new gate: SecondFactorFrom %q is not a risk class", opts.SecondFactorFrom)
	}
	g := &Gate{
		db:         opts.DB,
		clock:      clawops.ClockOrSystem(opts.Clock),
		log:        opts.Logger,
		ttl:        opts.ApprovalTTL,
		notifier:   opts.Notifier,
		roles:      opts.Roles.Clone(),
		rand:       opts.Rand,
		audit:      opts.Audit,
		env:        opts.Environment,
		approvers:  cleanIdentities(opts.Approvers),
		admins:     cleanIdentities(opts.Admins),
		factor:     opts.SecondFactor,
		factorFrom: opts.SecondFactorFrom,
		redactor:   opts.Redactor,
		tools:      make(map[string]Tool),
	}
	if opts.Approvers != nil && g.approvers == nil {
		g.approvers = []string{} // an explicit empty set: nobody may approve
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
	if g.env == "" {
		g.env = Production
	}
	if g.redactor == nil {
		g.redactor = redact.Default()
	}
	if g.audit == nil {
		g.audit = NewAuditLogWithOptions(opts.DB, AuditOptions{Clock: g.clock, Redactor: g.redactor})
	}
	return g, nil
}

// Audit returns the gate's audit log.
func (g *Gate) Audit() *AuditLog { return g.audit }

// Redactor returns the redactor the gate applies to traces and audit details; agents use
// it on anything they send to an LLM, and main wraps the log handler with
// redact.NewHandler(h, gate.Redactor()).
func (g *Gate) Redactor() *redact.Redactor { return g.redactor }

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

// call carries one tool call through the gate.
type call struct {
	actor clawops.Actor
	name  string
	spec  ToolSpec
	plan  *Plan
	risk  *RiskAssessment
}

func (c *call) entry(event string, d clawops.Decision, r clawops.ReasonCode, detail string) AuditEntry {
	e := AuditEntry{Actor: c.actor.String(), Tool: c.name, Target: targetString(c.plan),
		Event: event, Decision: d, Reason: r, Detail: detail}
	if c.plan != nil {
		e.PlanHash = c.plan.Hash
	}
	return e
}

// riskClass is the class that applies to c: the assessed one, else the tool's static one.
func (c *call) riskClass() clawops.RiskClass {
	if c.risk != nil {
		return c.risk.Class
	}
	return c.spec.Risk
}

// outcome starts the Outcome of c.
func (c *call) outcome(d clawops.Decision, r clawops.ReasonCode, msg string) Outcome {
	out := Outcome{Decision: d, Reason: r, Message: msg, Tool: c.name, Risk: c.riskClass(), Plan: c.plan}
	if c.risk != nil {
		a := *c.risk
		out.RiskScore, out.Assessment = a.Score, &a
	}
	return out
}

// cleanIdentities trims, drops empty entries and de-duplicates a list of identities.
func cleanIdentities(ids []string) []string {
	var out []string
	for _, id := range ids {
		id = strings.TrimSpace(id)
		if id != "" && !slices.Contains(out, id) {
			out = append(out, cleanText(id, 256))
		}
	}
	return out
}
