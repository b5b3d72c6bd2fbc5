package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

// BreakGlassHeader names the request header that carries an active break-glass ID
// ("bg_" and 32 hex digits) into /v1/chat and /v1/preflight. The gate decides whether it
// applies: only its own admin, only while it is open, only to answer a need for approval.
const BreakGlassHeader = "X-Break-Glass"

var (
	toolNameRE     = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)
	breakGlassIDRE = regexp.MustCompile(`^bg_[0-9a-f]{32}$`)
)

// withBreakGlass returns ctx carrying the break-glass ID of the request's header, if any.
func withBreakGlass(ctx context.Context, r *http.Request) (context.Context, error) {
	vals := r.Header.Values(BreakGlassHeader)
	switch {
	case len(vals) == 0:
		return ctx, nil
	case len(vals) > 1 || !breakGlassIDRE.MatchString(vals[0]):
		return ctx, badRequest(BreakGlassHeader + ` must be one break-glass ID ("bg_" and 32 hex digits)`)
	}
	return governance.WithBreakGlass(ctx, vals[0]), nil
}

type preflightRequest struct {
	Tool string          `json:"tool"`
	Args json.RawMessage `json:"args"`
}

// preflight asks the gate what it would decide about a tool call by the caller acting
// through the Commander (as in chat), with no side effect. A policy answer, deny included,
// is 200.
func (s *server) preflight(w http.ResponseWriter, r *http.Request) {
	pf, ok := ability[Preflighter](w, s.opts.Gate, "preflight")
	if !ok {
		return
	}
	var req preflightRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.fail(w, r, err, "")
		return
	}
	if !toolNameRE.MatchString(req.Tool) {
		s.fail(w, r, badRequest(`"tool" must be a tool name (lower case letters, digits, "_", "-", "."; at most 64)`), "")
		return
	}
	args := bytes.TrimSpace(req.Args)
	if len(args) == 0 || bytes.Equal(args, []byte("null")) {
		args = []byte("{}")
	}
	if args[0] != '{' {
		s.fail(w, r, badRequest(`"args" must be a JSON object`), "")
		return
	}
	ctx, err := withBreakGlass(r.Context(), r)
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	actor := actorFrom(r.Context())
	actor.Agent, actor.Channel = clawops.Commander, "api"
	res, err := pf.Preflight(ctx, actor, req.Tool, json.RawMessage(args))
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	writeData(w, http.StatusOK, res)
}
