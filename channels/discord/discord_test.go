package discord_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/channels/channelstest"
	"github.com/gatewayforge/clawops/channels/discord"
	"github.com/gatewayforge/clawops/governance"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	token            = "test-discord-bot-token"
	approvalsChannel = "500000000000000001"
	opsChannel       = "500000000000000002"
	otherChannel     = "500000000000000009"
	dmChannel        = "600000000000000001"
	guild            = "700000000000000001"
	alice            = "100000000000000001"
	bob              = "200000000000000002"
	carol            = "300000000000000003"
	stranger         = "999999999999999999"
)

var people = channelstest.People{Operator: alice, Approver: bob, Viewer: carol}

type rig struct {
	fx *channelstest.Fixture
	dc *fakeDiscord
	a  *discord.Adapter
}

func start(t *testing.T) *rig {
	t.Helper()
	r := &rig{fx: channelstest.New(t, "discord", people), dc: newFakeDiscord(t, token)}
	d := channels.NewDispatcher(r.fx.Directory, channelstest.Echo{}, r.fx.Logger)
	d.SetAuditor(r.fx.Audit, nil)
	a, err := discord.New(discord.Options{Token: token, HTTPClient: r.dc.client(), ApprovalsChannel: approvalsChannel,
		OperatorChannel: opsChannel, Deliver: d.Deliver, Approvals: r.fx.Approvals(), Logger: r.fx.Logger,
		Outbox: channels.OutboxOptions{Sleep: (&channelstest.FakeSleep{}).Sleep}, DB: r.fx.DB})
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
	t.Cleanup(func() { cancel(); wg.Wait() })
	return r
}

func (r *rig) sentTo(channel string) []map[string]any {
	var out []map[string]any
	for _, c := range r.dc.callsTo(http.MethodPost, "/channels/"+channel+"/messages") {
		out = append(out, c.Body)
	}
	return out
}

func TestMessagesInRepliesOut(t *testing.T) {
	r := start(t)
	r.dc.dispatch("MESSAGE_CREATE", message("1", dmChannel, "", alice, "fleet status?"))
	channelstest.Eventually(t, "the DM reply", func() bool { return len(r.sentTo(dmChannel)) == 1 })
	got := r.sentTo(dmChannel)[0]
	if got["content"] != "echo alice: fleet status?" {
		t.Errorf("reply: got %v", got["content"])
	}
	if am, _ := got["allowed_mentions"].(map[string]any); am == nil || len(am["parse"].([]any)) != 0 {
		t.Errorf("reply allowed_mentions: got %v, want parse [] (no pings)", got["allowed_mentions"])
	}
	// In a guild: the operator channel always, other channels only when the bot is mentioned.
	r.dc.dispatch("MESSAGE_CREATE", message("2", otherChannel, guild, alice, "lunch?"))
	r.dc.dispatch("MESSAGE_CREATE", message("3", otherChannel, guild, alice, "<@"+botID+"> costs this month?", botID))
	r.dc.dispatch("MESSAGE_CREATE", message("4", opsChannel, guild, alice, "restart i-7"))
	channelstest.Eventually(t, "the guild replies", func() bool { return len(r.sentTo(otherChannel)) == 1 && len(r.sentTo(opsChannel)) == 1 })
	if got := r.sentTo(otherChannel)[0]["content"]; got != "echo alice: costs this month?" {
		t.Errorf("mention reply: got %q", got)
	}
	// The bot's own messages and other bots are never answered.
	own := message("5", dmChannel, "", botID, "echo")
	own["author"].(map[string]any)["bot"] = true
	r.dc.dispatch("MESSAGE_CREATE", own)
	r.dc.dispatch("MESSAGE_CREATE", message("6", dmChannel, "", alice, "last"))
	channelstest.Eventually(t, "the last reply", func() bool { return len(r.sentTo(dmChannel)) == 2 })
}

func TestUnknownSenderIgnoredAndAudited(t *testing.T) {
	r := start(t)
	r.dc.dispatch("MESSAGE_CREATE", message("1", dmChannel, "", stranger, "hi"))
	channelstest.Eventually(t, "the audit row", func() bool {
		return r.fx.AuditHas(t, governance.EventViolation, clawops.ReasonUnknownSender, "discord:"+stranger)
	})
	if n := len(r.sentTo(dmChannel)); n != 0 {
		t.Errorf("answered an unknown sender %d times", n)
	}
}

// buttonID returns the custom_id of the button labelled label on approval id's card.
func (r *rig) buttonID(t *testing.T, id, label string) string {
	t.Helper()
	var out string
	channelstest.Eventually(t, "card "+id, func() bool {
		for _, m := range r.sentTo(approvalsChannel) {
			b, _ := json.Marshal(m)
			if !strings.Contains(string(b), id) {
				continue
			}
			for _, row := range m["components"].([]any) {
				for _, c := range row.(map[string]any)["components"].([]any) {
					if btn := c.(map[string]any); btn["label"] == label {
						out = btn["custom_id"].(string)
						return true
					}
				}
			}
		}
		return false
	})
	return out
}

