package telegram

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/gatewayforge/clawops/channels"
)

// allowedUpdates are the only update kinds the bot asks for.
var allowedUpdates = []string{"message", "callback_query"}

// maxWebhookBody bounds one webhook request.
const maxWebhookBody = 1 << 20

// answerWithin is how long a press may take before the button's spinner is stopped with a
// "working" note; the result then shows on the card.
const answerWithin = 2 * time.Second

// Run receives updates until ctx ends: by long polling, or in webhook mode by registering the
// webhook and waiting (Handler receives them). Updates being handled when ctx ends are given
// the cancelled context and waited for. It may be called once.
func (a *Adapter) Run(ctx context.Context) error {
	defer a.running.Wait()
	defer a.stopped.Do(func() { close(a.stop) })
	if a.opts.Mode == ModeWebhook {
		if err := a.setWebhook(ctx); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
	// A webhook left from another configuration makes getUpdates fail with 409.
	if err := a.call(ctx, func() error {
		_, err := a.send.Request(tgbotapi.DeleteWebhookConfig{})
		return err
	}); err != nil && ctx.Err() == nil {
		a.log.WarnContext(ctx, "telegram: deleteWebhook", "err", err)
	}
	offset, failures := 0, 0
	for ctx.Err() == nil {
		var updates []tgbotapi.Update
		err := a.call(ctx, func() error {
			var err error
			updates, err = a.poll.GetUpdates(tgbotapi.UpdateConfig{Offset: offset,
				Timeout: int(a.opts.PollTimeout / time.Second), AllowedUpdates: allowedUpdates})
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			wait := min(time.Duration(failures)*time.Second, 30*time.Second)
			a.log.WarnContext(ctx, "telegram: getUpdates failed", "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			continue
		}
		failures = 0
		for _, u := range updates {
			if u.UpdateID >= offset {
				offset = u.UpdateID + 1
			}
			a.dispatch(ctx, u)
		}
	}
	return nil
}

func (a *Adapter) setWebhook(ctx context.Context) error {
	params := tgbotapi.Params{"url": a.opts.WebhookURL, "secret_token": a.opts.WebhookSecret}
	if err := params.AddInterface("allowed_updates", allowedUpdates); err != nil {
		return err
	}
	if err := a.call(ctx, func() error {
		_, err := a.send.MakeRequest("setWebhook", params)
		return err
	}); err != nil {
		return fmt.Errorf("telegram setWebhook: %w", err)
	}
	return nil
}

// Handler serves Telegram's webhook posts. It answers 401 without the right
// X-Telegram-Bot-Api-Secret-Token header and 400 for a body that is not an update, and hands
// good updates on without waiting for them to be handled.
func (a *Adapter) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		got := r.Header.Get("X-Telegram-Bot-Api-Secret-Token")
		if a.opts.WebhookSecret == "" || subtle.ConstantTimeCompare([]byte(got), []byte(a.opts.WebhookSecret)) != 1 {
			a.log.Warn("telegram: webhook request without the right secret token", "remote", r.RemoteAddr)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		u, err := ParseUpdate(io.LimitReader(r.Body, maxWebhookBody))
		if err != nil {
			http.Error(w, "bad update", http.StatusBadRequest)
			return
		}
		// The request's context ends when we answer; the update outlives it.
		a.dispatch(context.WithoutCancel(r.Context()), u)
		w.WriteHeader(http.StatusOK)
	})
}

// ParseUpdate decodes one webhook body into an update; it must be a JSON object with a
// positive update_id.
func ParseUpdate(r io.Reader) (tgbotapi.Update, error) {
	var u tgbotapi.Update
	dec := json.NewDecoder(r)
	if err := dec.Decode(&u); err != nil {
		return u, fmt.Errorf("decode update: %w", err)
	}
	if u.UpdateID <= 0 {
		return u, errors.New("decode update: no update_id")
	}
	return u, nil
}

// dispatch handles u in its own goroutine, at most cap(a.work) at a time, so a long agent run
// never holds up a button press.
func (a *Adapter) dispatch(ctx context.Context, u tgbotapi.Update) {
	select {
	case a.work <- struct{}{}:
	case <-ctx.Done():
		return
	}
	a.running.Add(1)
	go func() {
		defer a.running.Done()
		defer func() { <-a.work }()
		switch {
		case u.CallbackQuery != nil:
			a.handlePress(ctx, u.CallbackQuery)
		case u.Message != nil:
			a.handleMessage(ctx, u.Message)
		}
	}()
}

func (a *Adapter) handleMessage(ctx context.Context, m *tgbotapi.Message) {
	if m.From == nil || m.Chat == nil || m.Text == "" || m.From.IsBot {
		return
	}
	if a.deliver == nil {
		return
	}
	in := channels.Inbound{Channel: a.name, Chat: strconv.FormatInt(m.Chat.ID, 10),
		Sender: strconv.FormatInt(m.From.ID, 10), Text: m.Text, Time: time.Unix(int64(m.Date), 0).UTC()}
	if err := a.deliver(ctx, in); err != nil && ctx.Err() == nil {
		a.log.InfoContext(ctx, "telegram: message not handled", "chat", in.Chat, "err", err)
	}
}

// handlePress decides an approval from an inline-keyboard press. The spinner is stopped with
// the result when it comes quickly, else with a "working" note; a refusal is also shown on
// the card.
func (a *Adapter) handlePress(ctx context.Context, q *tgbotapi.CallbackQuery) {
	if q.From == nil {
		return
	}
	choice, id, err := channels.DecodeAction(q.Data)
	if err != nil {
		a.answer(ctx, q.ID, "Unknown button.", false)
		return
	}
	done := make(chan channels.PressResult, 1)
	go func() {
		done <- a.approve.Press(ctx, channels.Press{Channel: a.name, Sender: strconv.FormatInt(q.From.ID, 10),
			ApprovalID: id, Choice: choice})
	}()
	var res channels.PressResult
	timer := time.NewTimer(answerWithin)
	defer timer.Stop()
	select {
	case res = <-done:
		a.answer(ctx, q.ID, res.Text, res.Refused)
	case <-timer.C:
		a.answer(ctx, q.ID, "Working on it…", false)
		res = <-done
	}
	if res.Refused && !res.Ignored {
		a.noteOnCard(ctx, id, res.Text)
	}
}

// answer stops the button's spinner, with text as a toast (or an alert).
func (a *Adapter) answer(ctx context.Context, queryID, text string, alert bool) {
	cb := tgbotapi.NewCallback(queryID, channels.Truncate(text, 200))
	cb.ShowAlert = alert
	if err := a.call(ctx, func() error {
		_, err := a.send.Request(cb)
		return err
	}); err != nil {
		a.log.InfoContext(ctx, "telegram: answerCallbackQuery", "err", err)
	}
}

// webhookPath is a helper for documentation: the path part of the configured webhook URL.
func (a *Adapter) webhookPath() string {
	u, err := url.Parse(a.opts.WebhookURL)
	if err != nil {
		return ""
	}
	return u.Path
}

// WebhookPath is the path the lead mounts Handler on in webhook mode ("" in poll mode).
func (a *Adapter) WebhookPath() string {
	if a.opts.Mode != ModeWebhook {
		return ""
	}
	return a.webhookPath()
}
