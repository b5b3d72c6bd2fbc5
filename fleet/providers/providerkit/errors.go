package providerkit

import (
	"fmt"
	"net/http"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
)

// Failure is what a driver saw of one failed API call.
type Failure struct {
	Op       string
	Err      error          // the client library's error
	Answer   *http.Response // the API's answer (status and headers); nil when none arrived
	Creating bool           // a Create call: unless the API answered 4xx, the server may exist

	// Answered says the API did answer although Answer is nil (a client library that
	// keeps an error code but not the response), so the failure is not "no answer".
	Answered bool
	// What the API's own error code or message says, beyond the HTTP status.
	RateLimited bool // a rate limit was reached
	Quota       bool // an account or project limit was reached
	NotFound    bool // the server does not exist
	Auth        bool // the token was rejected
	Transient   bool // the API cannot serve the request now
}

// Status is the HTTP status of an answer, 0 when there is none.
func Status(r *http.Response) int {
	if r == nil {
		return 0
	}
	return r.StatusCode
}

// MapError turns a failed API call into a *clawops.Error with a fleet.ReasonProvider*
// code and a message that says what to do. The kind follows from the failure:
// transient for no answer, rate limits and 5xx; denied for quota; not found; unauthorized
// for a rejected token; invalid for other 4xx.
func (c Cloud) MapError(f Failure) error {
	status := Status(f.Answer)
	var kind clawops.Kind
	var reason clawops.ReasonCode
	var detail error
	switch {
	case status == 0 && !f.Answered:
		kind, reason = clawops.KindTransient, fleet.ReasonProviderUnavailable
		detail = fmt.Errorf("no answer from the %s API; retry later: %w", c.Name, f.Err)
	case f.RateLimited || status == http.StatusTooManyRequests:
		var header http.Header
		if f.Answer != nil {
			header = f.Answer.Header
		}
		kind, reason = clawops.KindTransient, fleet.ReasonProviderRateLimited
		detail = fmt.Errorf("rate limit of the %s API reached; wait before retrying: %w", c.Name, fleet.RateLimitedFromHeader(header, f.Err))
	case f.Quota:
		kind, reason = clawops.KindDenied, fleet.ReasonProviderQuota
		detail = fmt.Errorf("%s: %w", c.Quota, f.Err)
	case f.NotFound || status == http.StatusNotFound:
		kind, reason = clawops.KindNotFound, fleet.ReasonProviderNotFound
		detail = fmt.Errorf("not found at %s; it may have been deleted outside ClawOps: %w", c.Name, f.Err)
	case f.Auth || status == http.StatusUnauthorized || status == http.StatusForbidden:
		kind, reason = clawops.KindUnauthorized, fleet.ReasonProviderAuth
		detail = fmt.Errorf("%s: %w", c.Auth, f.Err)
	case status >= 500 || f.Transient:
		kind, reason = clawops.KindTransient, fleet.ReasonProviderUnavailable
		detail = fmt.Errorf("the %s API is unavailable; retry later: %w", c.Name, f.Err)
	case status >= 400:
		kind, reason = clawops.KindInvalid, fleet.ReasonProviderInvalid
		detail = fmt.Errorf("the %s API refused the request; %s: %w", c.Name, c.Refused, f.Err)
	default:
		kind, reason = clawops.KindTransient, fleet.ReasonProviderUnavailable
		detail = fmt.Errorf("unreadable answer from the %s API (HTTP %d): %w", c.Name, status, f.Err)
	}
	return c.Report(f, kind, reason, detail)
}

// Report builds the error of a failure the driver classified itself, from an error code
// only its API has. Like MapError, it marks a Create that failed without a 4xx answer
// with fleet.ErrMaybeCreated, so the caller reconciles before creating again.
func (c Cloud) Report(f Failure, kind clawops.Kind, reason clawops.ReasonCode, detail error) error {
	if status := Status(f.Answer); f.Creating && (status < 400 || status >= 500) {
		detail = fmt.Errorf("%w: reconcile with List (%s) before creating again: %w", fleet.ErrMaybeCreated, c.Reconcile, detail)
	}
	return clawops.E(f.Op, kind, reason, detail)
}
