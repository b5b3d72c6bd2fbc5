// Package telegramtest is a Telegram Bot API server on 127.0.0.1 for tests, speaking the real
// wire format so the real client library (telegram-bot-api/v5) can be pointed at it: form or
// multipart requests to /bot<token>/<method>, {"ok":…,"result":…} answers, and long-polled
// getUpdates with offsets. It plays the part slacktest plays for Slack.
package telegramtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a fake Bot API. Create it with NewServer; it stops when the test ends.
type Server struct {
	t     testing.TB
	srv   *httptest.Server
	token string

	mu       sync.Mutex
	calls    []Call
	nextMsg  int
	nextUpd  int
	updates  []map[string]any
	wake     chan struct{}
	failures map[string][]Failure // method → failures to answer first, in order
}

// Call is one Bot API request the server answered (getUpdates is not recorded).
type Call struct {
	Method string
	Params url.Values
}

// Failure is an error answer to give a method before it succeeds again.
type Failure struct {
	Code       int // HTTP status and error_code, e.g. 429
	RetryAfter int // seconds, sent as parameters.retry_after when > 0
}

// NewServer starts a fake Bot API that accepts token.
func NewServer(t testing.TB, token string) *Server {
	f := &Server{t: t, token: token, nextMsg: 100, nextUpd: 1, wake: make(chan struct{}), failures: map[string][]Failure{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// Close stops the server now (it also stops when the test ends), e.g. to show a client
// what an unreachable API looks like.
func (f *Server) Close() { f.srv.Close() }

// Endpoint is the API endpoint format for tgbotapi.NewBotAPIWithAPIEndpoint (and the
// adapter's api_endpoint setting).
func (f *Server) Endpoint() string { return f.srv.URL + "/bot%s/%s" }

func (f *Server) serve(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/bot")
	token, method, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		http.NotFound(w, r)
		return
	}
	if token != f.token {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"ok":false,"error_code":401,"description":"Unauthorized"}`)
		return
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/") {
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	} else if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	params := r.PostForm
	if r.MultipartForm != nil {
		params = url.Values(r.MultipartForm.Value)
		for name, files := range r.MultipartForm.File {
			params.Set(name, fmt.Sprintf("file:%s:%d", files[0].Filename, files[0].Size))
		}
	}
	if method == "getUpdates" {
		f.answer(w, f.getUpdates(r, params))
		return
	}
	f.mu.Lock()
	f.calls = append(f.calls, Call{Method: method, Params: params})
	if q := f.failures[method]; len(q) > 0 {
		fail := q[0]
		f.failures[method] = q[1:]
		f.mu.Unlock()
		body := map[string]any{"ok": false, "error_code": fail.Code, "description": http.StatusText(fail.Code)}
		if fail.RetryAfter > 0 {
			body["description"] = "Too Many Requests: retry after " + strconv.Itoa(fail.RetryAfter)
			body["parameters"] = map[string]any{"retry_after": fail.RetryAfter}
		}
		w.WriteHeader(fail.Code)
		_ = json.NewEncoder(w).Encode(body)
		return
	}
	f.mu.Unlock()
	switch method {
	case "getMe":
		f.answer(w, map[string]any{"id": 42, "is_bot": true, "first_name": "ClawOps", "username": "clawops_bot"})
	case "sendMessage", "sendVoice", "editMessageText":
		chat, _ := strconv.ParseInt(params.Get("chat_id"), 10, 64)
		id, _ := strconv.Atoi(params.Get("message_id"))
		if id == 0 {
			f.mu.Lock()
			f.nextMsg++
			id = f.nextMsg
			f.mu.Unlock()
		}
		f.answer(w, map[string]any{"message_id": id, "date": 1790000000,
			"chat": map[string]any{"id": chat, "type": "group"}, "text": params.Get("text")})
	case "answerCallbackQuery", "deleteWebhook", "setWebhook":
		f.answer(w, true)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"ok":false,"error_code":404,"description":"Not Found: method %s"}`, method)
	}
}

func (f *Server) answer(w http.ResponseWriter, result any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "result": result})
}

// getUpdates answers with the queued updates at or after offset, waiting a little for one.
func (f *Server) getUpdates(r *http.Request, params url.Values) []map[string]any {
	offset, _ := strconv.Atoi(params.Get("offset"))
	deadline := time.NewTimer(200 * time.Millisecond)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		var out []map[string]any
		for _, u := range f.updates {
			if u["update_id"].(int) >= offset {
				out = append(out, u)
			}
		}
		wake := f.wake
		f.mu.Unlock()
		if len(out) > 0 {
			return out
		}
		select {
		case <-wake:
		case <-deadline.C:
			return []map[string]any{}
		case <-r.Context().Done():
			return []map[string]any{}
		}
	}
}

// Push queues an update (the update_id is assigned here).
func (f *Server) Push(u map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u["update_id"] = f.nextUpd
	f.nextUpd++
	f.updates = append(f.updates, u)
	close(f.wake)
	f.wake = make(chan struct{})
}

// PushMessage queues a text message from user from in chat.
func (f *Server) PushMessage(chat int64, from int64, text string) {
	f.Push(map[string]any{"message": map[string]any{"message_id": 1, "date": 1790000000,
		"chat": map[string]any{"id": chat, "type": "private"},
		"from": map[string]any{"id": from, "is_bot": false, "first_name": "Someone"}, "text": text}})
}

// PushPress queues a press of an inline button carrying data by user from, and returns the
// callback query id.
func (f *Server) PushPress(from int64, data string) string {
	f.mu.Lock()
	id := fmt.Sprintf("cb%d", f.nextUpd)
	f.mu.Unlock()
	f.Push(map[string]any{"callback_query": map[string]any{"id": id, "chat_instance": "ci",
		"from": map[string]any{"id": from, "is_bot": false, "first_name": "Someone"}, "data": data}})
	return id
}

// Fail makes the next calls of method fail, in order.
func (f *Server) Fail(method string, fails ...Failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures[method] = append(f.failures[method], fails...)
}

// Calls returns the parameters of every call of method so far, in order.
func (f *Server) Calls(method string) []url.Values {
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
