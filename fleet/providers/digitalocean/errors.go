package digitalocean

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/digitalocean/godo"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
)

// mapError turns a godo failure into a *clawops.Error with a fleet.ReasonProvider* code and
// a message that says what to do. creating marks a Create call: unless DigitalOcean
// answered with a 4xx, the droplet may exist, and the error says so (fleet.ErrMaybeCreated).
func mapError(op string, resp *godo.Response, err error, creating bool) error {
	status := statusOf(resp, err)
	var apiErr *godo.ErrorResponse
	msg := ""
	if errors.As(err, &apiErr) {
		msg = strings.ToLower(apiErr.Message)
	}

	var kind clawops.Kind
	var reason clawops.ReasonCode
	var detail error
	switch {
	case status == 0:
		kind, reason = clawops.KindTransient, fleet.ReasonProviderUnavailable
		detail = fmt.Errorf("no answer from the DigitalOcean API; retry later: %w", err)
	case status == http.StatusTooManyRequests:
		kind, reason = clawops.KindTransient, fleet.ReasonProviderRateLimited
		detail = fmt.Errorf("DigitalOcean API rate limit reached; wait before retrying: %w", fleet.RateLimitedFromHeader(headerOf(resp, err), err))
	case (status == http.StatusUnprocessableEntity || status == http.StatusForbidden) && isQuotaMessage(msg):
		kind, reason = clawops.KindDenied, fleet.ReasonProviderQuota
		detail = fmt.Errorf("DigitalOcean account limit reached; ask DigitalOcean to raise the droplet limit or delete unused droplets: %w", err)
	case status == http.StatusNotFound:
		kind, reason = clawops.KindNotFound, fleet.ReasonProviderNotFound
		detail = fmt.Errorf("DigitalOcean does not know it; it may have been deleted outside ClawOps: %w", err)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		kind, reason = clawops.KindUnauthorized, fleet.ReasonProviderAuth
		detail = fmt.Errorf("DigitalOcean rejected the API token; check that it exists and has write scope: %w", err)
	case status >= 500:
		kind, reason = clawops.KindTransient, fleet.ReasonProviderUnavailable
		detail = fmt.Errorf("DigitalOcean is unavailable; retry later: %w", err)
	case status >= 400:
		kind, reason = clawops.KindInvalid, fleet.ReasonProviderInvalid
		detail = fmt.Errorf("DigitalOcean refused the request; check region, size and image: %w", err)
	default:
		kind, reason = clawops.KindTransient, fleet.ReasonProviderUnavailable
		detail = fmt.Errorf("unreadable answer from the DigitalOcean API (HTTP %d): %w", status, err)
	}
	if creating && (status < 400 || status >= 500) {
		detail = fmt.Errorf("%w: reconcile with List (tag %s) before creating again: %w", fleet.ErrMaybeCreated, Tag, detail)
	}
	return clawops.E(op, kind, reason, detail)
}

// isQuotaMessage recognises DigitalOcean's account-limit refusals, e.g. "creating this/these
// droplet(s) will exceed your droplet limit".
func isQuotaMessage(msg string) bool {
	return strings.Contains(msg, "limit") && !strings.Contains(msg, "rate limit")
}

func statusOf(resp *godo.Response, err error) int {
	if resp != nil && resp.Response != nil {
		return resp.StatusCode
	}
	var apiErr *godo.ErrorResponse
	if errors.As(err, &apiErr) && apiErr.Response != nil {
		return apiErr.Response.StatusCode
	}
	return 0
}

func headerOf(resp *godo.Response, err error) http.Header {
	if resp != nil && resp.Response != nil {
		return resp.Header
	}
	var apiErr *godo.ErrorResponse
	if errors.As(err, &apiErr) && apiErr.Response != nil {
		return apiErr.Response.Header
	}
	return http.Header{}
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

// validHeaderValue reports whether a token can travel in an Authorization header as is.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
