package governance

import (
	"context"
	"encoding/base32"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"

	"github.com/gatewayforge/clawops"
)

// SecondFactorVerifier checks a second factor (a one-time code) presented by identity. It
// returns nil when the code is good, else an error; the gate reports any error as
// SECOND_FACTOR_INVALID.
type SecondFactorVerifier interface {
	VerifySecondFactor(ctx context.Context, identity, code string) error
}

// TOTP parameters (RFC 6238 defaults, what authenticator apps use).
const (
	totpPeriod = 30 * time.Second
	totpDigits = otp.DigitsSix
	// totpSkew accepts the code of the step before and after now, for clock drift.
	totpSkew = 1
)

// TOTPVerifier verifies RFC 6238 time-based one-time codes against per-identity secrets.
// A code is accepted once: a step already used by an identity (or an earlier one) is
// refused, so a code seen over someone's shoulder cannot be replayed. That memory is per
// process; with several gateway replicas a code could be reused on another replica within
// its 90-second window.
type TOTPVerifier struct {
	clock   clawops.Clock
	secrets map[string]string // identity → base32 secret

	mu   sync.Mutex
	last map[string]uint64 // identity → last step accepted
}

var _ SecondFactorVerifier = (*TOTPVerifier)(nil)

// NewTOTPVerifier returns a verifier for the given identity → base32 secret enrolments. A
// nil clock is the system clock. A malformed or short secret is an error naming the identity
// (never the secret).
func NewTOTPVerifier(secrets map[string]string, clock clawops.Clock) (*TOTPVerifier, error) {
	v := &TOTPVerifier{clock: clawops.ClockOrSystem(clock), secrets: make(map[string]string, len(secrets)),
		last: make(map[string]uint64)}
	for id, s := range secrets {
		s = strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
		raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.TrimRight(s, "="))
		if err != nil {
			return nil, fmt.Errorf("totp: the secret of %s is not base32", quoteShort(id))
		}
		if len(raw) < 10 {
			return nil, fmt.Errorf("totp: the secret of %s is %d bytes; use at least 10 (80 bits)", quoteShort(id), len(raw))
		}
		v.secrets[id] = strings.TrimRight(s, "=")
	}
	return v, nil
}

// VerifySecondFactor checks code for identity at the clock's current time.
func (v *TOTPVerifier) VerifySecondFactor(_ context.Context, identity, code string) error {
	const op = "governance.totp"
	fail := func(msg string) error {
		return clawops.E(op, clawops.KindDenied, ReasonSecondFactorInvalid, msg)
	}
	secret, ok := v.secrets[identity]
	if !ok {
		return fail("no second factor is enrolled for " + quoteShort(identity))
	}
	if len(code) != totpDigits.Length() || strings.Trim(code, "0123456789") != "" {
		return fail("the code must be 6 digits")
	}
	now := uint64(v.clock.Now().Unix()) / uint64(totpPeriod/time.Second)
	opts := hotp.ValidateOpts{Digits: totpDigits, Algorithm: otp.AlgorithmSHA1}
	for step := now - totpSkew; step <= now+totpSkew; step++ {
		good, err := hotp.ValidateCustom(code, step, secret, opts)
		if err != nil {
			return fail("the code could not be checked")
		}
		if !good {
			continue
		}
		v.mu.Lock()
		defer v.mu.Unlock()
		if last, seen := v.last[identity]; seen && step <= last {
			return fail("this code was already used")
		}
		v.last[identity] = step
		return nil
	}
	return fail("the code is wrong or expired")
}
