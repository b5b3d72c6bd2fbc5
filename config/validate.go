package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// sectionValidator is implemented by sections that check themselves; path is the
// section's key path.
type sectionValidator interface {
	validate(path string) []*Error
}

// Validate checks every key and returns all problems joined, each an *Error whose message
// names the key and says what to do. Values that Load derives (public_url,
// fleet.local.compose_dir) may be empty here.
func (c *Config) Validate() error {
	var errs []*Error
	errs = append(errs, c.validateListen()...)
	if c.PublicURL != "" {
		errs = append(errs, validatePublicURL(c.PublicURL)...)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		errs = append(errs, keyError("data_dir", "is empty: name the folder for the database and local state, e.g. ./.data"))
	}
	v := reflect.ValueOf(c).Elem()
	for i := range v.NumField() {
		sv, ok := v.Field(i).Addr().Interface().(sectionValidator)
		if !ok {
			continue
		}
		errs = append(errs, sv.validate(yamlName(v.Type().Field(i)))...)
	}
	joined := make([]error, len(errs))
	for i, e := range errs {
		joined[i] = e
	}
	return errors.Join(joined...)
}

func (c *Config) validateListen() []*Error {
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return []*Error{keyError("listen", "%q is not host:port: write e.g. 127.0.0.1:8080", c.Listen)}
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return []*Error{keyError("listen", "port %q is not a number from 0 to 65535", port)}
	}
	if !c.Nodes.AllowPublicNodeListener && !privateHost(host) {
		return []*Error{keyError("listen", "%q would serve the node endpoint beyond loopback and the tailnet: listen on 127.0.0.1 or a tailnet address, or set nodes.allow_public_node_listener: true", c.Listen)}
	}
	return nil
}

// privateHost reports whether host is loopback or on a Tailscale tailnet (100.64.0.0/10,
// fd7a:115c:a1e0::/48, or a MagicDNS name under .ts.net).
func privateHost(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".ts.net") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	return ip.IsLoopback() ||
		netip.MustParsePrefix("100.64.0.0/10").Contains(ip) ||
		netip.MustParsePrefix("fd7a:115c:a1e0::/48").Contains(ip)
}

func validatePublicURL(s string) []*Error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return []*Error{keyError("public_url", "%q is not a URL: write the address nodes dial, e.g. wss://clawops.example.ts.net/v1/nodes/ws", s)}
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return []*Error{keyError("public_url", "scheme %q: nodes dial a WebSocket, so use ws:// or wss://", u.Scheme)}
	}
	if u.User != nil {
		return []*Error{keyError("public_url", "must not hold credentials: nodes authenticate with their own key")}
	}
	return nil
}

func oneOf(path, got string, allowed ...string) []*Error {
	for _, a := range allowed {
		if got == a {
			return nil
		}
	}
	return []*Error{keyError(path, "%q is not allowed: use one of %s", got, strings.Join(allowed, ", "))}
}

func between(path string, got, lo, hi time.Duration) []*Error {
	if got < lo || got > hi {
		return []*Error{keyError(path, "%s is out of range: use a value from %s to %s", fmtDuration(got), fmtDuration(lo), fmtDuration(hi))}
	}
	return nil
}

