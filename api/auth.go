package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/gatewayforge/clawops"
)

// MinTokenLength is the shortest token a TokenStore accepts.
const MinTokenLength = 16

// Authenticator maps a bearer token to the actor it belongs to.
type Authenticator interface {
	Authenticate(token string) (clawops.Actor, bool)
}

// TokenStore holds API tokens as SHA-256 digests only, each bound to an identity and a
// human role. Lookups compare against every digest in constant time, so neither the
// token nor which entry matched leaks through timing.
type TokenStore struct {
	mu      sync.RWMutex
	entries []tokenEntry
}

type tokenEntry struct {
	digest [sha256.Size]byte
	actor  clawops.Actor
}

var _ Authenticator = (*TokenStore)(nil)

// NewTokenStore returns an empty store.
func NewTokenStore() *TokenStore { return &TokenStore{} }

// Add binds token to an identity with a role. The token is hashed at once and never kept.
func (s *TokenStore) Add(token string, identity string, role clawops.HumanRole) error {
	if len(token) < MinTokenLength {
		return fmt.Errorf("add token for %q: token is shorter than %d characters", identity, MinTokenLength)
	}
	return s.AddDigest(sha256.Sum256([]byte(token)), identity, role)
}

// AddDigest binds a token known only by its SHA-256 digest.
func (s *TokenStore) AddDigest(digest [sha256.Size]byte, identity string, role clawops.HumanRole) error {
	if identity == "" {
		return errors.New("add token: identity is empty")
	}
	if !role.Valid() {
		return fmt.Errorf("add token for %q: role %q is not one of admin, approver, operator, viewer", identity, role)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		if e.digest == digest {
			return fmt.Errorf("add token for %q: the same token is already bound to another identity", identity)
		}
	}
	s.entries = append(s.entries, tokenEntry{digest: digest, actor: clawops.Actor{Identity: identity, Role: role}})
	return nil
}

// Authenticate returns the actor bound to token.
func (s *TokenStore) Authenticate(token string) (clawops.Actor, bool) {
	if token == "" {
		return clawops.Actor{}, false
	}
	d := sha256.Sum256([]byte(token))
	s.mu.RLock()
	defer s.mu.RUnlock()
	var found clawops.Actor
	ok := 0
	for _, e := range s.entries {
		if subtle.ConstantTimeCompare(d[:], e.digest[:]) == 1 {
			found, ok = e.actor, 1
		}
	}
	return found, ok == 1
}

// bearer extracts the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}
