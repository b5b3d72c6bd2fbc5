// Package api is the HTTP contract of the ClawOps gateway: bearer-token authentication,
// the {"ok":…} envelope, chat with the Commander, fleet status through the gate, approvals
// and their decisions (with a second factor, or for a scope), preflight, traces and
// replay, scoped grants, break-glass, budgets, the role table, the audit log with its
// checkpoints, and the web console's page and outbox. docs/api.md lists every route.
//
// Every route except /healthz and the console's static page needs
// "Authorization: Bearer <token>". Responses are {"ok":true,"data":…} or
// {"ok":false,"error":{"code":"REASON_CODE","message":"…"}}; the code is always a stable
// reason code and the HTTP status follows the error's kind.
package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/channels/web"
	"github.com/gatewayforge/clawops/governance"
)

// Gate is what the API needs of governance.Gate.
type Gate interface {
	Invoke(ctx context.Context, actor clawops.Actor, tool string, args json.RawMessage) (governance.Outcome, error)
	Decide(ctx context.Context, decider clawops.Actor, approvalID string, approve bool, reason string) (governance.Outcome, error)
	ListApprovals(ctx context.Context, state governance.ApprovalState) ([]governance.Approval, error)
	Approval(ctx context.Context, id string) (governance.Approval, error)
}

// AuditLog is what the API needs of the gate's audit log (governance.Gate.Audit()).
type AuditLog interface {
	List(ctx context.Context, afterSeq int64, limit int) ([]governance.AuditEntry, error)
	Verify(ctx context.Context) (governance.VerifyReport, error)
}

// Commander answers chat messages; agents.Commander implements it.
type Commander interface {
	Handle(ctx context.Context, actor clawops.Actor, text string) ([]string, error)
}

// Console is the web console (channels/web.Console): its page and its outbox.
type Console interface {
	http.Handler
	Messages(identity string, after int64, limit int) web.Batch
}

// Options are the parts the API serves. Auth, Gate, Audit and Commander are required;
// Console is optional (no page, no /v1/messages without it).
type Options struct {
	Auth      Authenticator
	Gate      Gate
	Audit     AuditLog
	Commander Commander
	Console   Console
	// ChatChannel is the channel name chat actors carry (default "web", the console's,
	// so console notifications and chat history share one identity space).
	ChatChannel string
	Clock       clawops.Clock
	Logger      *slog.Logger
}

// Audit paging bounds.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// MaxReasonLength bounds the free text of a decision.
const MaxReasonLength = 1000

// New returns the API handler. It panics if a required option is missing: that is a wiring
// mistake found at start-up.
func New(opts Options) http.Handler {
	if opts.Auth == nil || opts.Gate == nil || opts.Audit == nil || opts.Commander == nil {
		panic("api.New: Auth, Gate, Audit and Commander are required")
	}
	if opts.ChatChannel == "" {
		opts.ChatChannel = web.Name
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{opts: opts, log: log}
	mux := http.NewServeMux()
	auth := func(h http.HandlerFunc) http.Handler { return authenticated(opts.Auth, h) }

	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeData(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /v1/whoami", auth(s.whoami))
	mux.Handle("POST /v1/chat", auth(s.chat))
	mux.Handle("GET /v1/fleet/status", auth(s.fleetStatus))
	mux.Handle("GET /v1/approvals", auth(s.listApprovals))
	mux.Handle("GET /v1/approvals/{id}", auth(s.getApproval))
	mux.Handle("POST /v1/approvals/{id}/decision", auth(s.decide))
	mux.Handle("GET /v1/audit", auth(s.auditList))
	mux.Handle("GET /v1/audit/verify", auth(s.auditVerify))
	mux.Handle("GET /v1/audit/checkpoints", auth(s.auditCheckpoints))
	mux.Handle("POST /v1/preflight", auth(s.preflight))
	mux.Handle("GET /v1/traces", auth(s.listTraces))
	mux.Handle("GET /v1/traces/{id}", auth(s.getTrace))
	mux.Handle("POST /v1/traces/{id}/replay", auth(s.replayTrace))
	mux.Handle("GET /v1/grants", auth(s.listGrants))
	mux.Handle("DELETE /v1/grants/{id}", auth(s.revokeGrant))
	mux.Handle("POST /v1/breakglass", auth(s.breakGlass))
	mux.Handle("DELETE /v1/breakglass/{id}", auth(s.endBreakGlass))
	mux.Handle("GET /v1/budgets", auth(s.getBudgets))
	mux.Handle("PUT /v1/budgets", auth(s.putBudget))
	mux.Handle("GET /v1/policy/roles", auth(s.getRoles))
	mux.Handle("PUT /v1/policy/roles", auth(s.putRoles))
	if opts.Console != nil {
		mux.Handle("GET /{$}", opts.Console)
		mux.Handle("GET /console/", opts.Console)
		mux.Handle("GET /v1/messages", auth(s.messages))
	}
	return logAndRecover(log, clawops.ClockOrSystem(opts.Clock), withEnvelopeFallback(mux))
}

// withEnvelopeFallback answers requests that match no route (404) or no method (405) in
// the envelope instead of the mux's plain text.
func withEnvelopeFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &headerRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.code {
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", rec.Header().Get("Allow"))
			writeError(w, rec.code, ReasonMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path)
		case http.StatusNotFound, 0:
			writeError(w, http.StatusNotFound, ReasonNotFound, "no route for "+r.URL.Path)
		default: // redirects to a cleaned path
			for k, v := range rec.header {
				if k != "Content-Length" {
					w.Header()[k] = v
				}
			}
			w.WriteHeader(rec.code)
		}
	})
}

