package channels_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatewayforge/clawops/channels"
)

// stepClock is a clock that only moves when the outbox sleeps.
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.now = c.now.Add(d)
	}
	return nil
}

func newStepClock() *stepClock { return &stepClock{now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)} }

func TestOutboxPacesPerChatAndGlobally(t *testing.T) {
	clk := newStepClock()
	o := channels.NewOutbox(channels.OutboxOptions{PerKey: time.Second, Global: 100 * time.Millisecond, Clock: clk, Sleep: clk.sleep})
	var at []string
	send := func(key string) {
		if err := o.Do(context.Background(), key, func(context.Context) error {
			at = append(at, fmt.Sprintf("%s@%s", key, clk.Now().Format("05.000")))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	send("a")
	send("a")
	send("b")
	send("a")
	want := []string{"a@00.000", "a@01.000", "b@01.100", "a@02.000"}
	if fmt.Sprint(at) != fmt.Sprint(want) {
		t.Errorf("send times: got %v, want %v", at, want)
	}
}

func TestOutboxRetries(t *testing.T) {
	transient := &channels.RetryableError{Err: errors.New("502")}
	limited := &channels.RetryableError{After: 9 * time.Second, Err: errors.New("429")}
	permanent := errors.New("403 forbidden")
	tests := []struct {
		name      string
		results   []error
		wantErr   error
		wantCalls int
		wantWait  time.Duration // total time slept
	}{
		{"ok", []error{nil}, nil, 1, 0},
		{"transient then ok", []error{transient, transient, nil}, nil, 3, 100*time.Millisecond + 200*time.Millisecond},
		{"rate limited waits as asked", []error{limited, nil}, nil, 2, 9 * time.Second},
		{"permanent fails at once", []error{permanent, nil}, permanent, 1, 0},
		{"gives up after max attempts", []error{transient, transient, transient, transient}, transient, 3, 300 * time.Millisecond},
		{"backoff is capped", []error{transient, transient, nil}, nil, 3, 100*time.Millisecond + 150*time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newStepClock()
			start := clk.Now()
			maxB := time.Second
			if tt.name == "backoff is capped" {
				maxB = 150 * time.Millisecond
			}
			o := channels.NewOutbox(channels.OutboxOptions{MaxAttempts: 3, BaseBackoff: 100 * time.Millisecond, MaxBackoff: maxB,
				Clock: clk, Sleep: clk.sleep})
			calls := 0
			err := o.Do(context.Background(), "k", func(context.Context) error {
				calls++
				return tt.results[calls-1]
			})
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err: got %v, want %v", err, tt.wantErr)
			}
			if calls != tt.wantCalls {
				t.Errorf("calls: got %d, want %d", calls, tt.wantCalls)
			}
			if got := clk.Now().Sub(start); got != tt.wantWait {
				t.Errorf("waited: got %s, want %s", got, tt.wantWait)
			}
		})
	}
}

func TestOutboxOneAtATimePerChat(t *testing.T) {
	o := channels.NewOutbox(channels.OutboxOptions{})
	release := make(chan struct{})
	var mu sync.Mutex
	busy, most, done := 0, 0, 0
	send := func(context.Context) error {
		mu.Lock()
		busy++
		most = max(most, busy)
		mu.Unlock()
		<-release
		mu.Lock()
		busy--
		done++
		mu.Unlock()
		return nil
	}
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); _ = o.Do(context.Background(), "chat", send) }()
	}
	// Another chat is not held up by the busy one.
	if err := o.Do(context.Background(), "other", func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	close(release)
	wg.Wait()
	if most != 1 || done != 5 {
		t.Errorf("got %d sends at once and %d done, want 1 and 5", most, done)
	}
}

func TestOutboxCancelledWhileWaiting(t *testing.T) {
	o := channels.NewOutbox(channels.OutboxOptions{PerKey: time.Hour})
	ctx := context.Background()
	if err := o.Do(ctx, "k", func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	sent := false
	err := o.Do(cctx, "k", func(context.Context) error { sent = true; return nil })
	if !errors.Is(err, context.Canceled) || sent {
		t.Errorf("got %v (sent %v), want context.Canceled and nothing sent", err, sent)
	}
}
