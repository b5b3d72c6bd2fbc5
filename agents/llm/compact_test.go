package llm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	openai "github.com/sashabaranov/go-openai"
)

func sys(s string) Message  { return Message{Role: RoleSystem, Content: s} }
func usr(s string) Message  { return Message{Role: RoleUser, Content: s} }
func asst(s string) Message { return Message{Role: RoleAssistant, Content: s} }
func calls(ids ...string) Message {
	m := Message{Role: RoleAssistant}
	for _, id := range ids {
		m.ToolCalls = append(m.ToolCalls, ToolCall{ID: id, Name: "gf_" + id, Arguments: `{"instance":"demo1-pri"}`})
	}
	return m
}
func result(id, s string) Message { return Message{Role: RoleTool, ToolCallID: id, Content: s} }

func words(n int) string { return strings.TrimSpace(strings.Repeat("word ", n)) }

// checkCompact asserts the invariants Compact documents.
func checkCompact(t *testing.T, in, out []Message, budget int) {
	t.Helper()
	h := 0
	for h < len(in) && in[h].Role == RoleSystem && !IsSummary(in[h]) {
		h++
	}
	if len(out) < h || !slices.EqualFunc(in[:h], out[:h], msgEqual) {
		t.Fatalf("system prompt not kept as is")
	}
	if EstimateMessages(in) <= budget {
		if !slices.EqualFunc(in, out, msgEqual) {
			t.Fatalf("under budget: messages changed")
		}
		return
	}
	summaries := 0
	for _, m := range out {
		if IsSummary(m) {
			summaries++
		}
	}
	dropped := len(out) != len(in)
	if dropped {
		if summaries != 1 || !IsSummary(out[h]) {
			t.Fatalf("want exactly one summary right after the system prompt, got %d (out %v)", summaries, roles(out))
		}
		tail := out[h+1:]
		if len(tail) == 0 || !slices.EqualFunc(in[len(in)-len(tail):], tail, msgEqual) {
			t.Fatalf("kept messages are not an intact suffix of the input")
		}
		if tail[0].Role == RoleTool && len(in)-len(tail) != h {
			t.Fatalf("kept tail starts with a tool result split from its call")
		}
	}
	// Every tool result follows its call; every call whose result existed keeps it.
	had := map[string]bool{}
	for _, m := range in {
		if m.Role == RoleTool {
			had[m.ToolCallID] = true
		}
	}
	open := map[string]bool{}
	for _, m := range out {
		for _, tc := range m.ToolCalls {
			open[tc.ID] = true
		}
		if m.Role == RoleTool {
			if !open[m.ToolCallID] && !(len(in) > h && in[h].Role == RoleTool && in[h].ToolCallID == m.ToolCallID) {
				t.Fatalf("tool result %s kept without its call", m.ToolCallID)
			}
			delete(open, m.ToolCallID)
		}
	}
	for id := range open {
		if had[id] {
			t.Fatalf("call %s kept without its result", id)
		}
	}
}

func msgEqual(a, b Message) bool { return cmp.Equal(a, b) }

func roles(ms []Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(m.Role))
	}
	return out
}

