package fleet

import (
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// EventType names what happened in the fleet. The agents' event router subscribes by type:
// INSTANCE_DEGRADED and PAIR_FAILED go to the Guardian, COST_ANOMALY to the Ledger,
// PROVISION_QUEUE_BACKLOG to Forge, PROVIDER_DEGRADED to the Commander.
type EventType string

// Event types. Names are a contract with the agents; they never change meaning.
const (
	// Raised by the health monitor.
	EventInstanceDegraded      EventType = "INSTANCE_DEGRADED"
	EventPairFailed            EventType = "PAIR_FAILED"
	EventCostAnomaly           EventType = "COST_ANOMALY"
	EventProvisionQueueBacklog EventType = "PROVISION_QUEUE_BACKLOG"
	EventProviderDegraded      EventType = "PROVIDER_DEGRADED"

	// Every recorded state change of an instance.
	EventInstanceState EventType = "INSTANCE_STATE"

	// Provisioning.
	EventProvisionProgress  EventType = "PROVISION_PROGRESS"
	EventProvisionRetry     EventType = "PROVISION_RETRY"
	EventProvisionFailed    EventType = "PROVISION_FAILED"
	EventProvisionCompleted EventType = "PROVISION_COMPLETED"

	// The auto-heal runbook.
	EventHealStarted   EventType = "HEAL_STARTED"
	EventHealSucceeded EventType = "HEAL_SUCCEEDED"
	EventHealEscalated EventType = "HEAL_ESCALATED"

	// Failover.
	EventFailoverStarted   EventType = "FAILOVER_STARTED"
	EventFailoverCompleted EventType = "FAILOVER_COMPLETED"
	EventFailoverFailed    EventType = "FAILOVER_FAILED"

	// Rolling config pushes.
	EventPushStarted   EventType = "PUSH_STARTED"
	EventPushBatch     EventType = "PUSH_BATCH_COMPLETED"
	EventPushPaused    EventType = "PUSH_PAUSED"
	EventPushResumed   EventType = "PUSH_RESUMED"
	EventPushStopped   EventType = "PUSH_STOPPED"
	EventPushAborted   EventType = "PUSH_ABORTED"
	EventPushCompleted EventType = "PUSH_COMPLETED"

	// Other operations.
	EventInstanceResized   EventType = "INSTANCE_RESIZED"
	EventInstanceArchived  EventType = "INSTANCE_ARCHIVED"
	EventRoutingChanged    EventType = "ROUTING_POLICY_CHANGED"
	EventInstanceRecovered EventType = "INSTANCE_RECOVERED"
)

// Severity says how urgently a person should hear about an event.
type Severity string

// Severities.
const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// Event is one thing that happened in the fleet, as the agents receive it.
type Event struct {
	Seq      uint64          `json:"seq"`     // assigned by the bus, increasing
	Type     EventType       `json:"type"`    // what happened
	Subject  string          `json:"subject"` // instance, pair, provider, push or batch it is about
	Severity Severity        `json:"severity"`
	Summary  string          `json:"summary"`           // one line a person can read
	Payload  json.RawMessage `json:"payload,omitempty"` // structured details for agents
	Time     time.Time       `json:"time"`
}

// DefaultSubscriberBuffer is the queue length of a subscription when Subscribe is given 0.
const DefaultSubscriberBuffer = 256

// Bus is a small in-process publish/subscribe bus for fleet events. Publish never blocks:
// each subscriber has a bounded queue, and an event that does not fit is dropped for that
// subscriber, counted and logged. It is safe for concurrent use.
type Bus struct {
	log     *slog.Logger
	seq     atomic.Uint64
	dropped atomic.Uint64

	mu   sync.RWMutex
	subs map[*Subscription]struct{}
}

// NewBus returns an empty bus; log may be nil.
func NewBus(log *slog.Logger) *Bus {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Bus{log: log.With("component", "fleet.bus"), subs: map[*Subscription]struct{}{}}
}

// Subscription receives the events of the types it asked for, in publish order.
type Subscription struct {
	bus     *Bus
	types   []EventType // empty: every type
	ch      chan Event
	dropped atomic.Uint64
	closed  bool // guarded by bus.mu
}

// Subscribe returns a subscription with a queue of buffer events (DefaultSubscriberBuffer
// when buffer <= 0) receiving the given types, or every type when none is given.
func (b *Bus) Subscribe(buffer int, types ...EventType) *Subscription {
	if buffer <= 0 {
		buffer = DefaultSubscriberBuffer
	}
	s := &Subscription{bus: b, types: slices.Clone(types), ch: make(chan Event, buffer)}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// C is the channel events arrive on. It is closed by Close.
func (s *Subscription) C() <-chan Event { return s.ch }

// Dropped is how many events this subscription lost because its queue was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription and closes its channel. It is safe to call more than once.
func (s *Subscription) Close() {
	b := s.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	delete(b.subs, s)
	close(s.ch)
}

func (s *Subscription) wants(t EventType) bool {
	return len(s.types) == 0 || slices.Contains(s.types, t)
}

// Publish stamps e with the next sequence number (and the current time when e.Time is
// zero) and offers it to every interested subscriber without waiting. It returns the
// sequence number.
func (b *Bus) Publish(e Event) uint64 {
	if b == nil {
		return 0
	}
	e.Seq = b.seq.Add(1)
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.Severity == "" {
		e.Severity = SeverityInfo
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.subs {
		if !s.wants(e.Type) {
			continue
		}
		select {
		case s.ch <- e:
		default:
			n := s.dropped.Add(1)
			total := b.dropped.Add(1)
			// Log the first drop of a subscriber and then every hundredth, so a stuck
			// consumer is visible without flooding the log.
			if n == 1 || n%100 == 0 {
				b.log.Warn("event dropped: subscriber queue full", "type", e.Type, "subject", e.Subject,
					"subscriber_dropped", n, "total_dropped", total, "queue", cap(s.ch))
			}
		}
	}
	return e.Seq
}

// Dropped is how many deliveries the bus has dropped across all subscribers.
func (b *Bus) Dropped() uint64 { return b.dropped.Load() }

// payload marshals v for an Event; values built here always marshal.
func payload(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}
