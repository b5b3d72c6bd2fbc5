package slack_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/channels/channelstest"
	chslack "github.com/gatewayforge/clawops/channels/slack"
	"github.com/gatewayforge/clawops/governance"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	botToken      = "xoxb-test-bot-token"
	appToken      = "xapp-test-app-token"
	signingSecret = "8f742231b10e8888abcd99yyyzzz85a5"
	approvals     = "CAPPROVALS"
)

var people = channelstest.People{Operator: "U1001", Approver: "U2002", Viewer: "U3003"}

type rig struct {
	fx    *channelstest.Fixture
	slack *fakeSlack
	a     *chslack.Adapter
	stop  func() // stops the adapter launched last
}

func start(t *testing.T, mode string, edit ...func(*rig, *chslack.Options)) *rig {
	t.Helper()
	r := &rig{fx: channelstest.New(t, "slack", people), slack: newFakeSlack(t)}
	r.launch(t, mode, edit...)
	return r
}

// launch builds and runs a new adapter over r's gate, database and fake Slack, as a gateway
// (re)starting does; r.stop stops it.
func (r *rig) launch(t *testing.T, mode string, edit ...func(*rig, *chslack.Options)) {
	t.Helper()
	d := channels.NewDispatcher(r.fx.Directory, channelstest.Echo{}, r.fx.Logger)
	d.SetAuditor(r.fx.Audit, nil)
	o := chslack.Options{BotToken: botToken, AppToken: appToken, SigningSecret: signingSecret, Mode: mode,
		APIURL: r.slack.apiURL(), ApprovalsChannel: approvals, OperatorChannel: "COPS", Deliver: d.Deliver,
		Approvals: r.fx.Approvals(), Logger: r.fx.Logger, Outbox: channels.OutboxOptions{Sleep: (&channelstest.FakeSleep{}).Sleep},
		DB: r.fx.DB}
	for _, e := range edit {
		e(r, &o)
	}
	a, err := chslack.New(o)
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
	go func() { defer wg.Done(); _ = a.Run(ctx) }()
	r.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(r.stop)
}

func TestSocketModeMessageInReplyOut(t *testing.T) {
	r := start(t, chslack.ModeSocket)
	r.slack.envelope("e1", "events_api", messageEvent("Ev1", "D1", "im", "U1001", "how much do we spend?"))
	// Slack redelivers an event it thinks was lost; the adapter answers once.
	r.slack.envelope("e1b", "events_api", messageEvent("Ev1", "D1", "im", "U1001", "how much do we spend?"))
	channelstest.Eventually(t, "the reply", func() bool { return len(r.slack.callsOf("chat.postMessage")) == 1 })
	got := r.slack.callsOf("chat.postMessage")[0]
	if got.Get("channel") != "D1" || got.Get("text") != "echo alice: how much do we spend?" {
		t.Errorf("reply: got %v", got)
	}
	channelstest.Eventually(t, "both acks", func() bool {
		h := r.slack.happened()
		return slices.Contains(h, "ack:e1") && slices.Contains(h, "ack:e1b")
	})
	// A channel message without a mention is not for us; in the operator channel it is.
	r.slack.envelope("e2", "events_api", messageEvent("Ev2", "CRANDOM", "channel", "U1001", "lunch?"))
	r.slack.envelope("e3", "events_api", messageEvent("Ev3", "COPS", "channel", "U1001", "fleet status"))
	channelstest.Eventually(t, "the operator-channel reply", func() bool { return len(r.slack.callsOf("chat.postMessage")) == 2 })
	if got := r.slack.callsOf("chat.postMessage")[1]; got.Get("channel") != "COPS" {
		t.Errorf("second reply went to %s, want COPS", got.Get("channel"))
	}
}