// headerRecorder captures the status and headers of the mux's own 404/405/redirect
// answers; their plain-text bodies are discarded.
type headerRecorder struct {
	header http.Header
	code   int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) WriteHeader(code int) {
	if h.code == 0 {
		h.code = code
	}
}
func (h *headerRecorder) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return len(b), nil
}

type server struct {
	opts Options
	log  *slog.Logger
}

// fail writes err in the envelope with the status of its kind.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error, outcomeMessage string) {
	status := statusOf(err)
	code, msg := messageOf(err, outcomeMessage)
	if status >= 500 || code == clawops.ReasonInternal {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, code, msg)
}

func (s *server) whoami(w http.ResponseWriter, r *http.Request) {
	a := actorFrom(r.Context())
	writeData(w, http.StatusOK, map[string]any{"identity": a.Identity, "role": a.Role})
}

type chatRequest struct {
	Text string `json:"text"`
}

type chatResponse struct {
	Replies []string `json:"replies"`
}

func (s *server) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.fail(w, r, err, "")
		return
	}
	if req.Text == "" {
		s.fail(w, r, badRequest(`"text" is required`), "")
		return
	}
	ctx, err := withBreakGlass(r.Context(), r)
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	actor := actorFrom(r.Context())
	actor.Channel = s.opts.ChatChannel
	replies, err := s.opts.Commander.Handle(ctx, actor, req.Text)
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	if replies == nil {
		replies = []string{}
	}
	writeData(w, http.StatusOK, chatResponse{Replies: replies})
}

func (s *server) fleetStatus(w http.ResponseWriter, r *http.Request) {
	actor := actorFrom(r.Context())
	actor.Channel = "api"
	out, err := s.opts.Gate.Invoke(r.Context(), actor, "gf_fleet_status", json.RawMessage("{}"))
	if err != nil {
		s.fail(w, r, err, out.Message)
		return
	}
	if out.Decision == clawops.NeedsApproval {
		writeData(w, http.StatusAccepted, out)
		return
	}
	var data json.RawMessage
	if out.Result != nil {
		data = out.Result.Data
	}
	writeData(w, http.StatusOK, data)
}

var approvalStates = map[governance.ApprovalState]bool{
	governance.ApprovalPending: true, governance.ApprovalApproved: true, governance.ApprovalDenied: true,
	governance.ApprovalExpired: true, governance.ApprovalExecuted: true, governance.ApprovalFailed: true,
}

func (s *server) listApprovals(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := governance.ApprovalState(q.Get("state"))
	if q.Has("state") && !approvalStates[state] {
		s.fail(w, r, badRequest("state must be one of pending, approved, denied, expired, executed, failed"), "")
		return
	}
	list, err := s.opts.Gate.ListApprovals(r.Context(), state)
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	if list == nil {
		list = []governance.Approval{}
	}
	writeData(w, http.StatusOK, list)
}

func (s *server) getApproval(w http.ResponseWriter, r *http.Request) {
	a, err := s.opts.Gate.Approval(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	writeData(w, http.StatusOK, a)
}

func (s *server) auditList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, limit := int64(0), DefaultAuditLimit
	if v := q.Get("after"); q.Has("after") {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.fail(w, r, badRequest("after must be a whole number ≥ 0"), "")
			return
		}
		after = n
	}
	if v := q.Get("limit"); q.Has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxAuditLimit {
			s.fail(w, r, badRequest("limit must be a whole number from 1 to "+strconv.Itoa(MaxAuditLimit)), "")
			return
		}
		limit = n
	}
	entries, err := s.opts.Audit.List(r.Context(), after, limit)
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	if entries == nil {
		entries = []governance.AuditEntry{}
	}
	writeData(w, http.StatusOK, entries)
}

func (s *server) auditVerify(w http.ResponseWriter, r *http.Request) {
	rep, err := s.opts.Audit.Verify(r.Context())
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	writeData(w, http.StatusOK, rep)
}

func (s *server) auditCheckpoints(w http.ResponseWriter, r *http.Request) {
	cl, ok := ability[CheckpointLister](w, s.opts.Audit, "audit checkpoints")
	if !ok {
		return
	}
	list, err := cl.Checkpoints(r.Context())
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	if list == nil {
		list = []governance.Checkpoint{}
	}
	writeData(w, http.StatusOK, list)
}

func (s *server) messages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, limit := int64(0), 100
	if v := q.Get("after"); q.Has("after") {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.fail(w, r, badRequest("after must be a whole number ≥ 0"), "")
			return
		}
		after = n
	}
	if v := q.Get("limit"); q.Has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > web.MaxBatch {
			s.fail(w, r, badRequest("limit must be a whole number from 1 to "+strconv.Itoa(web.MaxBatch)), "")
			return
		}
		limit = n
	}
	writeData(w, http.StatusOK, s.opts.Console.Messages(actorFrom(r.Context()).Identity, after, limit))
}
