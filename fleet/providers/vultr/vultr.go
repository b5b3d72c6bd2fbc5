// Package vultr is the fleet.Provider driver for Vultr cloud compute instances, built on the
// official govultr client.
//
// Vultr instances carry tags, not labels: every ClawOps instance has the marker tag
// "clawops" (List filters on it) and one "key=value" tag per label, e.g.
// "clawops.instance=demo1-pri", read back into labels by Get and List.
//
// Images: Vultr installs an operating system by numeric os_id (list them with GET /v2/os),
// so an image is either that number, "snapshot:<id>" for a snapshot, or "app:<image_id>"
// for a Marketplace application. Create sends the cloud-init bootstrap base64-encoded, as
// the API requires, and returns once Vultr has accepted the instance.
//
// Resize is a plan change (PATCH with the new plan). Vultr restarts the instance itself
// while it moves it, so the driver neither stops nor starts it; Vultr only moves to larger
// plans, and refuses a smaller one (PROVIDER_INVALID_REQUEST).
//
// govultr reports failures as plain text, so the driver reads the status and rate-limit
// headers of each answer at the transport, per call, to map failures to *clawops.Error
// values with the fleet.ReasonProvider* codes. The driver does not retry; callers decide.
package vultr

import (
	"context"
	"encoding/base64"
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

	"github.com/vultr/govultr/v3"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/fleet/cloudinit"
	"github.com/gatewayforge/clawops/fleet/providers/providerkit"
)

// Name is the provider key of this driver.
const Name = "vultr"

// DefaultEndpoint is the Vultr API.
const DefaultEndpoint = "https://api.vultr.com"

// Tag is the marker tag every ClawOps instance carries; List filters on it.
const Tag = "clawops"

// Labels every ClawOps server carries.
const (
	LabelInstance = providerkit.LabelInstance
	LabelAccount  = providerkit.LabelAccount
)

