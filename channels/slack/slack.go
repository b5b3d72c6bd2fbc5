// Package slack is the Slack channel: approval cards in Block Kit with Approve once, Approve
// for scope and Deny buttons, updated with who decided and when; operator chat in a channel
// or a direct message. Socket Mode is the default, so the gateway needs no public URL; the
// HTTP Events API and interactivity endpoint, with Slack's request signatures checked, is the
// alternative. It uses github.com/slack-go/slack.
package slack

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

	"github.com/slack-go/slack"
	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/channels"
)

// Type is the registry name of this adapter.
const Type = "channels.slack"

// Name is the default channel name.
const Name = "slack"

// Receive modes.
const (
	ModeSocket = "socket"
	ModeHTTP   = "http"
)

// DefaultPerChannel paces messages to one channel (Slack allows about one a second).
const DefaultPerChannel = time.Second

// Settings are the registry settings of a Slack channel.
type Settings struct {
	Name string `json:"name,omitempty"`
	// BotToken is the bot user OAuth token (xoxb-…).
	BotToken channels.SecretRef `json:"bot_token"`
	// AppToken is the app-level token with connections:write (xapp-…), for Socket Mode.
	AppToken channels.SecretRef `json:"app_token,omitzero"`
	// SigningSecret verifies HTTP requests from Slack (mode http).
	SigningSecret channels.SecretRef `json:"signing_secret,omitzero"`
	// Mode is "socket" (default) or "http".
	Mode string `json:"mode,omitempty"`
	// APIURL is the Web API base, default "https://slack.com/api/".
	APIURL string `json:"api_url,omitempty"`
	// ApprovalsChannel is the channel id (C…) approval cards go to; empty posts none.
	ApprovalsChannel string `json:"approvals_channel,omitempty"`
	// OperatorChannel is a channel id where every message is for the Commander; elsewhere
	// only direct messages and @mentions are.
	OperatorChannel string                  `json:"operator_channel,omitempty"`
	Outbox          channels.OutboxSettings `json:"outbox,omitzero"`
}

