package channels

import (
	"sync"

	"github.com/gatewayforge/clawops/governance"
)

// PostedCard is where an approval's card was posted (Ref, platform-specific), what it showed
// last and the notice shown under it (a refused press), so an update edits it in place.
type PostedCard[R any] struct {
	Ref    R
	Card   governance.Card
	Notice string
}

// PostedCards remembers the cards an adapter posted, by approval id, forgetting the oldest
// beyond a bound. It lives in memory: after a restart an update posts a fresh card.
type PostedCards[R any] struct {
	mu    sync.Mutex
	max   int
	order []string
	m     map[string]PostedCard[R]
}

// NewPostedCards returns an empty set that keeps at most max cards (default 1000).
func NewPostedCards[R any](max int) *PostedCards[R] {
	if max <= 0 {
		max = 1000
	}
	return &PostedCards[R]{max: max, m: map[string]PostedCard[R]{}}
}

// Get returns the card posted for approval id.
func (p *PostedCards[R]) Get(id string) (PostedCard[R], bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.m[id]
	return c, ok
}

// Put records the card posted for approval id.
func (p *PostedCards[R]) Put(id string, c PostedCard[R]) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.m[id]; !ok {
		p.order = append(p.order, id)
		for len(p.order) > p.max {
			delete(p.m, p.order[0])
			p.order = p.order[1:]
		}
	}
	p.m[id] = c
}
