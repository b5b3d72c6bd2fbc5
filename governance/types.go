// Package governance is the gate every tool call passes: tool descriptors, the role autonomy
// table, scopes, invariants, a risk score, budgets, plan→apply under a Grant, approvals bound
// to plan hashes (four-eyes for critical, optional second factor, scoped grants),
// break-glass, the hash-chained audit log with signed checkpoints and evidence bundles,
// traces with replay, and (in package redact) redaction. Agents propose, the gate decides.
// docs/governance.md describes the pipeline, the reason codes and the risk rubric.
package governance

import (
	"context"
	"encoding/json"
	"time"

	"github.com/gatewayforge/clawops"
)

// Action is the kind of change a tool makes; the role autonomy table is written in actions.
type Action string

// Actions of the autonomy table.
const (
	ActionRead        Action = "read"
	ActionRecommend   Action = "recommend"
	ActionRestart     Action = "restart"
	ActionHeal        Action = "heal"
	ActionUpgrade     Action = "upgrade"
	ActionFailover    Action = "failover"
	ActionProvision   Action = "provision"
	ActionTeardown    Action = "teardown"
	ActionTierChange  Action = "tier_change"
	ActionConfigPush  Action = "config_push"
	ActionSendMessage Action = "send_message"
	// ActionHalt stops a change in progress (pauses or aborts a rolling push). It never
	// starts or widens one, so those who watch the fleet may take it alone.
	ActionHalt Action = "halt"
)

// ToolSpec describes a tool to the gate, to the LLM (name, description, JSON schema) and to
// people (risk class).
type ToolSpec struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Action      Action            `json:"action"`
	Risk        clawops.RiskClass `json:"risk"`
	Schema      json.RawMessage   `json:"schema"` // JSON Schema of the arguments object
}

// Tool is a governed tool. Plan is a dry run: it reads state, validates the arguments and
// says what Apply would do, with no side effect. Apply executes a plan the gate allowed; it
// never sees raw arguments, only the plan (whose Args are the validated, canonical ones).
type Tool interface {
	Spec() ToolSpec
	Plan(ctx context.Context, actor clawops.Actor, args json.RawMessage) (Plan, error)
	Apply(ctx context.Context, plan Plan) (Result, error)
}

// Target is one instance a plan touches, with the facts the invariants need.
type Target struct {
	Instance  clawops.InstanceID `json:"instance"`
	Account   string             `json:"account,omitempty"`
	Role      string             `json:"role,omitempty"`       // primary | standby
	State     string             `json:"state,omitempty"`      // the instance's state now
	PeerState string             `json:"peer_state,omitempty"` // state of the other member of its pair
	Users     int                `json:"users"`                // end users served (1 per account)
}

// Effect is one side effect a plan intends.
type Effect struct {
	Kind   string `json:"kind"` // e.g. node.command, provider.delete, db.update
	Target string `json:"target"`
	Detail string `json:"detail,omitempty"`
}

// Plan is the deterministic description of what a tool call would do. Its Hash is the
// SHA-256 of its canonical JSON with Hash empty; an approval is bound to that hash.
type Plan struct {
	Tool                string          `json:"tool"`
	Args                json.RawMessage `json:"args"`
	Summary             string          `json:"summary"`
	Targets             []Target        `json:"targets"`
	UsersAffected       int             `json:"users_affected"`
	Reversible          bool            `json:"reversible"`
	ProviderDelete      bool            `json:"provider_delete"`
	CostDeltaMonthlyUSD float64         `json:"cost_delta_monthly_usd"`
	ExpectedDuration    time.Duration   `json:"expected_duration"`
	Effects             []Effect        `json:"effects"`
	// Rolling marks a config push that Apply performs in batches of at most BatchSize
	// instances, validating each batch before the next; only such a push may touch more
	// than 100 instances.
	Rolling   bool   `json:"rolling,omitempty"`
	BatchSize int    `json:"batch_size,omitempty"`
	Hash      string `json:"hash"`
	// Forecast is the gate's budget forecast for this plan (month-to-date spend plus what
	// the plan adds, against the configured limits). The gate fills it in; like Hash it is
	// not covered by the hash, since spend moves on while the plan stays the same.
	Forecast *BudgetForecast `json:"forecast,omitempty"`
}

