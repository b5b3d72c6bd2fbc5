package agents

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
)

func TestCommanderReplies(t *testing.T) {
	asCommander := func(a clawops.Actor) clawops.Actor { a.Agent = clawops.Commander; return a }
	tests := []struct {
		name      string
		actor     clawops.Actor
		text      string
		want      string // exact reply, or prefix when it ends in "…"
		wantCalls []invokeCall
	}{
		{"status", alice, "/status", "2 instances: 2 ACTIVE",
			[]invokeCall{{asCommander(alice), ToolFleetStatus, `{}`}}},
		{"status tolerant", alice, "   /STATUS   ", "2 instances: 2 ACTIVE",
			[]invokeCall{{asCommander(alice), ToolFleetStatus, `{}`}}},
		{"health", alice, "/health inst-1", "inst-1 healthy",
			[]invokeCall{{asCommander(alice), ToolInstanceHealth, `{"instance":"inst-1"}`}}},
		{"logs default", alice, "/logs inst-1", "100 lines of inst-1",
			[]invokeCall{{asCommander(alice), ToolInstanceLogs, `{"instance":"inst-1"}`}}},
		{"logs n", alice, "/logs inst-2 20", "20 lines of inst-2",
			[]invokeCall{{asCommander(alice), ToolInstanceLogs, `{"instance":"inst-2","lines":20}`}}},
		{"restart", alice, "/restart inst-1", "restarted inst-1",
			[]invokeCall{{asCommander(alice), ToolRestart, `{"instance":"inst-1"}`}}},
		{"injection is data, refused by the tool", alice, `/health inst-1","x":"y`,
			"Invalid (BAD_ARGUMENTS): instance must match …",
			[]invokeCall{{asCommander(alice), ToolInstanceHealth, `{"instance":"inst-1\",\"x\":\"y"}`}}},
		{"shell metacharacters reach the tool as a string", alice, "/restart inst-1;reboot",
			"Invalid (BAD_ARGUMENTS): …",
			[]invokeCall{{asCommander(alice), ToolRestart, `{"instance":"inst-1;reboot"}`}}},
		{"unknown instance", alice, "/health inst-9", "Not found (UNKNOWN_INSTANCE): no instance inst-9",
			[]invokeCall{{asCommander(alice), ToolInstanceHealth, `{"instance":"inst-9"}`}}},
		{"internal error stays internal", alice, "/health inst-err", "Failed (INTERNAL): the request could not be completed",
			[]invokeCall{{asCommander(alice), ToolInstanceHealth, `{"instance":"inst-err"}`}}},
		{"viewer denied", vera, "/restart inst-1", "Denied (ROLE_NOT_PERMITTED): a viewer may only read",
			[]invokeCall{{asCommander(vera), ToolRestart, `{"instance":"inst-1"}`}}},
		{"teardown needs approval", alice, "/teardown inst-2",
			"Approval ap-1 requested: Tear down inst-2, risk high, expires 2026-11-23 09:30 UTC; an approver must decide",
			[]invokeCall{{asCommander(alice), ToolTeardown, `{"instance":"inst-2"}`}}},
		{"logs bad n", alice, "/logs inst-1 ten", "Invalid (BAD_ARGUMENTS): usage: /logs <instance> [n]", nil},
		{"logs no instance", alice, "/logs", "Invalid (BAD_ARGUMENTS): usage: /logs <instance> [n]", nil},
		{"restart two args", alice, "/restart a b", "Invalid (BAD_ARGUMENTS): usage: /restart <instance>", nil},
		{"unknown command", alice, "/reboot inst-1", `Unknown command (UNKNOWN_COMMAND): unknown command "/reboot". Send /help for the commands.`, nil},
		{"plain text", alice, "restart everything please", "No model is configured, so I only understand slash commands.\nCommands:…", nil},
		{"empty", alice, "   ", "Empty message. Send /help for the commands.", nil},
		{"help", alice, "/help", "Commands:\n/help — list the commands…", nil},
		{"no approvals", alice, "/approvals", "No pending approvals.", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			replies, err := e.cmd.Handle(context.Background(), tt.actor, tt.text)
			if err != nil {
				t.Fatalf("Handle(%q): %v", tt.text, err)
			}
			if len(replies) != 1 {
				t.Fatalf("Handle(%q): got %d replies %q, want 1", tt.text, len(replies), replies)
			}
			if prefix, ok := strings.CutSuffix(tt.want, "…"); ok {
				if !strings.HasPrefix(replies[0], prefix) {
					t.Errorf("reply: got %q, want prefix %q", replies[0], prefix)
				}
			} else if replies[0] != tt.want {
				t.Errorf("reply: got %q, want %q", replies[0], tt.want)
			}
			if diff := cmp.Diff(tt.wantCalls, e.gate.takeCalls()); diff != "" {
				t.Errorf("gate calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCommanderApprovalFlow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	say := func(a clawops.Actor, text string) string {
		t.Helper()
		r, err := e.cmd.Handle(ctx, a, text)
		if err != nil || len(r) != 1 {
			t.Fatalf("Handle(%s, %q): got %q, %v", a.Identity, text, r, err)
		}
		return r[0]
	}
	expect := func(got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}

	say(alice, "/teardown inst-2")
	expect(say(alice, "/approve ap-1"), "Denied (NOT_APPROVER): alice may not approve")
	expect(say(bob, "/approvals"),
		"1 pending approval(s):\n- ap-1 gf_teardown: Tear down inst-2 (risk high, requested by alice via commander, expires 2026-11-23 09:30 UTC)")
	expect(say(bob, "/approve ap-1 looks fine"), "Approval ap-1 approved and executed: Tear down inst-2: done")
	expect(say(bob, "/approve ap-1"), "Invalid (APPROVAL_ALREADY_DECIDED): already executed")
	expect(say(bob, "/approve ap-9"), "Not found (APPROVAL_NOT_FOUND): no approval ap-9")

	say(alice, "/teardown inst-1")
	expect(say(bob, "/deny ap-2 not   today"), "Approval ap-2 denied.")
	expect(say(bob, "/approvals"), "No pending approvals.")

	e.gate.mu.Lock()
	decides := e.gate.decides
	e.gate.mu.Unlock()
	if len(decides) != 5 {
		t.Fatalf("decide calls: got %d, want 5", len(decides))
	}
	for _, d := range decides {
		if d.Decider.Agent != "" {
			t.Errorf("decider %+v: got agent %q, want none (the human decides)", d.Decider, d.Decider.Agent)
		}
	}
	if got, want := decides[1], (decideCall{bob, "ap-1", true, "looks fine"}); got != want {
		t.Errorf("approve call: got %+v, want %+v", got, want)
	}
	if got, want := decides[4], (decideCall{bob, "ap-2", false, "not today"}); got != want {
		t.Errorf("deny call: got %+v, want %+v", got, want)
	}
}

func TestCommanderBadCalls(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		actor clawops.Actor
		text  string
	}{
		{"no identity", clawops.Actor{Role: clawops.RoleAdmin}, "/status"},
		{"too long", alice, "/status " + strings.Repeat("x", MaxTextBytes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := e.cmd.Handle(ctx, tt.actor, tt.text)
			if err == nil {
				t.Fatalf("got replies %q, want an error", r)
			}
			if k := clawops.KindOf(err); k != clawops.KindInvalid {
				t.Errorf("kind: got %v, want invalid", k)
			}
		})
	}
	if calls := e.gate.takeCalls(); len(calls) != 0 {
		t.Errorf("gate calls: got %v, want none", calls)
	}
	if h, _ := e.cmd.History(ctx, "web", "alice", 10); len(h) != 0 {
		t.Errorf("history: got %d messages, want none", len(h))
	}
}

func TestCommanderHistory(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.cmd.Handle(ctx, alice, "/status"); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Minute)
	if _, err := e.cmd.Handle(ctx, alice, "bad \x00 bytes \xff here"); err != nil {
		t.Fatal(err)
	}
	// Another channel for the same identity is another session.
	if _, err := e.cmd.Handle(ctx, clawops.Actor{Identity: "alice", Role: clawops.RoleOperator, Channel: "telegram"}, "/help"); err != nil {
		t.Fatal(err)
	}

	// Reopen the database file: history is persisted, not cached.
	reopened := NewHistory(openDB(t, e.dir), e.clock)
	got, err := reopened.Recent(ctx, SessionKey{Agent: clawops.Commander, Channel: "web", Identity: "alice"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Dir  Direction
		Text string
		At   time.Time
	}
	var rows []row
	for _, m := range got {
		rows = append(rows, row{m.Direction, m.Text, m.At})
	}
	want := []row{
		{In, "/status", t0},
		{Out, "2 instances: 2 ACTIVE", t0},
		{In, "bad \uFFFD bytes \uFFFD here", t0.Add(time.Minute)},
		{Out, "No model is configured, so I only understand slash commands.\n" + helpText(), t0.Add(time.Minute)},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}

	last, err := e.cmd.History(ctx, "web", "alice", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(last) != 1 || last[0].Direction != Out {
		t.Errorf("History(limit 1): got %+v, want the newest reply only", last)
	}
}

func TestHistoryBoundedRead(t *testing.T) {
	h := NewHistory(openDB(t, t.TempDir()), &fakeClock{now: t0})
	ctx := context.Background()
	key := SessionKey{Agent: clawops.Commander, Channel: "web", Identity: "alice"}
	texts := make([]string, MaxHistoryRead+30)
	for i := range texts {
		texts[i] = strings.Repeat("m", i%7+1)
	}
	if err := h.Append(ctx, key, In, texts...); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ limit, want int }{{0, DefaultHistoryRead}, {-3, DefaultHistoryRead}, {5, 5}, {10000, MaxHistoryRead}} {
		got, err := h.Recent(ctx, key, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tt.want {
			t.Errorf("Recent(limit %d): got %d messages, want %d", tt.limit, len(got), tt.want)
		}
		if len(got) > 0 && got[len(got)-1].Text != texts[len(texts)-1] {
			t.Errorf("Recent(limit %d): last is %q, want the newest %q", tt.limit, got[len(got)-1].Text, texts[len(texts)-1])
		}
	}
}

// TestSessionsSerialised holds one run of alice's session inside the gate and checks that
// a second run of the same session waits, another session does not, and a waiter whose
// context ends gives up.
func TestSessionsSerialised(t *testing.T) {
	e := newEnv(t)
	hold := make(chan struct{})
	entered := make(chan string, 8)
	e.gate.mu.Lock()
	e.gate.hold, e.gate.entered = hold, entered
	e.gate.mu.Unlock()
	ctx := context.Background()
	timeout := time.After(20 * time.Second)
	waitEntered := func(want string) {
		t.Helper()
		select {
		case got := <-entered:
			if got != want {
				t.Fatalf("entered the gate: got %s, want %s", got, want)
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s to enter the gate", want)
		}
	}

	type result struct {
		replies []string
		err     error
	}
	run := func(a clawops.Actor, ctx context.Context) chan result {
		ch := make(chan result, 1)
		go func() {
			r, err := e.cmd.Handle(ctx, a, "/status")
			ch <- result{r, err}
		}()
		return ch
	}

	first := run(alice, ctx)
	waitEntered("alice")
	second := run(alice, ctx)
	aliceKey := SessionKey{Agent: clawops.Commander, Channel: "web", Identity: "alice"}
	// Poll until the second run waits on alice's session.
	for {
		e.cmd.sessions.mu.Lock()
		l := e.cmd.sessions.m[aliceKey]
		refs := 0
		if l != nil {
			refs = l.refs
		}
		e.cmd.sessions.mu.Unlock()
		if refs == 2 {
			break
		}
		select {
		case <-timeout:
			t.Fatal("timed out waiting for the second run to queue")
		case <-time.After(time.Millisecond):
		}
	}
	// Another session is not blocked by alice's.
	other := run(bob, ctx)
	waitEntered("bob")

	// A waiter whose context ends gives up without running.
	cctx, cancel := context.WithCancel(ctx)
	third := run(alice, cctx)
	cancel()
	select {
	case r := <-third:
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("cancelled waiter: got %v, want context.Canceled", r.err)
		}
	case <-timeout:
		t.Fatal("cancelled waiter did not return")
	}
	select {
	case who := <-entered:
		t.Fatalf("%s entered the gate while alice's session was held", who)
	default:
	}

	close(hold)
	for _, ch := range []chan result{first, second, other} {
		select {
		case r := <-ch:
			if r.err != nil || len(r.replies) != 1 {
				t.Errorf("run: got %q, %v", r.replies, r.err)
			}
		case <-timeout:
			t.Fatal("run did not finish")
		}
	}
	waitEntered("alice") // the second run, after the first released the session
	if n := e.cmd.sessions.active(); n != 0 {
		t.Errorf("session locks after all runs: got %d, want 0", n)
	}
}

func TestNewCommanderOptions(t *testing.T) {
	if _, err := NewCommander(CommanderOptions{DB: openDB(t, t.TempDir())}); err == nil {
		t.Error("no gate: got nil error")
	}
	if _, err := NewCommander(CommanderOptions{Gate: newFakeGate(&fakeClock{now: t0})}); err == nil {
		t.Error("no DB: got nil error")
	}
}
