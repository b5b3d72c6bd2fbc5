package telegram_test

import (
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/channels/channelstest"
	"github.com/gatewayforge/clawops/channels/telegram"
	"github.com/gatewayforge/clawops/governance"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	token         = "123456:TEST-token-never-logged"
	approvalsChat = int64(-1001)
	alice         = int64(1001) // operator
	bob           = int64(2002) // approver
	carol         = int64(3003) // viewer
	stranger      = int64(9999)
)

var people = channelstest.People{Operator: "1001", Approver: "2002", Viewer: "3003"}

type rig struct {
	fx    *channelstest.Fixture
	bot   *fakeBot
	a     *telegram.Adapter
	sleep *channelstest.FakeSleep
	stop  func() // stops the adapter launched last
}

// start runs an adapter against a fake Bot API, wired to a real gate through a Dispatcher
// (echo handler) and a Notifier, as main wires it.
func start(t *testing.T, edit func(*telegram.Options)) *rig {
	t.Helper()
	r := &rig{fx: channelstest.New(t, "telegram", people), bot: newFakeBot(t, token), sleep: &channelstest.FakeSleep{}}
	r.launch(t, edit)
	return r
}

// launch builds and runs a new adapter over r's gate, database and fake Bot API, as a
// gateway (re)starting does; r.stop stops it.
func (r *rig) launch(t *testing.T, edit func(*telegram.Options)) {
	t.Helper()
	d := channels.NewDispatcher(r.fx.Directory, channelstest.Echo{}, r.fx.Logger)
	d.SetAuditor(r.fx.Audit, nil)
	o := telegram.Options{Token: token, APIEndpoint: r.bot.endpoint(), ApprovalsChat: approvalsChat,
		PollTimeout: time.Second, Deliver: d.Deliver, Approvals: r.fx.Approvals(), Logger: r.fx.Logger,
		Outbox: channels.OutboxOptions{Sleep: r.sleep.Sleep}, DB: r.fx.DB}
	if edit != nil {
		edit(&o)
	}
	a, err := telegram.New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.a = a
	d.Attach(a)
	n := channels.NewNotifier(channels.NotifierOptions{Channels: []channels.Channel{a}, Logger: r.fx.Logger})
	r.fx.NotifyTo(n)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = n.Run(ctx) }()
	go func() {
		defer wg.Done()
		if err := a.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	r.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(r.stop)
}

func TestMessageInReplyOut(t *testing.T) {
	r := start(t, nil)
	r.bot.pushMessage(alice, alice, "status of the fleet?")
	channelstest.Eventually(t, "a reply", func() bool { return len(r.bot.callsOf("sendMessage")) == 1 })
	got := r.bot.callsOf("sendMessage")[0]
	if got.Get("chat_id") != "1001" || got.Get("text") != "echo alice: status of the fleet?" {
		t.Errorf("reply: got chat %s text %q, want chat 1001 text %q", got.Get("chat_id"), got.Get("text"), "echo alice: status of the fleet?")
	}
	if got.Get("parse_mode") != "" {
		t.Errorf("reply parse_mode: got %q, want plain text", got.Get("parse_mode"))
	}
}

func TestUnknownSenderIgnoredAndAudited(t *testing.T) {
	r := start(t, nil)
	r.bot.pushMessage(stranger, stranger, "let me in")
	r.bot.pushMessage(alice, alice, "after")
	channelstest.Eventually(t, "the reply to alice", func() bool { return len(r.bot.callsOf("sendMessage")) >= 1 })
	channelstest.Eventually(t, "the audit row", func() bool {
		return r.fx.AuditHas(t, governance.EventViolation, clawops.ReasonUnknownSender, "telegram:9999")
	})
	for _, c := range r.bot.callsOf("sendMessage") {
		if c.Get("chat_id") == "9999" {
			t.Errorf("sent %q to the unknown sender", c.Get("text"))
		}
	}
}

// cardData returns the callback data of the button labelled with prefix on the card message.
func cardData(t *testing.T, msg map[string]any, prefix string) string {
	t.Helper()
	kb, _ := msg["reply_markup"].(map[string]any)
	rows, _ := kb["inline_keyboard"].([]any)
	for _, row := range rows {
		for _, b := range row.([]any) {
			btn := b.(map[string]any)
			if strings.Contains(btn["text"].(string), prefix) {
				return btn["callback_data"].(string)
			}
		}
	}
	t.Fatalf("no button %q on card %v", prefix, msg)
	return ""
}

