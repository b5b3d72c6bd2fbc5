// Package cloudinit renders the #cloud-config user data that turns a fresh cloud server
// into a ClawOps instance: a host firewall (SSH only over the tailnet), Tailscale joined
// with a one-time auth key under tag:clawnode, Docker with the compose plugin, the OpenClaw
// gateway container at a pinned image tag, and gf-clawnode (downloaded, sha256-checked)
// running as a systemd unit that dials the ClawOps gateway with a pinned gateway key and
// a one-time join token kept in a 0600 file.
//
// Every value that reaches the template is checked against a narrow character set first,
// so no input can break the YAML, the shell script or the systemd unit it is written
// into. The rendered text holds secrets: callers hand it to a provider API and never log it.
package cloudinit

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
)

// ReasonInvalidBootstrap is the reason code of every input Render refuses.
const ReasonInvalidBootstrap clawops.ReasonCode = "INVALID_BOOTSTRAP"

// DefaultTailscaleTag is the tag a new server advertises when Options.TailscaleTags is empty.
const DefaultTailscaleTag = "tag:clawnode"

// DefaultOpenClawPort is the OpenClaw gateway port, published on 127.0.0.1 only.
const DefaultOpenClawPort = 18789

// ComposeFile is where the rendered OpenClaw compose file lives on the server; gf-clawnode
// is started with --compose-file pointing at it.
const ComposeFile = "/opt/openclaw/compose.yaml"

//go:embed cloud-config.yaml.tmpl
var templateText string

var cloudConfig = template.Must(template.New("cloud-config").Option("missingkey=error").Parse(templateText))

// Options are the per-deployment settings of the rendered bootstrap: where gf-clawnode is
// downloaded from and how the server joins the tailnet.
type Options struct {
	// ClawnodeURL is an https URL of the gf-clawnode binary for the servers' architecture.
	ClawnodeURL string
	// ClawnodeSHA256 is the hex SHA-256 of that binary; the server refuses any other file.
	ClawnodeSHA256 string
	// Hostname is the server's and its tailnet node's name; the instance ID when empty.
	Hostname string
	// TailscaleTags are advertised by the node; [DefaultTailscaleTag] when empty.
	TailscaleTags []string
	// OpenClawPort is the gateway port inside and (on 127.0.0.1) outside the container;
	// DefaultOpenClawPort when zero.
	OpenClawPort int
	// HeartbeatInterval is passed to gf-clawnode as --heartbeat: it must match the
	// gateway's nodes.heartbeat_interval, which its heartbeat timeout is measured against.
	// Zero leaves gf-clawnode's default (10s).
	HeartbeatInterval time.Duration
	// AllowInsecure permits http:// download URLs and a ws:// gateway URL. For tests and
	// closed labs only: production servers fetch and dial over TLS.
	AllowInsecure bool
}

// Validate checks the options alone, so a misconfigured driver fails at startup rather
// than at the first Create.
func (o Options) Validate() error {
	if errs := o.check(); len(errs) > 0 {
		return clawops.E("cloudinit.Options", clawops.KindInvalid, ReasonInvalidBootstrap, errors.Join(errs...))
	}
	return nil
}

