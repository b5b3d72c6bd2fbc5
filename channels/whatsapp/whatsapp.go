// Package whatsapp is the WhatsApp channel, on go.mau.fi/whatsmeow (the multi-device web
// protocol, linked to a phone like WhatsApp Web): operators message the Commander from the
// numbers in allowFrom (E.164), approvers receive approval cards as text and decide by reply
// ("APPROVE 3f9a2c1b" / "DENY 3f9a2c1b"), and briefings with audio arrive as voice notes. The
// session (keys of the linked device) lives in the project's database; pairing is by QR code,
// shown in the terminal and served as a PNG for the web console.
//
// Sending goes through MessageClient, the two methods of *whatsmeow.Client the adapter needs,
// because WhatsApp's servers cannot be faked offline (the Noise handshake pins their key);
// received messages come in as whatsmeow events.
package whatsapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"google.golang.org/protobuf/proto"
	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/channels"
)

// Type is the registry name of this adapter.
const Type = "channels.whatsapp"

// Name is the default channel name.
const Name = "whatsapp"

// Default pacing: WhatsApp bans accounts that send like spammers.
const (
	DefaultPerChat = time.Second
	DefaultGlobal  = 250 * time.Millisecond
)

// MessageClient is what the adapter needs of *whatsmeow.Client to send.
type MessageClient interface {
	SendMessage(ctx context.Context, to types.JID, message *waE2E.Message, extra ...whatsmeow.SendRequestExtra) (whatsmeow.SendResponse, error)
	Upload(ctx context.Context, plaintext []byte, appInfo whatsmeow.MediaType) (whatsmeow.UploadResponse, error)
}

// Settings are the registry settings of a WhatsApp channel.
type Settings struct {
	Name string `json:"name,omitempty"`
	// Approvers are the E.164 numbers ("+4915112345678") approval cards are sent to. They
	// must also be in allowFrom with an approving role for their replies to count.
	Approvers []string `json:"approvers,omitempty"`
	// PairOutput is where the pairing QR code is printed: "stderr" (default), "stdout" or
	// "none" (web console only).
	PairOutput string                  `json:"pair_output,omitempty"`
	Outbox     channels.OutboxSettings `json:"outbox,omitzero"`
}

// Options configure an Adapter built in code.
type Options struct {
	Name      string
	Client    MessageClient
	Approvers []string // E.164
	Outbox    channels.OutboxOptions
	Deliver   func(ctx context.Context, in channels.Inbound) error
	Approvals *channels.Approvals
	Auditor   channels.Auditor // unknown senders whose number cannot be read
	Clock     clawops.Clock
	Logger    *slog.Logger
	// DB keeps the cards sent (and their reply codes) across restarts (channels.Env.DB);
	// nil keeps them in memory.
	DB *gorm.DB

	// Session, when set, is connected by Run (pairing first if needed) and checked by
	// Check; PairOutput receives the terminal QR code while pairing.
	Session    *Session
	PairOutput io.Writer
}

// Adapter is one linked WhatsApp account.
type Adapter struct {
	name      string
	opts      Options
	client    MessageClient
	approvers []types.JID
	outbox    *channels.Outbox
	deliver   func(ctx context.Context, in channels.Inbound) error
	approve   *channels.Approvals
	unknown   *channels.UnknownAudit
	log       *slog.Logger
	clock     clawops.Clock
	work      chan struct{}
	running   sync.WaitGroup
	stop      chan struct{}
	stopped   sync.Once

	cards *channels.PostedCards[string] // approval id → short code, with the last state sent
	codes sync.Map                      // short code → approval id

	qrMu sync.Mutex
	qr   string // the pairing code on screen now, "" when not pairing
}

var (
	_ channels.Channel     = (*Adapter)(nil)
	_ channels.CardPoster  = (*Adapter)(nil)
	_ channels.VoiceSender = (*Adapter)(nil)
	_ channels.Runner      = (*Adapter)(nil)
	_ channels.Checker     = (*Adapter)(nil)
)