// cardFor waits for the card message of approval id and returns it.
func (r *rig) cardFor(t *testing.T, id string) map[string]any {
	t.Helper()
	var card map[string]any
	channelstest.Eventually(t, "card "+id, func() bool {
		for _, c := range r.bot.callsOf("sendMessage") {
			if strings.Contains(c.Get("text"), id) {
				card = wire(c)
				return true
			}
		}
		return false
	})
	return card
}

// lastEdit returns the text of the last edit of a card whose text contains substr.
func (r *rig) edits(substr string) []string {
	var out []string
	for _, c := range r.bot.callsOf("editMessageText") {
		if strings.Contains(c.Get("text"), substr) {
			out = append(out, c.Get("text"))
		}
	}
	return out
}

func TestPressApprovesExactlyThatPlan(t *testing.T) {
	r := start(t, nil)
	first := r.fx.Request(t, "i-001", "large")
	second := r.fx.Request(t, "i-002", "xlarge")
	r.cardFor(t, first)
	card := r.cardFor(t, second)
	r.bot.pushPress(bob, cardData(t, card, "Approve once"))

	channelstest.Eventually(t, "the card to show the decision", func() bool {
		for _, e := range r.edits("Resize i-002") {
			if strings.Contains(e, "Approved by bob") && strings.Contains(e, "done") {
				return true
			}
		}
		return false
	})
	if got := r.fx.Tool.Applied(); len(got) != 1 || got[0] != (channelstest.ResizeArgs{Instance: "i-002", Tier: "xlarge"}) {
		t.Errorf("applied: got %+v, want exactly i-002 → xlarge", got)
	}
	if got := r.fx.State(t, first); got != governance.ApprovalPending {
		t.Errorf("other approval: got %s, want pending", got)
	}
	if got := r.fx.State(t, second); got != governance.ApprovalExecuted {
		t.Errorf("pressed approval: got %s, want executed", got)
	}
	answers := r.bot.callsOf("answerCallbackQuery")
	if len(answers) != 1 || !strings.Contains(answers[0].Get("text"), "Approved by bob") {
		t.Errorf("callback answer: got %v, want one saying Approved by bob", answers)
	}
	// The decided card has no buttons left.
	edits := r.bot.callsOf("editMessageText")
	last := wire(edits[len(edits)-1])
	if kb, _ := last["reply_markup"].(map[string]any); len(kb["inline_keyboard"].([]any)) != 0 {
		t.Errorf("decided card still has buttons: %v", kb)
	}
}

func TestPressRefusals(t *testing.T) {
	tests := []struct {
		name   string
		from   int64
		button string
		notice string // expected on the card and in the alert; "" for ignored presses
		audit  clawops.ReasonCode
		actor  string
	}{
		{"viewer is not an approver", carol, "Approve once", "carol may not decide approvals (NOT_APPROVER)", clawops.ReasonNotApprover, "carol"},
		{"the requester, an operator, may not approve", alice, "Approve once", "(NOT_APPROVER)", clawops.ReasonNotApprover, "alice"},
		{"scope is not available yet", bob, "Approve for scope", "not available on this gateway yet (NOT_IMPLEMENTED)", "", ""},
		{"unknown presser", stranger, "Approve once", "", clawops.ReasonUnknownSender, "telegram:9999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := start(t, nil)
			id := r.fx.Request(t, "i-001", "large")
			card := r.cardFor(t, id)
			r.bot.pushPress(tt.from, cardData(t, card, tt.button))
			channelstest.Eventually(t, "the press to be answered", func() bool { return len(r.bot.callsOf("answerCallbackQuery")) == 1 })
			if tt.notice != "" {
				channelstest.Eventually(t, "the notice on the card", func() bool {
					for _, e := range r.edits(id) {
						if strings.Contains(e, tt.notice) {
							return true
						}
					}
					return false
				})
				ans := r.bot.callsOf("answerCallbackQuery")[0]
				if !strings.Contains(ans.Get("text"), tt.notice) || ans.Get("show_alert") != "true" {
					t.Errorf("answer: got %q alert=%s, want an alert with %q", ans.Get("text"), ans.Get("show_alert"), tt.notice)
				}
			} else if got := r.bot.callsOf("answerCallbackQuery")[0].Get("text"); got != "" {
				t.Errorf("answer to an ignored press: got %q, want none", got)
			}
			if tt.audit != "" {
				ev := governance.EventViolation
				channelstest.Eventually(t, "the audit row", func() bool { return r.fx.AuditHas(t, ev, tt.audit, tt.actor) })
			}
			if got := r.fx.State(t, id); got != governance.ApprovalPending {
				t.Errorf("approval: got %s, want still pending", got)
			}
			if got := r.fx.Tool.Applied(); len(got) != 0 {
				t.Errorf("applied: got %+v, want nothing", got)
			}
		})
	}
}

