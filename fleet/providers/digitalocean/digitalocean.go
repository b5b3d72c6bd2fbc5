// Package digitalocean is the fleet.Provider driver for DigitalOcean droplets, built on the
// official godo client.
//
// DigitalOcean has tags, not key/value labels, and a tag may hold only letters, digits,
// ':', '-' and '_'. So every ClawOps droplet carries the marker tag "clawops" (List finds
// droplets by it) and one tag per label, the key's dots written as underscores and the
// value after a colon: clawops.instance=demo1-pri becomes "clawops_instance:demo1-pri".
// Reading tags back turns a "clawops_" prefix into "clawops."; other keys keep their
// underscores. Label values must therefore use only letters, digits, '-' and '_'.
//
// Create passes the cloud-init bootstrap as user data (at most 64 KiB) and returns once
// DigitalOcean has accepted the droplet, without waiting for it to boot.
//
// Resize follows what the API requires: a droplet must be off to be resized, so an active
// droplet is shut down gracefully, powered off if the shutdown action fails, resized with
// disk=false (CPU and RAM only, so it can be downsized again later) and powered back on.
//
// The driver does not retry: failures come back as *clawops.Error values with the
// fleet.ReasonProvider* codes, rate limits as KindTransient carrying a fleet.RateLimited,
// and callers decide.
package digitalocean

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/godo"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/fleet/cloudinit"
	"github.com/gatewayforge/clawops/fleet/providers/providerkit"
)

// Name is the provider key of this driver.
const Name = "digitalocean"

// DefaultEndpoint is the DigitalOcean API.
const DefaultEndpoint = "https://api.digitalocean.com/"

// Tag is the marker tag every ClawOps droplet carries; List filters on it.
const Tag = "clawops"

// Labels every ClawOps server carries.
const (
	LabelInstance = providerkit.LabelInstance
	LabelAccount  = providerkit.LabelAccount
)