func (r *rig) cardEdits(substr string) []string {
	var out []string
	for _, c := range r.dc.callsTo(http.MethodPatch, "/channels/"+approvalsChannel+"/messages/") {
		b, _ := json.Marshal(c.Body)
		if strings.Contains(string(b), substr) {
			out = append(out, string(b))
		}
	}
	return out
}

func (r *rig) followups() []string {
	var out []string
	for _, c := range r.dc.callsTo(http.MethodPost, "/webhooks/") {
		out = append(out, fmt.Sprintf("%v|%v", c.Body["content"], c.Body["flags"]))
	}
	return out
}

func TestPressApprovesExactlyThatPlan(t *testing.T) {
	r := start(t)
	first := r.fx.Request(t, "i-001", "large")
	second := r.fx.Request(t, "i-002", "xlarge")
	r.buttonID(t, first, "Approve once")
	r.dc.dispatch("INTERACTION_CREATE", interaction("11", bob, r.buttonID(t, second, "Approve once")))
	channelstest.Eventually(t, "the card to show the decision", func() bool {
		for _, e := range r.cardEdits("Resize i-002") {
			if strings.Contains(e, "Approved by bob at ") && strings.Contains(e, "done") && strings.Contains(e, `"components":[]`) {
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
	acks := r.dc.callsTo(http.MethodPost, "/interactions/11/itok-11/callback")
	if len(acks) != 1 || acks[0].Body["type"] != float64(6) {
		t.Errorf("interaction response: got %v, want one deferred update (type 6)", acks)
	}
	channelstest.Eventually(t, "the private answer", func() bool { return len(r.followups()) == 1 })
	if f := r.followups()[0]; !strings.HasPrefix(f, "Approved by bob") || !strings.HasSuffix(f, "|64") {
		t.Errorf("followup: got %q, want an ephemeral (flags 64) Approved by bob", f)
	}
}

func TestPressRefusals(t *testing.T) {
	r := start(t) // one gateway session for all cases: each has its own approval
	tests := []struct {
		name, user, button, notice string
		audit                      clawops.ReasonCode
		actor                      string
	}{
		{"viewer", carol, "Approve once", "carol may not decide approvals (NOT_APPROVER)", clawops.ReasonNotApprover, "carol"},
		{"scope", bob, "Approve for scope", "(NOT_IMPLEMENTED)", "", ""},
		{"stranger", stranger, "Deny", "", clawops.ReasonUnknownSender, "discord:" + stranger},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := r.fx.Request(t, fmt.Sprintf("i-%03d", i+1), "large")
			before := len(r.followups())
			iid := fmt.Sprint(20 + i)
			r.dc.dispatch("INTERACTION_CREATE", interaction(iid, tt.user, r.buttonID(t, id, tt.button)))
			channelstest.Eventually(t, "the ack", func() bool {
				return len(r.dc.callsTo(http.MethodPost, "/interactions/"+iid+"/")) == 1
			})
			if tt.notice != "" {
				channelstest.Eventually(t, "the notice", func() bool {
					return len(r.cardEdits(tt.notice)) > 0 && len(r.followups()) == before+1
				})
			}
			if tt.audit != "" {
				channelstest.Eventually(t, "the audit row", func() bool { return r.fx.AuditHas(t, governance.EventViolation, tt.audit, tt.actor) })
			}
			if got := r.fx.State(t, id); got != governance.ApprovalPending {
				t.Errorf("approval: got %s, want pending", got)
			}
		})
	}
	if n := len(r.fx.Tool.Applied()); n != 0 {
		t.Errorf("applied %d plans, want none", n)
	}
	// A button that is not ours is answered and decides nothing.
	r.dc.dispatch("INTERACTION_CREATE", interaction("30", bob, "once|../etc"))
	channelstest.Eventually(t, "the unknown-button answer", func() bool {
		for _, f := range r.followups() {
			if strings.HasPrefix(f, "Unknown button.") {
				return true
			}
		}
		return false
	})
}

func TestCardGolden(t *testing.T) {
	dc := newFakeDiscord(t, token)
	a, err := discord.New(discord.Options{Token: token, HTTPClient: dc.client(), ApprovalsChannel: approvalsChannel,
		Outbox: channels.OutboxOptions{Sleep: (&channelstest.FakeSleep{}).Sleep}})
	if err != nil {
		t.Fatal(err)
	}
	card := governance.Card{
		ApprovalID: "apr_0123456789abcdef0123456789abcdef", Title: "alice via commander asks to run gf_teardown",
		Summary: "Tear down inst-2 (standby) of acct_9 **now**", Actions: []string{"provider.delete hetzner/123", "db.update inst-2: state TERMINATED"},
		Risk: clawops.RiskHigh, RiskFlags: []string{"risk:high", "provider_delete", "irreversible"}, UsersAffected: 1,
		CostDeltaMonthlyUSD: -4.51, ExpectedDuration: 45 * time.Second, PlanHash: "9f2c0a7be41d5c33", Requester: "alice via commander",
		ExpiresAt: time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC), State: governance.ApprovalPending,
	}
	ctx := context.Background()
	if err := a.PostCard(ctx, card); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 23, 9, 5, 0, 0, time.UTC)
	card.State, card.DecidedBy, card.DecidedAt = governance.ApprovalExecuted, "bob", &at
	if err := a.PostCard(ctx, card); err != nil {
		t.Fatal(err)
	}
	posts, edits := dc.callsTo(http.MethodPost, "/channels/"), dc.callsTo(http.MethodPatch, "/channels/")
	if len(posts) != 1 || len(edits) != 1 {
		t.Fatalf("got %d posts and %d edits, want 1 and 1", len(posts), len(edits))
	}
	channelstest.Golden(t, "testdata/card_pending.golden.json", posts[0].Body, *update)
	channelstest.Golden(t, "testdata/card_executed.golden.json", edits[0].Body, *update)
}

