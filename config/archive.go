package config

import (
	"errors"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strings"
)

var (
	// s3BucketRE is S3's bucket naming rule: 3-63 of lower-case letters, digits, dots and
	// hyphens, starting and ending with a letter or digit.
	s3BucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	s3RegionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	// s3PrefixRE is one or more key segments, each ending in "/" (which may be left off).
	s3PrefixRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*/?$`)
)

func (a *Archive) validate(path string) []*Error {
	s3, p := a.S3, path+".s3"
	if a.Dir != "" && s3.IsSet() {
		return []*Error{keyError(path, "sets both dir and s3: keep one (dir for a folder on this machine, s3 for a bucket)")}
	}
	if a.Dir != "" && strings.TrimSpace(a.Dir) == "" {
		return []*Error{keyError(path+".dir", "is blank: name a folder, or leave it out for <data_dir>/archives")}
	}
	if !s3.IsSet() {
		return nil
	}
	var errs []*Error
	if s3.Endpoint == "" {
		errs = append(errs, keyError(p+".endpoint", "is empty: write the store's URL, e.g. https://fsn1.your-objectstorage.com"))
	} else if u, err := url.Parse(s3.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, keyError(p+".endpoint", "%q is not an http(s) URL: write e.g. https://s3.eu-central-1.amazonaws.com", s3.Endpoint))
	} else if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, keyError(p+".endpoint", "must be a plain URL without credentials, query or fragment: keys go in access_key_env/_file and secret_key_env/_file"))
	}
	switch {
	case s3.Bucket == "":
		errs = append(errs, keyError(p+".bucket", "is empty: name the bucket archives go to"))
	case !s3BucketRE.MatchString(s3.Bucket) || strings.Contains(s3.Bucket, ".."):
		errs = append(errs, keyError(p+".bucket", "%q is not a bucket name: use 3-63 of a-z, 0-9, '.' and '-'", s3.Bucket))
	}
	switch {
	case s3.Region == "":
		errs = append(errs, keyError(p+".region", "is empty: name the signing region, e.g. us-east-1 (auto for Cloudflare R2)"))
	case !s3RegionRE.MatchString(s3.Region):
		errs = append(errs, keyError(p+".region", "%q is not a region: write e.g. us-east-1 or eu-central", s3.Region))
	}
	if s3.Prefix != "" && (!s3PrefixRE.MatchString(s3.Prefix) || strings.Contains(s3.Prefix, "..")) {
		errs = append(errs, keyError(p+".prefix", "%q is not a key prefix: use segments of A-Z, a-z, 0-9, '.', '_' and '-' joined by '/', e.g. clawops/", s3.Prefix))
	}
	for _, k := range []struct{ kind, env, file string }{
		{"access_key", s3.AccessKeyEnv, s3.AccessKeyFile},
		{"secret_key", s3.SecretKeyEnv, s3.SecretKeyFile},
	} {
		switch {
		case k.env == "" && k.file == "":
			errs = append(errs, keyError(p, "has no %s: set %s_env (an environment variable) or %s_file (a file) that holds it", k.kind, k.kind, k.kind))
		case k.env != "" && k.file != "":
			errs = append(errs, keyError(p, "sets both %s_env and %s_file: keep one", k.kind, k.kind))
		case k.env != "" && !envNameRE.MatchString(k.env):
			errs = append(errs, keyError(p+"."+k.kind+"_env", "%q is not an environment variable name: use letters, digits and _", k.env))
		}
	}
	return errs
}

// ArchiveKeys are the S3 credentials of fleet.archive.s3, read by ResolveArchiveKeys.
type ArchiveKeys struct {
	AccessKey string
	SecretKey string `json:"-" yaml:"-"`
	// From says where each came from, e.g. "env S3_ACCESS_KEY, file /run/secrets/s3"; not secret.
	From string
}

// String describes the keys without the secret.
func (k ArchiveKeys) String() string { return "s3 keys from " + k.From }

// GoString keeps the secret out of %#v.
func (k ArchiveKeys) GoString() string { return "config.ArchiveKeys{" + k.String() + "}" }

// LogValue keeps the secret out of slog records.
func (k ArchiveKeys) LogValue() slog.Value { return slog.StringValue(k.String()) }

// ResolveArchiveKeys reads the S3 access key and secret key of fleet.archive.s3 from the
// environment (through getenv; nil means os.Getenv) or files. It returns none when no
// bucket is configured. The secret never appears in errors.
func (c *Config) ResolveArchiveKeys(getenv func(string) string) (ArchiveKeys, error) {
	s3 := c.Fleet.Archive.S3
	if !s3.IsSet() {
		return ArchiveKeys{}, nil
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	const p = "fleet.archive.s3"
	access, fromA, errA := readSecret(p, "access_key", s3.AccessKeyEnv, s3.AccessKeyFile, "the archive bucket", getenv)
	secret, fromS, errS := readSecret(p, "secret_key", s3.SecretKeyEnv, s3.SecretKeyFile, "the archive bucket", getenv)
	if err := errors.Join(errA, errS); err != nil {
		return ArchiveKeys{}, err
	}
	return ArchiveKeys{AccessKey: access, SecretKey: secret, From: fromA + ", " + fromS}, nil
}
