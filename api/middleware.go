package api

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/gatewayforge/clawops"
)

// requestInfo is filled in as a request goes through the layers, so the access log can
// name the identity that authentication found.
type requestInfo struct {
	identity string
}

type infoKey struct{}

type actorKey struct{}

func actorFrom(ctx context.Context) clawops.Actor {
	a, _ := ctx.Value(actorKey{}).(clawops.Actor)
	return a
}

// statusWriter remembers the status written, for the access log and panic recovery.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logAndRecover logs one line per request (method, path, status, duration, identity;
// never headers, so never a token) and turns a panic into a 500 envelope.
func logAndRecover(log *slog.Logger, clock clawops.Clock, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := clock.Now()
		info := &requestInfo{}
		sw := &statusWriter{ResponseWriter: w}
		r = r.WithContext(context.WithValue(r.Context(), infoKey{}, info))
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.Error("panic in handler", "method", r.Method, "path", r.URL.Path, "panic", p,
					"stack", string(debug.Stack()))
				if sw.status == 0 {
					writeError(sw, http.StatusInternalServerError, clawops.ReasonInternal, "internal error")
				}
			}
			log.Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
				"duration", clock.Now().Sub(start), "identity", info.identity)
		}()
		next.ServeHTTP(sw, r)
	})
}

// authenticated wraps h so it runs only for a known bearer token, with the actor in the
// request context.
func authenticated(auth Authenticator, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor, ok := auth.Authenticate(bearer(r))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="clawops"`)
			writeError(w, http.StatusUnauthorized, clawops.ReasonUnauthenticated, "a valid bearer token is required")
			return
		}
		if info, _ := r.Context().Value(infoKey{}).(*requestInfo); info != nil {
			info.identity = actor.Identity
		}
		h(w, r.WithContext(context.WithValue(r.Context(), actorKey{}, actor)))
	})
}
