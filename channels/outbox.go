package channels

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gatewayforge/clawops"
)

// RetryableError marks a send failure worth trying again: a rate limit (After is then the
// wait the platform asked for) or a transient server or network error (After 0: back off).
// Adapters wrap their platform's errors in it; anything else fails at once.
type RetryableError struct {
	After time.Duration
	Err   error
}

func (e *RetryableError) Error() string {
	if e.After > 0 {
		return fmt.Sprintf("retry after %s: %v", e.After, e.Err)
	}
	return "retryable: " + e.Err.Error()
}

// Unwrap returns the platform error.
func (e *RetryableError) Unwrap() error { return e.Err }

// OutboxOptions configure an Outbox. Zero values take the defaults in brackets.
type OutboxOptions struct {
	PerKey      time.Duration // least gap between two sends to one chat [0]
	Global      time.Duration // least gap between any two sends [0]
	MaxAttempts int           // tries per message, first included [5]
	BaseBackoff time.Duration // wait after the first retryable failure, doubled each time [500ms]
	MaxBackoff  time.Duration // cap of the doubling [30s]
	Clock       clawops.Clock
	// Sleep waits d or until ctx ends; nil uses a timer. Tests pass one that advances a
	// fake clock, so backoff is tested without waiting.
	Sleep  func(ctx context.Context, d time.Duration) error
	Logger *slog.Logger
}

// Outbox is the outbound queue every adapter sends through: messages to one chat go out one
// at a time (a retry keeps the chat until it is done), no closer together than PerKey, all
// sends no closer than Global, and retryable failures are retried with exponential backoff
// (or the wait the platform asked for). Do blocks until its message is sent or has failed for
// good, so a caller that sends chunks one after another gets them delivered whole and in
// order, and stops at the first chunk that cannot be sent.
type Outbox struct {
	opts OutboxOptions
	log  *slog.Logger

	mu         sync.Mutex
	lanes      map[string]*lane
	nextGlobal time.Time
}

type lane struct {
	turn  chan struct{} // a one-slot semaphore: one send per chat at a time
	last  time.Time     // when the last send to this chat finished
	users int
}

// NewOutbox builds an Outbox.
func NewOutbox(o OutboxOptions) *Outbox {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.BaseBackoff <= 0 {
		o.BaseBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	o.Clock = clawops.ClockOrSystem(o.Clock)
	if o.Sleep == nil {
		o.Sleep = sleepCtx
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Outbox{opts: o, log: o.Logger, lanes: map[string]*lane{}}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// maxIdleLanes is how many idle per-chat lanes are kept before old ones are pruned.
const maxIdleLanes = 1024

// Do sends one message to chat key by calling send, under the rate limits, retrying
// retryable failures. It returns send's last error, or ctx's.
func (o *Outbox) Do(ctx context.Context, key string, send func(ctx context.Context) error) error {
	l := o.acquireLane(key)
	defer o.releaseLane(l)
	select {
	case l.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.turn }()

	var err error
	for attempt := 1; ; attempt++ {
		if werr := o.opts.Sleep(ctx, o.reserve(l)); werr != nil {
			return werr
		}
		err = send(ctx)
		o.mu.Lock()
		l.last = o.opts.Clock.Now()
		o.mu.Unlock()
		if err == nil {
			return nil
		}
		var re *RetryableError
		if !errors.As(err, &re) || attempt >= o.opts.MaxAttempts || ctx.Err() != nil {
			return err
		}
		wait := o.backoff(attempt)
		if re.After > wait {
			wait = re.After
		}
		o.log.DebugContext(ctx, "send failed, retrying", "attempt", attempt, "wait", wait, "err", err)
		if werr := o.opts.Sleep(ctx, wait); werr != nil {
			return fmt.Errorf("%w (gave up waiting to retry: %v)", err, werr)
		}
	}
}

func (o *Outbox) backoff(attempt int) time.Duration {
	d := o.opts.BaseBackoff
	for i := 1; i < attempt && d < o.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, o.opts.MaxBackoff)
}

// reserve returns how long to wait before the next send on l, and books the global slot.
func (o *Outbox) reserve(l *lane) time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.opts.Clock.Now()
	at := now
	if !l.last.IsZero() {
		at = later(at, l.last.Add(o.opts.PerKey))
	}
	if o.opts.Global > 0 {
		at = later(at, o.nextGlobal)
		o.nextGlobal = at.Add(o.opts.Global)
	}
	return at.Sub(now)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (o *Outbox) acquireLane(key string) *lane {
	o.mu.Lock()
	defer o.mu.Unlock()
	l := o.lanes[key]
	if l == nil {
		if len(o.lanes) >= maxIdleLanes {
			now := o.opts.Clock.Now()
			for k, x := range o.lanes {
				if x.users == 0 && now.Sub(x.last) > o.opts.PerKey {
					delete(o.lanes, k)
				}
			}
		}
		l = &lane{turn: make(chan struct{}, 1)}
		o.lanes[key] = l
	}
	l.users++
	return l
}

func (o *Outbox) releaseLane(l *lane) {
	o.mu.Lock()
	defer o.mu.Unlock()
	l.users--
}
