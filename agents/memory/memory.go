// Package memory keeps each agent's notes on disk, in the layout OpenClaw agents use: a
// workspace folder per agent holding MEMORY.md (long-term notes a person curates) and
// memory/YYYY-MM-DD.md (one file of dated notes per UTC day that the agent appends to).
// The Briefer's daily files are the team's incident log.
//
// Notes are written by agents and so, indirectly, by a model; they are stored as plain
// single-line bullet points with control characters removed and a bounded length, and
// they are injected into prompts as notes, never as rules.
package memory

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/gatewayforge/clawops"
)

// File names inside an agent's folder.
const (
	LongTermFile = "MEMORY.md"
	DailyDir     = "memory"
)

// MaxNoteBytes bounds one note; a longer note is cut.
const MaxNoteBytes = 1024

// MaxDailyBytes bounds one day's file; notes beyond it are refused, so a runaway loop
// cannot fill the disk.
const MaxDailyBytes = 256 << 10

// DefaultLookbackDays is how many days of notes Prompt considers.
const DefaultLookbackDays = 3

// ErrDayFull is returned by Append when today's file has reached MaxDailyBytes.
var ErrDayFull = errors.New("today's memory file is full")

// Store reads and writes the memory folders under one root. It is safe for concurrent use
// within one process.
type Store struct {
	root  string
	clock clawops.Clock
	mu    sync.Mutex
}

// New returns a Store rooted at dir, creating it if needed.
func New(dir string, clock clawops.Clock) (*Store, error) {
	if strings.TrimSpace(dir) == "" {
		return nil, errors.New("new memory store: folder is empty")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("new memory store: %w", err)
	}
	return &Store{root: dir, clock: clawops.ClockOrSystem(clock)}, nil
}

// Dir is the folder of role.
func (s *Store) Dir(role clawops.AgentRole) string { return filepath.Join(s.root, string(role)) }

func (s *Store) dayFile(role clawops.AgentRole, day time.Time) string {
	return filepath.Join(s.Dir(role), DailyDir, day.UTC().Format("2006-01-02")+".md")
}

// Append adds one note to role's file for today (UTC), as "- HH:MM note". The note is
// cleaned to one line of printable text and cut to MaxNoteBytes.
func (s *Store) Append(role clawops.AgentRole, note string) error {
	if !role.Valid() {
		return fmt.Errorf("memory append: unknown role %q", role)
	}
	note = Clean(note, MaxNoteBytes)
	if note == "" {
		return errors.New("memory append: the note is empty")
	}
	now := s.clock.Now().UTC()
	path := s.dayFile(role, now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("memory append: %w", err)
	}
	line := fmt.Sprintf("- %s %s\n", now.Format("15:04"), note)
	if fi, err := os.Stat(path); err == nil && fi.Size()+int64(len(line)) > MaxDailyBytes {
		return fmt.Errorf("memory append: %s: %w", path, ErrDayFull)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("memory append: %w", err)
	}
	if fi, err := f.Stat(); err == nil && fi.Size() == 0 {
		line = fmt.Sprintf("# %s — %s\n\n", role, now.Format("2006-01-02")) + line
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("memory append: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("memory append: %w", err)
	}
	return nil
}

// Day returns role's notes of the UTC day containing t ("" when there are none).
func (s *Store) Day(role clawops.AgentRole, t time.Time) (string, error) {
	return readOptional(s.dayFile(role, t))
}

// LongTerm returns role's MEMORY.md ("" when there is none).
func (s *Store) LongTerm(role clawops.AgentRole) (string, error) {
	return readOptional(filepath.Join(s.Dir(role), LongTermFile))
}

// Prompt renders role's memory for a system prompt within budget bytes: MEMORY.md first
// (at most half the budget, cut at the end), then the notes of today and the days before
// (newest first, each cut to its most recent lines) until the budget is spent. It returns
// "" when there is nothing to say.
func (s *Store) Prompt(role clawops.AgentRole, budget int) (string, error) {
	if budget <= 0 {
		return "", nil
	}
	var b strings.Builder
	long, err := s.LongTerm(role)
	if err != nil {
		return "", fmt.Errorf("memory prompt: %w", err)
	}
	if long = strings.TrimSpace(long); long != "" {
		b.WriteString("### MEMORY.md\n")
		b.WriteString(head(long, budget/2))
		b.WriteString("\n")
	}
	now := s.clock.Now().UTC()
	for d := 0; d < DefaultLookbackDays; d++ {
		day := now.AddDate(0, 0, -d)
		text, err := s.Day(role, day)
		if err != nil {
			return "", fmt.Errorf("memory prompt: %w", err)
		}
		lines := noteLines(text)
		if len(lines) == 0 {
			continue
		}
		title := fmt.Sprintf("### %s\n", day.Format("2006-01-02"))
		room := budget - b.Len() - len(title)
		if room <= 0 {
			break
		}
		kept := tail(lines, room)
		if len(kept) == 0 {
			break
		}
		b.WriteString(title)
		for _, l := range kept {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return strings.TrimSpace(b.String()), nil
}

// Clean makes s one line of printable text of at most max bytes: newlines and tabs become
// spaces, other control and format characters (bidi overrides included) are dropped.
func Clean(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case r == unicode.ReplacementChar, unicode.IsControl(r), unicode.Is(unicode.Cf, r):
		default:
			b.WriteRune(r)
		}
	}
	out := strings.Join(strings.Fields(b.String()), " ")
	if len(out) > max {
		cut := max
		for cut > 0 && !utf8Start(out[cut]) {
			cut--
		}
		out = out[:cut]
	}
	return out
}

func utf8Start(c byte) bool { return c&0xC0 != 0x80 }

func readOptional(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(data), nil
}

// noteLines returns the bullet lines of a day file.
func noteLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "- ") {
			out = append(out, l)
		}
	}
	return out
}

// head cuts s to at most n bytes at a line end where possible.
func head(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := s[:n]
	if i := strings.LastIndexByte(cut, '\n'); i > 0 {
		cut = cut[:i]
	} else {
		for len(cut) > 0 && !utf8Start(s[len(cut)]) {
			cut = cut[:len(cut)-1]
		}
	}
	return cut + "\n…"
}

// tail keeps the last lines whose total size (with newlines) fits in n bytes.
func tail(lines []string, n int) []string {
	size, i := 0, len(lines)
	for i > 0 && size+len(lines[i-1])+1 <= n {
		size += len(lines[i-1]) + 1
		i--
	}
	return lines[i:]
}
