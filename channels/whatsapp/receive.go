package whatsapp

import (
	"context"
	"regexp"
	"strings"

	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/gatewayforge/clawops/channels"
)

// replyRE matches a decision by reply: APPROVE or DENY, a code, and optional words.
var replyRE = regexp.MustCompile(`(?is)^\s*(approve|deny)\s+([a-z0-9_-]{4,64})\b\s*(.*)$`)

// HandleEvent is the whatsmeow event handler (register it with AddEventHandler). It returns
// at once; messages are handled in their own goroutines.
func (a *Adapter) HandleEvent(evt any) {
	switch e := evt.(type) {
	case *events.Message:
		a.handleMessage(e)
	case *events.LoggedOut:
		a.log.Error("whatsapp: the phone unlinked this device; pair again", "reason", e.Reason.String())
	case *events.Connected:
		a.log.Info("whatsapp: connected")
	}
}

func (a *Adapter) handleMessage(e *events.Message) {
	if e == nil || e.Message == nil || e.Info.IsFromMe || e.Info.IsGroup ||
		e.Info.Chat.Server == types.BroadcastServer || e.Info.Chat.Server == types.NewsletterServer {
		return
	}
	text := e.Message.GetConversation()
	if text == "" {
		text = e.Message.GetExtendedTextMessage().GetText()
	}
	if strings.TrimSpace(text) == "" {
		return
	}
	sender := E164(e.Info.Sender)
	if sender == "" {
		sender = E164(e.Info.SenderAlt)
	}
	a.goWork(func(ctx context.Context) {
		if sender == "" {
			// A hidden (LID) sender whose number we cannot read cannot be in allowFrom.
			a.unknown.Record(ctx, a.name, e.Info.Sender.User+"@"+e.Info.Sender.Server, "message")
			return
		}
		if m := replyRE.FindStringSubmatch(text); m != nil {
			a.handleReply(ctx, sender, strings.ToLower(m[1]), m[2], strings.TrimSpace(m[3]))
			return
		}
		if a.deliver == nil {
			return
		}
		in := channels.Inbound{Channel: a.name, Chat: sender, Sender: sender, Text: text, Time: e.Info.Timestamp.UTC()}
		if err := a.deliver(ctx, in); err != nil && ctx.Err() == nil {
			a.log.InfoContext(ctx, "whatsapp: message not handled", "err", err)
		}
	})
}

// handleReply decides an approval from "APPROVE <code>" or "DENY <code>". The code is the
// short code of a card this adapter sent, or a full approval id. The gate refuses senders
// without an approving role (NOT_APPROVER) and the reply says so; senders not in allowFrom
// get no answer.
func (a *Adapter) handleReply(ctx context.Context, sender, verb, code, reason string) {
	id := code
	if v, ok := a.codes.Load(strings.ToLower(code)); ok {
		id = v.(string)
	} else if found, ok := a.cards.Find(ctx, strings.ToLower(code)); ok {
		id = found // a card sent before a restart, or by the previous leader
	}
	choice := channels.ChoiceApprove
	if verb == "deny" {
		choice = channels.ChoiceDeny
	}
	var res channels.PressResult
	if !channels.ValidApprovalID(id) {
		res = channels.PressResult{Refused: true, Text: "There is no such approval (APPROVAL_NOT_FOUND)."}
	} else {
		res = a.approve.Press(ctx, channels.Press{Channel: a.name, Sender: sender, ApprovalID: id, Choice: choice, Reason: reason})
	}
	if res.Ignored || res.Text == "" {
		return
	}
	if err := a.Send(ctx, sender, res.Text); err != nil {
		a.log.InfoContext(ctx, "whatsapp: reply to decision", "err", err)
	}
}

// goWork runs f in its own goroutine, at most cap(a.work) at a time, with a context that
// ends when Run ends.
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
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-a.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		f(ctx)
	}()
}
