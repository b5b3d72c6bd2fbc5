package memory

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestAppendAndPrompt(t *testing.T) {
	c := &clock{now: time.Date(2026, 11, 22, 23, 50, 0, 0, time.UTC)}
	s, err := New(t.TempDir(), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(clawops.Briefer, "INCIDENT PAIR_FAILED demo1\nsecond line\x1b[31m"); err != nil {
		t.Fatal(err)
	}
	c.Add(20 * time.Minute) // the next UTC day
	if err := s.Append(clawops.Briefer, "  daily briefing sent  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(clawops.Briefer), LongTermFile), []byte("# Notes\nOmar prefers numbers first.\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	day, err := s.Day(clawops.Briefer, time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if want := "# briefer — 2026-11-22\n\n- 23:50 INCIDENT PAIR_FAILED demo1 second line[31m\n"; day != want {
		t.Errorf("day file: got %q, want %q", day, want)
	}
	got, err := s.Prompt(clawops.Briefer, 4096)
	if err != nil {
		t.Fatal(err)
	}
	want := "### MEMORY.md\n# Notes\nOmar prefers numbers first.\n### 2026-11-23\n- 00:10 daily briefing sent\n### 2026-11-22\n- 23:50 INCIDENT PAIR_FAILED demo1 second line[31m"
	if got != want {
		t.Errorf("prompt:\ngot  %q\nwant %q", got, want)
	}
	if got, _ := s.Prompt(clawops.Guardian, 4096); got != "" {
		t.Errorf("empty memory: got %q", got)
	}
}

func TestPromptBudget(t *testing.T) {
	c := &clock{now: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)}
	s, err := New(t.TempDir(), c)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		c.Add(time.Minute)
		if err := s.Append(clawops.Guardian, strings.Repeat("x", 50)+" note"); err != nil {
			t.Fatal(err)
		}
	}
	for _, budget := range []int{0, 10, 100, 500, 2000} {
		got, err := s.Prompt(clawops.Guardian, budget)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > budget {
			t.Errorf("budget %d: got %d bytes", budget, len(got))
		}
		if budget >= 500 && !strings.HasSuffix(got, "09:40 "+strings.Repeat("x", 50)+" note") {
			t.Errorf("budget %d: the newest note is missing: ...%q", budget, got[max(0, len(got)-80):])
		}
	}
}

func TestAppendBadForms(t *testing.T) {
	c := &clock{now: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)}
	s, err := New(t.TempDir(), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append("janitor", "x"); err == nil {
		t.Error("unknown role: got nil error")
	}
	if err := s.Append(clawops.Ledger, " \n\t "); err == nil {
		t.Error("empty note: got nil error")
	}
	long := strings.Repeat("é", MaxNoteBytes)
	if err := s.Append(clawops.Ledger, long); err != nil {
		t.Fatal(err)
	}
	day, _ := s.Day(clawops.Ledger, c.Now())
	line := strings.Split(strings.TrimSpace(day), "\n")[2]
	if len(line) > MaxNoteBytes+len("- 08:00 ") || !strings.HasPrefix(line, "- 08:00 é") {
		t.Errorf("long note: got %d bytes", len(line))
	}
	for {
		err := s.Append(clawops.Ledger, strings.Repeat("y", MaxNoteBytes))
		if errors.Is(err, ErrDayFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(s.Dir(clawops.Ledger), DailyDir, "2026-11-23.md")); fi.Size() > MaxDailyBytes {
		t.Errorf("day file grew to %d bytes, limit %d", fi.Size(), MaxDailyBytes)
	}
	if _, err := New("", c); err == nil {
		t.Error("empty folder: got nil error")
	}
}

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a\nb\tc", "a b c"},
		{"bidi \u202eevil\u202c text", "bidi evil text"},
		{"nul\x00byte", "nulbyte"},
		{"  many    spaces ", "many spaces"},
	}
	for _, tt := range tests {
		if got := Clean(tt.in, 100); got != tt.want {
			t.Errorf("Clean(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := Clean("ééé", 5); got != "éé" {
		t.Errorf("cut on a rune: got %q", got)
	}
}
