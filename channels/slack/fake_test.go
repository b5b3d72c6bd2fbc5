package slack_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack/slacktest"
)

// fakeSlack is slack-go's own test server (slacktest) with the Web API methods the adapter
// uses recorded, and a Socket Mode endpoint: apps.connections.open hands out its /ws URL,
// where it says hello, sends envelopes and reads the acks, as Slack does.
type fakeSlack struct {
	t   *testing.T
	srv *slacktest.Server

	mu       sync.Mutex
	calls    []apiCall
	order    []string // "ack:<envelope>" and method names, in the order they happened
	ts       int
	conn     *websocket.Conn
	wmu      sync.Mutex // one writer at a time on conn
	failures map[string][]int
}

type apiCall struct {
	Method string
	Params url.Values
}

func newFakeSlack(t *testing.T) *fakeSlack {
	f := &fakeSlack{t: t, failures: map[string][]int{}}
	f.srv = slacktest.NewTestServer(func(c slacktest.Customize) {
		for _, m := range []string{"chat.postMessage", "chat.update", "chat.postEphemeral"} {
			c.Handle("/"+m, f.record(m))
		}
		c.Handle("/ws", slacktest.Websocket(f.socket))
	})
	f.srv.Start()
	t.Cleanup(f.srv.Stop)
	return f
}

func (f *fakeSlack) apiURL() string { return f.srv.GetAPIURL() }

func (f *fakeSlack) record(method string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.calls = append(f.calls, apiCall{Method: method, Params: r.PostForm})
		f.order = append(f.order, method)
		if q := f.failures[method]; len(q) > 0 {
			code := q[0]
			f.failures[method] = q[1:]
			f.mu.Unlock()
			if code == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "4")
			}
			w.WriteHeader(code)
			return
		}
		f.ts++
		ts := fmt.Sprintf("1790000000.%06d", f.ts)
		f.mu.Unlock()
		if method == "chat.update" {
			ts = r.PostForm.Get("ts")
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": r.PostForm.Get("channel"), "ts": ts, "message_ts": ts})
	}
}

// socket is the Socket Mode server side of one connection.
func (f *fakeSlack) socket(c *websocket.Conn) {
	f.wmu.Lock()
	err := c.WriteJSON(map[string]any{"type": "hello", "num_connections": 1,
		"connection_info": map[string]any{"app_id": "A1"}, "debug_info": map[string]any{"host": "fake"}})
	f.wmu.Unlock()
	if err != nil {
		return
	}
	f.mu.Lock()
	f.conn = c
	f.mu.Unlock()
	done := make(chan struct{})
	defer close(done)
	go func() { // Slack pings; the client treats silence as a dead connection.
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				f.wmu.Lock()
				_ = c.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(time.Second))
				f.wmu.Unlock()
			}
		}
	}()
	for {
		var ack struct {
			EnvelopeID string `json:"envelope_id"`
		}
		if err := c.ReadJSON(&ack); err != nil {
			return
		}
		f.mu.Lock()
		f.order = append(f.order, "ack:"+ack.EnvelopeID)
		f.mu.Unlock()
	}
}

// envelope sends one Socket Mode request on the live connection.
func (f *fakeSlack) envelope(id, typ string, payload any) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		c := f.conn
		f.mu.Unlock()
		if c != nil {
			f.wmu.Lock()
			err := c.WriteJSON(map[string]any{"envelope_id": id, "type": typ, "accepts_response_payload": false, "payload": payload})
			f.wmu.Unlock()
			if err != nil {
				f.t.Fatal(err)
			}
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatal("no socket mode connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fakeSlack) fail(method string, codes ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures[method] = append(f.failures[method], codes...)
}

func (f *fakeSlack) callsOf(method string) []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []url.Values
	for _, c := range f.calls {
		if c.Method == method {
			out = append(out, c.Params)
		}
	}
	return out
}

func (f *fakeSlack) happened() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.order...)
}

// wire turns request parameters into JSON values for golden files, without the token.
func wire(p url.Values) map[string]any {
	out := map[string]any{}
	for k := range p {
		if k == "token" {
			continue
		}
		v := p.Get(k)
		var j any
		if (strings.HasPrefix(v, "{") || strings.HasPrefix(v, "[")) && json.Unmarshal([]byte(v), &j) == nil {
			out[k] = j
		} else {
			out[k] = v
		}
	}
	return out
}

// messageEvent is an Events API callback carrying a message.
func messageEvent(eventID, channel, channelType, user, text string) map[string]any {
	return map[string]any{"token": "t", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
		"event_id": eventID, "event_time": 1790000000,
		"event": map[string]any{"type": "message", "channel": channel, "channel_type": channelType, "user": user,
			"text": text, "ts": "1790000000.000001", "event_ts": "1790000000.000001"}}
}

// press is a block_actions interaction: user pressed the button with action_id and value.
func press(user, channel, actionID, value string) map[string]any {
	return map[string]any{"type": "block_actions", "user": map[string]any{"id": user, "name": user},
		"channel": map[string]any{"id": channel}, "team": map[string]any{"id": "T1"},
		"trigger_id": "tr", "api_app_id": "A1",
		"actions": []any{map[string]any{"type": "button", "action_id": actionID, "block_id": "approval",
			"value": value, "action_ts": "1790000000.1"}}}
}
