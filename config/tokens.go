package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"unicode"
)

// MinTokenLength is the shortest API token ResolveTokens accepts.
const MinTokenLength = 16

// Token is an API token with its secret read from where auth.tokens said.
type Token struct {
	Identity string
	Role     string // admin, approver, operator or viewer (clawops.HumanRole)
	Secret   string `json:"-" yaml:"-"`
	// From says where the secret came from, e.g. "env CLAWOPS_ADMIN_TOKEN"; not secret.
	From string
}

// String describes the token without its secret.
func (t Token) String() string {
	return fmt.Sprintf("%s (%s, token from %s)", t.Identity, t.Role, t.From)
}

// GoString keeps the secret out of %#v.
func (t Token) GoString() string { return "config.Token{" + t.String() + "}" }

// LogValue keeps the secret out of slog records.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.String("identity", t.Identity), slog.String("role", t.Role), slog.String("from", t.From))
}

// ResolveTokens reads the secret of every auth.tokens entry, from the environment (through
// getenv; nil means os.Getenv) or from a file (surrounding whitespace trimmed). A missing,
// empty, short (under MinTokenLength), malformed or duplicated secret is an error naming
// the key path; the secret itself never appears in an error.
func (c *Config) ResolveTokens(getenv func(string) string) ([]Token, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var out []Token
	var errs []error
	owner := map[string]string{} // secret → key path of the entry that has it
	for i, ref := range c.Auth.Tokens {
		p := fmt.Sprintf("auth.tokens[%d]", i)
		secret, from, err := readSecret(p, "token", ref.TokenEnv, ref.TokenFile, ref.Identity, getenv)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if n := len([]rune(secret)); n < MinTokenLength {
			errs = append(errs, keyError(p, "the token from %s has %d characters: use at least %d, e.g. the output of `openssl rand -hex 32`", from, n, MinTokenLength))
			continue
		}
		if strings.IndexFunc(secret, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			errs = append(errs, keyError(p, "the token from %s contains whitespace or control characters: it must be one word", from))
			continue
		}
		if prev, dup := owner[secret]; dup {
			errs = append(errs, keyError(p, "has the same token as %s: give each identity its own token", prev))
			continue
		}
		owner[secret] = p
		out = append(out, Token{Identity: ref.Identity, Role: ref.Role, Secret: secret, From: from})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// readSecret reads the secret named by an env/file pair of the entry at key path p (the
// keys are <kind>_env and <kind>_file), trimmed. The error names the key, never the secret.
func readSecret(p, kind, envName, file, owner string, getenv func(string) string) (secret, from string, err error) {
	switch {
	case envName != "":
		from = "env " + envName
		secret = strings.TrimSpace(getenv(envName))
		if secret == "" {
			return "", from, keyError(p+"."+kind+"_env", "%s is not set or empty: export it with the %s for %s", envName, kind, owner)
		}
	case file != "":
		from = "file " + file
		b, rerr := os.ReadFile(file)
		if rerr != nil {
			return "", from, keyError(p+"."+kind+"_file", "cannot read the %s for %s: %v", kind, owner, rerr)
		}
		secret = strings.TrimSpace(string(b))
		if secret == "" {
			return "", from, keyError(p+"."+kind+"_file", "%s is empty: write the %s for %s into it", file, kind, owner)
		}
	default:
		return "", "", keyError(p, "has no secret: set %s_env or %s_file", kind, kind)
	}
	return secret, from, nil
}

// ResolveTOTP reads each governance.totp entry's base32 TOTP secret, keyed by identity.
// The secrets never appear in errors.
func (c *Config) ResolveTOTP(getenv func(string) string) (map[string]string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	out := map[string]string{}
	var errs []error
	for i, ref := range c.Governance.TOTP {
		secret, _, err := readSecret(fmt.Sprintf("governance.totp[%d]", i), "secret", ref.SecretEnv, ref.SecretFile, ref.Identity, getenv)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[ref.Identity] = secret
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// ResolveDSN returns the database DSN: database.dsn (which CLAWOPS_DATABASE_DSN sets), or
// the trimmed content of database.dsn_file. It is "" for sqlite in the data folder. The
// DSN is a secret: never log it.
func (c *Config) ResolveDSN() (string, error) {
	if c.Database.DSNFile == "" {
		return c.Database.DSN, nil
	}
	b, err := os.ReadFile(c.Database.DSNFile)
	if err != nil {
		return "", keyError("database.dsn_file", "cannot read the DSN: %v", err)
	}
	dsn := strings.TrimSpace(string(b))
	if dsn == "" {
		return "", keyError("database.dsn_file", "%s is empty: write the DSN into it", c.Database.DSNFile)
	}
	return dsn, nil
}