// Render returns the #cloud-config text that bootstraps the server described by b. It
// refuses, with a *clawops.Error of reason INVALID_BOOTSTRAP naming every bad field, any
// value outside its allowed form; refused secrets are never echoed in the error.
func Render(b fleet.Bootstrap, opts Options) (string, error) {
	const op = "cloudinit.Render"
	errs := opts.check()
	errs = append(errs, checkBootstrap(b, opts.AllowInsecure)...)
	if len(errs) > 0 {
		return "", clawops.E(op, clawops.KindInvalid, ReasonInvalidBootstrap, errors.Join(errs...))
	}
	data := templateData{
		Instance:       string(b.Instance),
		Hostname:       opts.Hostname,
		GatewayURL:     b.GatewayURL,
		GatewayKey:     b.GatewayKey,
		JoinToken:      b.JoinToken,
		TailscaleKey:   b.TailscaleKey,
		TailscaleTags:  strings.Join(opts.TailscaleTags, ","),
		OpenClawImage:  b.OpenClawImage,
		OpenClawPort:   opts.OpenClawPort,
		ClawnodeURL:    opts.ClawnodeURL,
		ClawnodeSHA256: strings.ToLower(opts.ClawnodeSHA256),
		ComposeFile:    ComposeFile,
		CurlProto:      " --proto '=https'",
	}
	if opts.HeartbeatInterval > 0 {
		data.Heartbeat = opts.HeartbeatInterval.String()
	}
	if data.Hostname == "" {
		data.Hostname = data.Instance
	}
	if data.TailscaleTags == "" {
		data.TailscaleTags = DefaultTailscaleTag
	}
	if data.OpenClawPort == 0 {
		data.OpenClawPort = DefaultOpenClawPort
	}
	data.HealthURL = fmt.Sprintf("http://127.0.0.1:%d/healthz", data.OpenClawPort)
	if opts.AllowInsecure {
		data.CurlProto = ""
	}
	var buf bytes.Buffer
	if err := cloudConfig.Execute(&buf, data); err != nil {
		return "", clawops.E(op, clawops.KindOther, clawops.ReasonInternal, fmt.Errorf("execute template: %w", err))
	}
	// A last guard against a template mistake: what leaves here must be a YAML mapping.
	var doc map[string]any
	if err := yaml.Unmarshal(buf.Bytes(), &doc); err != nil {
		return "", clawops.E(op, clawops.KindOther, clawops.ReasonInternal, fmt.Errorf("rendered cloud-config is not valid YAML: %w", err))
	}
	return buf.String(), nil
}

type templateData struct {
	Instance       string
	Hostname       string
	GatewayURL     string
	GatewayKey     string
	JoinToken      string
	TailscaleKey   string
	TailscaleTags  string
	OpenClawImage  string
	OpenClawPort   int
	HealthURL      string
	ClawnodeURL    string
	ClawnodeSHA256 string
	ComposeFile    string
	CurlProto      string
	Heartbeat      string // gf-clawnode --heartbeat; "" for its default
}

var (
	instanceRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,39}$`)
	hostnameRe  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	urlCharsRe  = regexp.MustCompile(`^[A-Za-z0-9._~:/?&=+\[\]-]+$`)
	tokenRe     = regexp.MustCompile(`^[A-Za-z0-9._~+/=-]{16,512}$`)
	tsKeyRe     = regexp.MustCompile(`^tskey-[A-Za-z0-9_-]+(\?[A-Za-z0-9_=&-]*)?$`)
	tsTagRe     = regexp.MustCompile(`^tag:[A-Za-z][A-Za-z0-9-]{0,62}$`)
	sha256Re    = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	imageNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$`)
	imageTagRe  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	digestRe    = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
)

// movingTags are OpenClaw's tags that follow releases; a fleet must pin a release instead.
var movingTags = []string{"latest", "main", "extended-stable"}

func (o Options) check() []error {
	var errs []error
	if o.HeartbeatInterval != 0 && (o.HeartbeatInterval < time.Second || o.HeartbeatInterval > 10*time.Minute) {
		errs = append(errs, fmt.Errorf("heartbeat interval %s: want 1s..10m", o.HeartbeatInterval))
	}
	if err := checkURL("ClawnodeURL", o.ClawnodeURL, "https", "http", o.AllowInsecure); err != nil {
		errs = append(errs, err)
	}
	if !sha256Re.MatchString(o.ClawnodeSHA256) {
		errs = append(errs, errors.New("ClawnodeSHA256: want the 64 hex digits of the gf-clawnode binary's SHA-256 (sha256sum gf-clawnode)"))
	}
	if o.Hostname != "" && !hostnameRe.MatchString(o.Hostname) {
		errs = append(errs, fmt.Errorf("Options.Hostname %q: use lowercase letters, digits and '-', at most 63, not starting or ending with '-'", o.Hostname))
	}
	for _, t := range o.TailscaleTags {
		if !tsTagRe.MatchString(t) {
			errs = append(errs, fmt.Errorf("TailscaleTags %q: want tag:<name> with letters, digits and '-', e.g. %s", t, DefaultTailscaleTag))
		}
	}
	if o.OpenClawPort < 0 || o.OpenClawPort > 65535 {
		errs = append(errs, fmt.Errorf("OpenClawPort %d: want 1..65535, or 0 for %d", o.OpenClawPort, DefaultOpenClawPort))
	}
	return errs
}