// Instances returns the IDs of the instances p touches, in plan order.
func (p Plan) Instances() []clawops.InstanceID {
	out := make([]clawops.InstanceID, len(p.Targets))
	for i, t := range p.Targets {
		out[i] = t.Instance
	}
	return out
}

// Result is what a tool returns after Apply (or a read tool after Plan+Apply).
type Result struct {
	Summary string          `json:"summary"`        // one line a person can read
	Data    json.RawMessage `json:"data,omitempty"` // structured result for agents and the API
}

// Outcome is what the gate did with one tool call or one approval decision.
//
// Invoke and Decide always return an Outcome describing what happened. Their error is
// non-nil exactly when the tool did not run to success (denied, failed, expired, ...); it is
// then a *clawops.Error whose Reason equals Outcome.Reason. A call that needs approval
// returns Decision NeedsApproval, an ApprovalID and a nil error: nothing has run.
type Outcome struct {
	Decision   clawops.Decision   `json:"decision"`
	Reason     clawops.ReasonCode `json:"reason"`
	Message    string             `json:"message,omitempty"`
	Tool       string             `json:"tool"`
	Risk       clawops.RiskClass  `json:"risk,omitempty"`
	Plan       *Plan              `json:"plan,omitempty"`
	ApprovalID string             `json:"approval_id,omitempty"`
	Result     *Result            `json:"result,omitempty"`
	// RiskScore and Assessment are the risk rubric's verdict (see risk.go).
	RiskScore  int             `json:"risk_score,omitempty"`
	Assessment *RiskAssessment `json:"assessment,omitempty"`
	// ApprovalsRequired is how many distinct approvers the call needs (2 for critical).
	ApprovalsRequired int `json:"approvals_required,omitempty"`
	// Grant is what allowed the call to run, when it ran.
	Grant *Grant `json:"grant,omitempty"`
	// Warnings are soft findings (a soft budget limit crossed) that did not stop the call.
	Warnings []string `json:"warnings,omitempty"`
}

// ApprovalState is where an approval is in its life.
type ApprovalState string

// Approval states. Pending moves to exactly one of the others; Approved moves on to
// Executed or Failed once the plan has been applied.
const (
	ApprovalPending  ApprovalState = "pending"
	ApprovalApproved ApprovalState = "approved"
	ApprovalDenied   ApprovalState = "denied"
	ApprovalExpired  ApprovalState = "expired"
	ApprovalExecuted ApprovalState = "executed"
	ApprovalFailed   ApprovalState = "failed"
)

// Approval is a persisted request for a human decision on one plan.
type Approval struct {
	ID        string            `json:"id"`
	Tool      string            `json:"tool"`
	Requester clawops.Actor     `json:"requester"`
	Plan      Plan              `json:"plan"`
	PlanHash  string            `json:"plan_hash"`
	Risk      clawops.RiskClass `json:"risk"`
	State     ApprovalState     `json:"state"`
	CreatedAt time.Time         `json:"created_at"`
	ExpiresAt time.Time         `json:"expires_at"`
	DecidedBy string            `json:"decided_by,omitempty"`
	DecidedAt *time.Time        `json:"decided_at,omitempty"`
	Reason    string            `json:"reason,omitempty"` // the decider's words
	Result    *Result           `json:"result,omitempty"`
	Error     string            `json:"error,omitempty"`

	RiskScore   int          `json:"risk_score,omitempty"`
	RiskFactors []RiskFactor `json:"risk_factors,omitempty"`
	// ApprovalsRequired is how many distinct approvers must approve (four-eyes: 2).
	ApprovalsRequired int `json:"approvals_required,omitempty"`
	// Decisions lists every decision recorded so far, in order (both approvers of a
	// four-eyes approval, or the one who denied).
	Decisions []ApprovalDecision `json:"decisions,omitempty"`
	// SecondFactor says an approving decision must carry a second factor (DecideWithFactor).
	SecondFactor bool `json:"second_factor,omitempty"`
	// Approvers are the identities the card is addressed to (the configured approver set
	// without the requester); empty means "anyone whose role may approve".
	Approvers []string `json:"approvers,omitempty"`
	// GrantID names the scoped grant created when the approval was approved for a scope.
	GrantID string `json:"grant_id,omitempty"`
	// TraceID is the agent run that asked, if any.
	TraceID string `json:"trace_id,omitempty"`
}

