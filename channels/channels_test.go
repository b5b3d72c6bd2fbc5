package channels_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/channels/web"
	"github.com/gatewayforge/clawops/governance"
)

var update = flag.Bool("update", false, "rewrite golden files")

type sent struct{ To, Text string }

// recorder is a Channel that records what it sends.
type recorder struct {
	name string
	mu   sync.Mutex
	sent []sent
}

func (r *recorder) Name() string { return r.name }
func (r *recorder) Send(_ context.Context, to, text string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, sent{to, text})
	return nil
}
func (r *recorder) messages() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sent(nil), r.sent...)
}

// poster is a recorder that also takes cards; gate, when set, holds each PostCard until
// it is closed.
type poster struct {
	recorder
	gate  chan struct{}
	cmu   sync.Mutex
	cards []governance.Card
}

func (p *poster) PostCard(ctx context.Context, c governance.Card) error {
	if p.gate != nil {
		select {
		case <-p.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.cmu.Lock()
	defer p.cmu.Unlock()
	p.cards = append(p.cards, c)
	return nil
}

func (p *poster) posted() []governance.Card {
	p.cmu.Lock()
	defer p.cmu.Unlock()
	return append([]governance.Card(nil), p.cards...)
}

func TestDirectory(t *testing.T) {
	good := []channels.Allow{
		{Channel: "telegram", Sender: "1001", Identity: "alice", Role: clawops.RoleOperator},
		{Channel: "web", Sender: "alice", Identity: "alice", Role: clawops.RoleOperator},
		{Channel: "telegram", Sender: "2002", Identity: "bob", Role: clawops.RoleApprover},
	}
	d, err := channels.NewDirectory(good)
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Resolve("telegram", "2002")
	if err != nil {
		t.Fatal(err)
	}
	if want := (clawops.Actor{Identity: "bob", Role: clawops.RoleApprover, Channel: "telegram"}); got != want {
		t.Errorf("Resolve: got %+v, want %+v", got, want)
	}
	for _, tt := range []struct{ channel, sender string }{{"telegram", "9999"}, {"slack", "1001"}, {"", ""}, {"web", "ALICE"}} {
		_, err := d.Resolve(tt.channel, tt.sender)
		if got := clawops.ReasonOf(err); got != clawops.ReasonUnknownSender {
			t.Errorf("Resolve(%q, %q): got reason %q, want UNKNOWN_SENDER", tt.channel, tt.sender, got)
		}
	}

	bad := []struct {
		name  string
		entry channels.Allow
		want  string
	}{
		{"no channel", channels.Allow{Sender: "1", Identity: "a", Role: clawops.RoleAdmin}, "channel is empty"},
		{"no sender", channels.Allow{Channel: "web", Identity: "a", Role: clawops.RoleAdmin}, "sender is empty"},
		{"no identity", channels.Allow{Channel: "web", Sender: "1", Role: clawops.RoleAdmin}, "identity is empty"},
		{"bad role", channels.Allow{Channel: "web", Sender: "1", Identity: "a", Role: "root"}, `role "root"`},
		{"duplicate", good[0], "listed twice"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := channels.NewDirectory(append(good[:1:1], tt.entry))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestRegistry(t *testing.T) {
	r := channels.NewRegistry()
	r.Register(web.Type, web.Factory)
	r.Register("channels.rec", func(env channels.Env, raw json.RawMessage) (channels.Channel, error) {
		var s struct {
			Name string `json:"name"`
		}
		if err := channels.DecodeSettings(raw, &s); err != nil {
			return nil, err
		}
		if env.Logger == nil || env.Clock == nil {
			return nil, errors.New("env not filled in")
		}
		return &recorder{name: s.Name}, nil
	})
	if got, want := r.Types(), []string{"channels.rec", "channels.web"}; !cmp.Equal(got, want) {
		t.Errorf("Types: got %v, want %v", got, want)
	}

	chans, err := r.Build(channels.Env{}, []channels.Spec{
		{Type: "channels.web"},
		{Type: "channels.rec", Settings: json.RawMessage(`{"name":"telegram"}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(chans) != 2 || chans[0].Name() != "web" || chans[1].Name() != "telegram" {
		t.Fatalf("Build: got %v", chans)
	}

	for _, tt := range []struct {
		name  string
		specs []channels.Spec
		want  string
	}{
		{"unknown type", []channels.Spec{{Type: "channels.irc"}}, `unknown type "channels.irc" (known: channels.rec, channels.web)`},
		{"unknown setting", []channels.Spec{{Type: "channels.web", Settings: json.RawMessage(`{"capacty":5}`)}}, "unknown field"},
		{"trailing data", []channels.Spec{{Type: "channels.web", Settings: json.RawMessage(`{} {}`)}}, "unexpected data"},
		{"bad value", []channels.Spec{{Type: "channels.web", Settings: json.RawMessage(`{"capacity":-1}`)}}, "capacity"},
		{"duplicate name", []channels.Spec{{Type: "channels.web"}, {Type: "channels.rec", Settings: json.RawMessage(`{"name":"web"}`)}}, `"web" is already configured`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Build(channels.Env{}, tt.specs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}

	for _, tt := range []struct {
		name string
		reg  func()
	}{
		{"duplicate", func() { r.Register(web.Type, web.Factory) }},
		{"no namespace", func() { r.Register("web2", web.Factory) }},
		{"bare namespace", func() { r.Register("channels.", web.Factory) }},
		{"nil factory", func() { r.Register("channels.nil", nil) }},
	} {
		t.Run("panic "+tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("got no panic, want one")
				}
			}()
			tt.reg()
		})
	}
}

// handlerFunc adapts a function to channels.Handler.
type handlerFunc func(ctx context.Context, a clawops.Actor, text string) ([]string, error)

func (f handlerFunc) Handle(ctx context.Context, a clawops.Actor, text string) ([]string, error) {
	return f(ctx, a, text)
}

func TestDispatcher(t *testing.T) {
	dir, err := channels.NewDirectory([]channels.Allow{{Channel: "telegram", Sender: "1001", Identity: "alice", Role: clawops.RoleOperator}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []clawops.Actor
	h := handlerFunc(func(_ context.Context, a clawops.Actor, text string) ([]string, error) {
		mu.Lock()
		seen = append(seen, a)
		mu.Unlock()
		if text == "boom" {
			return nil, errors.New("database on fire")
		}
		return []string{"one", "two: " + text}, nil
	})
	tg := &recorder{name: "telegram"}
	d := channels.NewDispatcher(dir, h, nil)
	d.Attach(tg)
	ctx := context.Background()

	if err := d.Deliver(ctx, channels.Inbound{Channel: "telegram", Chat: "c1", Sender: "1001", Text: "/status"}); err != nil {
		t.Fatal(err)
	}
	err = d.Deliver(ctx, channels.Inbound{Channel: "telegram", Chat: "c1", Sender: "6666", Text: "/teardown x"})
	if got := clawops.ReasonOf(err); got != clawops.ReasonUnknownSender {
		t.Errorf("unknown sender: got %v, want UNKNOWN_SENDER", err)
	}
	for _, in := range []channels.Inbound{{Chat: "c1", Sender: "1001"}, {Channel: "telegram", Sender: "1001"}, {Channel: "telegram", Chat: "c1"}} {
		if err := d.Deliver(ctx, in); clawops.ReasonOf(err) != clawops.ReasonMalformedRequest {
			t.Errorf("Deliver(%+v): got %v, want MALFORMED_REQUEST", in, err)
		}
	}
	if err := d.Deliver(ctx, channels.Inbound{Channel: "telegram", Chat: "c1", Sender: "1001", Text: "boom"}); err != nil {
		t.Fatal(err)
	}

	want := []sent{{"c1", "one"}, {"c1", "two: /status"}, {"c1", "Sorry, that failed (INTERNAL)."}}
	if diff := cmp.Diff(want, tg.messages()); diff != "" {
		t.Errorf("sent (-want +got):\n%s", diff)
	}
	wantActor := clawops.Actor{Identity: "alice", Role: clawops.RoleOperator, Channel: "telegram"}
	if len(seen) != 2 || seen[0] != wantActor {
		t.Errorf("handler saw %+v, want twice %+v (never the unknown sender)", seen, wantActor)
	}
}

func testApproval() governance.Approval {
	decided := time.Date(2026, 11, 23, 9, 5, 0, 0, time.UTC)
	return governance.Approval{
		ID:        "ap-7",
		Tool:      "gf_teardown",
		Requester: clawops.Actor{Identity: "alice", Role: clawops.RoleOperator, Agent: clawops.Commander},
		Plan: governance.Plan{
			Tool: "gf_teardown", Summary: "Tear down inst-2 (standby of acct-9)", UsersAffected: 1,
			ProviderDelete: true, ExpectedDuration: 2 * time.Minute,
			Effects: []governance.Effect{{Kind: "provider.delete", Target: "hetzner/123"}, {Kind: "db.update", Target: "inst-2", Detail: "state TERMINATED"}},
		},
		PlanHash:  "9f2c",
		Risk:      clawops.RiskHigh,
		State:     governance.ApprovalExecuted,
		CreatedAt: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC),
		ExpiresAt: time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC),
		DecidedBy: "bob",
		DecidedAt: &decided,
	}
}

func TestCardForGolden(t *testing.T) {
	got, err := json.MarshalIndent(channels.CardFor(testApproval()), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "card.golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("card (-golden +got):\n%s", diff)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestNotifier(t *testing.T) {
	slack := &poster{recorder: recorder{name: "slack"}, gate: make(chan struct{})}
	console := &poster{recorder: recorder{name: "web"}}
	plain := &recorder{name: "whatsapp"}
	n := channels.NewNotifier(channels.NotifierOptions{Channels: []channels.Channel{plain, slack, console}, QueueSize: 3})

	a := testApproval()
	states := []governance.ApprovalState{governance.ApprovalPending, governance.ApprovalApproved, governance.ApprovalExecuted}
	// Before Run and while slack is stuck, ApprovalChanged must not block.
	for _, s := range states {
		a.State = s
		n.ApprovalChanged(context.Background(), a)
	}
	a.State = governance.ApprovalFailed
	n.ApprovalChanged(context.Background(), a) // queues are full: dropped

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()

	waitFor(t, "console cards", func() bool { return len(console.posted()) == 3 })
	if len(slack.posted()) != 0 {
		t.Errorf("slack got cards while its platform was stuck")
	}
	close(slack.gate)
	waitFor(t, "slack cards", func() bool { return len(slack.posted()) == 3 })
	for _, p := range []*poster{slack, console} {
		var got []governance.ApprovalState
		for _, c := range p.posted() {
			got = append(got, c.State)
		}
		if diff := cmp.Diff(states, got); diff != "" {
			t.Errorf("%s card states in order (-want +got):\n%s", p.name, diff)
		}
	}
	if len(plain.messages()) != 0 {
		t.Errorf("a channel without cards got messages: %v", plain.messages())
	}
	if err := n.Run(ctx); err == nil {
		t.Error("second Run: got nil error, want one")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: got %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestInboundToWebConsole wires the pieces the way main does: a registry builds the web
// console, a dispatcher routes inbound messages from a known sender to a handler and the
// replies into the console's outbox, and the notifier posts approval cards to it.
func TestInboundToWebConsole(t *testing.T) {
	reg := channels.NewRegistry()
	reg.Register(web.Type, web.Factory)
	dir, err := channels.NewDirectory([]channels.Allow{{Channel: "web", Sender: "alice", Identity: "alice", Role: clawops.RoleOperator}})
	if err != nil {
		t.Fatal(err)
	}
	h := handlerFunc(func(_ context.Context, a clawops.Actor, text string) ([]string, error) {
		return []string{a.Identity + " said " + text}, nil
	})
	d := channels.NewDispatcher(dir, h, nil)
	chans, err := reg.Build(channels.Env{Deliver: d.Deliver}, []channels.Spec{{Type: web.Type}})
	if err != nil {
		t.Fatal(err)
	}
	console := chans[0].(*web.Console)
	d.Attach(console)
	n := channels.NewNotifier(channels.NotifierOptions{Channels: chans})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)

	if err := d.Deliver(ctx, channels.Inbound{Channel: "web", Chat: "alice", Sender: "alice", Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	n.ApprovalChanged(ctx, testApproval())
	var b web.Batch
	waitFor(t, "two console messages", func() bool { b = console.Messages("alice", 0, 10); return len(b.Messages) == 2 })
	if got := b.Messages[0]; got.Kind != web.KindText || got.Text != "alice said hi" {
		t.Errorf("first message: got %+v, want the reply", got)
	}
	if got := b.Messages[1]; got.Kind != web.KindCard || got.Card == nil || got.Card.ApprovalID != "ap-7" {
		t.Errorf("second message: got %+v, want the ap-7 card", got)
	}
	// Another identity sees the card (broadcast) but not alice's reply.
	if got := console.Messages("bob", 0, 10).Messages; len(got) != 1 || got[0].Kind != web.KindCard {
		t.Errorf("bob's messages: got %+v, want only the card", got)
	}
}
