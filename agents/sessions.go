package agents

import (
	"context"
	"sync"
)

// sessionLocks lets one run at a time hold a session. Waiting respects the context, and
// entries disappear when nobody holds or waits for them, so memory follows active sessions.
type sessionLocks struct {
	mu sync.Mutex
	m  map[SessionKey]*sessionLock
}

type sessionLock struct {
	slot chan struct{}
	refs int
}

func newSessionLocks() *sessionLocks { return &sessionLocks{m: map[SessionKey]*sessionLock{}} }

// acquire blocks until key is free or ctx ends; call the returned func to release.
func (s *sessionLocks) acquire(ctx context.Context, key SessionKey) (func(), error) {
	s.mu.Lock()
	l := s.m[key]
	if l == nil {
		l = &sessionLock{slot: make(chan struct{}, 1)}
		s.m[key] = l
	}
	l.refs++
	s.mu.Unlock()

	select {
	case l.slot <- struct{}{}:
		return func() {
			<-l.slot
			s.drop(key, l)
		}, nil
	case <-ctx.Done():
		s.drop(key, l)
		return nil, ctx.Err()
	}
}

func (s *sessionLocks) drop(key SessionKey, l *sessionLock) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l.refs--
	if l.refs == 0 {
		delete(s.m, key)
	}
}

// active reports how many sessions are held or awaited (for tests).
func (s *sessionLocks) active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