// cloud is what this driver tells providerkit about Vultr.
var cloud = providerkit.Cloud{
	Name:            "Vultr",
	DefaultEndpoint: DefaultEndpoint,
	Server:          "instance",
	TokenNoun:       "API key",
	NoToken:         "no API key: enable the API in the Vultr console (Account → API) and copy the key",
	Auth:            "the Vultr API rejected the key; check that it is valid and that this host's IP is in the key's access control list",
	Quota:           "the Vultr account limit is reached; ask Vultr support to raise it or delete unused instances",
	Refused:         "check region, plan and image",
	Reconcile:       "tag " + Tag,
	NameRe:          regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`),
	NameRule:        "use lowercase letters, digits and '-', at most 63 characters",
	RegionHint:      "name a Vultr region such as fra, ams or ewr",
	SizeHint:        "name a Vultr plan such as vc2-1c-2gb",
	ImageHint:       "an os_id from GET /v2/os",
}

// Options configure the driver.
type Options struct {
	// Token is a Vultr API key. It is a secret: it goes only into the Authorization header
	// and never into logs or errors.
	Token string
	// Endpoint overrides the API base URL (DefaultEndpoint), e.g. for a test server.
	Endpoint string
	// HTTPClient performs the requests; a client with a 60 s timeout when nil. The driver
	// adds the token on a copy and never changes the client given.
	HTTPClient *http.Client
	// Image is used when a ServerSpec names none: an os_id such as "2136", "snapshot:<id>"
	// or "app:<image_id>".
	Image string
	// SSHKeys are Vultr SSH key IDs (UUIDs) added to every instance.
	SSHKeys []string
	// CloudInit configures the rendered bootstrap; its Hostname is set per instance.
	CloudInit cloudinit.Options
	// Logger receives operational records (never secrets or user data); nil discards.
	Logger *slog.Logger
}

// Provider is the Vultr driver. It is safe for concurrent use.
type Provider struct {
	client *govultr.Client
	opts   Options
	log    *slog.Logger
}

var _ fleet.Provider = (*Provider)(nil)

// New checks opts and returns a driver. It makes no API call.
func New(opts Options) (*Provider, error) {
	const op = "vultr.New"
	if opts.Endpoint == "" {
		opts.Endpoint = DefaultEndpoint
	}
	if err := cloud.CheckOptions(op, opts.Token, opts.Endpoint, opts.CloudInit); err != nil {
		return nil, err
	}
	for _, k := range opts.SSHKeys {
		if !uuidRe.MatchString(k) {
			return nil, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, fmt.Errorf("SSH key %q: Vultr wants the key's ID (a UUID, GET /v2/ssh-keys)", k))
		}
	}
	if opts.Image != "" {
		if _, err := imageRef(opts.Image); err != nil {
			return nil, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, err)
		}
	}
	p := &Provider{opts: opts, log: providerkit.Logger(opts.Logger, Name)}
	p.client = govultr.NewClient(providerkit.BearerClient(opts.HTTPClient, opts.Token, recordAnswer))
	if err := p.client.SetBaseURL(opts.Endpoint); err != nil {
		return nil, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, err)
	}
	p.client.SetUserAgent("clawops")
	// No hidden retries (govultr retries 429 and 5xx by default, sleeping as told):
	// the caller sees KindTransient and decides.
	p.client.SetRetryLimit(0)
	return p, nil
}

// Name returns "vultr".
func (p *Provider) Name() string { return Name }

// Create asks Vultr for an instance described by spec, with the rendered cloud-init as
// user data, and returns as soon as Vultr has accepted it (status "pending").
func (p *Provider) Create(ctx context.Context, spec fleet.ServerSpec) (fleet.Server, error) {
	const op = "vultr.Create"
	tags, err := checkSpec(spec)
	if err != nil {
		return fleet.Server{}, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, err)
	}
	image, err := cloud.Image(op, spec.Image, p.opts.Image)
	if err != nil {
		return fleet.Server{}, err
	}
	ref, err := imageRef(image)
	if err != nil {
		return fleet.Server{}, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, err)
	}
	sshKeys := slices.Clone(p.opts.SSHKeys)
	for _, k := range spec.SSHKeys {
		if !uuidRe.MatchString(k) {
			return fleet.Server{}, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, fmt.Errorf("SSH key %q: Vultr wants the key's ID (a UUID)", k))
		}
		if !slices.Contains(sshKeys, k) {
			sshKeys = append(sshKeys, k)
		}
	}
	userData, err := cloud.UserData(op, spec, p.opts.CloudInit)
	if err != nil {
		return fleet.Server{}, err
	}
	req := &govultr.InstanceCreateReq{
		Region:     spec.Region,
		Plan:       spec.Size,
		Label:      spec.Name,
		Hostname:   spec.Name,
		Tags:       tags,
		OsID:       ref.osID,
		SnapshotID: ref.snapshotID,
		ImageID:    ref.imageID,
		SSHKeys:    sshKeys,
		Backups:    "disabled",
		UserData:   base64.StdEncoding.EncodeToString([]byte(userData)),
	}
	ctx, ex := withExchange(ctx)
	inst, _, err := p.client.Instance.Create(ctx, req)
	if err != nil {
		p.log.WarnContext(ctx, "create failed", "name", spec.Name, "instance", spec.Bootstrap.Instance, "status", providerkit.Status(ex.get()))
		return fleet.Server{}, mapError(op, ex, err, true)
	}
	if inst == nil {
		return fleet.Server{}, cloud.NoServer(op)
	}
	s := toServer(inst)
	p.log.InfoContext(ctx, "instance created", "id", s.ProviderID, "name", s.Name, "instance", spec.Bootstrap.Instance, "plan", spec.Size, "region", spec.Region)
	return s, nil
}

// Get returns Vultr's view of one instance; an unknown ID is PROVIDER_NOT_FOUND.
func (p *Provider) Get(ctx context.Context, providerID string) (fleet.Server, error) {
	const op = "vultr.Get"
	inst, err := p.get(ctx, op, providerID)
	if err != nil {
		return fleet.Server{}, err
	}
	return toServer(inst), nil
}

func (p *Provider) get(ctx context.Context, op, providerID string) (*govultr.Instance, error) {
	if !uuidRe.MatchString(providerID) {
		return nil, clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, fmt.Errorf("provider ID %q: Vultr instance IDs are UUIDs", providerID))
	}
	ctx, ex := withExchange(ctx)
	inst, _, err := p.client.Instance.Get(ctx, providerID)
	if err != nil {
		return nil, mapError(op, ex, err, false)
	}
	if inst == nil {
		return nil, clawops.E(op, clawops.KindTransient, fleet.ReasonProviderUnavailable, fmt.Errorf("the Vultr API answered without the instance %s", providerID))
	}
	return inst, nil
}

// Delete destroys an instance. An instance Vultr does not know is already gone: success.
func (p *Provider) Delete(ctx context.Context, providerID string) error {
	const op = "vultr.Delete"
	if !uuidRe.MatchString(providerID) {
		return clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, fmt.Errorf("provider ID %q: Vultr instance IDs are UUIDs", providerID))
	}
	ctx, ex := withExchange(ctx)
	if err := p.client.Instance.Delete(ctx, providerID); err != nil {
		if providerkit.Status(ex.get()) == http.StatusNotFound {
			p.log.InfoContext(ctx, "delete: instance already gone", "id", providerID)
			return nil
		}
		return mapError(op, ex, err, false)
	}
	p.log.InfoContext(ctx, "instance deleted", "id", providerID)
	return nil
}

// Resize moves the instance to the plan size. Vultr restarts the instance itself and only
// moves to larger plans.
func (p *Provider) Resize(ctx context.Context, providerID string, size string) error {
	const op = "vultr.Resize"
	if size == "" {
		return clawops.E(op, clawops.KindInvalid, fleet.ReasonProviderInvalid, "no size: name a Vultr plan such as vc2-2c-4gb")
	}
	inst, err := p.get(ctx, op, providerID)
	if err != nil {
		return err
	}
	if inst.Plan == size {
		return nil
	}
	// govultr always sends "tags"; send the current ones so a plan change keeps them.
	tags := inst.Tags
	if tags == nil {
		tags = []string{}
	}
	ctx, ex := withExchange(ctx)
	if _, _, err := p.client.Instance.Update(ctx, providerID, &govultr.InstanceUpdateReq{Plan: size, Tags: tags}); err != nil {
		return mapError(op, ex, err, false)
	}
	p.log.InfoContext(ctx, "instance plan changed", "id", providerID, "from", inst.Plan, "to", size)
	return nil
}

// List returns every instance tagged "clawops", following the cursor through all pages.
func (p *Provider) List(ctx context.Context) ([]fleet.Server, error) {
	const op = "vultr.List"
	var out []fleet.Server
	opt := &govultr.ListOptions{Tag: Tag, PerPage: 100}
	seen := map[string]bool{}
	for {
		lctx, ex := withExchange(ctx)
		instances, meta, _, err := p.client.Instance.List(lctx, opt)
		if err != nil {
			return nil, mapError(op, ex, err, false)
		}
		for i := range instances {
			out = append(out, toServer(&instances[i]))
		}
		if meta == nil || meta.Links == nil || meta.Links.Next == "" {
			return out, nil
		}
		if seen[meta.Links.Next] {
			return nil, clawops.E(op, clawops.KindTransient, fleet.ReasonProviderUnavailable, errors.New("the Vultr API repeats a pagination cursor"))
		}
		seen[meta.Links.Next] = true
		opt.Cursor = meta.Links.Next
	}
}

func toServer(inst *govultr.Instance) fleet.Server {
	out := fleet.Server{
		ProviderID: inst.ID,
		Name:       inst.Label,
		Region:     inst.Region,
		Size:       inst.Plan,
		Status:     inst.Status,
		Labels:     tagsToLabels(inst.Tags),
	}
	// "active" says the instance exists; its power state says whether it runs.
	if inst.Status == "active" && inst.PowerStatus != "" {
		out.Status = inst.PowerStatus
	}
	if inst.MainIP != "" && inst.MainIP != "0.0.0.0" {
		out.PublicIPv4 = inst.MainIP
	}
	if t, err := time.Parse(time.RFC3339, inst.DateCreated); err == nil {
		out.CreatedAt = t
	}
	return out
}

func tagsToLabels(tags []string) map[string]string {
	labels := map[string]string{}
	for _, t := range tags {
		if k, v, ok := strings.Cut(t, "="); ok && k != "" {
			labels[k] = v
		}
	}
	return labels
}

var (
	uuidRe       = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	labelKeyRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`)
	labelValueRe = regexp.MustCompile(`^[A-Za-z0-9._-]{0,63}$`)
	appIDRe      = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
)

