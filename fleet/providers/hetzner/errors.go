package hetzner

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/fleet/providers/providerkit"
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
// code, reading Hetzner's error code as well as the HTTP status. creating marks a Create
// call (see providerkit.Failure).
func mapError(op string, resp *hcloud.Response, err error, creating bool) error {
	var apiErr hcloud.Error
	isAPI := errors.As(err, &apiErr)
	code := apiErr.Code
	f := providerkit.Failure{
		Op: op, Err: err, Answer: answerOf(resp, err), Creating: creating,
		Answered:    isAPI,
		RateLimited: code == hcloud.ErrorCodeRateLimitExceeded,
		Quota:       code == hcloud.ErrorCodeResourceLimitExceeded,
		NotFound:    code == hcloud.ErrorCodeNotFound,
		Auth:        code == hcloud.ErrorCodeUnauthorized || code == hcloud.ErrorCodeForbidden,
		Transient:   transientCodes[code],
	}
	switch code {
	case hcloud.ErrorCodeProtected:
		return cloud.Report(f, clawops.KindDenied, fleet.ReasonProviderInvalid,
			fmt.Errorf("the server is protected at Hetzner; lift its protection first: %w", err))
	case hcloud.ErrorCodeUniquenessError:
		return cloud.Report(f, clawops.KindInvalid, fleet.ReasonProviderInvalid,
			fmt.Errorf("the name is taken at Hetzner (an earlier create may have succeeded: reconcile with List): %w", err))
	}
	return cloud.MapError(f)
}

// answerOf finds Hetzner's answer to a failed call, in the response or in the error.
func answerOf(resp *hcloud.Response, err error) *http.Response {
	if resp != nil && resp.Response != nil {
		return resp.Response
	}
	var apiErr hcloud.Error
	if errors.As(err, &apiErr) {
		if r := apiErr.Response(); r != nil && r.Response != nil {
			return r.Response
		}
	}
	return nil
}
