package discord

import (
	"context"
	"regexp"
	"strings"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/gatewayforge/clawops/channels"
)

// Run connects to the Discord gateway and receives messages and button presses until ctx
// ends; discordgo reconnects by itself once connected, and a failed first connection is
// retried with backoff. It returns nil when ctx ends.
func (a *Adapter) Run(ctx context.Context) error {
	defer a.running.Wait()
	defer a.stopped.Do(func() { close(a.stop) })
	for failures := 0; ; failures++ {
		err := a.s.Open()
		if err == nil {
			break
		}
		wait := min(time.Duration(failures+1)*time.Second, 30*time.Second)
		a.log.WarnContext(ctx, "discord: gateway connection failed", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	<-ctx.Done()
	if err := a.s.Close(); err != nil {
		a.log.Info("discord: close gateway", "err", err)
	}
	return nil
}

// handlerContext is the context gateway handlers work in: it ends when Run ends.
func (a *Adapter) handlerContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-a.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// goWork runs f, at most cap(a.work) at a time, with the handler context.
func (a *Adapter) goWork(f func(ctx context.Context)) {
	select {
	case a.work <- struct{}{}:
	case <-a.stop:
		return
	}
	a.running.Add(1)
	go func() {
		defer a.running.Done()
		defer func() { <-a.work }()
		ctx, cancel := a.handlerContext()
		defer cancel()
		f(ctx)
	}()
}

var mentionRE = regexp.MustCompile(`<@!?[0-9]+>`)

func (a *Adapter) onMessage(_ *discordgo.Session, m *discordgo.MessageCreate) {
	if m.Author == nil || m.Author.Bot || a.deliver == nil {
		return
	}
	a.selfMu.Lock()
	self := a.self
	a.selfMu.Unlock()
	if m.Author.ID == self {
		return
	}
	mentioned := false
	for _, u := range m.Mentions {
		if u != nil && u.ID == self && self != "" {
			mentioned = true
		}
	}
	if m.GuildID != "" && m.ChannelID != a.opts.OperatorChannel && !mentioned {
		return
	}
	text := m.Content
	if mentioned {
		text = strings.TrimSpace(mentionRE.ReplaceAllStringFunc(text, func(s string) string {
			if strings.Trim(s, "<@!>") == self {
				return ""
			}
			return s
		}))
	}
	if strings.TrimSpace(text) == "" {
		return
	}
	in := channels.Inbound{Channel: a.name, Chat: m.ChannelID, Sender: m.Author.ID, Text: text, Time: m.Timestamp.UTC()}
	a.goWork(func(ctx context.Context) {
		if err := a.deliver(ctx, in); err != nil && ctx.Err() == nil {
			a.log.InfoContext(ctx, "discord: message not handled", "chat", in.Chat, "err", err)
		}
	})
}

// onInteraction decides approvals from button presses: it acknowledges at once (Discord
// wants an answer within 3 seconds), decides, tells the presser privately, and shows a
// refusal on the card.
func (a *Adapter) onInteraction(s *discordgo.Session, ic *discordgo.InteractionCreate) {
	i := ic.Interaction
	if i == nil || i.Type != discordgo.InteractionMessageComponent {
		return
	}
	data, ok := i.Data.(discordgo.MessageComponentInteractionData)
	if !ok {
		return
	}
	user := i.User
	if i.Member != nil && i.Member.User != nil {
		user = i.Member.User
	}
	a.goWork(func(ctx context.Context) {
		if err := s.InteractionRespond(i, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredMessageUpdate},
			discordgo.WithContext(ctx)); err != nil {
			a.log.InfoContext(ctx, "discord: acknowledge interaction", "err", err)
		}
		choice, id, err := channels.DecodeAction(data.CustomID)
		if err != nil {
			a.followup(ctx, i, "Unknown button.")
			return
		}
		if user == nil {
			return
		}
		res := a.approve.Press(ctx, channels.Press{Channel: a.name, Sender: user.ID, ApprovalID: id, Choice: choice})
		if res.Ignored {
			return
		}
		if res.Text != "" {
			a.followup(ctx, i, res.Text)
		}
		if res.Refused {
			a.noteOnCard(ctx, id, res.Text)
		}
	})
}

// followup sends text only the presser sees.
func (a *Adapter) followup(ctx context.Context, i *discordgo.Interaction, text string) {
	_, err := a.s.FollowupMessageCreate(i, false, &discordgo.WebhookParams{Content: channels.Truncate(text, channels.LimitDiscord),
		Flags: discordgo.MessageFlagsEphemeral, AllowedMentions: noMentions}, discordgo.WithContext(ctx))
	if err != nil {
		a.log.InfoContext(ctx, "discord: followup", "err", err)
	}
}
