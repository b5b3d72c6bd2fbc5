package digitalocean

import (
	"errors"
	"net/http"
	"strings"

	"github.com/digitalocean/godo"

	"github.com/gatewayforge/clawops/fleet/providers/providerkit"
)

// mapError turns a godo failure into a *clawops.Error with a fleet.ReasonProvider* code.
// creating marks a Create call (see providerkit.Failure).
func mapError(op string, resp *godo.Response, err error, creating bool) error {
	answer := answerOf(resp, err)
	status := providerkit.Status(answer)
	var apiErr *godo.ErrorResponse
	msg := ""
	if errors.As(err, &apiErr) {
		msg = strings.ToLower(apiErr.Message)
	}
	return cloud.MapError(providerkit.Failure{
		Op: op, Err: err, Answer: answer, Creating: creating,
		Quota: (status == http.StatusUnprocessableEntity || status == http.StatusForbidden) && isQuotaMessage(msg),
	})
}

// isQuotaMessage recognises DigitalOcean's account-limit refusals, e.g. "creating this/these
// droplet(s) will exceed your droplet limit".
func isQuotaMessage(msg string) bool {
	return strings.Contains(msg, "limit") && !strings.Contains(msg, "rate limit")
}

// answerOf finds DigitalOcean's answer to a failed call, in the response or in the error.
func answerOf(resp *godo.Response, err error) *http.Response {
	if resp != nil && resp.Response != nil {
		return resp.Response
	}
	var apiErr *godo.ErrorResponse
	if errors.As(err, &apiErr) && apiErr.Response != nil {
		return apiErr.Response
	}
	return nil
}