func TestUnknownSenderIgnoredAndAudited(t *testing.T) {
	r := start(t, chslack.ModeSocket)
	r.slack.envelope("e1", "events_api", messageEvent("Ev1", "D9", "im", "U9999", "hello?"))
	channelstest.Eventually(t, "the audit row", func() bool {
		return r.fx.AuditHas(t, governance.EventViolation, clawops.ReasonUnknownSender, "slack:U9999")
	})
	if n := len(r.slack.callsOf("chat.postMessage")); n != 0 {
		t.Errorf("sent %d messages to an unknown sender, want none", n)
	}
}

// cardValue finds the button with action_id on the posted card of approval id.
func (r *rig) cardValue(t *testing.T, id, actionID string) string {
	t.Helper()
	var value string
	channelstest.Eventually(t, "card "+id, func() bool {
		for _, c := range r.slack.callsOf("chat.postMessage") {
			if c.Get("channel") != approvals || !strings.Contains(c.Get("blocks"), id) {
				continue
			}
			var blocks []map[string]any
			_ = json.Unmarshal([]byte(c.Get("blocks")), &blocks)
			for _, b := range blocks {
				els, _ := b["elements"].([]any)
				for _, e := range els {
					if m, _ := e.(map[string]any); m["action_id"] == actionID {
						value, _ = m["value"].(string)
						return true
					}
				}
			}
		}
		return false
	})
	return value
}

func (r *rig) updatesOf(substr string) []string {
	var out []string
	for _, c := range r.slack.callsOf("chat.update") {
		if strings.Contains(c.Get("blocks"), substr) {
			out = append(out, c.Get("blocks"))
		}
	}
	return out
}

// heldDecider holds every decision until release is closed.
type heldDecider struct {
	inner   channels.Decider
	release chan struct{}
}

func (h heldDecider) Decide(ctx context.Context, by clawops.Actor, id string, approve bool, reason string) (governance.Outcome, error) {
	<-h.release
	return h.inner.Decide(ctx, by, id, approve, reason)
}

