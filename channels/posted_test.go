package channels_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"

	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/internal/pgtest"
	"github.com/gatewayforge/clawops/store"

	"github.com/gatewayforge/clawops/internal/syncbuf"
)

// msgRef is a platform reference shaped like the adapters' (a chat and a message).
type msgRef struct {
	Chat    int64 `json:"chat"`
	Message int   `json:"message"`
}

type postedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *postedClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *postedClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// logBuffer collects log lines; tests check that a refused row or a failed write was logged.
type logBuffer struct{ syncbuf.Buffer }

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// postedDBs are the databases the write-through store is tested on: a SQLite file always,
// PostgreSQL when one answers on 127.0.0.1:5432.
var postedDBs = []struct {
	name string
	open func(t *testing.T) *gorm.DB
}{
	{"sqlite", func(t *testing.T) *gorm.DB {
		return openPostedDB(t, store.Options{DSN: filepath.Join(t.TempDir(), "cards.db")})
	}},
	{"postgres", func(t *testing.T) *gorm.DB {
		return openPostedDB(t, store.Options{Driver: "postgres", DSN: pgtest.DSN(t, "posted")})
	}},
}

func openPostedDB(t *testing.T, o store.Options) *gorm.DB {
	t.Helper()
	db, err := store.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	if err := channels.Migrate(db); err != nil {
		t.Fatal(err)
	}
	return db
}

func postedCard(id string, state governance.ApprovalState) governance.Card {
	return governance.Card{ApprovalID: id, Title: "Resize " + id, State: state, Actions: []string{"resize"},
		ExpiresAt: time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)}
}

func newPosted(db *gorm.DB, channel string, clk *postedClock, log *logBuffer) *channels.PostedCards[msgRef] {
	o := channels.PostedCardsOptions[msgRef]{Channel: channel, DB: db, Clock: clk,
		Check: func(r msgRef) error {
			if r.Chat != -1001 {
				return fmt.Errorf("chat %d is not the approvals chat", r.Chat)
			}
			return nil
		}}
	if log != nil {
		o.Logger = log.logger()
	}
	return channels.NewPostedCards(o)
}

func TestPostedCardsOutliveTheProcess(t *testing.T) {
	ctx := context.Background()
	for _, b := range postedDBs {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			clk := &postedClock{now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
			first := newPosted(db, "telegram", clk, nil)
			want := channels.PostedCard[msgRef]{Ref: msgRef{Chat: -1001, Message: 101},
				Card: postedCard("apr_1", governance.ApprovalPending), Notice: "carol may not decide approvals"}
			first.Put(ctx, "apr_1", want)

			// A new process (a restart, or the next leader) over the same database.
			second := newPosted(db, "telegram", clk, nil)
			got, ok := second.Get(ctx, "apr_1")
			if !ok {
				t.Fatal("after a restart: card apr_1 not found")
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("card after a restart (-want +got):\n%s", d)
			}
			// An update overwrites the row; a third process sees the update.
			want.Card.State, want.Notice = governance.ApprovalExecuted, ""
			second.Put(ctx, "apr_1", want)
			got, ok = newPosted(db, "telegram", clk, nil).Get(ctx, "apr_1")
			if !ok || got.Card.State != governance.ApprovalExecuted || got.Notice != "" {
				t.Errorf("after an update: got %+v, %v; want the executed card without notice", got, ok)
			}
			// Rows are per channel instance.
			if _, ok := newPosted(db, "telegram-ops", clk, nil).Get(ctx, "apr_1"); ok {
				t.Error("another channel found telegram's card")
			}
			if _, ok := second.Get(ctx, "apr_2"); ok {
				t.Error("found a card never posted")
			}
			var n int64
			db.Table("channels_posted_cards").Count(&n)
			if n != 1 {
				t.Errorf("rows: got %d, want 1", n)
			}
		})
	}
}

func TestPostedCardsMemoryOnly(t *testing.T) {
	ctx := context.Background()
	p := channels.NewPostedCards(channels.PostedCardsOptions[msgRef]{Max: 2})
	for i, id := range []string{"apr_1", "apr_2", "apr_3"} {
		p.Put(ctx, id, channels.PostedCard[msgRef]{Ref: msgRef{Chat: -1001, Message: 100 + i}, Card: postedCard(id, governance.ApprovalPending)})
	}
	if _, ok := p.Get(ctx, "apr_1"); ok {
		t.Error("apr_1: still held beyond the bound of 2")
	}
	if c, ok := p.Get(ctx, "apr_3"); !ok || c.Ref.Message != 102 {
		t.Errorf("apr_3: got %+v, %v; want message 102", c, ok)
	}
	if err := p.Prune(ctx); err != nil {
		t.Errorf("prune without a database: %v", err)
	}
}

