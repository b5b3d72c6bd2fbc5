package vultr

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"github.com/gatewayforge/clawops/fleet/providers/providerkit"
)

// exchange records the last HTTP answer of one driver call. govultr turns answers into
// plain-text errors, so the transport notes status and headers here, found through the
// request's context: one exchange per call, nothing shared between calls.
type exchange struct {
	mu     sync.Mutex
	answer *http.Response // status and headers only
}

type exchangeKey struct{}

func withExchange(ctx context.Context) (context.Context, *exchange) {
	ex := &exchange{}
	return context.WithValue(ctx, exchangeKey{}, ex), ex
}

// recordAnswer notes an answer in the exchange of the call that made the request.
func recordAnswer(r *http.Request, resp *http.Response) {
	ex, ok := r.Context().Value(exchangeKey{}).(*exchange)
	if !ok {
		return
	}
	ex.mu.Lock()
	defer ex.mu.Unlock()
	ex.answer = &http.Response{StatusCode: resp.StatusCode, Header: resp.Header.Clone()}
}

// get returns the call's last answer, nil when none arrived.
func (ex *exchange) get() *http.Response {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return ex.answer
}

// mapError turns a govultr failure into a *clawops.Error with a fleet.ReasonProvider*
// code. creating marks a Create call (see providerkit.Failure).
func mapError(op string, ex *exchange, err error, creating bool) error {
	answer := ex.get()
	status := providerkit.Status(answer)
	return cloud.MapError(providerkit.Failure{
		Op: op, Err: err, Answer: answer, Creating: creating,
		Quota: status >= 400 && status < 500 && isQuotaMessage(strings.ToLower(err.Error())),
	})
}

// isQuotaMessage recognises Vultr's account-limit refusals ("maximum number of active
// instances", "monthly fee limit", "instance limit").
func isQuotaMessage(msg string) bool {
	if strings.Contains(msg, "rate limit") {
		return false
	}
	return strings.Contains(msg, "limit") || strings.Contains(msg, "maximum number")
}
