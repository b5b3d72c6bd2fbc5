// Package web is the browser console channel: one embedded page (plain HTML, CSS and
// JavaScript, no build step, no external URLs) to chat with the Commander and decide
// pending approvals, plus an in-memory outbox the page polls for messages that arrive
// outside a chat run (notifications sent to an identity, approval cards).
//
// The console serves only its static files; the JSON routes it calls (/v1/chat,
// /v1/approvals, /v1/messages) belong to package api, which authenticates the caller and
// reads the outbox with Messages. Outbox design: one stream per identity for Send, plus one
// broadcast stream for cards (every console viewer is a potential approver; the gate
// decides who may actually approve). Streams are bounded; the oldest messages fall off.
package web

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/governance"
)

// Type is the registry name of this adapter.
const Type = "channels.web"

// Name is the channel name of the console, used in actors and session keys.
const Name = "web"

// DefaultCapacity is how many messages each outbox stream keeps.
const DefaultCapacity = 200

// MaxBatch is the most messages one Messages call returns.
const MaxBatch = 500

//go:embed console
var assets embed.FS

// Message kinds.
const (
	KindText = "text"
	KindCard = "card"
)

// Message is one outbox entry.
type Message struct {
	Seq  int64            `json:"seq"`
	Time time.Time        `json:"time"`
	Kind string           `json:"kind"`
	Text string           `json:"text,omitempty"`
	Card *governance.Card `json:"card,omitempty"`
}

// Batch is the answer to a poll: messages after the cursor, oldest first, and the cursor to
// send next time.
type Batch struct {
	Messages []Message `json:"messages"`
	Next     int64     `json:"next"`
}

// Options configure a Console.
type Options struct {
	Clock    clawops.Clock
	Logger   *slog.Logger
	Capacity int // per stream; default DefaultCapacity
}

// Console is the web console channel and the http.Handler of its page.
type Console struct {
	clock    clawops.Clock
	log      *slog.Logger
	capacity int
	files    http.Handler

	mu        sync.Mutex
	seq       int64
	direct    map[string][]Message // identity → messages
	broadcast []Message
}

var (
	_ channels.Channel    = (*Console)(nil)
	_ channels.CardPoster = (*Console)(nil)
)

// New builds a Console.
func New(opts Options) *Console {
	c := &Console{clock: clawops.ClockOrSystem(opts.Clock), log: opts.Logger, capacity: opts.Capacity,
		direct: map[string][]Message{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.capacity <= 0 {
		c.capacity = DefaultCapacity
	}
	sub, err := fs.Sub(assets, "console")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	c.files = http.FileServerFS(sub)
	return c
}

type settings struct {
	Capacity int `json:"capacity"`
}

// Factory builds a Console from registry settings: {"capacity": N} (optional).
func Factory(env channels.Env, raw json.RawMessage) (channels.Channel, error) {
	var s settings
	if err := channels.DecodeSettings(raw, &s); err != nil {
		return nil, err
	}
	if s.Capacity < 0 || s.Capacity > 100000 {
		return nil, errors.New("settings.capacity must be between 1 and 100000")
	}
	return New(Options{Clock: env.Clock, Logger: env.Logger, Capacity: s.Capacity}), nil
}

// Name returns "web".
func (c *Console) Name() string { return Name }

// Send queues text for the identity to.
func (c *Console) Send(_ context.Context, to string, text string) error {
	if to == "" {
		return clawops.E("web send", clawops.KindInvalid, clawops.ReasonMalformedRequest, "recipient is empty")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.direct[to] = c.push(c.direct[to], Message{Seq: c.seq, Time: c.clock.Now().UTC(), Kind: KindText, Text: text})
	return nil
}

// PostCard queues the card for every console viewer. A later card for the same approval
// is a new message; the page shows the latest state.
func (c *Console) PostCard(_ context.Context, card governance.Card) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.broadcast = c.push(c.broadcast, Message{Seq: c.seq, Time: c.clock.Now().UTC(), Kind: KindCard, Card: &card})
	return nil
}

func (c *Console) push(stream []Message, m Message) []Message {
	stream = append(stream, m)
	if len(stream) > c.capacity {
		stream = slices.Delete(stream, 0, len(stream)-c.capacity)
	}
	return stream
}

// Messages returns up to limit messages for identity (its own and broadcast ones) with a
// sequence number above after, oldest first. limit is clamped to 1..MaxBatch. When nothing
// is newer, Next is after, or the newest sequence number if after is beyond it (the
// process restarted), so a client that follows Next never stalls.
func (c *Console) Messages(identity string, after int64, limit int) Batch {
	limit = min(max(limit, 1), MaxBatch)
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Message
	for _, stream := range [][]Message{c.direct[identity], c.broadcast} {
		i, _ := slices.BinarySearchFunc(stream, after+1, func(m Message, seq int64) int { return cmp.Compare(m.Seq, seq) })
		out = append(out, stream[i:]...)
	}
	slices.SortFunc(out, func(a, b Message) int { return cmp.Compare(a.Seq, b.Seq) })
	if len(out) > limit {
		out = out[:limit]
	}
	b := Batch{Messages: slices.Clone(out), Next: min(after, c.seq)}
	if b.Messages == nil {
		b.Messages = []Message{}
	}
	if n := len(out); n > 0 {
		b.Next = out[n-1].Seq
	}
	return b
}

// ServeHTTP serves the page at / and its files under /console/. Nothing here is secret:
// the page reads its token from the URL fragment, which browsers never send.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "+
		"connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	switch r.URL.Path {
	case "/", "/index.html":
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/"
		c.files.ServeHTTP(w, r2)
	case "/console/app.js", "/console/app.css":
		r2 := r.Clone(r.Context())
		r2.URL.Path = r.URL.Path[len("/console"):]
		c.files.ServeHTTP(w, r2)
	default:
		http.NotFound(w, r)
	}
}
