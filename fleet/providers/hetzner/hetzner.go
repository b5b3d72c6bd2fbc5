// Package hetzner is the fleet.Provider driver for Hetzner Cloud, built on the official
// hcloud-go client.
//
// Servers carry the ClawOps labels (clawops.instance, clawops.account) as Hetzner labels,
// and List finds them with the label selector "clawops.instance". Create passes the
// cloud-init bootstrap as user data (at most 32 KiB) and returns once Hetzner has accepted
// the server, without waiting for it to boot.
//
// Resize follows what the API requires: change_type only works on a stopped server, so a
// running server is shut down gracefully (ACPI), powered off if it has not stopped within
// Options.ShutdownTimeout, changed with upgrade_disk=false (so it can be downsized again
// later) and powered back on.
//
// The driver does not retry: failures come back as *clawops.Error values with the
// fleet.ReasonProvider* codes, rate limits as KindTransient carrying a fleet.RateLimited,
// and callers decide.
package hetzner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/fleet/cloudinit"
	"github.com/gatewayforge/clawops/fleet/providers/providerkit"
)

// Name is the provider key of this driver.
const Name = "hetzner"

// DefaultEndpoint is the Hetzner Cloud API.
const DefaultEndpoint = "https://api.hetzner.cloud/v1"

// Labels every ClawOps server carries.
const (
	LabelInstance = providerkit.LabelInstance
	LabelAccount  = providerkit.LabelAccount
)

