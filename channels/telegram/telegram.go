// Package telegram is the Telegram channel: operators chat with the Commander in a private
// chat or group, approvers decide approval cards with an inline keyboard, and long messages
// and progress updates (one message edited in place) go out through the shared outbox at
// Telegram's pace (about one message a second per chat). Updates arrive by long polling by
// default, so the gateway needs no public URL; a webhook (with Telegram's secret-token
// header checked) is the alternative. It uses github.com/go-telegram-bot-api/telegram-bot-api/v5.
package telegram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/channels"
)

// Type is the registry name of this adapter.
const Type = "channels.telegram"

// Name is the default channel name.
const Name = "telegram"

// Receive modes.
const (
	ModePoll    = "poll"
	ModeWebhook = "webhook"
)

// Default pacing: Telegram allows about one message a second per chat and thirty a second
// per bot.
const (
	DefaultPerChat = time.Second
	DefaultGlobal  = 35 * time.Millisecond
)

// Settings are the registry settings of a Telegram channel.
type Settings struct {
	// Name is the channel name (default "telegram"); set it to run two bots.
	Name string `json:"name,omitempty"`
	// Token is the bot token from @BotFather.
	Token channels.SecretRef `json:"token"`
	// APIEndpoint is the Bot API URL format, default "https://api.telegram.org/bot%s/%s"
	// (a self-hosted Bot API server may be used instead).
	APIEndpoint string `json:"api_endpoint,omitempty"`
	// ApprovalsChat is the chat (usually a group of approvers) where approval cards go;
	// 0 posts no cards.
	ApprovalsChat int64 `json:"approvals_chat,omitempty"`
	// Mode is "poll" (default) or "webhook".
	Mode string `json:"mode,omitempty"`
	// PollTimeout is the long-poll wait (default 30s).
	PollTimeout channels.Duration `json:"poll_timeout,omitempty"`
	// WebhookURL is the public HTTPS URL Telegram posts updates to (mode webhook); the
	// gateway serves Handler there. WebhookSecret is sent by Telegram in every request.
	WebhookURL    string                  `json:"webhook_url,omitempty"`
	WebhookSecret channels.SecretRef      `json:"webhook_secret,omitzero"`
	Outbox        channels.OutboxSettings `json:"outbox,omitzero"`
}

// Options configure an Adapter built in code (Factory builds them from Settings).
type Options struct {
	Name          string
	Token         string
	APIEndpoint   string       // default tgbotapi.APIEndpoint
	HTTPClient    *http.Client // for sends; default a client with a 30s timeout
	ApprovalsChat int64
	Mode          string
	PollTimeout   time.Duration
	WebhookURL    string
	WebhookSecret string
	Outbox        channels.OutboxOptions // PerKey and Global default to Telegram's pace
	Deliver       func(ctx context.Context, in channels.Inbound) error
	Approvals     *channels.Approvals
	Clock         clawops.Clock
	Logger        *slog.Logger
	// DB keeps posted approval cards across restarts (channels.Env.DB); nil keeps them in
	// memory.
	DB *gorm.DB
}

// Adapter is one Telegram bot.
type Adapter struct {
	name    string
	token   string
	opts    Options
	send    *tgbotapi.BotAPI // short requests
	poll    *tgbotapi.BotAPI // long polls, cancelled when Run ends
	stop    chan struct{}
	stopped sync.Once
	outbox  *channels.Outbox
	deliver func(ctx context.Context, in channels.Inbound) error
	approve *channels.Approvals
	log     *slog.Logger
	clock   clawops.Clock
	work    chan struct{} // bounds concurrent handling of updates
	running sync.WaitGroup

	cardMu sync.Mutex
	cards  *channels.PostedCards[cardRef]
}

// cardRef is where a card was posted. The chat is kept so that a card posted before
// approvals_chat changed is never "edited" by its message id in the new chat.
type cardRef struct {
	Chat    int64 `json:"chat"`
	Message int   `json:"message"`
}

var (
	_ channels.Channel     = (*Adapter)(nil)
	_ channels.CardPoster  = (*Adapter)(nil)
	_ channels.Editor      = (*Adapter)(nil)
	_ channels.VoiceSender = (*Adapter)(nil)
	_ channels.Runner      = (*Adapter)(nil)
	_ channels.Checker     = (*Adapter)(nil)
)

