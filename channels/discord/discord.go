// Package discord is the Discord channel: operator chat in a channel, by direct message or by
// @mention, and approval cards as an embed with Approve once / Approve for scope / Deny
// buttons (message components). Messages arrive over the Discord gateway; replies, cards and
// interaction responses go over the REST API. It uses github.com/bwmarrin/discordgo.
package discord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/bwmarrin/discordgo"
	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/channels"
)

// Type is the registry name of this adapter.
const Type = "channels.discord"

// Name is the default channel name.
const Name = "discord"

// DefaultPerChannel paces messages to one channel (Discord allows 5 per 5 seconds); the
// library also follows Discord's rate-limit buckets.
const DefaultPerChannel = time.Second

// Settings are the registry settings of a Discord channel.
type Settings struct {
	Name string `json:"name,omitempty"`
	// Token is the bot token from the Developer Portal (without the "Bot " prefix).
	Token channels.SecretRef `json:"token"`
	// ApprovalsChannel is the channel id where approval cards go; empty posts none.
	ApprovalsChannel string `json:"approvals_channel,omitempty"`
	// OperatorChannel is a channel id where every message is for the Commander; elsewhere
	// only direct messages and @mentions of the bot are.
	OperatorChannel string                  `json:"operator_channel,omitempty"`
	Outbox          channels.OutboxSettings `json:"outbox,omitzero"`
}

// Options configure an Adapter built in code.
type Options struct {
	Name             string
	Token            string
	HTTPClient       *http.Client // REST client; tests point its transport at a fake
	ApprovalsChannel string
	OperatorChannel  string
	Outbox           channels.OutboxOptions
	Deliver          func(ctx context.Context, in channels.Inbound) error
	Approvals        *channels.Approvals
	Clock            clawops.Clock
	Logger           *slog.Logger
	// DB keeps posted approval cards across restarts (channels.Env.DB); nil keeps them in
	// memory.
	DB *gorm.DB
}

// Adapter is one Discord bot.
type Adapter struct {
	name    string
	opts    Options
	s       *discordgo.Session
	outbox  *channels.Outbox
	deliver func(ctx context.Context, in channels.Inbound) error
	approve *channels.Approvals
	log     *slog.Logger
	work    chan struct{}
	running sync.WaitGroup

	stop    chan struct{} // closed when Run ends; gateway handlers' contexts end with it
	stopped sync.Once

	selfMu sync.Mutex
	self   string // the bot's user id, from the gateway's READY

	cardMu sync.Mutex
	cards  *channels.PostedCards[cardRef]
}

// cardRef is where a card was posted: the channel and the message id.
type cardRef struct {
	Channel string `json:"channel"`
	Message string `json:"message"`
}

// checkRef refuses a stored card reference without a channel or a message id.
func checkRef(r cardRef) error {
	if r.Channel == "" || r.Message == "" {
		return fmt.Errorf("channel %q, message %q: both are needed", r.Channel, r.Message)
	}
	return nil
}

var (
	_ channels.Channel    = (*Adapter)(nil)
	_ channels.CardPoster = (*Adapter)(nil)
	_ channels.Editor     = (*Adapter)(nil)
	_ channels.Runner     = (*Adapter)(nil)
	_ channels.Checker    = (*Adapter)(nil)
)