func checkBootstrap(b fleet.Bootstrap, insecure bool) []error {
	var errs []error
	if !instanceRe.MatchString(string(b.Instance)) {
		errs = append(errs, fmt.Errorf("Bootstrap.Instance %q: want 2-40 lowercase letters, digits and '-', starting with a letter or digit", b.Instance))
	}
	if err := checkURL("GatewayURL", b.GatewayURL, "wss", "ws", insecure); err != nil {
		errs = append(errs, err)
	}
	if key, err := base64.RawURLEncoding.DecodeString(b.GatewayKey); err != nil || len(key) != 32 {
		errs = append(errs, errors.New("GatewayKey: want the gateway's Ed25519 public key as unpadded base64url (32 bytes)"))
	}
	// Secrets: say what is wrong, never what they are.
	if !tokenRe.MatchString(b.JoinToken) {
		errs = append(errs, fmt.Errorf("JoinToken (%d characters, not shown): want 16-512 characters of A-Z a-z 0-9 . _ ~ + / = -; mint a fresh one", len(b.JoinToken)))
	}
	switch {
	case b.TailscaleKey == "":
		errs = append(errs, errors.New("TailscaleKey is empty: cloud servers reach the gateway over the tailnet; create a pre-approved auth key tagged tag:clawnode"))
	case len(b.TailscaleKey) > 512 || !tsKeyRe.MatchString(b.TailscaleKey):
		errs = append(errs, fmt.Errorf("TailscaleKey (%d characters, not shown): want a Tailscale key starting with tskey-", len(b.TailscaleKey)))
	}
	if err := checkImage(b.OpenClawImage); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// checkURL accepts an absolute URL with the secure scheme (or the insecure one when
// allowed), a host, no credentials and only characters that are inert in YAML, sh and
// systemd (no quotes, spaces, '$', '%', '\' or '`').
func checkURL(field, raw, secure, insecure string, allowInsecure bool) error {
	if raw == "" {
		return fmt.Errorf("%s is empty: want a %s:// URL", field, secure)
	}
	if !urlCharsRe.MatchString(raw) {
		return fmt.Errorf("%s %q: contains characters other than A-Z a-z 0-9 . _ ~ : / ? & = + [ ] -", field, raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s %q: %w", field, raw, err)
	}
	switch {
	case u.Scheme == secure:
	case u.Scheme == insecure && allowInsecure:
	case u.Scheme == insecure:
		return fmt.Errorf("%s %q: want %s:// (%s:// is allowed only with AllowInsecure, for tests)", field, raw, secure, insecure)
	default:
		return fmt.Errorf("%s %q: want a %s:// URL", field, raw, secure)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%s %q: has no host", field, raw)
	}
	if u.User != nil {
		return fmt.Errorf("%s: must not carry credentials", field)
	}
	return nil
}

// checkImage accepts a pinned image reference: a release tag (not a moving one such as
// latest) or a sha256 digest.
func checkImage(ref string) error {
	if ref == "" {
		return errors.New("OpenClawImage is empty: want a pinned image such as ghcr.io/openclaw/openclaw:2026.9.6")
	}
	name, digest, hasDigest := strings.Cut(ref, "@")
	if hasDigest && !digestRe.MatchString(digest) {
		return fmt.Errorf("OpenClawImage %q: the digest must be sha256: and 64 lowercase hex digits", ref)
	}
	tag := ""
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	if !imageNameRe.MatchString(name) {
		return fmt.Errorf("OpenClawImage %q: not an image reference (registry/name:tag)", ref)
	}
	if tag != "" && !imageTagRe.MatchString(tag) {
		return fmt.Errorf("OpenClawImage %q: bad tag", ref)
	}
	if tag == "" && !hasDigest {
		return fmt.Errorf("OpenClawImage %q: not pinned; add a release tag (e.g. :2026.9.6) or a @sha256 digest", ref)
	}
	for _, moving := range movingTags {
		if tag == moving || strings.HasPrefix(tag, moving+"-") {
			if !hasDigest {
				return fmt.Errorf("OpenClawImage %q: %q moves with every release; pin a release tag (e.g. :2026.9.6) or a @sha256 digest", ref, tag)
			}
		}
	}
	return nil
}