func TestPostedCardsBadRows(t *testing.T) {
	ctx := context.Background()
	good := `{"approval_id":"apr_1","title":"Resize","state":"pending"}`
	tests := []struct {
		name, ref, card, why string
	}{
		{"ref not JSON", `{"chat":-1001,`, good, "unexpected EOF"},
		{"ref of another adapter", `"U2002:1790000000.000001"`, good, "cannot unmarshal"},
		{"ref with unknown fields", `{"chat":-1001,"message":7,"ts":"1"}`, good, "unknown field"},
		{"ref with data after it", `{"chat":-1001,"message":7} {}`, good, "data after the value"},
		{"null ref", `null`, good, "is empty"},
		{"empty ref", `{}`, good, "is empty"},
		{"ref in another chat", `{"chat":-2002,"message":7}`, good, "not the approvals chat"},
		{"card not JSON", `{"chat":-1001,"message":7}`, `{"approval_id":`, "card"},
		{"card of another approval", `{"chat":-1001,"message":7}`, `{"approval_id":"apr_9","state":"pending"}`, "card is for approval"},
		{"card with a bad state type", `{"chat":-1001,"message":7}`, `{"approval_id":"apr_1","state":7}`, "card"},
	}
	for _, b := range postedDBs {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			clk := &postedClock{now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					db.Exec("DELETE FROM channels_posted_cards")
					if err := db.Exec("INSERT INTO channels_posted_cards (channel, approval_id, ref, card, notice, state, updated_at) VALUES (?, ?, ?, ?, '', 'pending', ?)",
						"telegram", "apr_1", tt.ref, tt.card, "2026-11-23T09:00:00.000000Z").Error; err != nil {
						t.Fatal(err)
					}
					var log logBuffer
					p := newPosted(db, "telegram", clk, &log)
					if c, ok := p.Get(ctx, "apr_1"); ok {
						t.Fatalf("got %+v from a bad row, want not posted", c)
					}
					if !strings.Contains(log.String(), "unusable") || !strings.Contains(log.String(), tt.why) {
						t.Errorf("log: got %q, want the row refused mentioning %q", log.String(), tt.why)
					}
					// The fresh card posted instead replaces the bad row.
					p.Put(ctx, "apr_1", channels.PostedCard[msgRef]{Ref: msgRef{Chat: -1001, Message: 8}, Card: postedCard("apr_1", governance.ApprovalPending)})
					if c, ok := newPosted(db, "telegram", clk, nil).Get(ctx, "apr_1"); !ok || c.Ref.Message != 8 {
						t.Errorf("after a fresh post: got %+v, %v; want message 8", c, ok)
					}
				})
			}
		})
	}
}

func TestPostedCardsDatabaseFailures(t *testing.T) {
	ctx := context.Background()
	clk := &postedClock{now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	db := openPostedDB(t, store.Options{DSN: filepath.Join(t.TempDir(), "cards.db")})
	var log logBuffer
	p := newPosted(db, "telegram", clk, &log)
	p.Put(ctx, "apr_1", channels.PostedCard[msgRef]{Ref: msgRef{Chat: -1001, Message: 101}, Card: postedCard("apr_1", governance.ApprovalPending)})
	if err := db.Exec("DROP TABLE channels_posted_cards").Error; err != nil {
		t.Fatal(err)
	}

	// A failed write is logged; the card stays known to this process.
	p.Put(ctx, "apr_2", channels.PostedCard[msgRef]{Ref: msgRef{Chat: -1001, Message: 102}, Card: postedCard("apr_2", governance.ApprovalPending)})
	if !strings.Contains(log.String(), "record posted card") {
		t.Errorf("log: got %q, want the failed write", log.String())
	}
	if c, ok := p.Get(ctx, "apr_2"); !ok || c.Ref.Message != 102 {
		t.Errorf("apr_2 after a failed write: got %+v, %v; want it from memory", c, ok)
	}
	// A failed read is "not posted", logged.
	var log2 logBuffer
	if _, ok := newPosted(db, "telegram", clk, &log2).Get(ctx, "apr_1"); ok {
		t.Error("a failed read found a card")
	}
	if !strings.Contains(log2.String(), "read posted card") {
		t.Errorf("log: got %q, want the failed read", log2.String())
	}
	// So does a cancelled context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, ok := newPosted(db, "telegram", clk, nil).Get(cctx, "apr_1"); ok {
		t.Error("a cancelled read found a card")
	}
}

