package channels

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/gatewayforge/clawops"
)

// Handler answers one message from a known actor once its run has ended; the agents
// Commander implements it.
type Handler interface {
	Handle(ctx context.Context, actor clawops.Actor, text string) ([]string, error)
}

// Dispatcher takes inbound messages from adapters, drops those from unknown senders, hands
// the rest to the Handler and sends the replies back through the channel they came from.
type Dispatcher struct {
	resolver Resolver
	handler  Handler
	log      *slog.Logger

	mu       sync.RWMutex
	channels map[string]Channel
	unknown  *UnknownAudit
}

// NewDispatcher builds a Dispatcher. A nil logger discards.
func NewDispatcher(r Resolver, h Handler, logger *slog.Logger) *Dispatcher {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Dispatcher{resolver: r, handler: h, log: logger, channels: map[string]Channel{}}
}

// Attach makes c the channel replies go to for inbound messages whose Channel is c.Name().
// Adapters are built with Deliver before they exist, so they are attached afterwards.
func (d *Dispatcher) Attach(c Channel) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.channels[c.Name()] = c
}

// SetAuditor makes the Dispatcher audit messages from senders not in allowFrom (at most one
// row per sender per ten minutes, without the message text). Call it before Deliver is used.
func (d *Dispatcher) SetAuditor(a Auditor, clock clawops.Clock) {
	u := NewUnknownAudit(a, clock, d.log)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unknown = u
}

// Deliver handles one inbound message and blocks until its replies are sent. Adapters that
// must keep reading call it in a goroutine; the Handler serialises runs per session. A
// message from an unknown sender is ignored (logged, no reply) and returns an error with
// reason UNKNOWN_SENDER.
func (d *Dispatcher) Deliver(ctx context.Context, in Inbound) error {
	if in.Channel == "" || in.Sender == "" || in.Chat == "" {
		return clawops.E("deliver", clawops.KindInvalid, clawops.ReasonMalformedRequest,
			"inbound message needs channel, chat and sender")
	}
	actor, err := d.resolver.Resolve(in.Channel, in.Sender)
	if err != nil {
		d.mu.RLock()
		u := d.unknown
		d.mu.RUnlock()
		if u != nil {
			u.Record(ctx, in.Channel, in.Sender, "message")
		} else {
			d.log.Info("ignored message from unknown sender", "channel", in.Channel, "sender", in.Sender)
		}
		return err
	}
	d.mu.RLock()
	ch := d.channels[in.Channel]
	d.mu.RUnlock()
	if ch == nil {
		return fmt.Errorf("deliver: no channel %q attached", in.Channel)
	}
	actor.Channel = in.Channel
	replies, err := d.handler.Handle(ctx, actor, in.Text)
	if err != nil {
		d.log.Warn("handle message", "channel", in.Channel, "identity", actor.Identity, "err", err)
		code := clawops.ReasonOf(err)
		if code == "" {
			code = clawops.ReasonInternal
		}
		replies = []string{fmt.Sprintf("Sorry, that failed (%s).", code)}
	}
	for _, r := range replies {
		if err := ch.Send(ctx, in.Chat, r); err != nil {
			return fmt.Errorf("deliver: send reply on %s: %w", in.Channel, err)
		}
	}
	return nil
}
