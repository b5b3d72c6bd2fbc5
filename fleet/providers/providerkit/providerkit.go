// Package providerkit holds what the cloud drivers under fleet/providers have in common:
// the checks of options and server specs made before any call, the rendering of the
// cloud-init user data, the mapping of an API's failures to the fleet.ReasonProvider*
// codes, the resize of a server that must be off to change, and an HTTP client that
// carries the API token.
//
// A driver describes its cloud once, in a Cloud value, and keeps to itself what is
// particular to it: its client library, its name, label and ID rules, and the error codes
// its API adds to the HTTP status.
package providerkit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"regexp"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/fleet/cloudinit"
)

// Labels every ClawOps server carries.
const (
	LabelInstance = "clawops.instance"
	LabelAccount  = "clawops.account"
)

// DefaultTimeout bounds each API request when the driver's options name no HTTP client.
const DefaultTimeout = 60 * time.Second

// Cloud describes one provider's API: what it accepts and what to tell the operator when
// it refuses. The strings complete sentences of the driver's errors, so they say what to
// do, not what went wrong.
type Cloud struct {
	Name            string // as its users know it: "Hetzner"
	DefaultEndpoint string // the API base URL, shown as an example of a good endpoint
	Server          string // its word for a server: "server", "droplet", "instance"
	TokenNoun       string // its word for the credential: "API token", "API key"
	NoToken         string // the error when no token is set, saying where to create one
	Auth            string // advice when the API rejects the token
	Quota           string // advice when an account or project limit is reached
	Refused         string // what to check when the API refuses a request
	Reconcile       string // how List finds a server: "label clawops.instance", "tag clawops"

	NameRe      *regexp.Regexp // server names the cloud accepts
	NameRule    string         // the rule NameRe enforces, in words
	RegionHint  string         // e.g. "name a Hetzner location such as nbg1"
	SizeHint    string         // e.g. "name a Hetzner server type such as cx22"
	ImageHint   string         // an example of the driver's Image option, e.g. "e.g. debian-12"
	MaxUserData int            // the largest user data the API takes in bytes; 0 for no limit
}

// CheckOptions checks what every driver's options hold before the driver is built: a
// token that can travel in a header, an http(s) endpoint and a cloud-init configuration
// that can render.
func (c Cloud) CheckOptions(op, token, endpoint string, ci cloudinit.Options) error {
	if token == "" {
		return clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderAuth, c.NoToken)
	}
	if !validHeaderValue(token) {
		return clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderAuth,
			fmt.Sprintf("the %s contains characters that cannot be sent in a header; copy it again", c.TokenNoun))
	}
	if err := c.checkEndpoint(endpoint); err != nil {
		return clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, err)
	}
	if err := ci.Validate(); err != nil {
		return clawops.E(op, err)
	}
	return nil
}

func (c Cloud) checkEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("endpoint %q: want an http(s) URL such as %s", endpoint, c.DefaultEndpoint)
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

// CheckSpec checks the parts of a spec every cloud needs, before any call, and returns
// the labels to set: the spec's, with clawops.instance filled from the bootstrap when
// missing. The driver then checks the labels against its own rules. Errors are plain;
// the driver reports them as PROVIDER_INVALID_REQUEST.
func (c Cloud) CheckSpec(spec fleet.ServerSpec) (map[string]string, error) {
	if !c.NameRe.MatchString(spec.Name) {
		return nil, fmt.Errorf("%s name %q: %s", c.Server, spec.Name, c.NameRule)
	}
	if spec.Region == "" {
		return nil, errors.New("no region: " + c.RegionHint)
	}
	if spec.Size == "" {
		return nil, errors.New("no size: " + c.SizeHint)
	}
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	if labels[LabelInstance] == "" {
		labels[LabelInstance] = string(spec.Bootstrap.Instance)
	}
	if labels[LabelInstance] != string(spec.Bootstrap.Instance) {
		return nil, fmt.Errorf("label %s=%q differs from the bootstrap instance %q", LabelInstance, labels[LabelInstance], spec.Bootstrap.Instance)
	}
	if labels[LabelAccount] == "" {
		return nil, fmt.Errorf("label %s is missing: every ClawOps server names its account", LabelAccount)
	}
	return labels, nil
}

// Image returns the spec's image, or the driver's when the spec names none.
func (c Cloud) Image(op, specImage, driverImage string) (string, error) {
	if specImage != "" {
		return specImage, nil
	}
	if driverImage != "" {
		return driverImage, nil
	}
	return "", clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid,
		fmt.Sprintf("no image: set the driver's Image (%s) or the spec's", c.ImageHint))
}

// UserData renders the spec's bootstrap as cloud-init, with the spec's name as hostname,
// and checks it fits the cloud's limit.
func (c Cloud) UserData(op string, spec fleet.ServerSpec, ci cloudinit.Options) (string, error) {
	ci.Hostname = spec.Name
	userData, err := cloudinit.Render(spec.Bootstrap, ci)
	if err != nil {
		return "", clawops.E(op, err)
	}
	if c.MaxUserData > 0 && len(userData) > c.MaxUserData {
		return "", clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid,
			fmt.Errorf("user data is %d bytes; %s accepts at most %d", len(userData), c.Name, c.MaxUserData))
	}
	return userData, nil
}

// NoServer is the error of a Create the API accepted without saying what it created.
func (c Cloud) NoServer(op string) error {
	return clawops.E(op, clawops.KindTransient, fleet.ReasonProviderUnavailable,
		fmt.Errorf("%w: %s accepted the request but returned no %s; reconcile with List before retrying", fleet.ErrMaybeCreated, c.Name, c.Server))
}

// Logger scopes l to the driver, and discards when l is nil.
func Logger(l *slog.Logger, provider string) *slog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return l.With("provider", provider)
}

// Pause waits for d and reports true, or reports false as soon as ctx ends.
func Pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
