package telegram_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops/channels/channelstest"
	"github.com/gatewayforge/clawops/channels/telegram"
	"github.com/gatewayforge/clawops/governance"
)

// firstMessage is the id the fake Bot API gives the first message sent.
const firstMessage = "101"

// TestCardSurvivesRestart posts a card from one adapter, stops it, and has a new adapter
// over the same database (a restarted gateway, or the next leader) take a refused press and
// then the approval on that old card: both show up as edits of the first message, and no
// second card is posted.
func TestCardSurvivesRestart(t *testing.T) {
	r := start(t, nil)
	id := r.fx.Request(t, "i-001", "large")
	card := r.cardFor(t, id)
	r.stop()

	r.launch(t, nil)
	r.bot.pushPress(carol, cardData(t, card, "Approve once"))
	channelstest.Eventually(t, "the refusal on the old card", func() bool {
		return len(r.edits("carol may not decide approvals")) == 1
	})
	r.bot.pushPress(bob, cardData(t, card, "Approve once"))
	channelstest.Eventually(t, "the decision on the old card", func() bool {
		for _, e := range r.edits("Resize i-001") {
			if strings.Contains(e, "Approved by bob") && strings.Contains(e, "done") {
				return true
			}
		}
		return false
	})
	if got := r.fx.State(t, id); got != governance.ApprovalExecuted {
		t.Errorf("approval: got %s, want executed", got)
	}
	var cards int
	for _, c := range r.bot.callsOf("sendMessage") {
		if c.Get("chat_id") == strconv.FormatInt(approvalsChat, 10) {
			cards++
		}
	}
	if cards != 1 {
		t.Errorf("cards posted: got %d, want 1 (updates edit the first)", cards)
	}
	for _, e := range r.bot.callsOf("editMessageText") {
		if e.Get("message_id") != firstMessage || e.Get("chat_id") != strconv.FormatInt(approvalsChat, 10) {
			t.Errorf("edit of chat %s message %s, want chat %d message %s", e.Get("chat_id"), e.Get("message_id"), approvalsChat, firstMessage)
		}
	}
}

// TestCardAfterApprovalsChatMoved restarts with another approvals chat: the old card's
// message id means nothing there, so the update is a fresh card in the new chat.
func TestCardAfterApprovalsChatMoved(t *testing.T) {
	r := start(t, nil)
	id := r.fx.Request(t, "i-001", "large")
	r.cardFor(t, id)
	r.stop()

	const moved = int64(-1002)
	r.launch(t, func(o *telegram.Options) { o.ApprovalsChat = moved })
	approve(t, r, id)
	channelstest.Eventually(t, "a fresh card in the new chat", func() bool {
		for _, c := range r.bot.callsOf("sendMessage") {
			if c.Get("chat_id") == strconv.FormatInt(moved, 10) && strings.Contains(c.Get("text"), "Resize i-001") {
				return true
			}
		}
		return false
	})
	for _, e := range r.bot.callsOf("editMessageText") {
		if e.Get("chat_id") != strconv.FormatInt(moved, 10) || e.Get("message_id") == firstMessage {
			t.Errorf("edit of chat %s message %s, want only the new card's in chat %d", e.Get("chat_id"), e.Get("message_id"), moved)
		}
	}
}

// approve has bob approve id at the gate, as the console or another channel would.
func approve(t *testing.T, r *rig, id string) {
	t.Helper()
	actor, err := r.fx.Directory.Resolve("telegram", strconv.FormatInt(bob, 10))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.fx.Gate.Decide(t.Context(), actor, id, true, ""); err != nil {
		t.Fatal(err)
	}
}