// cloud is what this driver tells providerkit about DigitalOcean.
var cloud = providerkit.Cloud{
	Name:            "DigitalOcean",
	DefaultEndpoint: DefaultEndpoint,
	Server:          "droplet",
	TokenNoun:       "API token",
	NoToken:         "no API token: create a personal access token with write scope (API → Tokens)",
	Auth:            "DigitalOcean rejected the API token; check that it exists and has write scope",
	Quota:           "DigitalOcean account limit reached; ask DigitalOcean to raise the droplet limit or delete unused droplets",
	Refused:         "check region, size and image",
	Reconcile:       "tag " + Tag,
	NameRe:          regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,253}[a-zA-Z0-9])?$`),
	NameRule:        "use letters, digits, '.' and '-'",
	RegionHint:      "name a DigitalOcean region slug such as fra1 or ams3",
	SizeHint:        "name a DigitalOcean size slug such as s-1vcpu-2gb",
	ImageHint:       "e.g. debian-12-x64",
	MaxUserData:     64 << 10,
}

// Options configure the driver.
type Options struct {
	// Token is a DigitalOcean personal access token with write scope. It is a secret: it
	// goes only into the Authorization header and never into logs or errors.
	Token string
	// Endpoint overrides the API base URL (DefaultEndpoint), e.g. for a test server.
	Endpoint string
	// HTTPClient performs the requests; a client with a 60 s timeout when nil. The driver
	// adds the token on a copy and never changes the client given.
	HTTPClient *http.Client
	// Image is used when a ServerSpec names none: a slug such as "debian-12-x64" or an ID.
	Image string
	// SSHKeys are DigitalOcean SSH key IDs or fingerprints added to every droplet.
	SSHKeys []string
	// CloudInit configures the rendered bootstrap; its Hostname is set per droplet.
	CloudInit cloudinit.Options
	// PollInterval is the pause between polls of an action during Resize; 2 s when zero.
	PollInterval time.Duration
	// Logger receives operational records (never secrets or user data); nil discards.
	Logger *slog.Logger
}

// Provider is the DigitalOcean driver. It is safe for concurrent use.
type Provider struct {
	client  *godo.Client
	opts    Options
	sshKeys []godo.DropletCreateSSHKey
	poll    time.Duration
	log     *slog.Logger
}

var _ fleet.Provider = (*Provider)(nil)

// New checks opts and returns a driver. It makes no API call.
func New(opts Options) (*Provider, error) {
	const op = "digitalocean.New"
	if opts.Endpoint == "" {
		opts.Endpoint = DefaultEndpoint
	}
	if !strings.HasSuffix(opts.Endpoint, "/") {
		opts.Endpoint += "/" // godo resolves relative paths against it
	}
	if err := cloud.CheckOptions(op, opts.Token, opts.Endpoint, opts.CloudInit); err != nil {
		return nil, err
	}
	p := &Provider{opts: opts, poll: opts.PollInterval, log: providerkit.Logger(opts.Logger, Name)}
	for _, k := range opts.SSHKeys {
		key, err := sshKey(k)
		if err != nil {
			return nil, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, err)
		}
		p.sshKeys = append(p.sshKeys, key)
	}
	if p.poll <= 0 {
		p.poll = 2 * time.Second
	}
	hc := providerkit.BearerClient(opts.HTTPClient, opts.Token, nil)
	client, err := godo.New(hc, godo.SetBaseURL(opts.Endpoint), godo.SetUserAgent("clawops"))
	if err != nil {
		return nil, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, err)
	}
	p.client = client
	return p, nil
}

// Name returns "digitalocean".
func (p *Provider) Name() string { return Name }

// Create asks DigitalOcean for a droplet described by spec, with the rendered cloud-init
// as user data, and returns as soon as DigitalOcean has accepted it (status "new").
func (p *Provider) Create(ctx context.Context, spec fleet.ServerSpec) (fleet.Server, error) {
	const op = "digitalocean.Create"
	tags, err := checkSpec(spec)
	if err != nil {
		return fleet.Server{}, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, err)
	}
	image, err := cloud.Image(op, spec.Image, p.opts.Image)
	if err != nil {
		return fleet.Server{}, err
	}
	sshKeys := slices.Clone(p.sshKeys)
	for _, k := range spec.SSHKeys {
		key, err := sshKey(k)
		if err != nil {
			return fleet.Server{}, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, err)
		}
		if !slices.Contains(sshKeys, key) {
			sshKeys = append(sshKeys, key)
		}
	}
	userData, err := cloud.UserData(op, spec, p.opts.CloudInit)
	if err != nil {
		return fleet.Server{}, err
	}
	req := &godo.DropletCreateRequest{
		Name:     spec.Name,
		Region:   spec.Region,
		Size:     spec.Size,
		Image:    imageRef(image),
		SSHKeys:  sshKeys,
		IPv6:     true,
		UserData: userData,
		Tags:     tags,
	}
	d, resp, err := p.client.Droplets.Create(ctx, req)
	if err != nil {
		p.log.WarnContext(ctx, "create failed", "name", spec.Name, "instance", spec.Bootstrap.Instance, "err", err)
		return fleet.Server{}, mapError(op, resp, err, true)
	}
	if d == nil {
		return fleet.Server{}, cloud.NoServer(op)
	}
	s := toServer(d)
	p.log.InfoContext(ctx, "droplet created", "id", s.ProviderID, "name", s.Name, "instance", spec.Bootstrap.Instance, "size", spec.Size, "region", spec.Region)
	return s, nil
}

// Get returns DigitalOcean's view of one droplet; an unknown ID is PROVIDER_NOT_FOUND.
func (p *Provider) Get(ctx context.Context, providerID string) (fleet.Server, error) {
	const op = "digitalocean.Get"
	d, err := p.get(ctx, op, providerID)
	if err != nil {
		return fleet.Server{}, err
	}
	return toServer(d), nil
}

func (p *Provider) get(ctx context.Context, op, providerID string) (*godo.Droplet, error) {
	id, err := parseID(providerID)
	if err != nil {
		return nil, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, err)
	}
	d, resp, err := p.client.Droplets.Get(ctx, id)
	if err != nil {
		return nil, mapError(op, resp, err, false)
	}
	return d, nil
}

// Delete destroys a droplet. A droplet DigitalOcean does not know is already gone: success.
func (p *Provider) Delete(ctx context.Context, providerID string) error {
	const op = "digitalocean.Delete"
	id, err := parseID(providerID)
	if err != nil {
		return clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, err)
	}
	resp, err := p.client.Droplets.Delete(ctx, id)
	if err != nil {
		if providerkit.Status(answerOf(resp, err)) == http.StatusNotFound {
			p.log.InfoContext(ctx, "delete: droplet already gone", "id", id)
			return nil
		}
		return mapError(op, resp, err, false)
	}
	p.log.InfoContext(ctx, "droplet deleted", "id", id)
	return nil
}

// Resize moves the droplet to size (CPU and RAM only: disk=false). An active droplet is
// shut down first and powered on afterwards, as DigitalOcean requires.
func (p *Provider) Resize(ctx context.Context, providerID string, size string) error {
	const op = "digitalocean.Resize"
	if size == "" {
		return clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, "no size: name a DigitalOcean size slug such as s-2vcpu-4gb")
	}
	d, err := p.get(ctx, op, providerID)
	if err != nil {
		return err
	}
	if d.SizeSlug == size {
		return nil
	}
	err = cloud.ResizeStopped(ctx, op, size, providerkit.ResizeSteps{
		WasOn: d.Status == "active",
		Stop:  func(ctx context.Context) error { return p.stop(ctx, op, d.ID) },
		Change: func(ctx context.Context) error {
			return p.act(ctx, op, d.ID, func() (*godo.Action, *godo.Response, error) {
				return p.client.DropletActions.Resize(ctx, d.ID, size, false)
			})
		},
		Start: func(ctx context.Context) error {
			return p.act(ctx, op, d.ID, func() (*godo.Action, *godo.Response, error) {
				return p.client.DropletActions.PowerOn(ctx, d.ID)
			})
		},
	})
	if err != nil {
		return err
	}
	p.log.InfoContext(ctx, "droplet resized", "id", d.ID, "from", d.SizeSlug, "to", size)
	return nil
}

// stop shuts the droplet down gracefully; when DigitalOcean reports that the shutdown
// failed (the OS did not stop in time), it powers the droplet off.
func (p *Provider) stop(ctx context.Context, op string, id int) error {
	err := p.act(ctx, op, id, func() (*godo.Action, *godo.Response, error) {
		return p.client.DropletActions.Shutdown(ctx, id)
	})
	if err == nil {
		return nil
	}
	if clawops.ReasonOf(err) != clawops.ReasonExecutionFailed {
		return err
	}
	p.log.WarnContext(ctx, "graceful shutdown failed; powering off", "id", id)
	return p.act(ctx, op, id, func() (*godo.Action, *godo.Response, error) {
		return p.client.DropletActions.PowerOff(ctx, id)
	})
}

// act starts a droplet action and polls it until it completes or errors.
func (p *Provider) act(ctx context.Context, op string, dropletID int, start func() (*godo.Action, *godo.Response, error)) error {
	a, resp, err := start()
	if err != nil {
		return mapError(op, resp, err, false)
	}
	for a != nil {
		switch a.Status {
		case godo.ActionCompleted:
			return nil
		case "errored":
			return clawops.E(op, clawops.KindOther, clawops.ReasonExecutionFailed,
				fmt.Errorf("DigitalOcean action %s (%d) on droplet %d errored", a.Type, a.ID, dropletID))
		}
		if !providerkit.Pause(ctx, p.poll) {
			return clawops.E(op, clawops.KindTransient, fleet.ReasonProviderUnavailable,
				fmt.Errorf("stopped waiting for action %s (%d) on droplet %d: %w", a.Type, a.ID, dropletID, ctx.Err()))
		}
		a, resp, err = p.client.DropletActions.Get(ctx, dropletID, a.ID)
		if err != nil {
			return mapError(op, resp, err, false)
		}
	}
	return nil
}

// List returns every droplet tagged "clawops", following all pages.
func (p *Provider) List(ctx context.Context) ([]fleet.Server, error) {
	const op = "digitalocean.List"
	var out []fleet.Server
	opt := &godo.ListOptions{Page: 1, PerPage: 200}
	for {
		droplets, resp, err := p.client.Droplets.ListByTag(ctx, Tag, opt)
		if err != nil {
			return nil, mapError(op, resp, err, false)
		}
		for i := range droplets {
			out = append(out, toServer(&droplets[i]))
		}
		if resp.Links == nil || resp.Links.IsLastPage() {
			return out, nil
		}
		page, err := resp.Links.CurrentPage()
		if err != nil {
			return nil, clawops.E(op, clawops.KindTransient, fleet.ReasonProviderUnavailable, fmt.Errorf("unreadable pagination links: %w", err))
		}
		if page+1 <= opt.Page {
			return nil, clawops.E(op, clawops.KindTransient, fleet.ReasonProviderUnavailable, fmt.Errorf("pagination does not advance past page %d", opt.Page))
		}
		opt.Page = page + 1
	}
}

func toServer(d *godo.Droplet) fleet.Server {
	out := fleet.Server{
		ProviderID: strconv.Itoa(d.ID),
		Name:       d.Name,
		Size:       d.SizeSlug,
		Status:     d.Status,
		Labels:     tagsToLabels(d.Tags),
	}
	if d.Region != nil {
		out.Region = d.Region.Slug
	}
	if ip, err := d.PublicIPv4(); err == nil {
		out.PublicIPv4 = ip
	}
	if t, err := time.Parse(time.RFC3339, d.Created); err == nil {
		out.CreatedAt = t
	}
	return out
}

// labelsToTags turns labels into DigitalOcean tags, sorted, after the marker tag.
func labelsToTags(labels map[string]string) ([]string, error) {
	tags := []string{Tag}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if !labelKeyRe.MatchString(k) {
			return nil, fmt.Errorf("label key %q: use letters, digits, '.', '_' or '-'", k)
		}
		v := labels[k]
		if !labelValueRe.MatchString(v) {
			return nil, fmt.Errorf("label %s value %q: DigitalOcean tags allow only letters, digits, '-' and '_'", k, v)
		}
		tag := strings.ReplaceAll(k, ".", "_") + ":" + v
		if len(tag) > 255 {
			return nil, fmt.Errorf("label %s: the tag would be %d characters; DigitalOcean allows 255", k, len(tag))
		}
		tags = append(tags, tag)
	}
	return tags, nil
}

// tagsToLabels reads labels back from tags written by labelsToTags; other tags are ignored.
func tagsToLabels(tags []string) map[string]string {
	labels := map[string]string{}
	for _, t := range tags {
		k, v, ok := strings.Cut(t, ":")
		if !ok || k == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(k, Tag+"_"); ok {
			k = Tag + "." + rest
		}
		labels[k] = v
	}
	return labels
}

var (
	labelKeyRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	labelValueRe  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	fingerprintRe = regexp.MustCompile(`^([0-9a-f]{2}:){15}[0-9a-f]{2}$`)
)

func checkSpec(spec fleet.ServerSpec) ([]string, error) {
	labels, err := cloud.CheckSpec(spec)
	if err != nil {
		return nil, err
	}
	return labelsToTags(labels)
}

func sshKey(k string) (godo.DropletCreateSSHKey, error) {
	if id, err := strconv.Atoi(k); err == nil && id > 0 {
		return godo.DropletCreateSSHKey{ID: id}, nil
	}
	if fingerprintRe.MatchString(k) {
		return godo.DropletCreateSSHKey{Fingerprint: k}, nil
	}
	return godo.DropletCreateSSHKey{}, fmt.Errorf("SSH key %q: DigitalOcean wants a key ID or its MD5 fingerprint (aa:bb:...)", k)
}

func imageRef(image string) godo.DropletCreateImage {
	if id, err := strconv.Atoi(image); err == nil && id > 0 {
		return godo.DropletCreateImage{ID: id}
	}
	return godo.DropletCreateImage{Slug: image}
}

func parseID(providerID string) (int, error) {
	id, err := strconv.Atoi(providerID)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("provider ID %q: droplet IDs are positive integers", providerID)
	}
	return id, nil
}
