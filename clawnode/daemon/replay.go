package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/gatewayforge/clawops/clawnode/keyfile"
)

// errReplayed and errReplayFull are the two ways replayGuard.check refuses.
var (
	errReplayed   = errors.New("idempotency key already used")
	errReplayFull = errors.New("too many commands in the replay window; retry later")
)

// replayGuard remembers the idempotency keys of accepted commands until they expire, so a
// command is never run twice. The set is bounded (max entries; commands expire within the
// node's maximum TTL, so expired keys can be forgotten) and journaled to a file, so a
// restart of the daemon does not reopen the window.
type replayGuard struct {
	mu         sync.Mutex
	seen       map[string]int64 // key → expiresAtMs
	max        int
	path       string
	f          *os.File
	lines      int // lines in the journal, live or not
	sincePrune int // keys added since expired ones were last dropped
}

// openReplayGuard loads the journal at path ("" keeps the set in memory only).
func openReplayGuard(path string, max int, nowMs int64) (*replayGuard, error) {
	g := &replayGuard{seen: make(map[string]int64), max: max, path: path}
	if path == "" {
		return g, nil
	}
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			exp, key, ok := strings.Cut(sc.Text(), " ")
			ms, err := strconv.ParseInt(exp, 10, 64)
			if ok && err == nil && ms > nowMs && key != "" {
				g.seen[key] = ms
			}
		}
		f.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("replay journal: %w", err)
	}
	if err := g.rewrite(); err != nil {
		return nil, err
	}
	return g, nil
}

// check records key (valid until expiresAtMs) and returns nil, or refuses a key seen before.
func (g *replayGuard) check(key string, expiresAtMs, nowMs int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, dup := g.seen[key]; dup {
		return errReplayed
	}
	if len(g.seen) >= g.max {
		maps.DeleteFunc(g.seen, func(_ string, exp int64) bool { return exp <= nowMs })
		if len(g.seen) >= g.max {
			return errReplayFull
		}
	}
	g.seen[key] = expiresAtMs
	if g.sincePrune++; g.sincePrune >= 256 {
		g.sincePrune = 0
		maps.DeleteFunc(g.seen, func(k string, exp int64) bool { return exp <= nowMs && k != key })
	}
	if g.f == nil {
		return nil
	}
	if g.lines >= 2*len(g.seen)+256 {
		if err := g.rewrite(); err != nil {
			delete(g.seen, key)
			return err
		}
		return nil
	}
	if _, err := fmt.Fprintf(g.f, "%d %s\n", expiresAtMs, key); err != nil {
		delete(g.seen, key)
		return fmt.Errorf("replay journal: %w", err)
	}
	if err := g.f.Sync(); err != nil {
		return fmt.Errorf("replay journal: %w", err)
	}
	g.lines++
	return nil
}

// rewrite replaces the journal with the live set and reopens it for appending.
func (g *replayGuard) rewrite() error {
	var b strings.Builder
	for k, exp := range g.seen {
		fmt.Fprintf(&b, "%d %s\n", exp, k)
	}
	if g.f != nil {
		g.f.Close()
		g.f = nil
	}
	if err := keyfile.WriteSecret(g.path, []byte(b.String())); err != nil {
		return fmt.Errorf("replay journal: %w", err)
	}
	f, err := os.OpenFile(g.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("replay journal: %w", err)
	}
	g.f, g.lines = f, len(g.seen)
	return nil
}

func (g *replayGuard) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.f != nil {
		g.f.Close()
		g.f = nil
	}
}
