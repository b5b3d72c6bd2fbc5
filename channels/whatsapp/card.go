package whatsapp

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"google.golang.org/protobuf/proto"

	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/governance"
)

// Card limits: WhatsApp takes long texts, but a card should fit a phone screen or two.
const (
	maxActions   = 10
	maxActionLen = 120
	maxSummary   = 600
)

// RenderCard returns the text of an approval card, ending with how to decide by reply.
// WhatsApp formatting: *bold*, _italic_.
func RenderCard(c governance.Card) string {
	code := channels.ShortCode(c.ApprovalID)
	var b strings.Builder
	fmt.Fprintf(&b, "*Approval needed* · code %s\n*%s*\n", code, plain(c.Title))
	if c.Summary != "" {
		fmt.Fprintf(&b, "%s\n", plain(channels.Truncate(c.Summary, maxSummary)))
	}
	if len(c.Actions) > 0 {
		b.WriteString("\nActions:\n")
		for _, act := range channels.TruncateList(c.Actions, maxActions, maxActionLen) {
			fmt.Fprintf(&b, "• %s\n", plain(act))
		}
	}
	b.WriteString("\n")
	for _, f := range channels.CardFacts(c) {
		fmt.Fprintf(&b, "%s: %s\n", f.Label, plain(f.Value))
	}
	if len(c.RiskFlags) > 0 {
		fmt.Fprintf(&b, "Flags: %s\n", plain(strings.Join(c.RiskFlags, ", ")))
	}
	for _, line := range channels.CardExtras(c) {
		fmt.Fprintf(&b, "%s\n", line)
	}
	fmt.Fprintf(&b, "\n_%s_", channels.CardStatus(c))
	if channels.CardPending(c) {
		fmt.Fprintf(&b, "\nReply *APPROVE %s* or *DENY %s* (approve-for-scope is not offered here).", code, code)
	}
	return b.String()
}

// RenderStatus is the short message sent when a posted card's approval changes state.
func RenderStatus(c governance.Card) string {
	return fmt.Sprintf("Approval %s (%s): %s.", channels.ShortCode(c.ApprovalID), plain(c.Title), channels.CardStatus(c))
}

// plain keeps outside text from switching WhatsApp formatting on.
func plain(s string) string {
	return strings.NewReplacer("*", "∗", "~", "˜", "`", "ˋ").Replace(s)
}

// PostCard sends the card to every approver; when the approval changes state afterwards it
// sends a one-line status instead (WhatsApp cards are not edited in place).
func (a *Adapter) PostCard(ctx context.Context, card governance.Card) error {
	if len(a.approvers) == 0 {
		return nil
	}
	prev, posted := a.cards.Get(ctx, card.ApprovalID)
	if posted && prev.Card.State == card.State {
		return nil
	}
	text := RenderCard(card)
	if posted {
		text = RenderStatus(card)
	}
	code := channels.ShortCode(card.ApprovalID)
	if other, dup := a.codes.LoadOrStore(code, card.ApprovalID); dup && other.(string) != card.ApprovalID {
		a.codes.Delete(code) // two live approvals share a short code: only full ids work for them
		a.log.WarnContext(ctx, "whatsapp: short code collision; use the full approval id", "code", code)
	}
	a.cards.Put(ctx, card.ApprovalID, channels.PostedCard[string]{Ref: code, Card: card})
	var errs []error
	for _, to := range a.approvers {
		if err := a.sendMessage(ctx, to, &waE2E.Message{Conversation: proto.String(text)}); err != nil {
			errs = append(errs, fmt.Errorf("whatsapp: card %s to an approver: %w", card.ApprovalID, err))
		}
	}
	return errors.Join(errs...)
}