// cloud is what this driver tells providerkit about Hetzner.
var cloud = providerkit.Cloud{
	Name:            "Hetzner",
	DefaultEndpoint: DefaultEndpoint,
	Server:          "server",
	TokenNoun:       "API token",
	NoToken:         "no API token: create one in the Hetzner Cloud console (Security → API tokens, Read & Write)",
	Auth:            "the Hetzner API rejected the token; check that it exists and has Read & Write permission",
	Quota:           "the Hetzner project limit is reached; ask Hetzner to raise it or delete unused servers",
	Refused:         "check region, size and image",
	Reconcile:       "label " + LabelInstance,
	NameRe:          regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`),
	NameRule:        "use lowercase letters, digits and '-', at most 63 characters",
	RegionHint:      "name a Hetzner location such as nbg1, fsn1 or hel1",
	SizeHint:        "name a Hetzner server type such as cx22",
	ImageHint:       "e.g. debian-12",
	MaxUserData:     32 << 10,
}

// Options configure the driver.
type Options struct {
	// Token is a Hetzner Cloud API token with Read & Write permission. It is a secret: it
	// goes only into the Authorization header and never into logs or errors.
	Token string
	// Endpoint overrides the API base URL (DefaultEndpoint), e.g. for a test server.
	Endpoint string
	// HTTPClient performs the requests; a client with a 60 s timeout when nil.
	HTTPClient *http.Client
	// Image is used when a ServerSpec names none, e.g. "debian-12" (or a numeric image ID).
	Image string
	// SSHKeys are Hetzner SSH key IDs (numeric) added to every server for the SSH fallback.
	SSHKeys []string
	// CloudInit configures the rendered bootstrap; its Hostname is set per server.
	CloudInit cloudinit.Options
	// PollInterval is the pause between polls of an action during Resize; 2 s when zero.
	PollInterval time.Duration
	// ShutdownTimeout bounds the graceful shutdown before Resize powers off; 2 min when zero.
	ShutdownTimeout time.Duration
	// Logger receives operational records (never secrets or user data); nil discards.
	Logger *slog.Logger
}

// Provider is the Hetzner Cloud driver. It is safe for concurrent use.
type Provider struct {
	client   *hcloud.Client
	opts     Options
	sshKeys  []*hcloud.SSHKey
	poll     time.Duration
	shutdown time.Duration
	log      *slog.Logger
}

var _ fleet.Provider = (*Provider)(nil)

// New checks opts and returns a driver. It makes no API call.
func New(opts Options) (*Provider, error) {
	const op = "hetzner.New"
	if opts.Endpoint == "" {
		opts.Endpoint = DefaultEndpoint
	}
	if err := cloud.CheckOptions(op, opts.Token, opts.Endpoint, opts.CloudInit); err != nil {
		return nil, err
	}
	p := &Provider{opts: opts, poll: opts.PollInterval, shutdown: opts.ShutdownTimeout, log: providerkit.Logger(opts.Logger, Name)}
	for _, k := range opts.SSHKeys {
		id, err := strconv.ParseInt(k, 10, 64)
		if err != nil || id <= 0 {
			return nil, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, fmt.Errorf("SSH key %q: Hetzner wants the numeric key ID (hcloud ssh-key list)", k))
		}
		p.sshKeys = append(p.sshKeys, &hcloud.SSHKey{ID: id})
	}
	if p.poll <= 0 {
		p.poll = 2 * time.Second
	}
	if p.shutdown <= 0 {
		p.shutdown = 2 * time.Minute
	}
	httpClient := opts.HTTPClient
	if httpClient == nil {
		httpClient = &http.Client{Timeout: providerkit.DefaultTimeout}
	}
	p.client = hcloud.NewClient(
		hcloud.WithToken(opts.Token),
		hcloud.WithEndpoint(opts.Endpoint),
		hcloud.WithHTTPClient(httpClient),
		hcloud.WithApplication("clawops", ""),
		hcloud.WithPollOpts(hcloud.PollOpts{BackoffFunc: hcloud.ConstantBackoff(p.poll)}),
		// No hidden retries: a rate limit or a 5xx reaches the caller as KindTransient.
		hcloud.WithRetryOpts(hcloud.RetryOpts{MaxRetries: 0}),
	)
	return p, nil
}

// Name returns "hetzner".
func (p *Provider) Name() string { return Name }

// Create asks Hetzner for a server described by spec, with the rendered cloud-init as user
// data, and returns as soon as Hetzner has accepted it (status "initializing").
func (p *Provider) Create(ctx context.Context, spec fleet.ServerSpec) (fleet.Server, error) {
	const op = "hetzner.Create"
	labels, err := checkSpec(spec)
	if err != nil {
		return fleet.Server{}, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, err)
	}
	image, err := cloud.Image(op, spec.Image, p.opts.Image)
	if err != nil {
		return fleet.Server{}, err
	}
	userData, err := cloud.UserData(op, spec, p.opts.CloudInit)
	if err != nil {
		return fleet.Server{}, err
	}
	sshKeys := p.sshKeys
	for _, k := range spec.SSHKeys {
		id, err := strconv.ParseInt(k, 10, 64)
		if err != nil || id <= 0 {
			return fleet.Server{}, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, fmt.Errorf("SSH key %q: Hetzner wants the numeric key ID", k))
		}
		if !slices.ContainsFunc(sshKeys, func(s *hcloud.SSHKey) bool { return s.ID == id }) {
			sshKeys = append(slices.Clip(sshKeys), &hcloud.SSHKey{ID: id})
		}
	}
	start := true
	res, resp, err := p.client.Server.Create(ctx, hcloud.ServerCreateOpts{
		Name:             spec.Name,
		ServerType:       &hcloud.ServerType{Name: spec.Size},
		Image:            imageRef(image),
		Location:         &hcloud.Location{Name: spec.Region},
		SSHKeys:          sshKeys,
		UserData:         userData,
		Labels:           labels,
		StartAfterCreate: &start,
	})
	if err != nil {
		p.log.WarnContext(ctx, "create failed", "name", spec.Name, "instance", spec.Bootstrap.Instance, "err", err)
		return fleet.Server{}, mapError(op, resp, err, true)
	}
	if res.Server == nil {
		return fleet.Server{}, cloud.NoServer(op)
	}
	s := toServer(res.Server)
	p.log.InfoContext(ctx, "server created", "id", s.ProviderID, "name", s.Name, "instance", spec.Bootstrap.Instance, "size", spec.Size, "region", spec.Region)
	return s, nil
}

// Get returns Hetzner's view of one server; an unknown ID is PROVIDER_NOT_FOUND.
func (p *Provider) Get(ctx context.Context, providerID string) (fleet.Server, error) {
	const op = "hetzner.Get"
	srv, err := p.get(ctx, op, providerID)
	if err != nil {
		return fleet.Server{}, err
	}
	return toServer(srv), nil
}

func (p *Provider) get(ctx context.Context, op, providerID string) (*hcloud.Server, error) {
	id, err := parseID(providerID)
	if err != nil {
		return nil, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, err)
	}
	srv, resp, err := p.client.Server.GetByID(ctx, id)
	if err != nil {
		return nil, mapError(op, resp, err, false)
	}
	if srv == nil {
		return nil, clawops.E(op, clawops.KindNotFound, fleet.ReasonProviderNotFound, fmt.Errorf("hetzner has no server %d; it may have been deleted outside ClawOps", id))
	}
	return srv, nil
}

// Delete destroys a server. A server Hetzner does not know is already gone: success.
func (p *Provider) Delete(ctx context.Context, providerID string) error {
	const op = "hetzner.Delete"
	id, err := parseID(providerID)
	if err != nil {
		return clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, err)
	}
	_, resp, err := p.client.Server.DeleteWithResult(ctx, &hcloud.Server{ID: id})
	if err != nil {
		if hcloud.IsError(err, hcloud.ErrorCodeNotFound) || providerkit.Status(answerOf(resp, err)) == http.StatusNotFound {
			p.log.InfoContext(ctx, "delete: server already gone", "id", id)
			return nil
		}
		return mapError(op, resp, err, false)
	}
	p.log.InfoContext(ctx, "server deleted", "id", id)
	return nil
}

// Resize changes the server type to size, keeping the disk (upgrade_disk=false). A
// running server is stopped first and started again afterwards, as Hetzner requires.
func (p *Provider) Resize(ctx context.Context, providerID string, size string) error {
	const op = "hetzner.Resize"
	if size == "" {
		return clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, "no size: name a Hetzner server type such as cx32")
	}
	srv, err := p.get(ctx, op, providerID)
	if err != nil {
		return err
	}
	if srv.ServerType != nil && srv.ServerType.Name == size {
		return nil
	}
	err = cloud.ResizeStopped(ctx, op, size, providerkit.ResizeSteps{
		WasOn: srv.Status != hcloud.ServerStatusOff,
		Stop:  func(ctx context.Context) error { return p.stop(ctx, op, srv) },
		Change: func(ctx context.Context) error {
			action, resp, err := p.client.Server.ChangeType(ctx, srv, hcloud.ServerChangeTypeOpts{
				ServerType:  &hcloud.ServerType{Name: size},
				UpgradeDisk: false,
			})
			if err != nil {
				return mapError(op, resp, err, false)
			}
			return p.wait(ctx, op, action)
		},
		Start: func(ctx context.Context) error {
			action, resp, err := p.client.Server.Poweron(ctx, srv)
			if err != nil {
				return mapError(op, resp, err, false)
			}
			return p.wait(ctx, op, action)
		},
	})
	if err != nil {
		return err
	}
	p.log.InfoContext(ctx, "server resized", "id", srv.ID, "from", typeName(srv), "to", size)
	return nil
}

// stop shuts the server down gracefully and powers it off when it has not stopped in time.
func (p *Provider) stop(ctx context.Context, op string, srv *hcloud.Server) error {
	action, resp, err := p.client.Server.Shutdown(ctx, srv)
	if err != nil {
		return mapError(op, resp, err, false)
	}
	if err := p.wait(ctx, op, action); err != nil {
		return err
	}
	if off, err := p.waitOff(ctx, op, srv.ID); err != nil || off {
		return err
	}
	p.log.WarnContext(ctx, "graceful shutdown timed out; powering off", "id", srv.ID, "waited", p.shutdown)
	action, resp, err = p.client.Server.Poweroff(ctx, srv)
	if err != nil {
		return mapError(op, resp, err, false)
	}
	return p.wait(ctx, op, action)
}

// waitOff polls the server until it is off, for at most the shutdown timeout.
func (p *Provider) waitOff(ctx context.Context, op string, id int64) (bool, error) {
	wctx, cancel := context.WithTimeout(ctx, p.shutdown)
	defer cancel()
	for {
		srv, resp, err := p.client.Server.GetByID(wctx, id)
		switch {
		case err != nil && wctx.Err() != nil && ctx.Err() == nil:
			return false, nil
		case err != nil:
			return false, mapError(op, resp, err, false)
		case srv == nil:
			return false, clawops.E(op, clawops.KindNotFound, fleet.ReasonProviderNotFound, fmt.Errorf("server %d disappeared during shutdown", id))
		case srv.Status == hcloud.ServerStatusOff:
			return true, nil
		}
		if !providerkit.Pause(wctx, p.poll) {
			if ctx.Err() != nil {
				return false, clawops.E(op, clawops.KindTransient, fleet.ReasonProviderUnavailable, ctx.Err())
			}
			return false, nil
		}
	}
}

// wait polls an action until it succeeds or fails.
func (p *Provider) wait(ctx context.Context, op string, action *hcloud.Action) error {
	if action == nil {
		return nil
	}
	err := p.client.Action.WaitFor(ctx, action)
	if err == nil {
		return nil
	}
	var aerr hcloud.ActionError
	if errors.As(err, &aerr) {
		return clawops.E(op, clawops.KindOther, clawops.ReasonExecutionFailed,
			fmt.Errorf("hetzner action %s (%d) failed: %s (%s)", action.Command, action.ID, aerr.Message, aerr.Code))
	}
	return mapError(op, nil, err, false)
}

// List returns every server labelled clawops.instance, following all pages.
func (p *Provider) List(ctx context.Context) ([]fleet.Server, error) {
	const op = "hetzner.List"
	servers, err := p.client.Server.AllWithOpts(ctx, hcloud.ServerListOpts{
		ListOpts: hcloud.ListOpts{LabelSelector: LabelInstance, PerPage: 50},
	})
	if err != nil {
		return nil, mapError(op, nil, err, false)
	}
	out := make([]fleet.Server, 0, len(servers))
	for _, s := range servers {
		out = append(out, toServer(s))
	}
	return out, nil
}

func toServer(s *hcloud.Server) fleet.Server {
	out := fleet.Server{
		ProviderID: strconv.FormatInt(s.ID, 10),
		Name:       s.Name,
		Size:       typeName(s),
		Status:     string(s.Status),
		Labels:     maps.Clone(s.Labels),
		CreatedAt:  s.Created,
	}
	if s.Location != nil {
		out.Region = s.Location.Name
	}
	if !s.PublicNet.IPv4.IsUnspecified() {
		out.PublicIPv4 = s.PublicNet.IPv4.IP.String()
	}
	return out
}

func typeName(s *hcloud.Server) string {
	if s.ServerType == nil {
		return ""
	}
	return s.ServerType.Name
}

func imageRef(image string) *hcloud.Image {
	if id, err := strconv.ParseInt(image, 10, 64); err == nil && id > 0 {
		return &hcloud.Image{ID: id}
	}
	return &hcloud.Image{Name: image}
}

func parseID(providerID string) (int64, error) {
	id, err := strconv.ParseInt(providerID, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("provider ID %q: Hetzner server IDs are positive integers", providerID)
	}
	return id, nil
}

// Hetzner label rules: keys are an optional DNS-subdomain prefix and '/', then a name of
// at most 63 characters; values at most 63 characters. Both start and end alphanumeric.
var (
	labelNameRe   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)
	labelPrefixRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)
	labelValueRe  = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$`)
)

// checkSpec validates what Hetzner would refuse, before any call, and returns the labels
// to set.
func checkSpec(spec fleet.ServerSpec) (map[string]string, error) {
	labels, err := cloud.CheckSpec(spec)
	if err != nil {
		return nil, err
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if err := checkLabel(k, labels[k]); err != nil {
			return nil, err
		}
	}
	return labels, nil
}

func checkLabel(key, value string) error {
	name := key
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		if !labelPrefixRe.MatchString(key[:i]) {
			return fmt.Errorf("label key %q: the prefix before '/' must be a DNS subdomain", key)
		}
		name = key[i+1:]
	}
	if !labelNameRe.MatchString(name) {
		return fmt.Errorf("label key %q: use at most 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", key)
	}
	if !labelValueRe.MatchString(value) {
		return fmt.Errorf("label %s value %q: use at most 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", key, value)
	}
	return nil
}
