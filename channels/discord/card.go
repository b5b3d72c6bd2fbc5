package discord

import (
	"context"
	"fmt"
	"strings"

	"github.com/bwmarrin/discordgo"

	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/governance"
)

// Embed limits (Discord: title 256, description 4096, field value 1024, footer 2048).
const (
	maxTitle     = 256
	maxActions   = 20
	maxActionLen = 150
	maxField     = 1024
	maxFooter    = 2048
)

// Colours of the card's edge.
const (
	colourPending  = 0xF2A900
	colourApproved = 0x2EB67D
	colourDenied   = 0xE01E5A
	colourOther    = 0x868686
)

// RenderCard returns the embed and buttons of an approval card; decided cards have no
// buttons. notice, when set, is shown under the status.
func RenderCard(c governance.Card, notice string) (*discordgo.MessageEmbed, []discordgo.MessageComponent) {
	var desc strings.Builder
	desc.WriteString(escape(c.Summary))
	if len(c.Actions) > 0 {
		desc.WriteString("\n\n**Actions**")
		for _, a := range channels.TruncateList(c.Actions, maxActions, maxActionLen) {
			desc.WriteString("\n• " + escape(a))
		}
	}
	e := &discordgo.MessageEmbed{
		Title:       channels.Truncate(c.Title, maxTitle),
		Description: channels.Truncate(desc.String(), 4096),
		Color:       colour(c.State),
	}
	for _, f := range channels.CardFacts(c) {
		e.Fields = append(e.Fields, &discordgo.MessageEmbedField{Name: f.Label, Value: channels.Truncate(f.Value, maxField), Inline: true})
	}
	if len(c.RiskFlags) > 0 {
		e.Fields = append(e.Fields, &discordgo.MessageEmbedField{Name: "Flags", Value: channels.Truncate(strings.Join(c.RiskFlags, ", "), maxField)})
	}
	for _, line := range channels.CardExtras(c) {
		e.Fields = append(e.Fields, &discordgo.MessageEmbedField{Name: "Note", Value: channels.Truncate(line, maxField)})
	}
	footer := channels.CardStatus(c)
	if notice != "" {
		footer += "\n⚠ " + notice
	}
	if channels.CardPending(c) {
		footer += "\n" + c.ApprovalID
	}
	e.Footer = &discordgo.MessageEmbedFooter{Text: channels.Truncate(footer, maxFooter)}
	components := []discordgo.MessageComponent{}
	if channels.CardPending(c) {
		components = append(components, discordgo.ActionsRow{Components: []discordgo.MessageComponent{
			discordgo.Button{Label: "Approve once", Style: discordgo.SuccessButton, CustomID: channels.EncodeAction(channels.ChoiceApprove, c.ApprovalID)},
			discordgo.Button{Label: "Approve for scope", Style: discordgo.PrimaryButton, CustomID: channels.EncodeAction(channels.ChoiceApproveScope, c.ApprovalID)},
			discordgo.Button{Label: "Deny", Style: discordgo.DangerButton, CustomID: channels.EncodeAction(channels.ChoiceDeny, c.ApprovalID)},
		}})
	}
	return e, components
}

func colour(s governance.ApprovalState) int {
	switch s {
	case governance.ApprovalPending:
		return colourPending
	case governance.ApprovalApproved, governance.ApprovalExecuted:
		return colourApproved
	case governance.ApprovalDenied, governance.ApprovalFailed:
		return colourDenied
	}
	return colourOther
}

// PostCard posts the card to the approvals channel, or edits the one already posted for the
// same approval.
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

// showCard posts or edits the card; the caller holds cardMu.
func (a *Adapter) showCard(ctx context.Context, card governance.Card, notice string, ref cardRef, posted bool) error {
	embed, components := RenderCard(card, notice)
	if posted {
		e := discordgo.NewMessageEdit(ref.Channel, ref.Message)
		e.Embeds, e.Components = &[]*discordgo.MessageEmbed{embed}, &components
		if err := a.editMessage(ctx, ref.Channel, e); err != nil {
			return fmt.Errorf("discord: update card %s: %w", card.ApprovalID, err)
		}
	} else {
		m, err := a.sendMessage(ctx, a.opts.ApprovalsChannel, &discordgo.MessageSend{Embeds: []*discordgo.MessageEmbed{embed},
			Components: components, AllowedMentions: noMentions})
		if err != nil {
			return fmt.Errorf("discord: post card %s: %w", card.ApprovalID, err)
		}
		ref = cardRef{Channel: a.opts.ApprovalsChannel, Message: m.ID}
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
		a.log.WarnContext(ctx, "discord: show notice on card", "approval", approvalID, "err", err)
	}
}

// escape stops Discord markdown in outside text: emphasis, code, spoilers, quotes, links.
func escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune("\\*_~`|>[]", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