// Options configure an Adapter built in code.
type Options struct {
	Name             string
	BotToken         string
	AppToken         string
	SigningSecret    string
	Mode             string
	APIURL           string
	HTTPClient       *http.Client
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

// Adapter is one Slack app in one workspace.
type Adapter struct {
	name    string
	opts    Options
	api     *slack.Client
	outbox  *channels.Outbox
	deliver func(ctx context.Context, in channels.Inbound) error
	approve *channels.Approvals
	log     *slog.Logger
	work    chan struct{}
	running sync.WaitGroup
	seen    *recentIDs

	selfMu sync.Mutex
	self   string // the bot's user id, learnt from auth.test

	cardMu sync.Mutex
	cards  *channels.PostedCards[cardRef]
}

// cardRef is where a card was posted: the channel and the message's timestamp.
type cardRef struct {
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

// checkRef refuses a stored card reference without a channel or a timestamp.
func checkRef(r cardRef) error {
	if r.Channel == "" || r.TS == "" {
		return fmt.Errorf("channel %q, ts %q: both are needed", r.Channel, r.TS)
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

// New builds an Adapter. It does not contact Slack: Check and Run do.
func New(o Options) (*Adapter, error) {
	if o.BotToken == "" {
		return nil, errors.New("slack: bot_token is empty")
	}
	if o.Name == "" {
		o.Name = Name
	}
	switch o.Mode {
	case "", ModeSocket:
		o.Mode = ModeSocket
		if !strings.HasPrefix(o.AppToken, "xapp-") {
			return nil, errors.New("slack: socket mode needs app_token, an app-level token starting with xapp-")
		}
	case ModeHTTP:
		if o.SigningSecret == "" {
			return nil, errors.New("slack: http mode needs signing_secret")
		}
	default:
		return nil, fmt.Errorf("slack: mode %q is not socket or http", o.Mode)
	}
	if o.APIURL == "" {
		o.APIURL = slack.APIURL
	}
	if !strings.HasSuffix(o.APIURL, "/") {
		o.APIURL += "/" // slack-go joins method names to it
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
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
	opts := []slack.Option{slack.OptionAPIURL(o.APIURL), slack.OptionHTTPClient(o.HTTPClient)}
	if o.AppToken != "" {
		opts = append(opts, slack.OptionAppLevelToken(o.AppToken))
	}
	a := &Adapter{name: o.Name, opts: o, api: slack.New(o.BotToken, opts...), outbox: channels.NewOutbox(o.Outbox),
		deliver: o.Deliver, approve: o.Approvals, log: o.Logger, work: make(chan struct{}, 16),
		seen: newRecentIDs(1024)}
	a.cards = channels.NewPostedCards(channels.PostedCardsOptions[cardRef]{Channel: o.Name, DB: o.DB,
		Clock: o.Clock, Logger: o.Logger, Check: checkRef})
	if o.ApprovalsChannel == "" {
		a.log.Info("slack: no approvals_channel configured; approval cards are not posted here")
	}
	return a, nil
}

// Factory builds an Adapter from registry settings.
func Factory(env channels.Env, raw json.RawMessage) (channels.Channel, error) {
	var s Settings
	if err := channels.DecodeSettings(raw, &s); err != nil {
		return nil, err
	}
	o := Options{Name: s.Name, Mode: s.Mode, APIURL: s.APIURL, ApprovalsChannel: s.ApprovalsChannel,
		OperatorChannel: s.OperatorChannel, Deliver: env.Deliver, Approvals: env.Approvals(), Clock: env.Clock, Logger: env.Logger,
		DB: env.DB}
	var err error
	if o.BotToken, err = env.Secret("bot_token", s.BotToken); err != nil {
		return nil, err
	}
	if s.Mode == "" || s.Mode == ModeSocket {
		if o.AppToken, err = env.Secret("app_token", s.AppToken); err != nil {
			return nil, err
		}
	} else if s.Mode == ModeHTTP {
		if o.SigningSecret, err = env.Secret("signing_secret", s.SigningSecret); err != nil {
			return nil, err
		}
	}
	if o.Outbox, err = s.Outbox.Apply(channels.OutboxOptions{}); err != nil {
		return nil, err
	}
	return New(o)
}

// Name returns the channel name.
func (a *Adapter) Name() string { return a.name }

// Send posts text to channel to (a channel or DM id), split at Slack's message size.
func (a *Adapter) Send(ctx context.Context, to string, text string) error {
	if to == "" {
		return clawops.E("slack send", clawops.KindInvalid, clawops.ReasonMalformedRequest, "channel is empty")
	}
	if strings.TrimSpace(text) == "" {
		return clawops.E("slack send", clawops.KindInvalid, clawops.ReasonMalformedRequest, "text is empty")
	}
	for _, part := range channels.Chunk(text, channels.LimitSlackText) {
		if _, err := a.post(ctx, to, slack.MsgOptionText(part, false)); err != nil {
			return err
		}
	}
	return nil
}

// Post sends text as one message and returns its timestamp for Edit.
func (a *Adapter) Post(ctx context.Context, to string, text string) (string, error) {
	if to == "" {
		return "", clawops.E("slack post", clawops.KindInvalid, clawops.ReasonMalformedRequest, "channel is empty")
	}
	return a.post(ctx, to, slack.MsgOptionText(channels.Truncate(text, channels.LimitSlackText), false))
}

// Edit replaces the text of message ref (a timestamp from Post) in channel to.
func (a *Adapter) Edit(ctx context.Context, to string, ref string, text string) error {
	if to == "" || ref == "" {
		return clawops.E("slack edit", clawops.KindInvalid, clawops.ReasonMalformedRequest, "channel and message are required")
	}
	return a.update(ctx, to, ref, slack.MsgOptionText(channels.Truncate(text, channels.LimitSlackText), false))
}

// Check calls auth.test with the bot token (and, in Socket Mode, opens a connection URL with
// the app token without dialling it).
func (a *Adapter) Check(ctx context.Context) error {
	resp, err := a.api.AuthTestContext(ctx)
	if err != nil {
		return fmt.Errorf("slack auth.test: %w", err)
	}
	a.selfMu.Lock()
	a.self = resp.UserID
	a.selfMu.Unlock()
	if a.opts.Mode == ModeSocket {
		if _, _, err := a.api.StartSocketModeContext(ctx); err != nil {
			return fmt.Errorf("slack apps.connections.open: %w", err)
		}
	}
	return nil
}

func (a *Adapter) post(ctx context.Context, channel string, opts ...slack.MsgOption) (string, error) {
	var ts string
	err := a.outbox.Do(ctx, channel, func(ctx context.Context) error {
		var err error
		_, ts, err = a.api.PostMessageContext(ctx, channel, opts...)
		return classify(err)
	})
	return ts, err
}

func (a *Adapter) update(ctx context.Context, channel, ts string, opts ...slack.MsgOption) error {
	return a.outbox.Do(ctx, channel, func(ctx context.Context) error {
		_, _, _, err := a.api.UpdateMessageContext(ctx, channel, ts, opts...)
		return classify(err)
	})
}

func (a *Adapter) ephemeral(ctx context.Context, channel, user, text string) {
	err := a.outbox.Do(ctx, channel, func(ctx context.Context) error {
		_, err := a.api.PostEphemeralContext(ctx, channel, user, slack.MsgOptionText(text, false))
		return classify(err)
	})
	if err != nil {
		a.log.InfoContext(ctx, "slack: ephemeral reply", "err", err)
	}
}

// classify marks the errors worth retrying for the outbox.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var rl *slack.RateLimitedError
	var sc slack.StatusCodeError
	var ne net.Error
	switch {
	case errors.As(err, &rl):
		return &channels.RetryableError{After: rl.RetryAfter, Err: err}
	case errors.As(err, &sc) && sc.Code >= 500:
		return &channels.RetryableError{Err: err}
	case errors.As(err, &ne):
		return &channels.RetryableError{Err: err}
	}
	return err
}

// recentIDs remembers the last few event ids, to drop Slack's redeliveries.
type recentIDs struct {
	mu    sync.Mutex
	max   int
	order []string
	set   map[string]bool
}

func newRecentIDs(max int) *recentIDs { return &recentIDs{max: max, set: map[string]bool{}} }

// firstTime reports whether id has not been seen before (and remembers it). "" is never seen.
func (r *recentIDs) firstTime(id string) bool {
	if id == "" {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set[id] {
		return false
	}
	r.set[id] = true
	r.order = append(r.order, id)
	if len(r.order) > r.max {
		delete(r.set, r.order[0])
		r.order = r.order[1:]
	}
	return true
}
