package redact

import (
	"regexp"
	"strings"
	"unicode"
)

// Names of the shipped rules, in the order they apply. Order matters: whole structures
// (private keys, JWTs, key=value pairs) go before the generic long-token rules.
const (
	RulePrivateKey = "private_key"
	RuleBearer     = "bearer"
	RuleJWT        = "jwt"
	RuleKeyValue   = "key_value"
	RuleAPIKey     = "api_key"
	RuleURLCreds   = "url_credentials"
	RuleEmail      = "email"
	RulePhone      = "phone"
	RuleLongHex    = "long_hex"
	RuleLongBase64 = "long_base64"
)

// secretKeys are the key names (or name endings) whose value is a secret.
const secretKeys = `(?:token|password|passwd|pwd|passphrase|secret|api[_-]?key|apikey|access[_-]?key|private[_-]?key|client[_-]?secret|credentials?|auth[_-]?key|session[_-]?key|cookie)`

func defaultRules() []Rule {
	return []Rule{
		{Name: RulePrivateKey, Replace: Mask,
			Pattern: regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----`)},
		{Name: RuleBearer, Replace: "${1}" + Mask,
			Pattern: regexp.MustCompile(`(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}`)},
		{Name: RuleJWT, Replace: Mask,
			Pattern: regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)},
		// token=…, "password": "…", client_secret: …, X-Api-Key: … (the key may have a
		// prefix such as join_ or bot_, and quotes around key and value are kept).
		{Name: RuleKeyValue, Replace: "${1}" + Mask,
			Pattern: regexp.MustCompile(`(?i)((?:\b|_)` + secretKeys + `"?\s*[=:]\s*"?)([^\s"'&,;}]+)`),
			Check:   func(m string) bool { return !strings.HasSuffix(m, Mask) }},
		{Name: RuleAPIKey, Replace: Mask,
			Pattern: regexp.MustCompile(`\b(?:` +
				`sk-(?:proj-|ant-|live_|test_)?[A-Za-z0-9_-]{16,}` + // OpenAI, Anthropic, Stripe
				`|rk_(?:live|test)_[A-Za-z0-9]{16,}` +
				`|xox[abposre]-[A-Za-z0-9-]{10,}` + // Slack
				`|xapp-[A-Za-z0-9-]{10,}` +
				`|gh[pousr]_[A-Za-z0-9]{30,}` + // GitHub
				`|github_pat_[A-Za-z0-9_]{30,}` +
				`|glpat-[A-Za-z0-9_-]{20,}` + // GitLab
				`|AKIA[0-9A-Z]{16}` + // AWS access key ID
				`|AIza[0-9A-Za-z_-]{35}` + // Google API key
				`|tskey-[A-Za-z0-9-]{10,}` + // Tailscale
				`|dop_v1_[a-f0-9]{64}` + // DigitalOcean
				`|[0-9]{8,10}:AA[A-Za-z0-9_-]{33}` + // Telegram bot token
				`|[MN][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}` + // Discord bot token
				`)`)},
		{Name: RuleURLCreds, Replace: "${1}" + Mask + "@",
			Pattern: regexp.MustCompile(`([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@`)},
		{Name: RuleEmail, Replace: Mask,
			Pattern: regexp.MustCompile(`\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b`)},
		// E.164 (+4915112345678, +1 415 555 2671, +44 20 7946 0958), North American forms
		// ((415) 555-2671, 415-555-2671, 415.555.2671) and 00-prefixed international numbers.
		// Dates (2026-11-03), times and plain provider IDs (12345678) do not match.
		{Name: RulePhone, Replace: Mask,
			Pattern: regexp.MustCompile(`(?:\+[1-9]\d{0,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}\d` +
				`|\(\d{3}\)\s?\d{3}[-. ]\d{4}\b` +
				`|\b\d{3}[-. ]\d{3}[-. ]\d{4}\b` +
				`|\b00[1-9]\d{8,13}\b)`),
			Check: phoneDigits},
		// A long hex run is a secret unless it is exactly 64 digits (a SHA-256 digest: plan
		// hashes, audit hashes, node IDs), or part of a prefixed ID such as apr_….
		{Name: RuleLongHex, Replace: Mask,
			Pattern: regexp.MustCompile(`\b[0-9a-fA-F]{32,}\b`),
			Check:   func(m string) bool { return len(m) != 64 && hasDigitAndLetter(m) }},
		{Name: RuleLongBase64, Replace: Mask,
			Pattern: regexp.MustCompile(`[A-Za-z0-9+/_-]{40,}={0,2}`),
			Check:   looksRandom},
	}
}

// phoneDigits accepts a phone-shaped match with a plausible number of digits (7 to 15).
func phoneDigits(m string) bool {
	n := 0
	for _, r := range m {
		if r >= '0' && r <= '9' {
			n++
		}
	}
	return n >= 7 && n <= 15
}

func hasDigitAndLetter(s string) bool {
	var digit, letter bool
	for _, r := range s {
		switch {
		case unicode.IsDigit(r):
			digit = true
		case unicode.IsLetter(r):
			letter = true
		}
	}
	return digit && letter
}

// looksRandom accepts a long base64-alphabet run that mixes upper case, lower case and
// digits and is not a path (its longest '/'-free stretch is at least 24 characters), and
// is not one of the hex digests kept on purpose.
func looksRandom(m string) bool {
	var upper, lower, digit bool
	longest, cur := 0, 0
	for _, r := range m {
		switch {
		case r >= 'A' && r <= 'Z':
			upper = true
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= '0' && r <= '9':
			digit = true
		}
		if r == '/' {
			cur = 0
			continue
		}
		cur++
		longest = max(longest, cur)
	}
	return upper && lower && digit && longest >= 24
}
