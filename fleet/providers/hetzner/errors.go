package hetzner

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
)

// transientCodes are Hetzner error codes that say "not now" rather than "not like this".
var transientCodes = map[hcloud.ErrorCode]bool{
	hcloud.ErrorCodeServiceError:        true,
	hcloud.ErrorCodeServerError:         true,
	hcloud.ErrorCodeBadGateway:          true,
	hcloud.ErrorCodeTimeout:             true,
	hcloud.ErrorCodeMaintenance:         true,
	hcloud.ErrorCodeUnknownError:        true,
	hcloud.ErrorCodeConflict:            true,
	hcloud.ErrorCodeLocked:              true,
	hcloud.ErrorCodeResourceUnavailable: true,
	hcloud.ErrorCodeRobotUnavailable:    true,
}

// mapError turns an hcloud failure into a *clawops.Error with a fleet.ReasonProvider*
// code and a message that says what to do. creating marks a Create call: unless Hetzner
// answered with a 4xx, the server may exist, and the error says so (fleet.ErrMaybeCreated).
func mapError(op string, resp *hcloud.Response, err error, creating bool) error {
	status := statusOf(resp, err)
	var apiErr hcloud.Error
	isAPI := errors.As(err, &apiErr)
	code := apiErr.Code

	var kind clawops.Kind
	var reason clawops.ReasonCode
	var detail error
	switch {
	case status == 0 && !isAPI:
		kind, reason = clawops.KindTransient, fleet.ReasonProviderUnavailable
		detail = fmt.Errorf("no answer from the Hetzner API; retry later: %w", err)
	case code == hcloud.ErrorCodeRateLimitExceeded || status == http.StatusTooManyRequests:
		kind, reason = clawops.KindTransient, fleet.ReasonProviderRateLimited
		detail = fmt.Errorf("rate limit of the Hetzner API reached; wait before retrying: %w", fleet.RateLimitedFromHeader(headerOf(resp, err), err))
	case code == hcloud.ErrorCodeResourceLimitExceeded:
		kind, reason = clawops.KindDenied, fleet.ReasonProviderQuota
		detail = fmt.Errorf("the Hetzner project limit is reached; ask Hetzner to raise it or delete unused servers: %w", err)
	case code == hcloud.ErrorCodeNotFound || status == http.StatusNotFound:
		kind, reason = clawops.KindNotFound, fleet.ReasonProviderNotFound
		detail = fmt.Errorf("not found at Hetzner; it may have been deleted outside ClawOps: %w", err)
	case code == hcloud.ErrorCodeProtected:
		kind, reason = clawops.KindDenied, fleet.ReasonProviderInvalid
		detail = fmt.Errorf("the server is protected at Hetzner; lift its protection first: %w", err)
	case code == hcloud.ErrorCodeUnauthorized || code == hcloud.ErrorCodeForbidden ||
		status == http.StatusUnauthorized || status == http.StatusForbidden:
		kind, reason = clawops.KindUnauthorized, fleet.ReasonProviderAuth
		detail = fmt.Errorf("the Hetzner API rejected the token; check that it exists and has Read & Write permission: %w", err)
	case code == hcloud.ErrorCodeUniquenessError:
		kind, reason = clawops.KindInvalid, fleet.ReasonProviderInvalid
		detail = fmt.Errorf("the name is taken at Hetzner (an earlier create may have succeeded: reconcile with List): %w", err)
	case status >= 500 || transientCodes[code]:
		kind, reason = clawops.KindTransient, fleet.ReasonProviderUnavailable
		detail = fmt.Errorf("the Hetzner API is unavailable; retry later: %w", err)
	case status >= 400:
		kind, reason = clawops.KindInvalid, fleet.ReasonProviderInvalid
		detail = fmt.Errorf("the Hetzner API refused the request; check region, size and image: %w", err)
	default:
		kind, reason = clawops.KindTransient, fleet.ReasonProviderUnavailable
		detail = fmt.Errorf("unreadable answer from the Hetzner API (HTTP %d): %w", status, err)
	}
	if creating && (status < 400 || status >= 500) {
		detail = fmt.Errorf("%w: reconcile with List (label %s) before creating again: %w", fleet.ErrMaybeCreated, LabelInstance, detail)
	}
	return clawops.E(op, kind, reason, detail)
}

func statusOf(resp *hcloud.Response, err error) int {
	if resp != nil && resp.Response != nil {
		return resp.StatusCode
	}
	var apiErr hcloud.Error
	if errors.As(err, &apiErr) {
		if r := apiErr.Response(); r != nil && r.Response != nil {
			return r.StatusCode
		}
	}
	return 0
}

func headerOf(resp *hcloud.Response, err error) http.Header {
	if resp != nil && resp.Response != nil {
		return resp.Header
	}
	var apiErr hcloud.Error
	if errors.As(err, &apiErr) {
		if r := apiErr.Response(); r != nil && r.Response != nil {
			return r.Header
		}
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
