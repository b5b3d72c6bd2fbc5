package slack

import (
	"context"
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/governance"
)

// actionPrefix starts the action_id of every ClawOps button.
const actionPrefix = "clawops_"

// Block limits (Slack: header 150, section text 3000, field 2000, 10 fields).
const (
	maxHeader    = 150
	maxActions   = 20
	maxActionLen = 140
	maxField     = 300
)

// escape makes text safe for mrkdwn: Slack's three control characters.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// RenderCard returns the Block Kit blocks and the notification text of an approval card.
// Pending cards end with Approve once / Approve for scope / Deny buttons; decided cards say
// who decided and when instead. notice, when set, is shown under the status.
func RenderCard(c governance.Card, notice string) ([]slack.Block, string) {
	mrk := func(s string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
	}
	blocks := []slack.Block{
		slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, channels.Truncate(c.Title, maxHeader), false, false)),
	}
	if c.Summary != "" {
		blocks = append(blocks, slack.NewSectionBlock(mrk(escape(channels.Truncate(c.Summary, channels.LimitSlackBlock))), nil, nil))
	}
	if len(c.Actions) > 0 {
		var b strings.Builder
		b.WriteString("*Actions*")
		for _, act := range channels.TruncateList(c.Actions, maxActions, maxActionLen) {
			b.WriteString("\n• " + escape(act))
		}
		blocks = append(blocks, slack.NewSectionBlock(mrk(channels.Truncate(b.String(), channels.LimitSlackBlock)), nil, nil))
	}
	var fields []*slack.TextBlockObject
	for _, f := range channels.CardFacts(c) {
		fields = append(fields, mrk(fmt.Sprintf("*%s*\n%s", escape(f.Label), escape(channels.Truncate(f.Value, maxField)))))
	}
	blocks = append(blocks, slack.NewSectionBlock(nil, fields[:min(len(fields), 10)], nil))
	var extra []slack.MixedElement
	if len(c.RiskFlags) > 0 {
		extra = append(extra, mrk("Flags: "+escape(strings.Join(c.RiskFlags, ", "))))
	}
	for _, line := range channels.CardExtras(c) {
		extra = append(extra, mrk(escape(line)))
	}
	if len(extra) > 0 {
		blocks = append(blocks, slack.NewContextBlock("", extra...))
	}
	status := "*" + escape(channels.CardStatus(c)) + "*"
	if notice != "" {
		status += "\n:warning: " + escape(notice)
	}
	blocks = append(blocks, slack.NewContextBlock("status", mrk(status)))
	if channels.CardPending(c) {
		once := slack.NewButtonBlockElement(actionPrefix+"approve_once", channels.EncodeAction(channels.ChoiceApprove, c.ApprovalID),
			slack.NewTextBlockObject(slack.PlainTextType, "Approve once", false, false))
		once.Style = slack.StylePrimary
		scope := slack.NewButtonBlockElement(actionPrefix+"approve_scope", channels.EncodeAction(channels.ChoiceApproveScope, c.ApprovalID),
			slack.NewTextBlockObject(slack.PlainTextType, "Approve for scope", false, false))
		deny := slack.NewButtonBlockElement(actionPrefix+"deny", channels.EncodeAction(channels.ChoiceDeny, c.ApprovalID),
			slack.NewTextBlockObject(slack.PlainTextType, "Deny", false, false))
		deny.Style = slack.StyleDanger
		blocks = append(blocks, slack.NewActionBlock("approval", once, scope, deny))
	}
	text := fmt.Sprintf("%s: %s", channels.CardStatus(c), c.Title)
	return blocks, text
}

// PostCard posts the card to the approvals channel, or updates the one already posted for
// the same approval.
func (a *Adapter) PostCard(ctx context.Context, card governance.Card) error {
	if a.opts.ApprovalsChannel == "" {
		return nil
	}
	a.cardMu.Lock()
	defer a.cardMu.Unlock()
	prev, ok := a.cards.Get(ctx, card.ApprovalID)
	notice := ""
	if ok && prev.Card.State == card.State {
		notice = prev.Notice
	}
	return a.showCard(ctx, card, notice, prev.Ref, ok)
}

// showCard posts or updates the card; the caller holds cardMu.
func (a *Adapter) showCard(ctx context.Context, card governance.Card, notice string, ref cardRef, posted bool) error {
	blocks, text := RenderCard(card, notice)
	opts := []slack.MsgOption{slack.MsgOptionBlocks(blocks...), slack.MsgOptionText(text, false)}
	if posted {
		if err := a.update(ctx, ref.Channel, ref.TS, opts...); err != nil {
			return fmt.Errorf("slack: update card %s: %w", card.ApprovalID, err)
		}
	} else {
		ts, err := a.post(ctx, a.opts.ApprovalsChannel, opts...)
		if err != nil {
			return fmt.Errorf("slack: post card %s: %w", card.ApprovalID, err)
		}
		ref = cardRef{Channel: a.opts.ApprovalsChannel, TS: ts}
	}
	a.cards.Put(ctx, card.ApprovalID, channels.PostedCard[cardRef]{Ref: ref, Card: card, Notice: notice})
	return nil
}

// noteOnCard shows notice under an already posted card (a refused press).
func (a *Adapter) noteOnCard(ctx context.Context, approvalID, notice string) {
	a.cardMu.Lock()
	defer a.cardMu.Unlock()
	prev, ok := a.cards.Get(ctx, approvalID)
	if !ok {
		return
	}
	if err := a.showCard(ctx, prev.Card, notice, prev.Ref, true); err != nil {
		a.log.WarnContext(ctx, "slack: show notice on card", "approval", approvalID, "err", err)
	}
}