// New builds an Adapter.
func New(o Options) (*Adapter, error) {
	if o.Client == nil {
		return nil, errors.New("whatsapp: no client")
	}
	if o.Name == "" {
		o.Name = Name
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
	a := &Adapter{name: o.Name, opts: o, client: o.Client, outbox: channels.NewOutbox(o.Outbox), deliver: o.Deliver,
		approve: o.Approvals, unknown: channels.NewUnknownAudit(o.Auditor, o.Clock, o.Logger), log: o.Logger,
		clock: clawops.ClockOrSystem(o.Clock), work: make(chan struct{}, 16), stop: make(chan struct{})}
	a.cards = channels.NewPostedCards(channels.PostedCardsOptions[string]{Channel: o.Name, DB: o.DB,
		Clock: o.Clock, Logger: o.Logger})
	for i, n := range o.Approvers {
		jid, err := JIDFromE164(n)
		if err != nil {
			return nil, fmt.Errorf("whatsapp: approvers[%d]: %w", i, err)
		}
		a.approvers = append(a.approvers, jid)
	}
	if len(a.approvers) == 0 {
		a.log.Info("whatsapp: no approvers configured; approval cards are not sent here")
	}
	return a, nil
}

// Factory builds an Adapter from registry settings, with its session store in the project
// database (env.SQL, env.SQLDialect).
func Factory(env channels.Env, raw json.RawMessage) (channels.Channel, error) {
	var s Settings
	if err := channels.DecodeSettings(raw, &s); err != nil {
		return nil, err
	}
	var out io.Writer
	switch s.PairOutput {
	case "", "stderr":
		out = os.Stderr
	case "stdout":
		out = os.Stdout
	case "none":
	default:
		return nil, fmt.Errorf("settings.pair_output %q is not stderr, stdout or none", s.PairOutput)
	}
	ob, err := s.Outbox.Apply(channels.OutboxOptions{})
	if err != nil {
		return nil, err
	}
	for i, n := range s.Approvers {
		if _, err := JIDFromE164(n); err != nil {
			return nil, fmt.Errorf("settings.approvers[%d]: %w", i, err)
		}
	}
	if env.SQL == nil {
		return nil, errors.New("whatsapp: the project database is not available for the session store")
	}
	sess, err := OpenSession(context.Background(), env.SQL, env.SQLDialect, env.Logger)
	if err != nil {
		return nil, err
	}
	return New(Options{Name: s.Name, Client: sess.Client(), Approvers: s.Approvers, Outbox: ob, Deliver: env.Deliver,
		Approvals: env.Approvals(), Auditor: env.Auditor, Clock: env.Clock, Logger: env.Logger, Session: sess, PairOutput: out, DB: env.DB})
}

// Name returns the channel name.
func (a *Adapter) Name() string { return a.name }

// Send sends text to to (an E.164 number or a JID), split at WhatsApp's message size.
func (a *Adapter) Send(ctx context.Context, to string, text string) error {
	jid, err := parseRecipient(to)
	if err != nil {
		return err
	}
	if strings.TrimSpace(text) == "" {
		return clawops.E("whatsapp send", clawops.KindInvalid, clawops.ReasonMalformedRequest, "text is empty")
	}
	for _, part := range channels.Chunk(text, channels.LimitWhatsApp) {
		msg := &waE2E.Message{Conversation: proto.String(part)}
		if err := a.sendMessage(ctx, jid, msg); err != nil {
			return err
		}
	}
	return nil
}

// SendVoice uploads audio (OGG/Opus) and sends it as a voice note.
func (a *Adapter) SendVoice(ctx context.Context, to string, audio []byte) error {
	jid, err := parseRecipient(to)
	if err != nil {
		return err
	}
	if len(audio) == 0 {
		return clawops.E("whatsapp voice", clawops.KindInvalid, clawops.ReasonMalformedRequest, "audio is empty")
	}
	up, err := a.client.Upload(ctx, audio, whatsmeow.MediaAudio)
	if err != nil {
		return fmt.Errorf("whatsapp: upload voice note: %w", err)
	}
	msg := &waE2E.Message{AudioMessage: &waE2E.AudioMessage{
		URL: proto.String(up.URL), DirectPath: proto.String(up.DirectPath), MediaKey: up.MediaKey,
		Mimetype: proto.String("audio/ogg; codecs=opus"), FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256,
		FileLength: proto.Uint64(up.FileLength), PTT: proto.Bool(true),
	}}
	return a.sendMessage(ctx, jid, msg)
}

func (a *Adapter) sendMessage(ctx context.Context, to types.JID, msg *waE2E.Message) error {
	return a.outbox.Do(ctx, to.String(), func(ctx context.Context) error {
		_, err := a.client.SendMessage(ctx, to, msg)
		if err != nil && errors.Is(err, whatsmeow.ErrNotConnected) {
			return &channels.RetryableError{Err: err}
		}
		return err
	})
}

// Check says whether the session store holds a paired device; it does not connect.
func (a *Adapter) Check(ctx context.Context) error {
	if a.opts.Session == nil {
		return errors.New("whatsapp: no session store")
	}
	return a.opts.Session.Check(ctx)
}

// JIDFromE164 turns "+4915112345678" into the WhatsApp user JID. The number must be "+" and
// 8 to 15 digits.
func JIDFromE164(n string) (types.JID, error) {
	if !ValidE164(n) {
		return types.JID{}, fmt.Errorf("%q is not an E.164 number like +4915112345678", n)
	}
	return types.NewJID(n[1:], types.DefaultUserServer), nil
}

// ValidE164 reports whether n is "+" followed by 8 to 15 digits, the first not 0.
func ValidE164(n string) bool {
	if len(n) < 9 || len(n) > 16 || n[0] != '+' || n[1] == '0' {
		return false
	}
	for _, r := range n[1:] {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// E164 returns the phone number of a user JID ("+4915112345678"), or "" when the JID does
// not carry one (a hidden LID, a group).
func E164(j types.JID) string {
	if j.Server != types.DefaultUserServer || j.User == "" {
		return ""
	}
	n := "+" + j.User
	if !ValidE164(n) {
		return ""
	}
	return n
}

func parseRecipient(to string) (types.JID, error) {
	bad := clawops.E("whatsapp", clawops.KindInvalid, clawops.ReasonMalformedRequest,
		fmt.Sprintf("recipient %q is not an E.164 number or a WhatsApp user", to))
	if strings.HasPrefix(to, "+") {
		jid, err := JIDFromE164(to)
		if err != nil {
			return types.JID{}, bad
		}
		return jid, nil
	}
	jid, err := types.ParseJID(to)
	if err != nil || jid.User == "" || (jid.Server != types.DefaultUserServer && jid.Server != types.HiddenUserServer) {
		return types.JID{}, bad
	}
	return jid.ToNonAD(), nil
}
