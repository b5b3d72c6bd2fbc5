package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gatewayforge/clawops/governance"
)

// MaxJustificationLength bounds the free text of a break-glass request.
const MaxJustificationLength = 2048

var grantStates = map[governance.GrantState]bool{
	governance.GrantActive: true, governance.GrantExpired: true, governance.GrantRevoked: true,
}

// listGrants answers GET /v1/grants?state=active|expired|revoked: scoped grants, newest
// first (all states when state is left out).
func (s *server) listGrants(w http.ResponseWriter, r *http.Request) {
	gk, ok := ability[GrantKeeper](w, s.opts.Gate, "grants")
	if !ok {
		return
	}
	q := r.URL.Query()
	state := governance.GrantState(q.Get("state"))
	if q.Has("state") && !grantStates[state] {
		s.fail(w, r, badRequest("state must be one of active, expired, revoked"), "")
		return
	}
	list, err := gk.ListGrants(r.Context(), state == governance.GrantActive)
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	out := make([]governance.ScopedGrant, 0, len(list))
	for _, g := range list {
		if state == "" || g.State == state {
			out = append(out, g)
		}
	}
	writeData(w, http.StatusOK, out)
}

type revokeRequest struct {
	Reason string `json:"reason"`
}

// revokeGrant answers DELETE /v1/grants/{id} (admin only; the body {"reason":"…"} may be
// left out). The gate audits grant.revoked.
func (s *server) revokeGrant(w http.ResponseWriter, r *http.Request) {
	gk, ok := ability[GrantKeeper](w, s.opts.Gate, "grants")
	if !ok {
		return
	}
	actor := actorFrom(r.Context())
	if err := requireAdmin(actor); err != nil {
		s.fail(w, r, err, "")
		return
	}
	var req revokeRequest
	if err := decodeOptionalBody(w, r, &req); err != nil {
		s.fail(w, r, err, "")
		return
	}
	if len(req.Reason) > MaxReasonLength {
		s.fail(w, r, badRequest("reason is longer than "+strconv.Itoa(MaxReasonLength)+" bytes"), "")
		return
	}
	actor.Channel = "api"
	id := r.PathValue("id")
	if err := gk.RevokeGrant(r.Context(), actor, id, req.Reason); err != nil {
		s.fail(w, r, err, "")
		return
	}
	writeData(w, http.StatusOK, map[string]string{"id": id, "state": string(governance.GrantRevoked)})
}

type breakGlassRequest struct {
	ReasonCode    string  `json:"reason_code"`
	Justification string  `json:"justification"`
	TTL           string  `json:"ttl"`
	TOTP          *string `json:"totp"`
}

// breakGlass answers POST /v1/breakglass: an admin opens an override (201). Whether the
// caller may, and whether reason, justification and duration are acceptable, is the gate's
// call (BREAK_GLASS_INVALID, audited); this checks only the request's shape.
func (s *server) breakGlass(w http.ResponseWriter, r *http.Request) {
	bgr, ok := ability[BreakGlasser](w, s.opts.Gate, "break-glass")
	if !ok {
		return
	}
	var req breakGlassRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.fail(w, r, err, "")
		return
	}
	out := governance.BreakGlassRequest{Reason: governance.BreakGlassReason(req.ReasonCode), Justification: req.Justification}
	switch {
	case req.ReasonCode == "":
		s.fail(w, r, badRequest(`"reason_code" is required (INCIDENT_MITIGATION, SECURITY_RESPONSE, DATA_RECOVERY or APPROVER_UNAVAILABLE)`), "")
		return
	case len(req.Justification) > MaxJustificationLength:
		s.fail(w, r, badRequest("justification is longer than "+strconv.Itoa(MaxJustificationLength)+" bytes"), "")
		return
	case req.TOTP != nil && (*req.TOTP == "" || len(*req.TOTP) > maxTOTPLength):
		s.fail(w, r, badRequest(`"totp" must be the one-time code (leave the field out for none)`), "")
		return
	}
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			s.fail(w, r, badRequest(`"ttl" must be a positive duration such as "30m" (at most 1h)`), "")
			return
		}
		out.Duration = d
	}
	if req.TOTP != nil {
		out.SecondFactor = *req.TOTP
	}
	admin := actorFrom(r.Context())
	admin.Channel = "api"
	bg, err := bgr.BreakGlass(r.Context(), admin, out)
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	writeData(w, http.StatusCreated, bg)
}

// endBreakGlass answers DELETE /v1/breakglass/{id}: an admin ends an open override.
func (s *server) endBreakGlass(w http.ResponseWriter, r *http.Request) {
	bgr, ok := ability[BreakGlasser](w, s.opts.Gate, "break-glass")
	if !ok {
		return
	}
	admin := actorFrom(r.Context())
	admin.Channel = "api"
	id := r.PathValue("id")
	if err := bgr.EndBreakGlass(r.Context(), admin, id); err != nil {
		s.fail(w, r, err, "")
		return
	}
	writeData(w, http.StatusOK, map[string]any{"id": id, "ended": true})
}
