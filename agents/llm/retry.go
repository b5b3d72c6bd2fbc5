package llm

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/gatewayforge/clawops"
)

// attemptMeta is what the transport saw of one attempt. go-openai's errors carry the
// status but not the headers, and Retry-After lives in the headers.
type attemptMeta struct {
	mu           sync.Mutex
	sent         bool // the request reached the transport
	status       int
	retryAfterHd string
	retryAfterMs string
}

type metaKey struct{}

func withMeta(ctx context.Context, m *attemptMeta) context.Context {
	return context.WithValue(ctx, metaKey{}, m)
}

// attemptDoer is the HTTPDoer given to go-openai: it records status and retry headers in
// the attemptMeta the request's context carries.
type attemptDoer struct{ c *http.Client }

func (d attemptDoer) Do(req *http.Request) (*http.Response, error) {
	m, _ := req.Context().Value(metaKey{}).(*attemptMeta)
	if m != nil {
		m.mu.Lock()
		m.sent = true
		m.mu.Unlock()
	}
	resp, err := d.c.Do(req)
	if m != nil && resp != nil {
		m.mu.Lock()
		m.status = resp.StatusCode
		m.retryAfterHd = resp.Header.Get("Retry-After")
		m.retryAfterMs = resp.Header.Get("Retry-After-Ms")
		m.mu.Unlock()
	}
	return resp, err
}

// retryAfter parses Retry-After-Ms (OpenAI, Azure) or Retry-After (seconds or HTTP date).
func (m *attemptMeta) retryAfter(now time.Time) (time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ms, err := strconv.ParseFloat(strings.TrimSpace(m.retryAfterMs), 64); err == nil && ms >= 0 {
		return time.Duration(ms * float64(time.Millisecond)), true
	}
	return parseRetryAfter(m.retryAfterHd, now)
}

func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// attemptError is a classified failure of one attempt.
type attemptError struct {
	err       error
	reason    clawops.ReasonCode
	kind      clawops.Kind
	fatal     bool // stop: no retry, no failover
	nextModel bool // no retry on this model, but try the next one
}

// classify decides what a failed attempt means. The caller's context ending is fatal; an
// attempt's own timeout is a transport error like any other.
func classify(ctx context.Context, err error, m *attemptMeta) *attemptError {
	if ctx.Err() != nil {
		return &attemptError{err: ctx.Err(), reason: ReasonCancelled, kind: clawops.KindTransient, fatal: true}
	}
	status := 0
	code := ""
	var apiErr *openai.APIError
	var reqErr *openai.RequestError
	switch {
	case errors.As(err, &apiErr):
		status = apiErr.HTTPStatusCode
		if s, ok := apiErr.Code.(string); ok {
			code = s
		}
	case errors.As(err, &reqErr):
		status = reqErr.HTTPStatusCode
	}
	m.mu.Lock()
	sent := m.sent
	if status == 0 {
		status = m.status
	}
	m.mu.Unlock()

	switch {
	case status == http.StatusTooManyRequests:
		return &attemptError{err: err, reason: ReasonRateLimited, kind: clawops.KindTransient}
	case status == http.StatusRequestTimeout || status >= 500:
		return &attemptError{err: err, reason: ReasonUnavailable, kind: clawops.KindTransient}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return &attemptError{err: err, reason: ReasonAuthFailed, kind: clawops.KindUnauthorized, fatal: true}
	case status == http.StatusNotFound || code == "model_not_found":
		return &attemptError{err: err, reason: ReasonModelNotFound, kind: clawops.KindNotFound, nextModel: true}
	case status >= 400:
		return &attemptError{err: err, reason: ReasonBadRequest, kind: clawops.KindInvalid, fatal: true}
	case !sent:
		// go-openai refused before sending (its model and parameter checks).
		if errors.Is(err, openai.ErrChatCompletionInvalidModel) {
			return &attemptError{err: err, reason: ReasonBadRequest, kind: clawops.KindInvalid, nextModel: true}
		}
		return &attemptError{err: err, reason: ReasonBadRequest, kind: clawops.KindInvalid, fatal: true}
	case status >= 200 && status < 300:
		return &attemptError{err: err, reason: ReasonBadResponse, kind: clawops.KindTransient}
	default:
		// Sent, no status: connection refused, reset, attempt timeout.
		return &attemptError{err: err, reason: ReasonUnavailable, kind: clawops.KindTransient}
	}
}