// New builds an Adapter. It does not contact Telegram: Check and Run do.
func New(o Options) (*Adapter, error) {
	if o.Token == "" {
		return nil, errors.New("telegram: token is empty")
	}
	if o.Name == "" {
		o.Name = Name
	}
	if o.APIEndpoint == "" {
		o.APIEndpoint = tgbotapi.APIEndpoint
	}
	if strings.Count(o.APIEndpoint, "%s") != 2 {
		return nil, fmt.Errorf("telegram: api_endpoint %q must contain %%s twice (token, method)", o.APIEndpoint)
	}
	switch o.Mode {
	case "":
		o.Mode = ModePoll
	case ModePoll:
	case ModeWebhook:
		u, err := url.Parse(o.WebhookURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("telegram: webhook_url %q must be an https URL", o.WebhookURL)
		}
		if len(o.WebhookSecret) < 16 {
			return nil, errors.New("telegram: webhook_secret must be at least 16 characters")
		}
	default:
		return nil, fmt.Errorf("telegram: mode %q is not poll or webhook", o.Mode)
	}
	if o.PollTimeout <= 0 {
		o.PollTimeout = 30 * time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Outbox.PerKey == 0 {
		o.Outbox.PerKey = DefaultPerChat
	}
	if o.Outbox.Global == 0 {
		o.Outbox.Global = DefaultGlobal
	}
	if o.Outbox.Logger == nil {
		o.Outbox.Logger = o.Logger
	}
	if o.Outbox.Clock == nil {
		o.Outbox.Clock = o.Clock
	}
	a := &Adapter{name: o.Name, token: o.Token, opts: o, stop: make(chan struct{}),
		outbox: channels.NewOutbox(o.Outbox), deliver: o.Deliver, approve: o.Approvals, log: o.Logger,
		clock: clawops.ClockOrSystem(o.Clock), work: make(chan struct{}, 16)}
	a.cards = channels.NewPostedCards(channels.PostedCardsOptions[cardRef]{Channel: o.Name, DB: o.DB,
		Clock: o.Clock, Logger: o.Logger, Check: a.checkRef})
	a.send = newBot(o.Token, o.APIEndpoint, o.HTTPClient)
	pollClient := *o.HTTPClient
	pollClient.Timeout = o.PollTimeout + 15*time.Second
	a.poll = newBot(o.Token, o.APIEndpoint, stoppable{c: &pollClient, stop: a.stop})
	if o.ApprovalsChat == 0 {
		a.log.Info("telegram: no approvals_chat configured; approval cards are not posted here")
	}
	return a, nil
}

// newBot builds the client without the network call tgbotapi's constructors make (getMe),
// so building the gateway never depends on Telegram being reachable.
func newBot(token, endpoint string, c tgbotapi.HTTPClient) *tgbotapi.BotAPI {
	b := &tgbotapi.BotAPI{Token: token, Client: c, Buffer: 100}
	b.SetAPIEndpoint(endpoint)
	return b
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
	var secret string
	if s.Mode == ModeWebhook {
		if secret, err = env.Secret("webhook_secret", s.WebhookSecret); err != nil {
			return nil, err
		}
	}
	ob, err := s.Outbox.Apply(channels.OutboxOptions{})
	if err != nil {
		return nil, err
	}
	return New(Options{Name: s.Name, Token: token, APIEndpoint: s.APIEndpoint, ApprovalsChat: s.ApprovalsChat,
		Mode: s.Mode, PollTimeout: time.Duration(s.PollTimeout), WebhookURL: s.WebhookURL, WebhookSecret: secret,
		Outbox: ob, Deliver: env.Deliver, Approvals: env.Approvals(), Clock: env.Clock, Logger: env.Logger, DB: env.DB})
}

// Name returns the channel name.
func (a *Adapter) Name() string { return a.name }

// Send sends text to chat to (a Telegram chat id), split into messages of at most 4096
// characters, in order.
func (a *Adapter) Send(ctx context.Context, to string, text string) error {
	chat, err := chatID(to)
	if err != nil {
		return err
	}
	if strings.TrimSpace(text) == "" {
		return clawops.E("telegram send", clawops.KindInvalid, clawops.ReasonMalformedRequest, "text is empty")
	}
	for _, part := range channels.Chunk(text, channels.LimitTelegram) {
		if _, err := a.sendMessage(ctx, to, tgbotapi.NewMessage(chat, part)); err != nil {
			return err
		}
	}
	return nil
}

// Post sends text (cut to one message) and returns its message id for Edit.
func (a *Adapter) Post(ctx context.Context, to string, text string) (string, error) {
	chat, err := chatID(to)
	if err != nil {
		return "", err
	}
	m, err := a.sendMessage(ctx, to, tgbotapi.NewMessage(chat, oneMessage(text)))
	if err != nil {
		return "", err
	}
	return strconv.Itoa(m.MessageID), nil
}

// Edit replaces the text of message ref (from Post) in chat to.
func (a *Adapter) Edit(ctx context.Context, to string, ref string, text string) error {
	chat, err := chatID(to)
	if err != nil {
		return err
	}
	id, err := strconv.Atoi(ref)
	if err != nil || id <= 0 {
		return clawops.E("telegram edit", clawops.KindInvalid, clawops.ReasonMalformedRequest, "bad message reference")
	}
	_, err = a.sendMessage(ctx, to, tgbotapi.NewEditMessageText(chat, id, oneMessage(text)))
	return err
}

// SendVoice sends audio (OGG/Opus) as a voice note.
func (a *Adapter) SendVoice(ctx context.Context, to string, audio []byte) error {
	chat, err := chatID(to)
	if err != nil {
		return err
	}
	if len(audio) == 0 {
		return clawops.E("telegram voice", clawops.KindInvalid, clawops.ReasonMalformedRequest, "audio is empty")
	}
	_, err = a.sendMessage(ctx, to, tgbotapi.NewVoice(chat, tgbotapi.FileBytes{Name: "briefing.ogg", Bytes: audio}))
	return err
}

// Check asks Telegram who the bot is (getMe): it fails when the token is wrong or the API
// cannot be reached.
func (a *Adapter) Check(ctx context.Context) error {
	var me tgbotapi.User
	err := a.call(ctx, func() error {
		var err error
		me, err = a.send.GetMe()
		return err
	})
	if err != nil {
		return fmt.Errorf("telegram getMe: %w", err)
	}
	if !me.IsBot {
		return errors.New("telegram getMe: the token does not belong to a bot")
	}
	return nil
}

// sendMessage sends one Chattable through the outbox, keyed by chat.
func (a *Adapter) sendMessage(ctx context.Context, key string, c tgbotapi.Chattable) (tgbotapi.Message, error) {
	var m tgbotapi.Message
	err := a.outbox.Do(ctx, key, func(ctx context.Context) error {
		var err error
		m, err = a.sendNow(ctx, c)
		return err
	})
	return m, err
}

// sendNow makes one request now, classifying the error for the outbox.
func (a *Adapter) sendNow(ctx context.Context, c tgbotapi.Chattable) (tgbotapi.Message, error) {
	var m tgbotapi.Message
	err := a.call(ctx, func() error {
		resp, err := a.send.Request(c)
		if err != nil {
			return err
		}
		if len(resp.Result) > 0 && resp.Result[0] == '{' {
			return json.Unmarshal(resp.Result, &m)
		}
		return nil
	})
	return m, err
}

// call runs f (a tgbotapi call, which takes no context) unless ctx has ended, and turns its
// error into one that never shows the token and that the outbox knows how to retry.
func (a *Adapter) call(ctx context.Context, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := f()
	if err == nil {
		return nil
	}
	clean := &scrubbed{msg: strings.ReplaceAll(err.Error(), a.token, "<token>"), err: err}
	var apiErr *tgbotapi.Error
	var netErr net.Error
	switch {
	case errors.As(err, &apiErr) && apiErr.Code == http.StatusTooManyRequests:
		return &channels.RetryableError{After: time.Duration(apiErr.RetryAfter) * time.Second, Err: clean}
	case errors.As(err, &apiErr) && apiErr.Code >= 500:
		return &channels.RetryableError{Err: clean}
	case errors.As(err, &apiErr):
		return clean
	case errors.As(err, &netErr):
		return &channels.RetryableError{Err: clean}
	}
	return clean
}

// scrubbed is an error whose text has the bot token removed (tgbotapi puts the token in
// request URLs, and net/http errors quote the URL).
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

func chatID(to string) (int64, error) {
	id, err := strconv.ParseInt(to, 10, 64)
	if err != nil || id == 0 {
		return 0, clawops.E("telegram", clawops.KindInvalid, clawops.ReasonMalformedRequest,
			fmt.Sprintf("chat %q is not a Telegram chat id", to))
	}
	return id, nil
}

// oneMessage cuts text to what one message holds.
func oneMessage(text string) string {
	if parts := channels.Chunk(text, channels.LimitTelegram-1); len(parts) > 1 {
		return strings.TrimRight(parts[0], "\n ") + "…"
	}
	return text
}

// stoppable is an HTTP client whose requests are cancelled when stop closes, so Run can end
// a long poll that tgbotapi started without a context.
type stoppable struct {
	c    *http.Client
	stop <-chan struct{}
}

func (s stoppable) Do(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	resp, err := s.c.Do(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