// fmtDuration writes round durations the way people write them in the file (1m, 24h).
func fmtDuration(d time.Duration) string {
	switch {
	case d != 0 && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d != 0 && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}

func (l *Log) validate(path string) []*Error {
	var errs []*Error
	errs = append(errs, oneOf(path+".level", l.Level, "debug", "info", "warn", "error")...)
	errs = append(errs, oneOf(path+".format", l.Format, "text", "json")...)
	return errs
}

func (d *Database) validate(path string) []*Error {
	errs := oneOf(path+".driver", d.Driver, "sqlite", "postgres")
	if d.DSN != "" && d.DSNFile != "" {
		errs = append(errs, keyError(path+".dsn_file", "is set together with %s.dsn: keep one of them", path))
	}
	if d.Driver == "postgres" && d.DSN == "" && d.DSNFile == "" {
		errs = append(errs, keyError(path+".dsn", "is required for the postgres driver: set CLAWOPS_DATABASE_DSN or %s.dsn_file", path))
	}
	return errs
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (a *Auth) validate(path string) []*Error {
	var errs []*Error
	seen := map[string]bool{}
	configVars := map[string]bool{}
	for _, name := range EnvVars() {
		configVars[name] = true
	}
	for i, t := range a.Tokens {
		p := fmt.Sprintf("%s.tokens[%d]", path, i)
		switch {
		case strings.TrimSpace(t.Identity) == "":
			errs = append(errs, keyError(p+".identity", "is empty: name who holds the token, e.g. omar"))
		case seen[t.Identity]:
			errs = append(errs, keyError(p+".identity", "%q has a token already: give each identity one entry", t.Identity))
		}
		seen[t.Identity] = true
		errs = append(errs, oneOf(p+".role", t.Role, "admin", "approver", "operator", "viewer")...)
		switch {
		case t.TokenEnv == "" && t.TokenFile == "":
			errs = append(errs, keyError(p, "has no secret: set token_env (an environment variable) or token_file (a file) that holds the token"))
		case t.TokenEnv != "" && t.TokenFile != "":
			errs = append(errs, keyError(p, "sets both token_env and token_file: keep one"))
		case t.TokenEnv != "" && !envNameRE.MatchString(t.TokenEnv):
			errs = append(errs, keyError(p+".token_env", "%q is not an environment variable name: use letters, digits and _", t.TokenEnv))
		case configVars[t.TokenEnv]:
			errs = append(errs, keyError(p+".token_env", "%s already sets a config key: choose another name, e.g. CLAWOPS_%s_TOKEN", t.TokenEnv, strings.ToUpper(t.Role)))
		}
	}
	return errs
}

func (a *Approvals) validate(path string) []*Error {
	return between(path+".ttl", a.TTL, time.Minute, 24*time.Hour)
}

func (n *Nodes) validate(path string) []*Error {
	var errs []*Error
	errs = append(errs, between(path+".tick_interval", n.TickInterval, time.Second, time.Hour)...)
	errs = append(errs, between(path+".heartbeat_interval", n.HeartbeatInterval, time.Second, 10*time.Minute)...)
	errs = append(errs, between(path+".heartbeat_timeout", n.HeartbeatTimeout, time.Second, time.Hour)...)
	errs = append(errs, between(path+".join_token_ttl", n.JoinTokenTTL, time.Minute, 7*24*time.Hour)...)
	errs = append(errs, between(path+".invoke_timeout", n.InvokeTimeout, time.Second, 10*time.Minute)...)
	if n.HeartbeatInterval > 0 && n.HeartbeatTimeout < 2*n.HeartbeatInterval {
		errs = append(errs, keyError(path+".heartbeat_timeout",
			"%s is less than twice %s.heartbeat_interval (%s): one late heartbeat would mark a node offline; use at least %s",
			fmtDuration(n.HeartbeatTimeout), path, fmtDuration(n.HeartbeatInterval), fmtDuration(2*n.HeartbeatInterval)))
	}
	return errs
}

func (f *Fleet) validate(path string) []*Error {
	l, p := &f.Local, path+".local"
	var errs []*Error
	if strings.TrimSpace(l.NodeBinary) == "" {
		errs = append(errs, keyError(p+".node_binary", "is empty: name the gf-clawnode executable"))
	}
	errs = append(errs, oneOf(p+".runtime", l.Runtime, "process", "docker")...)
	errs = append(errs, f.validateClouds(path)...)
	return append(errs, f.Archive.validate(path+".archive")...)
}

func (d *Demo) validate(path string) []*Error {
	if d.Pairs < 1 || d.Pairs > 100 {
		return []*Error{keyError(path+".pairs", "%d is out of range: use 1 to 100", d.Pairs)}
	}
	return nil
}

func (c *Channels) validate(path string) []*Error {
	var errs []*Error
	for i, a := range c.Adapters {
		p := fmt.Sprintf("%s.adapters[%d]", path, i)
		if !strings.HasPrefix(a.Type, "channels.") || len(a.Type) == len("channels.") {
			errs = append(errs, keyError(p+".type", "%q is not an adapter name: use channels.telegram, channels.slack, channels.discord or channels.whatsapp", a.Type))
		}
	}
	type sender struct{ channel, sender string }
	seen := map[sender]bool{}
	for i, a := range c.AllowFrom {
		p := fmt.Sprintf("%s.allow_from[%d]", path, i)
		for _, f := range []struct{ key, val, example string }{
			{"channel", a.Channel, "telegram"}, {"sender", a.Sender, "a user id, or +4915112345678 on WhatsApp"},
			{"identity", a.Identity, "omar"},
		} {
			if strings.TrimSpace(f.val) == "" {
				errs = append(errs, keyError(p+"."+f.key, "is empty: write e.g. %s", f.example))
			}
		}
		errs = append(errs, oneOf(p+".role", a.Role, "admin", "approver", "operator", "viewer")...)
		k := sender{a.Channel, a.Sender}
		if seen[k] {
			errs = append(errs, keyError(p+".sender", "%s on %s is listed twice: keep one entry", a.Sender, a.Channel))
		}
		seen[k] = true
	}
	return errs
}

func (g *Governance) validate(path string) []*Error {
	errs := oneOf(path+".environment", g.Environment, "production", "staging")
	if g.SecondFactorFrom != "" {
		errs = append(errs, oneOf(path+".second_factor_from", g.SecondFactorFrom, "low", "medium", "high", "critical")...)
		if len(g.TOTP) == 0 {
			errs = append(errs, keyError(path+".totp", "is empty but second_factor_from is %s: add a {identity, secret_env|secret_file} entry for every approver", g.SecondFactorFrom))
		}
	}
	seen := map[string]bool{}
	for i, t := range g.TOTP {
		p := fmt.Sprintf("%s.totp[%d]", path, i)
		switch {
		case strings.TrimSpace(t.Identity) == "":
			errs = append(errs, keyError(p+".identity", "is empty: name the approver, e.g. omar"))
		case seen[t.Identity]:
			errs = append(errs, keyError(p+".identity", "%q is listed twice: keep one entry", t.Identity))
		}
		seen[t.Identity] = true
		switch {
		case t.SecretEnv == "" && t.SecretFile == "":
			errs = append(errs, keyError(p, "has no secret: set secret_env or secret_file"))
		case t.SecretEnv != "" && t.SecretFile != "":
			errs = append(errs, keyError(p, "sets both secret_env and secret_file: keep one"))
		}
	}
	return errs
}

func (l *LLM) validate(path string) []*Error {
	if l.BaseURL == "" {
		return nil
	}
	var errs []*Error
	if u, err := url.Parse(l.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, keyError(path+".base_url", "%q is not an http(s) URL: write e.g. https://api.openai.com/v1", l.BaseURL))
	}
	if len(l.Models) == 0 {
		errs = append(errs, keyError(path+".models", "is empty: name at least one model, e.g. [gpt-4.1]"))
	}
	if l.APIKeyEnv != "" && l.APIKeyFile != "" {
		errs = append(errs, keyError(path, "sets both api_key_env and api_key_file: keep one"))
	}
	for i, p := range l.Prices {
		if p.Model == "" || p.InputPerMTok < 0 || p.OutputPerMTok < 0 {
			errs = append(errs, keyError(fmt.Sprintf("%s.prices[%d]", path, i), "needs a model and non-negative prices per million tokens"))
		}
	}
	return errs
}

// ResolveLLMKey reads the model API key from llm.api_key_env or llm.api_key_file ("" when
// neither is set, for local servers). The key never appears in errors.
func (c *Config) ResolveLLMKey(getenv func(string) string) (string, error) {
	if c.LLM.APIKeyEnv == "" && c.LLM.APIKeyFile == "" {
		return "", nil
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	key, _, err := readSecret("llm", "api_key", c.LLM.APIKeyEnv, c.LLM.APIKeyFile, "the model endpoint", getenv)
	return key, err
}

func (f *Fleet) validateClouds(path string) []*Error {
	var errs []*Error
	seen := map[string]bool{}
	for i, c := range f.Clouds {
		p := fmt.Sprintf("%s.clouds[%d]", path, i)
		errs = append(errs, oneOf(p+".name", c.Name, "hetzner", "digitalocean", "vultr")...)
		if seen[c.Name] {
			errs = append(errs, keyError(p+".name", "%s is listed twice: keep one entry per provider", c.Name))
		}
		seen[c.Name] = true
		switch {
		case c.TokenEnv == "" && c.TokenFile == "":
			errs = append(errs, keyError(p, "has no API token: set token_env or token_file"))
		case c.TokenEnv != "" && c.TokenFile != "":
			errs = append(errs, keyError(p, "sets both token_env and token_file: keep one"))
		}
	}
	if len(f.Clouds) > 0 {
		b := f.Bootstrap
		if b.ClawnodeURL == "" || b.ClawnodeSHA256 == "" {
			errs = append(errs, keyError(path+".bootstrap", "needs clawnode_url and clawnode_sha256 when clouds are configured: new servers download and verify gf-clawnode"))
		}
		if b.OpenClawImage == "" {
			errs = append(errs, keyError(path+".bootstrap.openclaw_image", "is empty: pin the OpenClaw image new servers run"))
		}
		if b.TailscaleKeyEnv == "" && b.TailscaleKeyFile == "" {
			errs = append(errs, keyError(path+".bootstrap", "needs tailscale_key_env or tailscale_key_file: new servers join the tailnet with it"))
		}
	}
	return errs
}

// CloudSecrets are the resolved secrets of the cloud providers.
type CloudSecrets struct {
	Tokens       map[string]string // provider name → API token
	TailscaleKey string
}

// ResolveCloudSecrets reads the cloud API tokens and the tailnet auth key. The secrets
// never appear in errors.
func (c *Config) ResolveCloudSecrets(getenv func(string) string) (CloudSecrets, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	out := CloudSecrets{Tokens: map[string]string{}}
	var errs []error
	for i, cp := range c.Fleet.Clouds {
		tok, _, err := readSecret(fmt.Sprintf("fleet.clouds[%d]", i), "token", cp.TokenEnv, cp.TokenFile, cp.Name, getenv)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.Tokens[cp.Name] = tok
	}
	if len(c.Fleet.Clouds) > 0 {
		b := c.Fleet.Bootstrap
		key, _, err := readSecret("fleet.bootstrap", "tailscale_key", b.TailscaleKeyEnv, b.TailscaleKeyFile, "new servers", getenv)
		if err != nil {
			errs = append(errs, err)
		}
		out.TailscaleKey = key
	}
	return out, errors.Join(errs...)
}
