package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"

	"github.com/gatewayforge/clawops/channels"
)

// maxBody bounds one HTTP request from Slack.
const maxBody = 1 << 20

// Run receives events until ctx ends. In Socket Mode it keeps a connection to Slack open,
// reconnecting with backoff; in HTTP mode Handler receives them and Run only waits. Work in
// flight when ctx ends is waited for. It returns nil when ctx ends.
func (a *Adapter) Run(ctx context.Context) error {
	defer a.running.Wait()
	if resp, err := a.api.AuthTestContext(ctx); err == nil {
		a.selfMu.Lock()
		a.self = resp.UserID
		a.selfMu.Unlock()
	} else if ctx.Err() == nil {
		a.log.WarnContext(ctx, "slack: auth.test failed; continuing", "err", err)
	}
	if a.opts.Mode == ModeHTTP {
		<-ctx.Done()
		return nil
	}
	for failures := 0; ctx.Err() == nil; failures++ {
		err := a.runSocket(ctx)
		if ctx.Err() != nil {
			break
		}
		wait := min(time.Duration(failures+1)*time.Second, 30*time.Second)
		a.log.WarnContext(ctx, "slack: socket mode connection ended", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

// runSocket runs one socket-mode client until it fails or ctx ends.
func (a *Adapter) runSocket(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	smc := socketmode.New(a.api, socketmode.OptionLog(slogOutput{a}))
	errc := make(chan error, 1)
	go func() { errc <- smc.RunContext(ctx) }()
	for {
		select {
		case err := <-errc:
			return err
		case evt := <-smc.Events:
			switch evt.Type {
			case socketmode.EventTypeEventsAPI:
				// Acknowledge first: Slack wants it within 3 seconds, whatever the work.
				a.ackSocket(ctx, smc, evt.Request)
				if ev, ok := evt.Data.(slackevents.EventsAPIEvent); ok {
					a.handleEvent(ctx, ev)
				}
			case socketmode.EventTypeInteractive:
				a.ackSocket(ctx, smc, evt.Request)
				if cb, ok := evt.Data.(slack.InteractionCallback); ok {
					a.handleInteraction(ctx, cb)
				}
			case socketmode.EventTypeSlashCommand:
				a.ackSocket(ctx, smc, evt.Request)
			case socketmode.EventTypeInvalidAuth:
				return errors.New("slack: socket mode: invalid auth (check app_token)")
			case socketmode.EventTypeConnectionError, socketmode.EventTypeIncomingError:
				a.log.InfoContext(ctx, "slack: socket mode", "event", string(evt.Type))
			}
		}
	}
}

func (a *Adapter) ackSocket(ctx context.Context, smc *socketmode.Client, req *socketmode.Request) {
	if req == nil || req.EnvelopeID == "" {
		return
	}
	if err := smc.AckCtx(ctx, req.EnvelopeID, nil); err != nil {
		a.log.InfoContext(ctx, "slack: ack", "err", err)
	}
}

// Handler serves the Events API and interactivity endpoints (mode http). Every request must
// carry a valid, fresh Slack signature; others get 401 and are not looked at further.
// url_verification is answered with its challenge; events and button presses are answered
// with 200 at once and handled afterwards.
func (a *Adapter) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil || len(body) > maxBody {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		if err := a.verify(r.Header, body); err != nil {
			a.log.Warn("slack: rejected unsigned or forged request", "remote", r.RemoteAddr, "err", err)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		ctx := context.WithoutCancel(r.Context())
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			cb, err := ParseInteraction(body)
			if err != nil {
				http.Error(w, "bad payload", http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusOK)
			a.handleInteraction(ctx, cb)
			return
		}
		ev, err := slackevents.ParseEvent(json.RawMessage(body), slackevents.OptionNoVerifyToken())
		if err != nil {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		if ev.Type == slackevents.URLVerification {
			if v, ok := ev.Data.(*slackevents.EventsAPIURLVerificationEvent); ok {
				w.Header().Set("Content-Type", "text/plain")
				_, _ = io.WriteString(w, v.Challenge)
				return
			}
		}
		w.WriteHeader(http.StatusOK)
		a.handleEvent(ctx, ev)
	})
}

// errNoSigningSecret refuses HTTP requests when no signing secret is configured (Socket
// Mode): an HMAC under an empty key is one anybody can compute.
var errNoSigningSecret = errors.New("no signing secret configured: HTTP requests are not accepted (socket mode)")

// verify checks Slack's v0 signature (HMAC-SHA256 with the signing secret) and timestamp.
func (a *Adapter) verify(h http.Header, body []byte) error {
	if a.opts.SigningSecret == "" {
		return errNoSigningSecret
	}
	sv, err := slack.NewSecretsVerifier(h, a.opts.SigningSecret)
	if err != nil {
		return err
	}
	if _, err := sv.Write(body); err != nil {
		return err
	}
	return sv.Ensure()
}

// ParseInteraction decodes an interactivity request body (form field "payload", JSON).
func ParseInteraction(body []byte) (slack.InteractionCallback, error) {
	var cb slack.InteractionCallback
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return cb, fmt.Errorf("parse interaction: %w", err)
	}
	p := form.Get("payload")
	if p == "" {
		return cb, errors.New("parse interaction: no payload")
	}
	if err := json.NewDecoder(bytes.NewReader([]byte(p))).Decode(&cb); err != nil {
		return cb, fmt.Errorf("parse interaction: %w", err)
	}
	if cb.Type == "" {
		return cb, errors.New("parse interaction: no type")
	}
	return cb, nil
}

// goWork runs f in its own goroutine, at most cap(a.work) at a time.
func (a *Adapter) goWork(ctx context.Context, f func()) {
	select {
	case a.work <- struct{}{}:
	case <-ctx.Done():
		return
	}
	a.running.Add(1)
	go func() {
		defer a.running.Done()
		defer func() { <-a.work }()
		f()
	}()
}

var mention = regexp.MustCompile(`^\s*<@[A-Z0-9]+>\s*`)

func (a *Adapter) handleEvent(ctx context.Context, ev slackevents.EventsAPIEvent) {
	if ev.Type != slackevents.CallbackEvent {
		return
	}
	if cb, ok := ev.Data.(*slackevents.EventsAPICallbackEvent); ok && !a.seen.firstTime(cb.EventID) {
		return // a redelivery
	}
	var in channels.Inbound
	switch e := ev.InnerEvent.Data.(type) {
	case *slackevents.MessageEvent:
		if e.BotID != "" || e.SubType != "" || e.User == "" || e.User == a.selfID() {
			return
		}
		if e.ChannelType != "im" && (a.opts.OperatorChannel == "" || e.Channel != a.opts.OperatorChannel) {
			return // channel messages come as app_mention, unless this is the operator channel
		}
		in = channels.Inbound{Chat: e.Channel, Sender: e.User, Text: e.Text, Time: slackTime(e.TimeStamp)}
	case *slackevents.AppMentionEvent:
		if e.BotID != "" || e.User == "" || e.Channel == a.opts.OperatorChannel {
			return
		}
		in = channels.Inbound{Chat: e.Channel, Sender: e.User, Text: mention.ReplaceAllString(e.Text, ""), Time: slackTime(e.TimeStamp)}
	default:
		return
	}
	in.Channel = a.name
	if strings.TrimSpace(in.Text) == "" || a.deliver == nil {
		return
	}
	a.goWork(ctx, func() {
		if err := a.deliver(ctx, in); err != nil && ctx.Err() == nil {
			a.log.InfoContext(ctx, "slack: message not handled", "chat", in.Chat, "err", err)
		}
	})
}

func (a *Adapter) selfID() string {
	a.selfMu.Lock()
	defer a.selfMu.Unlock()
	return a.self
}

// handleInteraction decides approvals from button presses. It is called after the ack; the
// presser hears the result privately, and a refusal is also shown on the card.
func (a *Adapter) handleInteraction(ctx context.Context, cb slack.InteractionCallback) {
	if cb.Type != slack.InteractionTypeBlockActions {
		return
	}
	for _, act := range cb.ActionCallback.BlockActions {
		if act == nil || !strings.HasPrefix(act.ActionID, actionPrefix) {
			continue
		}
		choice, id, err := channels.DecodeAction(act.Value)
		channel, user := cb.Channel.ID, cb.User.ID
		if err != nil {
			if channel != "" && user != "" {
				a.goWork(ctx, func() { a.ephemeral(ctx, channel, user, "Unknown button.") })
			}
			continue
		}
		a.goWork(ctx, func() {
			res := a.approve.Press(ctx, channels.Press{Channel: a.name, Sender: user, ApprovalID: id, Choice: choice})
			if res.Ignored {
				return
			}
			if channel != "" && res.Text != "" {
				a.ephemeral(ctx, channel, user, res.Text)
			}
			if res.Refused {
				a.noteOnCard(ctx, id, res.Text)
			}
		})
	}
}

// slogOutput lets the socket-mode client log through the adapter's logger.
type slogOutput struct{ a *Adapter }

func (s slogOutput) Output(_ int, msg string) error {
	s.a.log.Debug("slack socketmode: " + strings.TrimSpace(msg))
	return nil
}

// slackTime reads a Slack timestamp ("1790000000.000100": seconds, then a sequence).
func slackTime(ts string) time.Time {
	sec, _, _ := strings.Cut(ts, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}