// New builds an Adapter. It does not contact Discord: Check and Run do.
func New(o Options) (*Adapter, error) {
	if o.Token == "" {
		return nil, errors.New("discord: token is empty")
	}
	o.Token = strings.TrimPrefix(o.Token, "Bot ")
	if o.Name == "" {
		o.Name = Name
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 20 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Outbox.PerKey == 0 {
		o.Outbox.PerKey = DefaultPerChannel
	}
	if o.Outbox.Logger == nil {
		o.Outbox.Logger = o.Logger
	}
	if o.Outbox.Clock == nil {
		o.Outbox.Clock = o.Clock
	}
	s, err := discordgo.New("Bot " + o.Token)
	if err != nil {
		return nil, fmt.Errorf("discord: %w", err)
	}
	s.Client = o.HTTPClient
	s.StateEnabled = false
	s.SyncEvents = true // READY is handled before the messages that follow it; handlers only queue work
	s.Identify.Intents = discordgo.IntentsGuildMessages | discordgo.IntentsDirectMessages | discordgo.IntentMessageContent
	a := &Adapter{name: o.Name, opts: o, s: s, outbox: channels.NewOutbox(o.Outbox), deliver: o.Deliver,
		approve: o.Approvals, log: o.Logger, work: make(chan struct{}, 16), stop: make(chan struct{})}
	a.cards = channels.NewPostedCards(channels.PostedCardsOptions[cardRef]{Channel: o.Name, DB: o.DB,
		Clock: o.Clock, Logger: o.Logger, Check: checkRef})
	s.AddHandler(func(_ *discordgo.Session, r *discordgo.Ready) {
		if r.User != nil {
			a.selfMu.Lock()
			a.self = r.User.ID
			a.selfMu.Unlock()
		}
	})
	s.AddHandler(a.onMessage)
	s.AddHandler(a.onInteraction)
	if o.ApprovalsChannel == "" {
		a.log.Info("discord: no approvals_channel configured; approval cards are not posted here")
	}
	return a, nil
}

// Factory builds an Adapter from registry settings.
func Factory(env channels.Env, raw json.RawMessage) (channels.Channel, error) {
	var s Settings
	if err := channels.DecodeSettings(raw, &s); err != nil {
		return nil, err
	}
	token, err := env.Secret("token", s.Token)
	if err != nil {
		return nil, err
	}
	ob, err := s.Outbox.Apply(channels.OutboxOptions{})
	if err != nil {
		return nil, err
	}
	return New(Options{Name: s.Name, Token: token, ApprovalsChannel: s.ApprovalsChannel, OperatorChannel: s.OperatorChannel,
		Outbox: ob, Deliver: env.Deliver, Approvals: env.Approvals(), Clock: env.Clock, Logger: env.Logger, DB: env.DB})
}

// Name returns the channel name.
func (a *Adapter) Name() string { return a.name }

// noMentions stops agent text from pinging @everyone, roles or users.
var noMentions = &discordgo.MessageAllowedMentions{Parse: []discordgo.AllowedMentionType{}}

// Send posts text to channel to, split into messages of at most 2000 characters, in order.
func (a *Adapter) Send(ctx context.Context, to string, text string) error {
	if !snowflake(to) {
		return clawops.E("discord send", clawops.KindInvalid, clawops.ReasonMalformedRequest, "channel is not a Discord id")
	}
	if strings.TrimSpace(text) == "" {
		return clawops.E("discord send", clawops.KindInvalid, clawops.ReasonMalformedRequest, "text is empty")
	}
	for _, part := range channels.Chunk(text, channels.LimitDiscord) {
		if _, err := a.sendMessage(ctx, to, &discordgo.MessageSend{Content: part, AllowedMentions: noMentions}); err != nil {
			return err
		}
	}
	return nil
}

// Post sends text as one message and returns its id for Edit.
func (a *Adapter) Post(ctx context.Context, to string, text string) (string, error) {
	if !snowflake(to) {
		return "", clawops.E("discord post", clawops.KindInvalid, clawops.ReasonMalformedRequest, "channel is not a Discord id")
	}
	m, err := a.sendMessage(ctx, to, &discordgo.MessageSend{Content: channels.Truncate(text, channels.LimitDiscord), AllowedMentions: noMentions})
	if err != nil {
		return "", err
	}
	return m.ID, nil
}

// Edit replaces the text of message ref in channel to.
func (a *Adapter) Edit(ctx context.Context, to string, ref string, text string) error {
	if !snowflake(to) || !snowflake(ref) {
		return clawops.E("discord edit", clawops.KindInvalid, clawops.ReasonMalformedRequest, "channel and message must be Discord ids")
	}
	content := channels.Truncate(text, channels.LimitDiscord)
	e := discordgo.NewMessageEdit(to, ref)
	e.Content, e.AllowedMentions = &content, noMentions
	return a.editMessage(ctx, to, e)
}

// Check asks Discord who the bot is (GET /users/@me).
func (a *Adapter) Check(ctx context.Context) error {
	u, err := a.s.User("@me", discordgo.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("discord users/@me: %w", classify(err))
	}
	if !u.Bot {
		return errors.New("discord users/@me: the token does not belong to a bot")
	}
	return nil
}

func (a *Adapter) sendMessage(ctx context.Context, channel string, m *discordgo.MessageSend) (*discordgo.Message, error) {
	var out *discordgo.Message
	err := a.outbox.Do(ctx, channel, func(ctx context.Context) error {
		var err error
		out, err = a.s.ChannelMessageSendComplex(channel, m, discordgo.WithContext(ctx))
		return classify(err)
	})
	return out, err
}

func (a *Adapter) editMessage(ctx context.Context, channel string, e *discordgo.MessageEdit) error {
	return a.outbox.Do(ctx, channel, func(ctx context.Context) error {
		_, err := a.s.ChannelMessageEditComplex(e, discordgo.WithContext(ctx))
		return classify(err)
	})
}

// classify marks the errors worth retrying (discordgo itself waits out 429s).
func classify(err error) error {
	if err == nil {
		return nil
	}
	var re *discordgo.RESTError
	var ne net.Error
	switch {
	case errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 500:
		return &channels.RetryableError{Err: err}
	case errors.As(err, &ne):
		return &channels.RetryableError{Err: err}
	}
	return err
}

// snowflake reports whether s looks like a Discord id.
func snowflake(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