func TestMalformedPressChangesNothing(t *testing.T) {
	r := start(t, nil)
	id := r.fx.Request(t, "i-001", "large")
	r.cardFor(t, id)
	for _, data := range []string{"", "once", "once|", "nuke|" + id, "once|" + id + "|x", "once|../../etc", strings.Repeat("a", 64)} {
		r.bot.pushPress(bob, data)
	}
	channelstest.Eventually(t, "all presses answered", func() bool { return len(r.bot.callsOf("answerCallbackQuery")) == 7 })
	for _, a := range r.bot.callsOf("answerCallbackQuery") {
		if a.Get("text") != "Unknown button." {
			t.Errorf("answer: got %q, want Unknown button.", a.Get("text"))
		}
	}
	if got := r.fx.State(t, id); got != governance.ApprovalPending {
		t.Errorf("approval: got %s, want pending", got)
	}
}

func TestCardGolden(t *testing.T) {
	bot := newFakeBot(t, token)
	a, err := telegram.New(telegram.Options{Token: token, APIEndpoint: bot.endpoint(), ApprovalsChat: approvalsChat,
		Outbox: channels.OutboxOptions{Sleep: (&channelstest.FakeSleep{}).Sleep}})
	if err != nil {
		t.Fatal(err)
	}
	card := goldenCard()
	ctx := context.Background()
	if err := a.PostCard(ctx, card); err != nil {
		t.Fatal(err)
	}
	decided := card
	at := time.Date(2026, 11, 23, 9, 5, 0, 0, time.UTC)
	decided.State, decided.DecidedBy, decided.DecidedAt = governance.ApprovalExecuted, "bob", &at
	if err := a.PostCard(ctx, decided); err != nil {
		t.Fatal(err)
	}
	sends, edits := bot.callsOf("sendMessage"), bot.callsOf("editMessageText")
	if len(sends) != 1 || len(edits) != 1 {
		t.Fatalf("got %d sends and %d edits, want 1 and 1 (an update edits the posted card)", len(sends), len(edits))
	}
	channelstest.Golden(t, "testdata/card_pending.golden.json", wire(sends[0]), *update)
	channelstest.Golden(t, "testdata/card_executed.golden.json", wire(edits[0]), *update)
}

func goldenCard() governance.Card {
	return governance.Card{
		ApprovalID: "apr_0123456789abcdef0123456789abcdef", Title: "alice via commander asks to run gf_teardown",
		Summary: "Tear down inst-2 <standby> of acct-9 & friends",
		Actions: []string{"provider.delete hetzner/123", "db.update inst-2: state TERMINATED"},
		Risk:    clawops.RiskHigh, RiskFlags: []string{"risk:high", "provider_delete", "irreversible"},
		UsersAffected: 1, CostDeltaMonthlyUSD: -4.51, ExpectedDuration: 2 * time.Minute, PlanHash: "9f2c0a7be41d5c33",
		Requester: "alice via commander", ExpiresAt: time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC),
		State: governance.ApprovalPending,
	}
}

func TestLongMessageArrivesWholeInOrder(t *testing.T) {
	bot := newFakeBot(t, token)
	a, err := telegram.New(telegram.Options{Token: token, APIEndpoint: bot.endpoint(),
		Outbox: channels.OutboxOptions{Sleep: (&channelstest.FakeSleep{}).Sleep}})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := 0; b.Len() < 30000; i++ {
		b.WriteString("line ")
		b.WriteString(strings.Repeat("é🦀", i%40))
		b.WriteString("\n")
	}
	text := b.String()
	if err := a.Send(context.Background(), "1001", text); err != nil {
		t.Fatal(err)
	}
	var joined strings.Builder
	sends := bot.callsOf("sendMessage")
	for _, s := range sends {
		part := s.Get("text")
		if n := channels.TextLen(part); n > channels.LimitTelegram {
			t.Errorf("a part has %d UTF-16 units, over Telegram's %d", n, channels.LimitTelegram)
		}
		if !strings.HasSuffix(part, "\n") {
			t.Errorf("a part does not end at a line break: …%q", part[max(0, len(part)-20):])
		}
		joined.WriteString(part)
	}
	if len(sends) < 2 || joined.String() != text {
		t.Errorf("got %d parts joining to %d bytes, want several joining to the %d-byte text", len(sends), joined.Len(), len(text))
	}
}

