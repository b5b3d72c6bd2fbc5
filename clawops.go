// Package clawops holds the small shared vocabulary of ClawOps: the nouns that every room
// (fleet, clawnode, governance, agents, channels) talks about. It imports only the standard
// library, and nothing of ours imports anything in the other direction.
package clawops

import (
	"errors"
	"fmt"
)

// AgentRole names one of the six agents of the operator team.
type AgentRole string

// The six agent roles.
const (
	Commander AgentRole = "commander"
	Guardian  AgentRole = "guardian"
	Ledger    AgentRole = "ledger"
	Triage    AgentRole = "triage"
	Forge     AgentRole = "forge"
	Briefer   AgentRole = "briefer"
)

// AgentRoles lists every agent role in a stable order.
var AgentRoles = []AgentRole{Commander, Guardian, Ledger, Triage, Forge, Briefer}

// Valid reports whether r is one of the six agent roles.
func (r AgentRole) Valid() bool {
	for _, x := range AgentRoles {
		if r == x {
			return true
		}
	}
	return false
}

// HumanRole is the role a human identity holds in ClawOps.
type HumanRole string

// Human roles. An admin may do everything, including approving; an approver may approve
// but not run tools; an operator may chat and request; a viewer may only read.
const (
	RoleAdmin    HumanRole = "admin"
	RoleApprover HumanRole = "approver"
	RoleOperator HumanRole = "operator"
	RoleViewer   HumanRole = "viewer"
)

// Valid reports whether r is a known human role.
func (r HumanRole) Valid() bool {
	switch r {
	case RoleAdmin, RoleApprover, RoleOperator, RoleViewer:
		return true
	}
	return false
}

// CanApprove reports whether a human with role r may decide approvals.
func (r HumanRole) CanApprove() bool { return r == RoleAdmin || r == RoleApprover }

// Actor is who asks for something: a human identity, the agent acting for it, or both.
// A chat message from an operator becomes an Actor with Identity and Role set and Agent
// set to the agent that handles it; a scheduled run has only Agent set and Identity
// "agent:<role>".
type Actor struct {
	Identity string    `json:"identity"`
	Role     HumanRole `json:"role,omitempty"`
	Agent    AgentRole `json:"agent,omitempty"`
	Channel  string    `json:"channel,omitempty"`
	// Scope, when set, limits the instances the actor may act on (see Scope). Nil means
	// the actor's role alone decides.
	Scope *Scope `json:"scope,omitempty"`
}

// Scope limits what an actor may act on: every instance a change touches must be named in
// Instances or belong to an account named in Accounts. An empty Scope covers nothing.
type Scope struct {
	Accounts  []string     `json:"accounts,omitempty"`
	Instances []InstanceID `json:"instances,omitempty"`
}

// Covers reports whether the instance id of account lies within s. A nil Scope covers
// everything.
func (s *Scope) Covers(account string, id InstanceID) bool {
	if s == nil {
		return true
	}
	for _, x := range s.Instances {
		if x == id {
			return true
		}
	}
	if account == "" {
		return false
	}
	for _, a := range s.Accounts {
		if a == account {
			return true
		}
	}
	return false
}

// String renders the actor for logs and audit rows.
func (a Actor) String() string {
	if a.Agent != "" && a.Identity != "" {
		return fmt.Sprintf("%s via %s", a.Identity, a.Agent)
	}
	if a.Identity != "" {
		return a.Identity
	}
	return "agent:" + string(a.Agent)
}

// InstanceID identifies one VPS instance of the fleet.
type InstanceID string

// NodeID identifies one enrolled gf-clawnode (the hex SHA-256 of its Ed25519 public key).
type NodeID string

// RiskClass is the coarse risk of an action.
type RiskClass string

// Risk classes, from least to most dangerous.
const (
	RiskLow      RiskClass = "low"
	RiskMedium   RiskClass = "medium"
	RiskHigh     RiskClass = "high"
	RiskCritical RiskClass = "critical"
)

// Decision is what the gate says about a tool call.
type Decision string

// Gate decisions.
const (
	Allow         Decision = "allow"
	NeedsApproval Decision = "needs_approval"
	Deny          Decision = "deny"
)

// ReasonCode is a stable, machine-readable reason for a decision or refusal. Chat replies,
// retries and audit rows are decided from it, so codes never change meaning once shipped.
type ReasonCode string