func TestCompactInvariants(t *testing.T) {
	long := words(60) // ~75 tokens
	chat := []Message{sys("You are Commander."), sys("Skills: clawops.md")}
	for i := range 10 {
		chat = append(chat, usr(fmt.Sprintf("question %d %s", i, long)), asst(fmt.Sprintf("answer %d %s", i, long)))
	}
	tools := []Message{sys("You are Guardian."), usr("sweep " + long)}
	for i := range 6 {
		a, b, c := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i), fmt.Sprintf("c%d", i)
		tools = append(tools, calls(a, b, c), result(a, long), result(b, long), result(c, long))
	}
	tools = append(tools, asst("all healthy"))
	bigLast := []Message{sys("s"), usr("one"), asst("two"), usr(words(400))}
	orphan := []Message{sys("s"), result("x", long), usr(long), asst(long), usr(long)}

	tests := []struct {
		name      string
		in        []Message
		budget    int
		wantFit   bool // result must fit budget
		wantSame  bool
		wantFirst Role // role of the first kept message after the summary
	}{
		{"under budget unchanged", chat, EstimateMessages(chat), true, true, ""},
		{"chat halves", chat, EstimateMessages(chat) / 2, true, false, ""},
		{"chat tight", chat, 300, true, false, ""},
		{"tool rounds", tools, EstimateMessages(tools) / 2, true, false, ""},
		{"tool rounds tight", tools, 400, true, false, ""},
		{"tool rounds very tight", tools, 60, false, false, RoleAssistant},
		{"last message alone too big", bigLast, 100, false, false, RoleUser},
		{"zero budget", chat, 0, false, false, RoleAssistant},
		{"orphan tool result first", orphan, 150, true, false, ""},
		{"one exchange only", []Message{sys("s"), usr(words(400))}, 10, false, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			out, err := Compact(context.Background(), in, tt.budget, nil)
			if err != nil {
				t.Fatalf("Compact: %v", err)
			}
			if !slices.EqualFunc(in, tt.in, msgEqual) {
				t.Fatalf("input modified")
			}
			checkCompact(t, in, out, tt.budget)
			if got := EstimateMessages(out); tt.wantFit && got > tt.budget {
				t.Errorf("size: got %d tokens, want <= %d", got, tt.budget)
			}
			if same := slices.EqualFunc(in, out, msgEqual); same != tt.wantSame {
				t.Errorf("unchanged: got %v, want %v", same, tt.wantSame)
			}
			if tt.wantFirst != "" {
				i := slices.IndexFunc(out, IsSummary)
				if got := out[i+1].Role; got != tt.wantFirst {
					t.Errorf("first kept: got %s, want %s", got, tt.wantFirst)
				}
			}
			again, _ := Compact(context.Background(), in, tt.budget, nil)
			if !slices.EqualFunc(out, again, msgEqual) {
				t.Errorf("not deterministic")
			}
		})
	}
}

