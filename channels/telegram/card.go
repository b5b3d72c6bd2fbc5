package telegram

import (
	"context"
	"fmt"
	"html"
	"strconv"
	"strings"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/governance"
)

// Card limits: a card is one message of at most 4096 characters.
const (
	maxActions   = 15
	maxActionLen = 160
	maxSummary   = 1000
)

// RenderCard returns the HTML text and inline keyboard of an approval card; the keyboard is
// empty once the approval is decided. notice, when set, is shown under the status (a refused
// press).
func RenderCard(c governance.Card, notice string) (string, tgbotapi.InlineKeyboardMarkup) {
	var b strings.Builder
	e := html.EscapeString
	fmt.Fprintf(&b, "<b>%s</b>\n", e(c.Title))
	if c.Summary != "" {
		fmt.Fprintf(&b, "%s\n", e(channels.Truncate(c.Summary, maxSummary)))
	}
	if len(c.Actions) > 0 {
		b.WriteString("\n<b>Actions</b>\n")
		for _, a := range channels.TruncateList(c.Actions, maxActions, maxActionLen) {
			fmt.Fprintf(&b, "• %s\n", e(a))
		}
	}
	b.WriteString("\n")
	for _, f := range channels.CardFacts(c) {
		fmt.Fprintf(&b, "<b>%s:</b> %s\n", e(f.Label), e(f.Value))
	}
	if len(c.RiskFlags) > 0 {
		fmt.Fprintf(&b, "<b>Flags:</b> %s\n", e(strings.Join(c.RiskFlags, ", ")))
	}
	for _, line := range channels.CardExtras(c) {
		fmt.Fprintf(&b, "%s\n", e(line))
	}
	fmt.Fprintf(&b, "\n<i>%s</i>", e(channels.CardStatus(c)))
	if notice != "" {
		fmt.Fprintf(&b, "\n⚠️ %s", e(notice))
	}
	if channels.CardPending(c) {
		fmt.Fprintf(&b, "\n<code>%s</code>", e(c.ApprovalID))
	}
	var kb tgbotapi.InlineKeyboardMarkup
	if channels.CardPending(c) {
		kb = tgbotapi.NewInlineKeyboardMarkup(
			tgbotapi.NewInlineKeyboardRow(
				tgbotapi.NewInlineKeyboardButtonData("✅ Approve once", channels.EncodeAction(channels.ChoiceApprove, c.ApprovalID)),
				tgbotapi.NewInlineKeyboardButtonData("Approve for scope", channels.EncodeAction(channels.ChoiceApproveScope, c.ApprovalID)),
			),
			tgbotapi.NewInlineKeyboardRow(
				tgbotapi.NewInlineKeyboardButtonData("❌ Deny", channels.EncodeAction(channels.ChoiceDeny, c.ApprovalID)),
			),
		)
	} else {
		kb = tgbotapi.InlineKeyboardMarkup{InlineKeyboard: [][]tgbotapi.InlineKeyboardButton{}}
	}
	return b.String(), kb
}

// PostCard posts the card to the approvals chat, or edits the one already posted for the
// same approval.
func (a *Adapter) PostCard(ctx context.Context, card governance.Card) error {
	if a.opts.ApprovalsChat == 0 {
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

// showCard sends or edits the card; the caller holds cardMu.
func (a *Adapter) showCard(ctx context.Context, card governance.Card, notice string, ref cardRef, posted bool) error {
	text, kb := RenderCard(card, notice)
	chat := a.opts.ApprovalsChat
	key := strconv.FormatInt(chat, 10)
	if posted {
		edit := tgbotapi.NewEditMessageTextAndMarkup(ref.Chat, ref.Message, text, kb)
		edit.ParseMode = tgbotapi.ModeHTML
		if _, err := a.sendMessage(ctx, key, edit); err != nil && !notModified(err) {
			return fmt.Errorf("telegram: update card %s: %w", card.ApprovalID, err)
		}
		a.cards.Put(ctx, card.ApprovalID, channels.PostedCard[cardRef]{Ref: ref, Card: card, Notice: notice})
		return nil
	}
	msg := tgbotapi.NewMessage(chat, text)
	msg.ParseMode = tgbotapi.ModeHTML
	if channels.CardPending(card) {
		msg.ReplyMarkup = kb
	}
	m, err := a.sendMessage(ctx, key, msg)
	if err != nil {
		return fmt.Errorf("telegram: post card %s: %w", card.ApprovalID, err)
	}
	a.cards.Put(ctx, card.ApprovalID, channels.PostedCard[cardRef]{Ref: cardRef{Chat: chat, Message: m.MessageID}, Card: card, Notice: notice})
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
		a.log.WarnContext(ctx, "telegram: show notice on card", "approval", approvalID, "err", err)
	}
}

// checkRef accepts a stored card reference only in the approvals chat configured now.
func (a *Adapter) checkRef(r cardRef) error {
	if r.Message <= 0 {
		return fmt.Errorf("message id %d", r.Message)
	}
	if r.Chat != a.opts.ApprovalsChat {
		return fmt.Errorf("posted in chat %d, approvals_chat is now %d", r.Chat, a.opts.ApprovalsChat)
	}
	return nil
}

// notModified is Telegram's answer to an edit that changes nothing; it is not a failure.
func notModified(err error) bool {
	return strings.Contains(err.Error(), "message is not modified")
}
