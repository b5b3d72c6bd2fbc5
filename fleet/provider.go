package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
)

// Provider is one place servers can be created: a cloud (Hetzner, DigitalOcean, Vultr) or
// the local provider that runs each instance as processes on this machine. Drivers
// translate their API's failures into *clawops.Error values with the reason codes below,
// so callers can retry, alert or give up without parsing text.
type Provider interface {
	// Name is the provider's stable key, e.g. "hetzner", "local".
	Name() string
	// Create starts a server for spec and returns as soon as the provider has accepted it.
	Create(ctx context.Context, spec ServerSpec) (Server, error)
	// Get returns the provider's current view of one server.
	Get(ctx context.Context, providerID string) (Server, error)
	// Delete destroys a server. Deleting a server that is already gone is not an error.
	Delete(ctx context.Context, providerID string) error
	// Resize moves a server to another size (tier).
	Resize(ctx context.Context, providerID string, size string) error
	// List returns the servers this provider holds that carry ClawOps labels.
	List(ctx context.Context) ([]Server, error)
}

// ServerSpec is what to create.
type ServerSpec struct {
	Name      string            // DNS-safe, unique within the provider
	Region    string            // provider's region/location slug, e.g. "nbg1", "fra1"
	Size      string            // provider's size slug for the tier, e.g. "cx22"
	Image     string            // base image slug, e.g. "debian-12"
	Labels    map[string]string // always includes clawops.instance and clawops.account
	SSHKeys   []string          // provider key IDs or fingerprints for the SSH fallback
	Bootstrap Bootstrap         // how the new server joins the fleet
}

// Bootstrap is everything a new server needs to install OpenClaw and gf-clawnode and join
// the gateway. Cloud drivers render it into cloud-init user data; the local provider passes
// it to the processes it starts.
type Bootstrap struct {
	Instance      clawops.InstanceID
	GatewayURL    string // node endpoint, e.g. wss://clawops.tailnet.ts.net/v1/nodes/ws
	GatewayKey    string // gateway's Ed25519 public key, base64url, pinned by the node
	JoinToken     string // one-time enrollment token (a secret: never log it)
	TailscaleKey  string // tailnet auth key (a secret), empty for the local provider
	OpenClawImage string // pinned image tag
}

// Server is a provider's view of one server.
type Server struct {
	ProviderID string            `json:"provider_id"`
	Name       string            `json:"name"`
	Region     string            `json:"region"`
	Size       string            `json:"size"`
	Status     string            `json:"status"` // provider's word: running, starting, off, ...
	PublicIPv4 string            `json:"public_ipv4,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
}

// Reason codes for provider failures.
const (
	ReasonProviderRateLimited clawops.ReasonCode = "PROVIDER_RATE_LIMITED"
	ReasonProviderQuota       clawops.ReasonCode = "PROVIDER_QUOTA_EXCEEDED"
	ReasonProviderNotFound    clawops.ReasonCode = "PROVIDER_NOT_FOUND"
	ReasonProviderAuth        clawops.ReasonCode = "PROVIDER_AUTH_FAILED"
	ReasonProviderInvalid     clawops.ReasonCode = "PROVIDER_INVALID_REQUEST"
	ReasonProviderUnavailable clawops.ReasonCode = "PROVIDER_UNAVAILABLE"
)

// ErrMaybeCreated is wrapped in the error a driver's Create returns when the call failed
// after the provider may already have accepted it (a timeout, a dropped connection, a 5xx,
// an unreadable answer). Check with errors.Is, then reconcile with List (the
// clawops.instance label) before creating again, so no server is left running unrecorded.
var ErrMaybeCreated = errors.New("the server may exist at the provider")

// RateLimited is wrapped in PROVIDER_RATE_LIMITED errors and carries what the provider said
// about when to come back. Find it with errors.As.
type RateLimited struct {
	RetryAfter time.Duration // from a Retry-After header; 0 when absent
	Reset      time.Time     // from a RateLimit-Reset header (Unix seconds); zero when absent
	Err        error         // the provider's answer
}

func (r *RateLimited) Error() string {
	msg := "rate limited"
	switch {
	case r.RetryAfter > 0:
		msg += fmt.Sprintf(", retry after %s", r.RetryAfter)
	case !r.Reset.IsZero():
		msg += fmt.Sprintf(", limit resets at %s", r.Reset.UTC().Format(time.RFC3339))
	}
	if r.Err != nil {
		msg += ": " + r.Err.Error()
	}
	return msg
}

// Unwrap returns the provider's answer.
func (r *RateLimited) Unwrap() error { return r.Err }

// RetryAt returns when a call that failed with err may be retried, as the provider said,
// and false when err carries no such hint.
func RetryAt(err error, now time.Time) (time.Time, bool) {
	var r *RateLimited
	if !errors.As(err, &r) {
		return time.Time{}, false
	}
	switch {
	case r.RetryAfter > 0:
		return now.Add(r.RetryAfter), true
	case !r.Reset.IsZero():
		return r.Reset, true
	}
	return time.Time{}, false
}

// RateLimitedFromHeader builds a RateLimited from a provider's answer headers: Retry-After
// (seconds, or an HTTP date, which becomes Reset) and RateLimit-Reset (Unix seconds).
func RateLimitedFromHeader(h http.Header, err error) *RateLimited {
	r := &RateLimited{Err: err}
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, perr := strconv.Atoi(v); perr == nil && secs > 0 {
			r.RetryAfter = time.Duration(secs) * time.Second
		} else if at, perr := http.ParseTime(v); perr == nil {
			r.Reset = at
		}
	}
	if v := strings.TrimSpace(h.Get("RateLimit-Reset")); v != "" && r.Reset.IsZero() {
		if unix, perr := strconv.ParseInt(v, 10, 64); perr == nil && unix > 0 {
			r.Reset = time.Unix(unix, 0)
		}
	}
	return r
}