func TestRetryAndRateLimit(t *testing.T) {
	bot := newFakeBot(t, token)
	sleep := &channelstest.FakeSleep{}
	a, err := telegram.New(telegram.Options{Token: token, APIEndpoint: bot.endpoint(),
		Outbox: channels.OutboxOptions{Sleep: sleep.Sleep, BaseBackoff: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	bot.fail("sendMessage", apiFailure{Code: 429, RetryAfter: 7}, apiFailure{Code: 502})
	if err := a.Send(context.Background(), "1001", "hello"); err != nil {
		t.Fatal(err)
	}
	if got := len(bot.callsOf("sendMessage")); got != 3 {
		t.Errorf("attempts: got %d, want 3 (429, 502, ok)", got)
	}
	// Between the per-chat pacing waits (about 1s each) come the retry waits.
	var retries []time.Duration
	for _, w := range sleep.Waits() {
		if w == 7*time.Second || w == 200*time.Millisecond {
			retries = append(retries, w)
		}
	}
	if len(retries) != 2 || retries[0] != 7*time.Second || retries[1] != 200*time.Millisecond {
		t.Errorf("waits: got %v, want 7s (retry_after) then 200ms (second backoff)", sleep.Waits())
	}

	bot.fail("sendMessage", apiFailure{Code: 403})
	err = a.Send(context.Background(), "1001", "blocked")
	if err == nil || strings.Contains(err.Error(), token) {
		t.Errorf("403: got %v, want an error without the token", err)
	}
	if got := len(bot.callsOf("sendMessage")); got != 4 {
		t.Errorf("attempts after a 403: got %d, want 4 (no retry)", got)
	}
}

func TestCheck(t *testing.T) {
	bot := newFakeBot(t, token)
	good, _ := telegram.New(telegram.Options{Token: token, APIEndpoint: bot.endpoint()})
	if err := good.Check(context.Background()); err != nil {
		t.Errorf("Check with the right token: %v", err)
	}
	bad, _ := telegram.New(telegram.Options{Token: "999:wrong-secret", APIEndpoint: bot.endpoint()})
	err := bad.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "Unauthorized") || strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("Check with a wrong token: got %v, want Unauthorized without the token", err)
	}
	bot.Close()
	err = good.Check(context.Background())
	if err == nil || strings.Contains(err.Error(), "TEST-token") {
		t.Errorf("Check with the API down: got %v, want an error without the token", err)
	}
}

func TestWebhook(t *testing.T) {
	const secret = "0123456789abcdef-secret"
	r := start(t, func(o *telegram.Options) {
		o.Mode, o.WebhookURL, o.WebhookSecret = telegram.ModeWebhook, "https://ops.example/tg/hook", secret
	})
	channelstest.Eventually(t, "setWebhook", func() bool { return len(r.bot.callsOf("setWebhook")) == 1 })
	sw := r.bot.callsOf("setWebhook")[0]
	if sw.Get("url") != "https://ops.example/tg/hook" || sw.Get("secret_token") != secret {
		t.Errorf("setWebhook: got %v", sw)
	}
	if got := r.a.WebhookPath(); got != "/tg/hook" {
		t.Errorf("WebhookPath: got %q, want /tg/hook", got)
	}
	srv := httptest.NewServer(r.a.Handler())
	t.Cleanup(srv.Close)
	body := `{"update_id":5,"message":{"message_id":1,"date":1790000000,"chat":{"id":1001,"type":"private"},"from":{"id":1001,"is_bot":false,"first_name":"A"},"text":"hi"}}`
	post := func(secretHeader, body string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
		if secretHeader != "" {
			req.Header.Set("X-Telegram-Bot-Api-Secret-Token", secretHeader)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		name, secret, body string
		want               int
	}{
		{"no secret", "", body, 401},
		{"wrong secret", "0123456789abcdef-wrong!", body, 401},
		{"not json", secret, "{", 400},
		{"no update id", secret, `{"message":{}}`, 400},
		{"good", secret, body, 200},
	} {
		if got := post(tt.secret, tt.body); got != tt.want {
			t.Errorf("%s: got status %d, want %d", tt.name, got, tt.want)
		}
	}
	channelstest.Eventually(t, "the reply", func() bool { return len(r.bot.callsOf("sendMessage")) == 1 })
	if got := r.bot.callsOf("sendMessage")[0].Get("text"); got != "echo alice: hi" {
		t.Errorf("reply: got %q", got)
	}
}

func TestEditAndVoice(t *testing.T) {
	bot := newFakeBot(t, token)
	a, _ := telegram.New(telegram.Options{Token: token, APIEndpoint: bot.endpoint(),
		Outbox: channels.OutboxOptions{Sleep: (&channelstest.FakeSleep{}).Sleep}})
	ctx := context.Background()
	ref, err := a.Post(ctx, "1001", "provisioning 0/20")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Edit(ctx, "1001", ref, "provisioning 20/20 ✓"); err != nil {
		t.Fatal(err)
	}
	edits := bot.callsOf("editMessageText")
	if len(edits) != 1 || edits[0].Get("message_id") != ref || edits[0].Get("text") != "provisioning 20/20 ✓" {
		t.Errorf("edit: got %v, want message %s edited", edits, ref)
	}
	if err := a.SendVoice(ctx, "1001", []byte("OggS fake opus")); err != nil {
		t.Fatal(err)
	}
	if v := bot.callsOf("sendVoice"); len(v) != 1 || v[0].Get("voice") != "file:briefing.ogg:14" {
		t.Errorf("voice: got %v", v)
	}
	for _, bad := range []struct{ to, ref string }{{"", "1"}, {"abc", "1"}, {"1001", "x"}, {"1001", "-3"}} {
		err := a.Edit(ctx, bad.to, bad.ref, "x")
		if clawops.ReasonOf(err) != clawops.ReasonMalformedRequest {
			t.Errorf("Edit(%q, %q): got %v, want MALFORMED_REQUEST", bad.to, bad.ref, err)
		}
	}
	if err := a.Send(ctx, "1001", "  "); clawops.ReasonOf(err) != clawops.ReasonMalformedRequest {
		t.Errorf("Send of blank text: got %v, want MALFORMED_REQUEST", err)
	}
}

func TestFactory(t *testing.T) {
	env := channels.Env{LookupEnv: func(k string) (string, bool) {
		if k == "TG_TOKEN" {
			return token, true
		}
		return "", false
	}}
	good := `{"token":{"env":"TG_TOKEN"},"approvals_chat":-1001,"outbox":{"per_chat_interval":"2s"}}`
	ch, err := telegram.Factory(env, json.RawMessage(good))
	if err != nil || ch.Name() != "telegram" {
		t.Fatalf("good settings: got %v, %v", ch, err)
	}
	for _, tt := range []struct{ name, settings, want string }{
		{"inline token", `{"token":"123:abc"}`, "never written inline"},
		{"missing env", `{"token":{"env":"NOPE"}}`, "NOPE is not set"},
		{"no token", `{}`, "secret reference is empty"},
		{"unknown key", `{"token":{"env":"TG_TOKEN"},"tokn":1}`, "unknown field"},
		{"bad mode", `{"token":{"env":"TG_TOKEN"},"mode":"push"}`, "not poll or webhook"},
		{"webhook without https", `{"token":{"env":"TG_TOKEN"},"mode":"webhook","webhook_url":"http://x/y","webhook_secret":{"env":"TG_TOKEN"}}`, "https URL"},
		{"bad endpoint", `{"token":{"env":"TG_TOKEN"},"api_endpoint":"http://x/"}`, "%s twice"},
		{"bad duration", `{"token":{"env":"TG_TOKEN"},"poll_timeout":"soon"}`, "invalid duration"},
	} {
		_, err := telegram.Factory(env, json.RawMessage(tt.settings))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "abc") {
			t.Errorf("%s: error repeats the inline secret: %v", tt.name, err)
		}
	}
}

func FuzzParseUpdate(f *testing.F) {
	f.Add(`{"update_id":5,"message":{"message_id":1,"date":1,"chat":{"id":1,"type":"private"},"text":"hi"}}`)
	f.Add(`{"update_id":6,"callback_query":{"id":"x","data":"once|apr_1","from":{"id":2}}}`)
	f.Add(`{"update_id":-1}`)
	f.Fuzz(func(t *testing.T, body string) {
		u, err := telegram.ParseUpdate(strings.NewReader(body))
		if err == nil && u.UpdateID <= 0 {
			t.Fatalf("accepted an update without a positive update_id")
		}
	})
}