// ApprovalDecision is one approver's recorded decision.
type ApprovalDecision struct {
	By      string            `json:"by"`
	Role    clawops.HumanRole `json:"role,omitempty"`
	Channel string            `json:"channel,omitempty"`
	Approve bool              `json:"approve"`
	At      time.Time         `json:"at"`
	Reason  string            `json:"reason,omitempty"`
	// SecondFactor is true when the decision carried a verified second factor.
	SecondFactor bool `json:"second_factor,omitempty"`
}

// Card is the approval card every channel renders: what would happen, how risky, and who
// decided. It is derived from an Approval and carries nothing secret.
type Card struct {
	ApprovalID          string            `json:"approval_id"`
	Title               string            `json:"title"`
	Summary             string            `json:"summary"`
	Actions             []string          `json:"actions"`
	Risk                clawops.RiskClass `json:"risk"`
	RiskFlags           []string          `json:"risk_flags,omitempty"`
	UsersAffected       int               `json:"users_affected"`
	CostDeltaMonthlyUSD float64           `json:"cost_delta_monthly_usd"`
	ExpectedDuration    time.Duration     `json:"expected_duration"`
	PlanHash            string            `json:"plan_hash"`
	Requester           string            `json:"requester"`
	ExpiresAt           time.Time         `json:"expires_at"`
	State               ApprovalState     `json:"state"`
	DecidedBy           string            `json:"decided_by,omitempty"`
	DecidedAt           *time.Time        `json:"decided_at,omitempty"`

	RiskScore            int                `json:"risk_score,omitempty"`
	ApprovalsRequired    int                `json:"approvals_required,omitempty"`
	Deciders             []ApprovalDecision `json:"deciders,omitempty"`
	SecondFactorRequired bool               `json:"second_factor_required,omitempty"`
	// Audience is who the card is for: the approver identities (never the requester).
	// Empty means the approvers' channel as a whole (anyone whose role may approve).
	Audience []string `json:"audience,omitempty"`
	// Forecast is the budget forecast shown on the card, if the plan costs money.
	Forecast *BudgetForecast `json:"forecast,omitempty"`
}

// Notifier is told when an approval is created or changes state, so channels can post or
// update the card in the approvers' channel. Implementations must not block for long.
type Notifier interface {
	ApprovalChanged(ctx context.Context, a Approval)
}

// Audit events.
const (
	EventRequested     = "requested"
	EventAllowed       = "allowed"
	EventDenied        = "denied"
	EventNeedsApproval = "needs_approval"
	EventApproved      = "approved"
	EventRejected      = "rejected" // an approver said no
	EventExpired       = "expired"
	EventCompleted     = "completed"
	EventFailed        = "failed"
	EventViolation     = "violation"

	EventOverride      = "override"       // break-glass activated or used
	EventGrantCreated  = "grant.created"  // an approval for scope created a grant
	EventGrantUsed     = "grant.used"     // a call ran within a scoped grant
	EventGrantExpired  = "grant.expired"  // a scoped grant's time ran out
	EventPolicyChanged = "policy.changed" // the role table, approvers or a budget changed
	EventConfigChanged = "config.changed" // configuration (re)loaded with changes
	EventBudgetWarning = "budget.warning" // a soft budget limit was crossed
)

// AuditEntry is one row of the append-only, hash-chained audit log.
type AuditEntry struct {
	Seq      int64              `json:"seq"`
	Time     time.Time          `json:"time"`
	Actor    string             `json:"actor"`
	Tool     string             `json:"tool"`
	Target   string             `json:"target"`
	Event    string             `json:"event"`
	Decision clawops.Decision   `json:"decision,omitempty"`
	Reason   clawops.ReasonCode `json:"reason,omitempty"`
	PlanHash string             `json:"plan_hash,omitempty"`
	Detail   string             `json:"detail,omitempty"`
	PrevHash string             `json:"prev_hash"`
	Hash     string             `json:"hash"`
}

// VerifyReport is the result of walking the audit chain.
type VerifyReport struct {
	OK          bool   `json:"ok"`
	Entries     int64  `json:"entries"`
	FirstBadSeq int64  `json:"first_bad_seq,omitempty"`
	Problem     string `json:"problem,omitempty"`
	// HeadHash is the hash of the last entry checked; keep it somewhere else to detect a
	// later removal of entries from the end of the log.
	HeadHash string `json:"head_hash,omitempty"`
	// Checkpoints is how many signed checkpoints were checked against the chain.
	Checkpoints int `json:"checkpoints,omitempty"`
}