// Reason codes shared across rooms. Rooms may define more; these are the ones more than one
// room needs to recognise.
const (
	ReasonOK                ReasonCode = "OK"
	ReasonRolePermits       ReasonCode = "ROLE_PERMITS"
	ReasonRoleNotPermitted  ReasonCode = "ROLE_NOT_PERMITTED"
	ReasonApprovalRequired  ReasonCode = "APPROVAL_REQUIRED"
	ReasonApproved          ReasonCode = "APPROVED"
	ReasonDenied            ReasonCode = "DENIED_BY_APPROVER"
	ReasonApprovalExpired   ReasonCode = "APPROVAL_EXPIRED"
	ReasonApprovalNotFound  ReasonCode = "APPROVAL_NOT_FOUND"
	ReasonAlreadyDecided    ReasonCode = "APPROVAL_ALREADY_DECIDED"
	ReasonSelfApproval      ReasonCode = "SELF_APPROVAL"
	ReasonNotApprover       ReasonCode = "NOT_APPROVER"
	ReasonPlanMismatch      ReasonCode = "PLAN_MISMATCH"
	ReasonUnknownTool       ReasonCode = "UNKNOWN_TOOL"
	ReasonBadArguments      ReasonCode = "BAD_ARGUMENTS"
	ReasonUnknownInstance   ReasonCode = "UNKNOWN_INSTANCE"
	ReasonStandbyNotActive  ReasonCode = "STANDBY_NOT_ACTIVE"
	ReasonRollingRequired   ReasonCode = "ROLLING_REQUIRED"
	ReasonTooManyUsers      ReasonCode = "TOO_MANY_USERS"
	ReasonOutOfScope        ReasonCode = "OUT_OF_SCOPE"
	ReasonBudgetExceeded    ReasonCode = "BUDGET_EXCEEDED"
	ReasonExecutionFailed   ReasonCode = "EXECUTION_FAILED"
	ReasonNodeOffline       ReasonCode = "NODE_OFFLINE"
	ReasonNodeTimeout       ReasonCode = "NODE_TIMEOUT"
	ReasonUnauthenticated   ReasonCode = "UNAUTHENTICATED"
	ReasonForbidden         ReasonCode = "FORBIDDEN"
	ReasonInternal          ReasonCode = "INTERNAL"
	ReasonNotImplemented    ReasonCode = "NOT_IMPLEMENTED"
	ReasonUnsignedCommand   ReasonCode = "UNSIGNED_COMMAND"
	ReasonBadSignature      ReasonCode = "BAD_SIGNATURE"
	ReasonCommandExpired    ReasonCode = "COMMAND_EXPIRED"
	ReasonCommandReplayed   ReasonCode = "COMMAND_REPLAYED"
	ReasonNotAllowlisted    ReasonCode = "COMMAND_NOT_ALLOWLISTED"
	ReasonBadParams         ReasonCode = "INVALID_PARAMS"
	ReasonShellMetachar     ReasonCode = "SHELL_METACHARACTER"
	ReasonUnknownSender     ReasonCode = "UNKNOWN_SENDER"
	ReasonMalformedRequest  ReasonCode = "MALFORMED_REQUEST"
	ReasonInstanceNotActive ReasonCode = "INSTANCE_NOT_ACTIVE"
)

// Kind classifies an Error so that callers can act on it without parsing text.
type Kind int

// Error kinds.
const (
	KindOther         Kind = iota
	KindInvalid            // the input is malformed; fix it and try again
	KindNotFound           // the thing named does not exist
	KindDenied             // policy says no; retrying will not help
	KindNeedsApproval      // a human must approve first
	KindExpired            // a deadline passed (approval, command)
	KindTransient          // try again later (node offline, timeout)
	KindUnauthorized       // no or bad credentials
)

func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindNotFound:
		return "not found"
	case KindDenied:
		return "denied"
	case KindNeedsApproval:
		return "needs approval"
	case KindExpired:
		return "expired"
	case KindTransient:
		return "transient"
	case KindUnauthorized:
		return "unauthorized"
	}
	return "other"
}

// Error is the error type that crosses room boundaries: an operation, a kind, a stable
// reason code and the underlying error, in the manner of Upspin's errors.E.
type Error struct {
	Op     string
	Kind   Kind
	Reason ReasonCode
	Err    error
}

// E builds an *Error. Arguments may be a string (the op), a Kind, a ReasonCode, or an error.
// A string after the op, or an error, becomes the underlying error.
func E(args ...any) error {
	e := &Error{}
	for _, a := range args {
		switch v := a.(type) {
		case string:
			if e.Op == "" {
				e.Op = v
			} else {
				e.Err = errors.New(v)
			}
		case Kind:
			e.Kind = v
		case ReasonCode:
			e.Reason = v
		case error:
			e.Err = v
		}
	}
	if e.Reason == "" {
		var inner *Error
		if errors.As(e.Err, &inner) {
			e.Reason = inner.Reason
			if e.Kind == KindOther {
				e.Kind = inner.Kind
			}
		}
	}
	return e
}

func (e *Error) Error() string {
	msg := e.Op
	if e.Reason != "" {
		if msg != "" {
			msg += ": "
		}
		msg += string(e.Reason)
	}
	if e.Err != nil {
		if msg != "" {
			msg += ": "
		}
		msg += e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the reason code carried by err, or "" if it carries none.
func ReasonOf(err error) ReasonCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// KindOf returns the kind carried by err, or KindOther.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindOther
}