func TestSocketModePressApprovesExactlyThatPlan(t *testing.T) {
	release := make(chan struct{})
	r := start(t, chslack.ModeSocket, func(r *rig, o *chslack.Options) {
		o.Approvals = channels.NewApprovals(channels.ApprovalsOptions{Resolver: r.fx.Directory,
			Decider: heldDecider{inner: r.fx.Gate, release: release}, Auditor: r.fx.Audit})
	})
	first := r.fx.Request(t, "i-001", "large")
	second := r.fx.Request(t, "i-002", "xlarge")
	r.cardValue(t, first, "clawops_approve_once")
	v := r.cardValue(t, second, "clawops_approve_once")
	r.slack.envelope("p1", "interactive", press("U2002", approvals, "clawops_approve_once", v))
	// Slack wants the ack within 3 seconds: it must not wait for the decision.
	channelstest.Eventually(t, "the ack while the decision is held", func() bool { return slices.Contains(r.slack.happened(), "ack:p1") })
	close(release)

	channelstest.Eventually(t, "the card to say who decided", func() bool {
		for _, u := range r.updatesOf("Resize i-002") {
			if strings.Contains(u, "Approved by bob at ") && strings.Contains(u, "done") && !strings.Contains(u, "clawops_approve_once") {
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
	channelstest.Eventually(t, "the private answer", func() bool { return len(r.slack.callsOf("chat.postEphemeral")) == 1 })
	eph := r.slack.callsOf("chat.postEphemeral")[0]
	if eph.Get("user") != "U2002" || !strings.Contains(eph.Get("text"), "Approved by bob") {
		t.Errorf("ephemeral: got %v", eph)
	}
}

func TestSocketModeRefusals(t *testing.T) {
	tests := []struct {
		name, user, action, notice string
		audit                      clawops.ReasonCode
		actor                      string
	}{
		{"viewer", "U3003", "clawops_approve_once", "carol may not decide approvals (NOT_APPROVER)", clawops.ReasonNotApprover, "carol"},
		{"deny by viewer", "U3003", "clawops_deny", "(NOT_APPROVER)", clawops.ReasonNotApprover, "carol"},
		{"scope", "U2002", "clawops_approve_scope", "(NOT_IMPLEMENTED)", "", ""},
		{"stranger", "U9999", "clawops_approve_once", "", clawops.ReasonUnknownSender, "slack:U9999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := start(t, chslack.ModeSocket)
			id := r.fx.Request(t, "i-001", "large")
			v := r.cardValue(t, id, tt.action)
			r.slack.envelope("p1", "interactive", press(tt.user, approvals, tt.action, v))
			channelstest.Eventually(t, "the ack", func() bool { return slices.Contains(r.slack.happened(), "ack:p1") })
			if tt.notice != "" {
				channelstest.Eventually(t, "the notice on the card", func() bool {
					return len(r.updatesOf(tt.notice)) > 0 && len(r.slack.callsOf("chat.postEphemeral")) == 1
				})
			}
			if tt.audit != "" {
				channelstest.Eventually(t, "the audit row", func() bool {
					return r.fx.AuditHas(t, governance.EventViolation, tt.audit, tt.actor)
				})
			}
			if tt.notice == "" {
				if n := len(r.slack.callsOf("chat.postEphemeral")) + len(r.slack.callsOf("chat.update")); n != 0 {
					t.Errorf("an ignored press produced %d messages", n)
				}
			}
			if got := r.fx.State(t, id); got != governance.ApprovalPending {
				t.Errorf("approval: got %s, want pending", got)
			}
			if n := len(r.fx.Tool.Applied()); n != 0 {
				t.Errorf("applied %d plans, want none", n)
			}
		})
	}
}

// sign signs body as Slack does at time ts.
func sign(ts int64, body string) string {
	mac := hmac.New(sha256.New, []byte(signingSecret))
	mac.Write([]byte("v0:" + strconv.FormatInt(ts, 10) + ":" + body))
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// TestSocketModeRefusesHTTP shows that an adapter with no signing secret (Socket Mode)
// refuses every HTTP request, including one "signed" with the empty key.
func TestSocketModeRefusesHTTP(t *testing.T) {
	r := start(t, chslack.ModeSocket)
	id := r.fx.Request(t, "i-001", "large")
	v := r.cardValue(t, id, "clawops_approve_once")
	srv := httptest.NewServer(r.a.Handler())
	t.Cleanup(srv.Close)
	payload, _ := json.Marshal(press("U2002", approvals, "clawops_approve_once", v))
	body := url.Values{"payload": {string(payload)}}.Encode()
	now := time.Now().Unix()
	mac := hmac.New(sha256.New, nil)
	mac.Write([]byte("v0:" + strconv.FormatInt(now, 10) + ":" + body))
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(now, 10))
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("empty-key signature in socket mode: got %d, want 401", resp.StatusCode)
	}
	if got := r.fx.State(t, id); got != governance.ApprovalPending {
		t.Fatalf("approval %s, want pending", got)
	}
}

func TestHTTPModeSignatures(t *testing.T) {
	r := start(t, chslack.ModeHTTP)
	id := r.fx.Request(t, "i-001", "large")
	v := r.cardValue(t, id, "clawops_approve_once")
	srv := httptest.NewServer(r.a.Handler())
	t.Cleanup(srv.Close)
	payload, _ := json.Marshal(press("U2002", approvals, "clawops_approve_once", v))
	body := url.Values{"payload": {string(payload)}}.Encode()
	now := time.Now().Unix()
	post := func(body, ts, sig string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if ts != "" {
			req.Header.Set("X-Slack-Request-Timestamp", ts)
		}
		if sig != "" {
			req.Header.Set("X-Slack-Signature", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	nowS := strconv.FormatInt(now, 10)
	forged := strings.Replace(body, "U2002", "U2003", 1)
	for _, tt := range []struct {
		name, body, ts, sig string
	}{
		{"unsigned", body, "", ""},
		{"no timestamp", body, "", sign(now, body)},
		{"wrong secret", body, nowS, "v0=" + strings.Repeat("ab", 32)},
		{"signature of another body", forged, nowS, sign(now, body)},
		{"replayed an hour later", body, strconv.FormatInt(now-3600, 10), sign(now-3600, body)},
	} {
		if got := post(tt.body, tt.ts, tt.sig); got != http.StatusUnauthorized {
			t.Errorf("%s: got status %d, want 401", tt.name, got)
		}
	}
	if got := r.fx.State(t, id); got != governance.ApprovalPending {
		t.Fatalf("after forged requests: approval %s, want pending", got)
	}
	if got := post("payload=%7B", nowS, sign(now, "payload=%7B")); got != http.StatusBadRequest {
		t.Errorf("signed garbage: got %d, want 400", got)
	}
	if got := post(body, nowS, sign(now, body)); got != http.StatusOK {
		t.Fatalf("signed press: got %d, want 200", got)
	}
	channelstest.Eventually(t, "the approval to run", func() bool { return r.fx.State(t, id) == governance.ApprovalExecuted })

	// url_verification, signed, is answered with its challenge.
	ch := `{"token":"t","challenge":"c-123","type":"url_verification"}`
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(ch))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Slack-Request-Timestamp", nowS)
	req.Header.Set("X-Slack-Signature", sign(now, ch))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 64)
	n, _ := resp.Body.Read(b)
	if resp.StatusCode != 200 || string(b[:n]) != "c-123" {
		t.Errorf("url_verification: got %d %q, want 200 c-123", resp.StatusCode, b[:n])
	}
}

func TestCardGolden(t *testing.T) {
	fs := newFakeSlack(t)
	a, err := chslack.New(chslack.Options{BotToken: botToken, AppToken: appToken, APIURL: fs.apiURL(), ApprovalsChannel: approvals,
		Outbox: channels.OutboxOptions{Sleep: (&channelstest.FakeSleep{}).Sleep}})
	if err != nil {
		t.Fatal(err)
	}
	card := governance.Card{
		ApprovalID: "apr_0123456789abcdef0123456789abcdef", Title: "alice via commander asks to run gf_teardown",
		Summary: "Tear down inst-2 <standby> of acct-9 & friends", Actions: []string{"provider.delete hetzner/123", "db.update inst-2: state TERMINATED"},
		Risk: clawops.RiskHigh, RiskFlags: []string{"risk:high", "provider_delete", "irreversible"}, UsersAffected: 1,
		CostDeltaMonthlyUSD: -4.51, ExpectedDuration: 90 * time.Minute, PlanHash: "9f2c0a7be41d5c33", Requester: "alice via commander",
		ExpiresAt: time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC), State: governance.ApprovalPending,
	}
	ctx := context.Background()
	if err := a.PostCard(ctx, card); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 23, 9, 5, 0, 0, time.UTC)
	card.State, card.DecidedBy, card.DecidedAt = governance.ApprovalDenied, "bob", &at
	if err := a.PostCard(ctx, card); err != nil {
		t.Fatal(err)
	}
	posts, updates := fs.callsOf("chat.postMessage"), fs.callsOf("chat.update")
	if len(posts) != 1 || len(updates) != 1 {
		t.Fatalf("got %d posts and %d updates, want 1 and 1", len(posts), len(updates))
	}
	channelstest.Golden(t, "testdata/card_pending.golden.json", wire(posts[0]), *update)
	channelstest.Golden(t, "testdata/card_denied.golden.json", wire(updates[0]), *update)
}

func TestSendChunksRetriesAndCheck(t *testing.T) {
	fs := newFakeSlack(t)
	sleep := &channelstest.FakeSleep{}
	a, err := chslack.New(chslack.Options{BotToken: botToken, AppToken: appToken, APIURL: fs.apiURL(),
		Outbox: channels.OutboxOptions{Sleep: sleep.Sleep}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	text := strings.Repeat("ünïcödé line of a long report\n", 3000) // ~93k characters
	fs.fail("chat.postMessage", http.StatusTooManyRequests, http.StatusServiceUnavailable)
	if err := a.Send(ctx, "D1", text); err != nil {
		t.Fatal(err)
	}
	var joined strings.Builder
	posts := fs.callsOf("chat.postMessage")
	for _, p := range posts[2:] { // the first two were refused
		if n := channels.TextLen(p.Get("text")); n > channels.LimitSlackText {
			t.Errorf("a part has %d characters, over %d", n, channels.LimitSlackText)
		}
		joined.WriteString(p.Get("text"))
	}
	if joined.String() != text || len(posts) < 5 {
		t.Errorf("got %d posts joining to %d bytes, want the %d-byte text whole after 2 retries", len(posts), joined.Len(), len(text))
	}
	if !slices.Contains(sleep.Waits(), 4*time.Second) {
		t.Errorf("waits %v: want the 4s Retry-After honoured", sleep.Waits())
	}
	fs.fail("chat.postMessage", http.StatusForbidden)
	if err := a.Send(ctx, "D1", "x"); err == nil || strings.Contains(err.Error(), botToken) {
		t.Errorf("403: got %v, want an error without the token", err)
	}
	if err := a.Check(ctx); err != nil {
		t.Errorf("Check: %v", err)
	}
	ref, err := a.Post(ctx, "D1", "provisioning 1/3")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Edit(ctx, "D1", ref, "provisioning 3/3"); err != nil {
		t.Fatal(err)
	}
	if u := fs.callsOf("chat.update"); len(u) != 1 || u[0].Get("ts") != ref || u[0].Get("text") != "provisioning 3/3" {
		t.Errorf("edit: got %v", u)
	}
	fs.srv.Stop()
	if err := a.Check(ctx); err == nil {
		t.Error("Check with Slack unreachable: got nil, want an error")
	}
}

func TestFactory(t *testing.T) {
	vals := map[string]string{"BOT": botToken, "APP": appToken, "SIGN": signingSecret}
	env := channels.Env{LookupEnv: func(k string) (string, bool) { v, ok := vals[k]; return v, ok }}
	for _, good := range []string{
		`{"bot_token":{"env":"BOT"},"app_token":{"env":"APP"},"approvals_channel":"C1"}`,
		`{"bot_token":{"env":"BOT"},"mode":"http","signing_secret":{"env":"SIGN"}}`,
	} {
		if _, err := chslack.Factory(env, json.RawMessage(good)); err != nil {
			t.Errorf("%s: %v", good, err)
		}
	}
	for _, tt := range []struct{ name, settings, want string }{
		{"inline token", `{"bot_token":"xoxb-1"}`, "never written inline"},
		{"socket without app token", `{"bot_token":{"env":"BOT"}}`, "app_token"},
		{"app token of the wrong kind", `{"bot_token":{"env":"BOT"},"app_token":{"env":"BOT"}}`, "xapp-"},
		{"http without secret", `{"bot_token":{"env":"BOT"},"mode":"http"}`, "signing_secret"},
		{"bad mode", `{"bot_token":{"env":"BOT"},"mode":"rtm"}`, "not socket or http"},
		{"unknown key", `{"bot_token":{"env":"BOT"},"app_token":{"env":"APP"},"chanel":"C"}`, "unknown field"},
	} {
		_, err := chslack.Factory(env, json.RawMessage(tt.settings))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func FuzzParseInteraction(f *testing.F) {
	p, _ := json.Marshal(press("U1", "C1", "clawops_deny", "deny|apr_1"))
	f.Add([]byte(url.Values{"payload": {string(p)}}.Encode()))
	f.Add([]byte("payload=%7B%7D"))
	f.Fuzz(func(t *testing.T, body []byte) {
		cb, err := chslack.ParseInteraction(body)
		if err == nil && cb.Type == "" {
			t.Errorf("accepted a payload without a type")
		}
	})
}
