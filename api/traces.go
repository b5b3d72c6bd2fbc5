package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

// Trace paging bounds.
const (
	DefaultTraceLimit = 100
	MaxTraceLimit     = 1000
)

// listTraces answers GET /v1/traces?limit=&after=&identity=: runs newest first, without
// their spans; after is an RFC 3339 time (runs started at or after it).
func (s *server) listTraces(w http.ResponseWriter, r *http.Request) {
	tr, ok := ability[TraceReader](w, s.opts.Gate, "traces")
	if !ok {
		return
	}
	q := r.URL.Query()
	f := governance.TraceFilter{Limit: DefaultTraceLimit}
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > MaxTraceLimit {
			s.fail(w, r, badRequest("limit must be a whole number from 1 to "+strconv.Itoa(MaxTraceLimit)), "")
			return
		}
		f.Limit = n
	}
	if q.Has("after") {
		t, err := time.Parse(time.RFC3339Nano, q.Get("after"))
		if err != nil {
			s.fail(w, r, badRequest("after must be an RFC 3339 time, e.g. 2026-11-23T09:00:00Z"), "")
			return
		}
		f.Since = t
	}
	if q.Has("identity") {
		f.Identity = q.Get("identity")
		if f.Identity == "" || len(f.Identity) > 256 {
			s.fail(w, r, badRequest("identity must be 1 to 256 bytes"), "")
			return
		}
	}
	list, err := tr.ListTraces(r.Context(), f)
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	if list == nil {
		list = []governance.Trace{}
	}
	writeData(w, http.StatusOK, list)
}

func (s *server) getTrace(w http.ResponseWriter, r *http.Request) {
	tr, ok := ability[TraceReader](w, s.opts.Gate, "traces")
	if !ok {
		return
	}
	t, err := tr.Trace(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, traceNotFound(err), "")
		return
	}
	writeData(w, http.StatusOK, t)
}

// replayTrace answers POST /v1/traces/{id}/replay: what today's policy would decide about
// every recorded call, against what was decided then. Nothing runs and nothing is written.
// The body may be empty or {}.
func (s *server) replayTrace(w http.ResponseWriter, r *http.Request) {
	tr, ok := ability[TraceReader](w, s.opts.Gate, "traces")
	if !ok {
		return
	}
	var req struct{}
	if err := decodeOptionalBody(w, r, &req); err != nil {
		s.fail(w, r, err, "")
		return
	}
	rep, err := tr.Replay(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, traceNotFound(err), "")
		return
	}
	if rep.Steps == nil {
		rep.Steps = []governance.ReplayStep{}
	}
	writeData(w, http.StatusOK, rep)
}

// traceNotFound gives an unknown trace the API's NOT_FOUND code: the gate reports it as a
// not-found BAD_ARGUMENTS, which reads as the caller's malformed input.
func traceNotFound(err error) error {
	if clawops.KindOf(err) != clawops.KindNotFound {
		return err
	}
	return clawops.E("trace", clawops.KindNotFound, ReasonNotFound, "no such trace")
}
