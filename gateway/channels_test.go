package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops/channels/telegram/telegramtest"
	"github.com/gatewayforge/clawops/config"
	"github.com/gatewayforge/clawops/gateway"
	"github.com/gatewayforge/clawops/store"
)

const (
	tgOperator  = 111 // omar-operator on Telegram
	tgAdmin     = 222 // alice-admin on Telegram
	tgStranger  = 999 // nobody
	tgApprovals = -100
)

// TestTelegramThroughTheGateway drives the configured Telegram adapter of a real gateway
// through a fake Bot API: an allowed operator chats with the Commander, a stranger is
// ignored and audited, a teardown's card reaches the approvers' chat, the operator's press is
// refused, and the admin's press executes exactly that plan.
func TestTelegramThroughTheGateway(t *testing.T) {
	bot := telegramtest.NewServer(t, "123:TEST-token")
	yaml := fmt.Sprintf(`
channels:
  adapters:
    - type: channels.telegram
      settings:
        token: {env: TG_TOKEN}
        api_endpoint: %q
        approvals_chat: %d
  allow_from:
    - {channel: telegram, sender: "%d", identity: omar-operator, role: operator}
    - {channel: telegram, sender: "%d", identity: alice-admin, role: admin}
`, bot.Endpoint(), tgApprovals, tgOperator, tgAdmin)
	e := startGatewayWith(t, gatewaySetup{pairs: 1, yaml: yaml, lookupEnv: func(name string) (string, bool) {
		if name == "TG_TOKEN" {
			return "123:TEST-token", true
		}
		return "", false
	}})

	bot.PushMessage(tgOperator, tgOperator, "/status")
	waitSent(t, bot, tgOperator, "2 instances: 2 ACTIVE")

	before := len(e.dockerCalls())
	bot.PushMessage(tgStranger, tgStranger, "/restart acct1-pri")
	eventually(t, "the stranger audited", func() bool {
		for _, a := range auditEntries(t, e, 0) {
			if a.Event == "violation" && a.Reason == "UNKNOWN_SENDER" {
				return true
			}
		}
		return false
	})
	if n := len(sentTo(bot, tgStranger)); n != 0 {
		t.Fatalf("the stranger got %d replies, want none", n)
	}
	if got := len(e.dockerCalls()); got != before {
		t.Fatalf("a stranger's message ran docker %d times", got-before)
	}

	bot.PushMessage(tgOperator, tgOperator, "/teardown acct1-sby")
	waitSent(t, bot, tgOperator, "Approval apr_")
	id := pendingApproval(t, e, "acct1-sby")
	var approve string
	eventually(t, "the card in the approvers' chat", func() bool {
		approve = buttonData(t, sentTo(bot, tgApprovals), id, "Approve once")
		return approve != ""
	})

	bot.PushPress(tgOperator, approve)
	eventually(t, "the operator's press refused", func() bool {
		for _, c := range bot.Calls("answerCallbackQuery") {
			if strings.Contains(c.Get("text"), "NOT_APPROVER") {
				return true
			}
		}
		return false
	})
	assertState(t, e, "acct1-sby", "ACTIVE")

	bot.PushPress(tgAdmin, approve)
	eventually(t, "the admin's press to tear down acct1-sby", func() bool {
		v, err := e.gw.Fleet().Instance(t.Context(), instanceID("acct1-sby"))
		return err == nil && v.State == "TERMINATED"
	})
	assertState(t, e, "acct1-pri", "ACTIVE")
	eventually(t, "the card updated with who decided", func() bool {
		for _, c := range bot.Calls("editMessageText") {
			if strings.Contains(c.Get("text"), "alice-admin") {
				return true
			}
		}
		return false
	})
}

// sentTo returns the sendMessage calls to chat.
func sentTo(bot *telegramtest.Server, chat int64) []url.Values {
	var out []url.Values
	for _, c := range bot.Calls("sendMessage") {
		if c.Get("chat_id") == fmt.Sprint(chat) {
			out = append(out, c)
		}
	}
	return out
}

func waitSent(t *testing.T, bot *telegramtest.Server, chat int64, want string) {
	t.Helper()
	eventually(t, fmt.Sprintf("a message to %d mentioning %q", chat, want), func() bool {
		for _, c := range sentTo(bot, chat) {
			if strings.Contains(c.Get("text"), want) {
				return true
			}
		}
		return false
	})
}

// buttonData finds, among the messages, the callback data of the button labelled label on
// the card of approval id.
func buttonData(t *testing.T, msgs []url.Values, id, label string) string {
	t.Helper()
	for _, m := range msgs {
		var kb struct {
			InlineKeyboard [][]struct {
				Text         string `json:"text"`
				CallbackData string `json:"callback_data"`
			} `json:"inline_keyboard"`
		}
		if err := json.Unmarshal([]byte(m.Get("reply_markup")), &kb); err != nil {
			continue
		}
		for _, row := range kb.InlineKeyboard {
			for _, b := range row {
				if strings.Contains(b.Text, label) && strings.Contains(b.CallbackData, id) {
					return b.CallbackData
				}
			}
		}
	}
	return ""
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOpenStoreMigratesChannels checks that the store a gateway opens has the channels
// room's table, where posted approval cards outlive a restart or a leader change.
func TestOpenStoreMigratesChannels(t *testing.T) {
	cfg, err := config.Load("", []string{"CLAWOPS_DATA_DIR=" + t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	db, err := gateway.OpenStore(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(db)
	if !db.Migrator().HasTable("channels_posted_cards") {
		t.Error("channels_posted_cards: not created by OpenStore")
	}
}