// checkSpec validates what would make a bad instance, before any call, and returns the tags.
func checkSpec(spec fleet.ServerSpec) ([]string, error) {
	labels, err := cloud.CheckSpec(spec)
	if err != nil {
		return nil, err
	}
	tags := []string{Tag}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if !labelKeyRe.MatchString(k) {
			return nil, fmt.Errorf("label key %q: use letters, digits, '.', '_', '/' or '-'", k)
		}
		if !labelValueRe.MatchString(labels[k]) {
			return nil, fmt.Errorf("label %s value %q: use at most 63 letters, digits, '.', '_' or '-'", k, labels[k])
		}
		tags = append(tags, k+"="+labels[k])
	}
	return tags, nil
}

type image struct {
	osID       int
	snapshotID string
	imageID    string
}

func imageRef(s string) (image, error) {
	if id, err := strconv.Atoi(s); err == nil && id > 0 {
		return image{osID: id}, nil
	}
	if id, ok := strings.CutPrefix(s, "snapshot:"); ok && uuidRe.MatchString(id) {
		return image{snapshotID: id}, nil
	}
	if id, ok := strings.CutPrefix(s, "app:"); ok && appIDRe.MatchString(id) {
		return image{imageID: id}, nil
	}
	return image{}, fmt.Errorf("image %q: Vultr wants a numeric os_id (GET /v2/os), snapshot:<uuid> or app:<marketplace image_id>", s)
}