func TestPostedCardsPrune(t *testing.T) {
	ctx := context.Background()
	for _, b := range postedDBs {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			clk := &postedClock{now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
			mk := func(channel string) *channels.PostedCards[msgRef] {
				return channels.NewPostedCards(channels.PostedCardsOptions[msgRef]{Channel: channel, DB: db, Clock: clk,
					Retention: 24 * time.Hour, MaxRows: 3})
			}
			p, other := mk("telegram"), mk("slack")
			other.Put(ctx, "apr_other", channels.PostedCard[msgRef]{Ref: msgRef{Chat: 1, Message: 1}, Card: postedCard("apr_other", governance.ApprovalDenied)})
			for i := range 5 {
				id := fmt.Sprintf("apr_%d", i)
				p.Put(ctx, id, channels.PostedCard[msgRef]{Ref: msgRef{Chat: 1, Message: i + 1}, Card: postedCard(id, governance.ApprovalExecuted)})
				clk.advance(time.Minute)
			}
			if got := postedIDs(t, db); len(got) != 6 {
				t.Fatalf("before pruning (Put prunes hourly): got %v, want 6 rows", got)
			}
			if err := p.Prune(ctx); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff([]string{"slack/apr_other", "telegram/apr_2", "telegram/apr_3", "telegram/apr_4"}, postedIDs(t, db)); d != "" {
				t.Errorf("after pruning to 3 rows (-want +got):\n%s", d)
			}
			// A card changed recently is kept even if it was posted long ago.
			p.Put(ctx, "apr_2", channels.PostedCard[msgRef]{Ref: msgRef{Chat: 1, Message: 3}, Card: postedCard("apr_2", governance.ApprovalExecuted), Notice: "already decided"})
			clk.advance(24*time.Hour - 30*time.Second) // apr_3 and apr_4 are now older than a day
			// More than an hour after the last prune, the next Put prunes by age.
			p.Put(ctx, "apr_5", channels.PostedCard[msgRef]{Ref: msgRef{Chat: 1, Message: 6}, Card: postedCard("apr_5", governance.ApprovalPending)})
			if d := cmp.Diff([]string{"slack/apr_other", "telegram/apr_2", "telegram/apr_5"}, postedIDs(t, db)); d != "" {
				t.Errorf("after a day (-want +got):\n%s", d)
			}
			// A pruned card reads as not posted in a new process.
			if _, ok := mk("telegram").Get(ctx, "apr_3"); ok {
				t.Error("a pruned card was found")
			}
		})
	}
}

func postedIDs(t *testing.T, db *gorm.DB) []string {
	t.Helper()
	var rows []struct{ Channel, ApprovalID string }
	if err := db.Table("channels_posted_cards").Select("channel, approval_id").Order("channel, approval_id").Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.Channel+"/"+r.ApprovalID)
	}
	return out
}

func TestPostedCardsFind(t *testing.T) {
	ctx := context.Background()
	for _, b := range postedDBs {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			mk := func() *channels.PostedCards[string] {
				return channels.NewPostedCards(channels.PostedCardsOptions[string]{Channel: "whatsapp", DB: db})
			}
			p := mk()
			p.Put(ctx, "apr_a1", channels.PostedCard[string]{Ref: "a1", Card: postedCard("apr_a1", governance.ApprovalPending)})
			p.Put(ctx, "apr_b2", channels.PostedCard[string]{Ref: "b2", Card: postedCard("apr_b2", governance.ApprovalPending)})
			p.Put(ctx, "apr_c3x", channels.PostedCard[string]{Ref: "c3", Card: postedCard("apr_c3x", governance.ApprovalPending)})
			p.Put(ctx, "apr_c3y", channels.PostedCard[string]{Ref: "c3", Card: postedCard("apr_c3y", governance.ApprovalPending)})
			for _, q := range []*channels.PostedCards[string]{p, mk()} { // from memory, then after a restart
				if id, ok := q.Find(ctx, "b2"); !ok || id != "apr_b2" {
					t.Errorf("find b2: got %q, %v; want apr_b2", id, ok)
				}
				if id, ok := q.Find(ctx, "c3"); ok {
					t.Errorf("find c3, shared by two cards: got %q, want none", id)
				}
				if id, ok := q.Find(ctx, "zz"); ok {
					t.Errorf("find zz: got %q, want none", id)
				}
			}
			if id, ok := channels.NewPostedCards(channels.PostedCardsOptions[string]{Channel: "whatsapp-2", DB: db}).Find(ctx, "b2"); ok {
				t.Errorf("another channel found %q", id)
			}
		})
	}
}