func TestSendChunksRetriesAndCheck(t *testing.T) {
	dc := newFakeDiscord(t, token)
	sleep := &channelstest.FakeSleep{}
	a, err := discord.New(discord.Options{Token: token, HTTPClient: dc.client(), Outbox: channels.OutboxOptions{Sleep: sleep.Sleep}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	words := strings.Repeat("wörd ", 1500) // one 7500-character line: split at spaces
	dc.fail(http.StatusInternalServerError)
	if err := a.Send(ctx, dmChannel, words); err != nil {
		t.Fatal(err)
	}
	var joined strings.Builder
	posts := dc.callsTo(http.MethodPost, "/channels/"+dmChannel+"/messages")
	for _, p := range posts[1:] {
		s := p.Body["content"].(string)
		if n := channels.TextLen(s); n > channels.LimitDiscord {
			t.Errorf("a part has %d characters, over %d", n, channels.LimitDiscord)
		}
		joined.WriteString(s)
	}
	if joined.String() != words || len(posts) != 5 {
		t.Errorf("got %d posts joining to %d bytes, want 1 refused + 4 joining to the %d-byte text", len(posts), joined.Len(), len(words))
	}
	dc.fail(http.StatusForbidden)
	if err := a.Send(ctx, dmChannel, "x"); err == nil {
		t.Error("403: got nil, want an error")
	}
	for _, bad := range []string{"", "abc", "12345678901234567890123"} {
		if err := a.Send(ctx, bad, "x"); clawops.ReasonOf(err) != clawops.ReasonMalformedRequest {
			t.Errorf("Send to %q: got %v, want MALFORMED_REQUEST", bad, err)
		}
	}
	ref, err := a.Post(ctx, dmChannel, "provisioning 1/3")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Edit(ctx, dmChannel, ref, "provisioning 3/3"); err != nil {
		t.Fatal(err)
	}
	if e := dc.callsTo(http.MethodPatch, "/channels/"+dmChannel+"/messages/"+ref); len(e) != 1 || e[0].Body["content"] != "provisioning 3/3" {
		t.Errorf("edit: got %v", e)
	}
	if err := a.Check(ctx); err != nil {
		t.Errorf("Check: %v", err)
	}
	wrong, _ := discord.New(discord.Options{Token: "wrong-token", HTTPClient: dc.client()})
	if err := wrong.Check(ctx); err == nil || strings.Contains(err.Error(), "wrong-token") {
		t.Errorf("Check with a wrong token: got %v, want an error without the token", err)
	}
}

func TestFactory(t *testing.T) {
	env := channels.Env{LookupEnv: func(k string) (string, bool) { return token, k == "DISCORD_TOKEN" }}
	if _, err := discord.Factory(env, json.RawMessage(`{"token":{"env":"DISCORD_TOKEN"},"approvals_channel":"1"}`)); err != nil {
		t.Errorf("good settings: %v", err)
	}
	for _, tt := range []struct{ name, settings, want string }{
		{"inline token", `{"token":"abc"}`, "never written inline"},
		{"missing env", `{"token":{"env":"NOPE"}}`, "NOPE is not set"},
		{"unknown key", `{"token":{"env":"DISCORD_TOKEN"},"guild":"1"}`, "unknown field"},
		{"bad outbox", `{"token":{"env":"DISCORD_TOKEN"},"outbox":{"max_attempts":99}}`, "max_attempts"},
	} {
		_, err := discord.Factory(env, json.RawMessage(tt.settings))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}
