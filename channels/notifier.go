package channels

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/gatewayforge/clawops/governance"
)

// NotifierOptions configure a Notifier.
type NotifierOptions struct {
	// Channels are all configured channels; those that are CardPosters receive cards.
	Channels []Channel
	// Card derives the card from an approval; nil means CardFor.
	Card func(governance.Approval) governance.Card
	// Timeout bounds one PostCard call (default 10s).
	Timeout time.Duration
	// QueueSize is how many pending cards each channel may hold before new ones are
	// dropped with a warning (default 64).
	QueueSize int
	Logger    *slog.Logger
}

// Notifier implements governance.Notifier: every approval change becomes a card posted to
// every CardPoster channel, so approvers see it wherever they are, not only the requester.
// ApprovalChanged never blocks: each channel has its own queue, drained in order by Run, so
// a slow platform neither delays the gate nor reorders one approval's updates.
type Notifier struct {
	card    func(governance.Approval) governance.Card
	timeout time.Duration
	log     *slog.Logger
	queues  []posterQueue
	running atomic.Bool
}

type posterQueue struct {
	name   string
	poster CardPoster
	cards  chan governance.Card
}

var _ governance.Notifier = (*Notifier)(nil)

// NewNotifier builds a Notifier; call Run to deliver.
func NewNotifier(opts NotifierOptions) *Notifier {
	n := &Notifier{card: opts.Card, timeout: opts.Timeout, log: opts.Logger}
	if n.card == nil {
		n.card = CardFor
	}
	if n.timeout <= 0 {
		n.timeout = 10 * time.Second
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	size := opts.QueueSize
	if size <= 0 {
		size = 64
	}
	for _, ch := range opts.Channels {
		if p, ok := ch.(CardPoster); ok {
			n.queues = append(n.queues, posterQueue{name: ch.Name(), poster: p, cards: make(chan governance.Card, size)})
		}
	}
	return n
}

// ApprovalChanged queues the approval's card for every CardPoster channel.
func (n *Notifier) ApprovalChanged(_ context.Context, a governance.Approval) {
	card := n.card(a)
	for _, q := range n.queues {
		select {
		case q.cards <- card:
		default:
			n.log.Warn("approval card dropped: channel queue full", "channel", q.name, "approval", a.ID)
		}
	}
}

// Run posts queued cards until ctx ends, then returns nil. It may be called once.
func (n *Notifier) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("notifier: Run called twice")
	}
	done := make(chan struct{}, len(n.queues))
	for _, q := range n.queues {
		go func() {
			defer func() { done <- struct{}{} }()
			n.drain(ctx, q)
		}()
	}
	for range n.queues {
		<-done
	}
	return nil
}

func (n *Notifier) drain(ctx context.Context, q posterQueue) {
	for {
		select {
		case <-ctx.Done():
			return
		case card := <-q.cards:
			pctx, cancel := context.WithTimeout(ctx, n.timeout)
			err := q.poster.PostCard(pctx, card)
			cancel()
			if err != nil {
				n.log.Warn("post approval card", "channel", q.name, "approval", card.ApprovalID, "err", err)
			}
		}
	}
}

// CardFor derives the card every channel renders from an approval.
func CardFor(a governance.Approval) governance.Card {
	c := governance.Card{
		ApprovalID:           a.ID,
		Title:                fmt.Sprintf("Approve %s?", a.Tool),
		Summary:              a.Plan.Summary,
		Risk:                 a.Risk,
		UsersAffected:        a.Plan.UsersAffected,
		CostDeltaMonthlyUSD:  a.Plan.CostDeltaMonthlyUSD,
		ExpectedDuration:     a.Plan.ExpectedDuration,
		PlanHash:             a.PlanHash,
		Requester:            a.Requester.String(),
		ExpiresAt:            a.ExpiresAt,
		State:                a.State,
		DecidedBy:            a.DecidedBy,
		DecidedAt:            a.DecidedAt,
		RiskScore:            a.RiskScore,
		ApprovalsRequired:    a.ApprovalsRequired,
		Deciders:             a.Decisions,
		SecondFactorRequired: a.SecondFactor,
		Audience:             a.Approvers,
		Forecast:             a.Plan.Forecast,
	}
	for _, e := range a.Plan.Effects {
		s := e.Kind + " " + e.Target
		if e.Detail != "" {
			s += ": " + e.Detail
		}
		c.Actions = append(c.Actions, s)
	}
	if !a.Plan.Reversible {
		c.RiskFlags = append(c.RiskFlags, "irreversible")
	}
	if a.Plan.ProviderDelete {
		c.RiskFlags = append(c.RiskFlags, "deletes a server at the provider")
	}
	if a.Plan.UsersAffected > 10 {
		c.RiskFlags = append(c.RiskFlags, fmt.Sprintf("affects %d users", a.Plan.UsersAffected))
	}
	return c
}
