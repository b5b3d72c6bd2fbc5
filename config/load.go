package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
)

// Load builds the configuration: Default, then the YAML file at path (skipped when path is
// ""), then the CLAWOPS_* variables in env (as from os.Environ), then derived values
// (public_url from listen, fleet.local.compose_dir, fleet.archive.dir and
// agents.memory_dir from data_dir), then Validate.
//
// An empty environment value leaves the key as it was. A CLAWOPS_* variable that sets no
// key is an error, unless it is listed by ReservedEnv or named by an
// auth.tokens[].token_env or a governance.totp[].secret_env. All problems are reported together, each as an *Error that
// names the file and line or the variable.
func Load(path string, env []string) (*Config, error) {
	c := Default()
	var lines map[string]int
	var errs []error
	if path != "" {
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: read %s: %w", path, err)
		}
		lines, err = decodeYAML(path, src, c)
		if lines == nil {
			return nil, err // the file could not be parsed at all
		}
		errs = append(errs, err)
		if l, ok := lines["database.dsn"]; ok && dsnHasPassword(c.Database.DSN) {
			errs = append(errs, &Error{Source: path, Line: l, Key: "database.dsn",
				Msg: "database.dsn holds a password, and the config file must not hold secrets: set CLAWOPS_DATABASE_DSN or put the DSN in a file named by database.dsn_file"})
		}
	}
	fromEnv, err := applyEnv(c, env)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c.fillDerived()
	if err := c.Validate(); err != nil {
		for _, p := range Problems(err) {
			if name, ok := fromEnv[p.Key]; ok {
				p.Source = name
			} else if l := lineOf(lines, p.Key); l > 0 {
				p.Source, p.Line = path, l
			}
		}
		return nil, err
	}
	return c, nil
}

// lineOf is the line where the file set key, or else the nearest enclosing key it set
// (a missing database.dsn is reported at the database section), or 0.
func lineOf(lines map[string]int, key string) int {
	for key != "" {
		if l, ok := lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

// applyEnv overlays the CLAWOPS_* variables of env on c and returns which keys they set
// (key path → variable name).
func applyEnv(c *Config, env []string) (map[string]string, error) {
	known := map[string]field{}
	var names []string
	for _, f := range fields() {
		if f.env != "" {
			known[f.env] = f
			names = append(names, f.env)
		}
	}
	ignored := ReservedEnv()
	for _, t := range c.Auth.Tokens {
		if t.TokenEnv != "" {
			ignored = append(ignored, t.TokenEnv)
		}
	}
	for _, cp := range c.Fleet.Clouds {
		if cp.TokenEnv != "" {
			ignored = append(ignored, cp.TokenEnv)
		}
	}
	if c.Fleet.Bootstrap.TailscaleKeyEnv != "" {
		ignored = append(ignored, c.Fleet.Bootstrap.TailscaleKeyEnv)
	}
	if c.LLM.APIKeyEnv != "" {
		ignored = append(ignored, c.LLM.APIKeyEnv)
	}
	for _, name := range []string{c.Fleet.Archive.S3.AccessKeyEnv, c.Fleet.Archive.S3.SecretKeyEnv} {
		if name != "" {
			ignored = append(ignored, name)
		}
	}
	for _, t := range c.Governance.TOTP {
		if t.SecretEnv != "" {
			ignored = append(ignored, t.SecretEnv)
		}
	}
	set := map[string]string{}
	var errs []error
	root := reflect.ValueOf(c).Elem()
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, envPrefix) {
			continue
		}
		f, ok := known[name]
		switch {
		case ok && val == "":
			continue
		case ok:
			if err := parseScalar(val, root.FieldByIndex(f.index)); err != nil {
				msg := fmt.Sprintf("%v (it sets %s)", err, f.path)
				if f.secret {
					msg = "the value cannot be used for " + f.path
				}
				errs = append(errs, &Error{Source: name, Key: f.path, Msg: msg})
				continue
			}
			set[f.path] = name
		case slices.Contains(ignored, name):
			continue
		default:
			msg := "unknown variable: it sets no config key and is not a known secret; fix the name or unset it"
			if m := closeMatches(name, append(names, ReservedEnv()...), 3); len(m) > 0 {
				msg = "unknown variable: did you mean " + strings.Join(m, " or ") + "?"
			}
			errs = append(errs, &Error{Source: name, Msg: msg})
		}
	}
	return set, errors.Join(errs...)
}

// DerivePublicURL is the node URL for a gateway listening on listen:
// ws://<listen>/v1/nodes/ws, with an unspecified host (":8080", "0.0.0.0:8080") replaced
// by 127.0.0.1. It returns "" when listen is not host:port. A main that listens on port 0
// calls it again with the bound address.
func DerivePublicURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return (&url.URL{Scheme: "ws", Host: net.JoinHostPort(host, port), Path: "/v1/nodes/ws"}).String()
}

// dsnHasPassword reports whether a DSN carries a password, as a URL
// (postgres://user:pw@host/db) or as key=value pairs (password=...).
func dsnHasPassword(dsn string) bool {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return true
		}
	}
	for _, kv := range strings.Fields(dsn) {
		if k, _, ok := strings.Cut(kv, "="); ok && strings.EqualFold(strings.TrimSpace(k), "password") {
			return true
		}
	}
	if u, err := url.Parse(dsn); err == nil && u.Query().Has("password") {
		return true
	}
	return false
}