func TestCompactNeverSplitsToolRound(t *testing.T) {
	// The budget boundary falls inside the three results of the last round: the whole
	// round goes (or stays), never part of it.
	in := []Message{sys("s"), usr("go"), calls("x", "y", "z"),
		result("x", words(40)), result("y", words(40)), result("z", words(40)), asst("done")}
	for budget := 0; budget <= EstimateMessages(in); budget += 5 {
		out, err := Compact(context.Background(), in, budget, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkCompact(t, in, out, budget)
	}
}

func TestCompactFoldsEarlierSummary(t *testing.T) {
	in := []Message{sys("You are Commander.")}
	for i := range 8 {
		in = append(in, usr(fmt.Sprintf("Q%d please check instance demo%d-pri now", i, i)), asst(fmt.Sprintf("A%d done", i)))
	}
	first, err := Compact(context.Background(), in, 120, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkCompact(t, in, first, 120)
	more := append(slices.Clone(first), usr("Q8 "+words(30)), asst("A8 "+words(30)), usr("Q9"), asst("A9"))
	second, err := Compact(context.Background(), more, 120, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkCompact(t, more, second, 120)
	if n := len(slices.DeleteFunc(slices.Clone(second), func(m Message) bool { return !IsSummary(m) })); n != 1 {
		t.Fatalf("summaries: got %d, want 1", n)
	}
	if s := second[1].Content; !strings.Contains(s, "Q8") {
		t.Errorf("second summary lost the newly dropped turn: %q", s)
	}
	if got, want := second[len(second)-1].Content, "A9"; got != want {
		t.Errorf("last message: got %q, want %q", got, want)
	}
}

func TestDigestCarriesEarlierSummary(t *testing.T) {
	prev := Message{Role: RoleSystem, Content: SummaryPrefix + "\n2 earlier messages, oldest first:\n- user: Q0\n- assistant: A0"}
	got, err := Digest(context.Background(), []Message{prev, usr("Q1"), asst("A1")}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	want := "3 earlier messages, oldest first:\n- user: Q0\n- assistant: A0\n- user: Q1\n- assistant: A1"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDigest(t *testing.T) {
	dropped := []Message{
		usr("Provision 20 new standard-tier accounts for COMPANION beta users. Use EU regions, Hetzner primary."),
		{Role: RoleAssistant, Content: "Checking the fleet.", ToolCalls: []ToolCall{{ID: "c1", Name: "gf_fleet_status"}, {ID: "c2", Name: "gf_cost_report"}}},
		result("c1", `{"active": 847}`),
		{Role: RoleTool, ToolCallID: "c2", Name: "gf_cost_report", Content: ""},
	}
	got, err := Digest(context.Background(), dropped, 1000)
	if err != nil {
		t.Fatal(err)
	}
	want := "4 earlier messages, oldest first:\n" +
		"- user: Provision 20 new standard-tier accounts for COMPANION beta users. Use …\n" +
		"- assistant: Checking the fleet.\n" +
		"- assistant called gf_fleet_status, gf_cost_report\n" +
		"- tool gf_fleet_status: {\"active\": 847}\n" +
		"- tool gf_cost_report: (empty)"
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("digest (-want +got):\n%s", d)
	}
	short, _ := Digest(context.Background(), dropped, 25)
	if len(short) > 100 || !strings.Contains(short, "older lines omitted") || !strings.HasSuffix(short, "(empty)") {
		t.Errorf("short digest: got %q (%d bytes), want <= 100 bytes keeping the newest lines", short, len(short))
	}
}

func TestCompactSummariser(t *testing.T) {
	in := []Message{sys("s"), usr(words(50)), asst(words(50)), usr("now"), asst("ok")}
	var gotDropped int
	out, err := Compact(context.Background(), in, 120, func(_ context.Context, d []Message, maxTokens int) (string, error) {
		gotDropped = len(d)
		return strings.Repeat("é", maxTokens*4), // longer than allowed: cut, rune-safe
			nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if gotDropped != 2 {
		t.Errorf("dropped: got %d, want 2", gotDropped)
	}
	if got := EstimateMessages(out); got > 120 {
		t.Errorf("size: got %d, want <= 120", got)
	}
	if !strings.HasPrefix(out[1].Content, SummaryPrefix+"\n") || !strings.HasSuffix(out[1].Content, "é") {
		t.Errorf("summary: got %q", out[1].Content)
	}

	boom := errors.New("boom")
	_, err = Compact(context.Background(), in, 60, func(context.Context, []Message, int) (string, error) { return "", boom })
	if !errors.Is(err, boom) {
		t.Errorf("summariser error: got %v, want wrapping boom", err)
	}
	if _, err := Compact(context.Background(), in, -1, nil); err == nil {
		t.Error("negative budget: got nil error")
	}
}

func TestModelSummariser(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, _ int, req openai.ChatCompletionRequest) {
		writeText(w, req.Model, "- operator asked to provision 20 pairs\n- approval pending")
	})
	c, _, _ := newTestClient(t, f, nil)
	in := []Message{sys("s"), usr("Provision 20 " + words(60)), calls("p1"), result("p1", "needs_approval "+words(40)), asst("ok"), usr("status?")}
	out, err := Compact(context.Background(), in, 80, c.Summariser())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := out[1].Content, SummaryPrefix+"\n- operator asked to provision 20 pairs\n- approval pending"; got != want {
		t.Errorf("summary: got %q, want %q", got, want)
	}
	sent := f.requests()[0].Req.Messages[1].Content
	if !strings.Contains(sent, "called gf_p1") || !strings.Contains(sent, "needs_approval") {
		t.Errorf("transcript sent to the model: got %q", sent)
	}
}

func FuzzCompact(f *testing.F) {
	f.Add([]byte("susatattu"), 40)
	f.Add([]byte("ssuuaaat"), 0)
	f.Add([]byte("tuaxt"), 7)
	f.Fuzz(func(t *testing.T, shape []byte, budget int) {
		if budget < 0 || len(shape) > 64 {
			return
		}
		var in []Message
		var open []string
		for i, b := range shape {
			text := words(int(b) % 23)
			switch b % 5 {
			case 0:
				in = append(in, sys(text))
			case 1:
				in = append(in, usr(text))
			case 2:
				in = append(in, asst(text))
			case 3:
				id := fmt.Sprintf("c%d", i)
				in = append(in, calls(id))
				open = append(open, id)
			case 4:
				if len(open) > 0 {
					in = append(in, result(open[0], text))
					open = open[1:]
				}
			}
		}
		out, err := Compact(context.Background(), in, budget, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkCompact(t, in, out, budget)
	})
}
