package discord_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const botID = "900000000000000001"

// fakeDiscord speaks Discord's REST API (v9 paths, JSON bodies, Bot authorization) and its
// gateway (Hello, Identify, READY, dispatches) on 127.0.0.1. discordgo's endpoints are fixed
// https://discord.com URLs, so the adapter's HTTP client gets a transport that sends them
// here; the gateway URL is whatever GET /gateway answers, so it dials here by itself.
type fakeDiscord struct {
	t     *testing.T
	srv   *httptest.Server
	token string

	mu       sync.Mutex
	calls    []restCall
	nextID   int
	seq      int
	conn     *websocket.Conn
	wmu      sync.Mutex
	identify json.RawMessage
	failures []int // statuses to answer the next message posts with
}

func (f *fakeDiscord) fail(codes ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, codes...)
}

type restCall struct {
	Method string
	Path   string
	Body   map[string]any
}

func newFakeDiscord(t *testing.T, token string) *fakeDiscord {
	f := &fakeDiscord{t: t, token: token, nextID: 1000}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// client is an HTTP client whose every request goes to the fake, whatever its URL says.
func (f *fakeDiscord) client() *http.Client {
	target, _ := url.Parse(f.srv.URL)
	return &http.Client{Timeout: 10 * time.Second, Transport: rewrite{target: target, base: http.DefaultTransport}}
}

type rewrite struct {
	target *url.URL
	base   http.RoundTripper
}

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host, req.Host = r.target.Scheme, r.target.Host, r.target.Host
	return r.base.RoundTrip(req)
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func (f *fakeDiscord) serve(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/gateway-ws") {
		f.gateway(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bot "+f.token {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"message": "401: Unauthorized", "code": 0}`)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/api/v9")
	var body map[string]any
	if b, _ := io.ReadAll(r.Body); len(b) > 0 {
		_ = json.Unmarshal(b, &body)
	}
	f.mu.Lock()
	f.calls = append(f.calls, restCall{Method: r.Method, Path: path, Body: body})
	f.nextID++
	id := fmt.Sprint(f.nextID)
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(f.failures) > 0 && r.Method == http.MethodPost && parts[0] == "channels" {
		code := f.failures[0]
		f.failures = f.failures[1:]
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"message": "%s", "code": 0}`, http.StatusText(code))
		return
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && path == "/gateway":
		fmt.Fprintf(w, `{"url": "ws://%s/gateway-ws"}`, f.srv.Listener.Addr())
	case r.Method == http.MethodGet && path == "/users/@me":
		fmt.Fprintf(w, `{"id": %q, "username": "clawops", "bot": true}`, botID)
	case len(parts) == 3 && parts[0] == "channels" && parts[2] == "messages" && r.Method == http.MethodPost:
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "channel_id": parts[1], "content": body["content"]})
	case len(parts) == 4 && parts[0] == "channels" && r.Method == http.MethodPatch:
		_ = json.NewEncoder(w).Encode(map[string]any{"id": parts[3], "channel_id": parts[1]})
	case len(parts) == 4 && parts[0] == "interactions" && parts[3] == "callback":
		w.WriteHeader(http.StatusNoContent)
	case len(parts) == 3 && parts[0] == "webhooks":
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"message": "404: Not Found", "code": 0}`)
	}
}

// gateway runs one gateway session: Hello, wait for Identify, READY, then whatever dispatch
// sends; heartbeats are acknowledged.
func (f *fakeDiscord) gateway(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	f.write(c, map[string]any{"op": 10, "d": map[string]any{"heartbeat_interval": 45000}})
	var id struct {
		Op int             `json:"op"`
		D  json.RawMessage `json:"d"`
	}
	if err := c.ReadJSON(&id); err != nil || id.Op != 2 {
		return
	}
	f.mu.Lock()
	f.identify = id.D
	f.mu.Unlock()
	f.dispatchOn(c, "READY", map[string]any{"v": 9, "session_id": "sess", "resume_gateway_url": "ws://" + r.Host + "/gateway-ws",
		"user": map[string]any{"id": botID, "username": "clawops", "bot": true}, "guilds": []any{}})
	f.mu.Lock()
	f.conn = c
	f.mu.Unlock()
	for {
		var m struct {
			Op int `json:"op"`
		}
		if err := c.ReadJSON(&m); err != nil {
			return
		}
		if m.Op == 1 {
			f.write(c, map[string]any{"op": 11})
		}
	}
}

func (f *fakeDiscord) write(c *websocket.Conn, v any) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	_ = c.WriteJSON(v)
}

func (f *fakeDiscord) dispatchOn(c *websocket.Conn, event string, d any) {
	f.mu.Lock()
	f.seq++
	s := f.seq
	f.mu.Unlock()
	f.write(c, map[string]any{"op": 0, "t": event, "s": s, "d": d})
}

// dispatch sends an event on the live gateway session, waiting for one.
func (f *fakeDiscord) dispatch(event string, d any) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		c := f.conn
		f.mu.Unlock()
		if c != nil {
			f.dispatchOn(c, event, d)
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatal("no gateway session")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fakeDiscord) callsTo(method, pathPrefix string) []restCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []restCall
	for _, c := range f.calls {
		if c.Method == method && strings.HasPrefix(c.Path, pathPrefix) {
			out = append(out, c)
		}
	}
	return out
}

func message(id, channel, guild, author, content string, mentions ...string) map[string]any {
	var ms []any
	for _, m := range mentions {
		ms = append(ms, map[string]any{"id": m, "username": "u"})
	}
	return map[string]any{"id": id, "channel_id": channel, "guild_id": guild, "content": content,
		"timestamp": "2026-11-23T09:00:00.000000+00:00", "mentions": ms,
		"author": map[string]any{"id": author, "username": "someone", "bot": false}}
}

func interaction(id, user, customID string) map[string]any {
	return map[string]any{"id": id, "application_id": "800000000000000001", "type": 3, "token": "itok-" + id,
		"channel_id": approvalsChannel, "guild_id": "700000000000000001", "version": 1,
		"member": map[string]any{"user": map[string]any{"id": user, "username": "u"}},
		"data":   map[string]any{"custom_id": customID, "component_type": 2}}
}
