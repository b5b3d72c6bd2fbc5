package vultr

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
)

// exchange records the last HTTP answer of one driver call. govultr turns answers into
// plain-text errors, so the transport notes status and headers here, found through the
// request's context: one exchange per call, nothing shared between calls.
type exchange struct {
	mu     sync.Mutex
	status int
	header http.Header
}

type exchangeKey struct{}

func withExchange(ctx context.Context) (context.Context, *exchange) {
	ex := &exchange{}
	return context.WithValue(ctx, exchangeKey{}, ex), ex
}

func (ex *exchange) record(resp *http.Response) {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	ex.status = resp.StatusCode
	ex.header = resp.Header.Clone()
}

func (ex *exchange) statusCode() int {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return ex.status
}

func (ex *exchange) headers() http.Header {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.header == nil {
		return http.Header{}
	}
	return ex.header
}

// transport adds the API key to each request, on a clone, and records each answer in the
// call's exchange.
type transport struct {
	token string
	base  http.RoundTripper
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", "Bearer "+t.token)
	resp, err := t.base.RoundTrip(r2)
	if resp != nil {
		if ex, ok := r.Context().Value(exchangeKey{}).(*exchange); ok {
			ex.record(resp)
		}
	}
	return resp, err
}

// mapError turns a govultr failure into a *clawops.Error with a fleet.ReasonProvider* code
// and a message that says what to do. creating marks a Create call: unless Vultr answered
// with a 4xx, the instance may exist, and the error says so (fleet.ErrMaybeCreated).
func mapError(op string, ex *exchange, err error, creating bool) error {
	status := ex.statusCode()
	msg := strings.ToLower(err.Error())

	var kind clawops.Kind
	var reason clawops.ReasonCode
	var detail error
	switch {
	case status == 0:
		kind, reason = clawops.KindTransient, fleet.ReasonProviderUnavailable
		detail = fmt.Errorf("no answer from the Vultr API; retry later: %w", err)
	case status == http.StatusTooManyRequests:
		kind, reason = clawops.KindTransient, fleet.ReasonProviderRateLimited
		detail = fmt.Errorf("rate limit of the Vultr API reached; wait before retrying: %w", fleet.RateLimitedFromHeader(ex.headers(), err))
	case status >= 400 && status < 500 && isQuotaMessage(msg):
		kind, reason = clawops.KindDenied, fleet.ReasonProviderQuota
		detail = fmt.Errorf("the Vultr account limit is reached; ask Vultr support to raise it or delete unused instances: %w", err)
	case status == http.StatusNotFound:
		kind, reason = clawops.KindNotFound, fleet.ReasonProviderNotFound
		detail = fmt.Errorf("not found at Vultr; it may have been deleted outside ClawOps: %w", err)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		kind, reason = clawops.KindUnauthorized, fleet.ReasonProviderAuth
		detail = fmt.Errorf("the Vultr API rejected the key; check that it is valid and that this host's IP is in the key's access control list: %w", err)
	case status >= 500:
		kind, reason = clawops.KindTransient, fleet.ReasonProviderUnavailable
		detail = fmt.Errorf("the Vultr API is unavailable; retry later: %w", err)
	case status >= 400:
		kind, reason = clawops.KindInvalid, fleet.ReasonProviderInvalid
		detail = fmt.Errorf("the Vultr API refused the request; check region, plan and image: %w", err)
	default:
		kind, reason = clawops.KindTransient, fleet.ReasonProviderUnavailable
		detail = fmt.Errorf("unreadable answer from the Vultr API (HTTP %d): %w", status, err)
	}
	if creating && (status < 400 || status >= 500) {
		detail = fmt.Errorf("%w: reconcile with List (tag %s) before creating again: %w", fleet.ErrMaybeCreated, Tag, detail)
	}
	return clawops.E(op, kind, reason, detail)
}

// isQuotaMessage recognises Vultr's account-limit refusals ("maximum number of active
// instances", "monthly fee limit", "instance limit").
func isQuotaMessage(msg string) bool {
	if strings.Contains(msg, "rate limit") {
		return false
	}
	return strings.Contains(msg, "limit") || strings.Contains(msg, "maximum number")
}

func checkEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("endpoint %q: want an http(s) URL such as %s", endpoint, DefaultEndpoint)
	}
	return nil
}

// validHeaderValue reports whether a key can travel in an Authorization header as is.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
