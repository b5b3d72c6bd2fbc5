package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

// Decision values of POST /v1/approvals/{id}/decision.
const (
	DecisionApprove      = "approve"
	DecisionDeny         = "deny"
	DecisionApproveScope = "approve_scope"
)

// maxTOTPLength bounds the one-time code field; the gate checks the code itself.
const maxTOTPLength = 16

type decisionRequest struct {
	Decision string        `json:"decision"`
	Reason   string        `json:"reason"`
	Scope    *scopeRequest `json:"scope"`
	// TOTP is the decider's one-time code; nil when left out (a plain decision).
	TOTP *string `json:"totp"`
}

// scopeRequest is the wire form of governance.GrantScope: the TTL is a Go duration text.
type scopeRequest struct {
	Accounts  []string             `json:"accounts"`
	Instances []clawops.InstanceID `json:"instances"`
	MaxUsers  int                  `json:"max_users"`
	TTL       string               `json:"ttl"`
}

func (sr scopeRequest) grantScope() (governance.GrantScope, error) {
	if sr.TTL == "" {
		return governance.GrantScope{}, badRequest(`"scope.ttl" is required, e.g. "4h"`)
	}
	ttl, err := time.ParseDuration(sr.TTL)
	if err != nil || ttl <= 0 {
		return governance.GrantScope{}, badRequest(`"scope.ttl" must be a positive duration such as "30m" or "4h"`)
	}
	return governance.GrantScope{Accounts: sr.Accounts, Instances: sr.Instances, MaxUsers: sr.MaxUsers, TTL: ttl}, nil
}

// validate checks the request's shape; the gate checks everything else (who, when, which
// scope is allowed) and audits refusals.
func (req decisionRequest) validate() error {
	switch req.Decision {
	case DecisionApprove, DecisionDeny:
		if req.Scope != nil {
			return badRequest(`"scope" goes only with "decision":"approve_scope"`)
		}
	case DecisionApproveScope:
		if req.Scope == nil {
			return badRequest(`"decision":"approve_scope" needs a "scope"`)
		}
		if req.TOTP != nil {
			return badRequest(`"totp" cannot go with approve_scope: an approval that needs a second factor cannot be widened into a grant`)
		}
	default:
		return badRequest(`"decision" must be "approve", "deny" or "approve_scope"`)
	}
	if len(req.Reason) > MaxReasonLength {
		return badRequest("reason is longer than " + strconv.Itoa(MaxReasonLength) + " bytes")
	}
	if req.TOTP != nil && (strings.TrimSpace(*req.TOTP) == "" || len(*req.TOTP) > maxTOTPLength) {
		return badRequest(`"totp" must be the one-time code (leave the field out for none)`)
	}
	return nil
}

func (s *server) decide(w http.ResponseWriter, r *http.Request) {
	var req decisionRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.fail(w, r, err, "")
		return
	}
	if err := req.validate(); err != nil {
		s.fail(w, r, err, "")
		return
	}
	approve := req.Decision != DecisionDeny
	decider := actorFrom(r.Context())
	decider.Channel = "api"
	id := r.PathValue("id")
	var (
		out governance.Outcome
		err error
	)
	switch {
	case req.Decision == DecisionApproveScope:
		fd, ok := ability[FactorDecider](w, s.opts.Gate, "approve for scope")
		if !ok {
			return
		}
		scope, serr := req.Scope.grantScope()
		if serr != nil {
			s.fail(w, r, serr, "")
			return
		}
		out, err = fd.ApproveForScope(r.Context(), decider, id, scope, req.Reason)
	case req.TOTP != nil:
		fd, ok := ability[FactorDecider](w, s.opts.Gate, "second-factor decisions")
		if !ok {
			return
		}
		out, err = fd.DecideWithFactor(r.Context(), decider, id, approve, req.Reason, strings.TrimSpace(*req.TOTP))
	default:
		out, err = s.opts.Gate.Decide(r.Context(), decider, id, approve, req.Reason)
	}
	// A deny that the gate reports as DENIED_BY_APPROVER is the caller's request succeeding.
	if err != nil && !(!approve && clawops.ReasonOf(err) == clawops.ReasonDenied) {
		s.fail(w, r, err, out.Message)
		return
	}
	status := http.StatusOK
	if out.Decision == clawops.NeedsApproval {
		status = http.StatusAccepted // four-eyes: the first approval is recorded
	}
	writeData(w, status, out)
}
