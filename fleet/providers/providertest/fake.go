package providertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
)

// FakeConfig describes the front of one cloud's fake API.
type FakeConfig struct {
	Token    string // the only bearer token the fake accepts
	BasePath string // the prefix of the API's paths, e.g. "/v1"
	// Unauthorized writes the cloud's answer to a missing or wrong token.
	Unauthorized func(w http.ResponseWriter)
	// FailureType is the Content-Type of the canned failures set with FailWith.
	FailureType string
	// Header is set on every answer, e.g. the rate-limit headers a cloud always sends.
	Header map[string]string
}

// Fake is the front every fake cloud API shares, on a real HTTP server on 127.0.0.1: it
// records each request, refuses a wrong bearer token as the cloud does, answers the
// canned failures set with FailWith, and passes the rest to the cloud's own handler, which
// speaks its paths and JSON so the real client library can be pointed at it.
type Fake struct {
	Token    string           // the bearer token the fake accepts
	Endpoint string           // the API base URL to give the driver
	Server   *httptest.Server // closed when the test ends

	cfg      FakeConfig
	mu       sync.Mutex
	requests []string            // "METHOD /path?query" in order
	bodies   map[string][]byte   // last body per "METHOD /path"
	fail     map[string]response // canned answer per "METHOD /path"
}

type response struct {
	status int
	header map[string]string
	body   string
}

// NewFake starts a fake API serving api behind the shared front.
func NewFake(t *testing.T, cfg FakeConfig, api http.Handler) *Fake {
	t.Helper()
	f := &Fake{Token: cfg.Token, cfg: cfg, bodies: map[string][]byte{}, fail: map[string]response{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve(api)))
	f.Endpoint = f.Server.URL + cfg.BasePath
	t.Cleanup(f.Server.Close)
	return f
}

func (f *Fake) serve(api http.Handler) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + r.URL.Path
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
		f.bodies[key] = body
		fail, failing := f.fail[key]
		f.mu.Unlock()
		for k, v := range f.cfg.Header {
			w.Header().Set(k, v)
		}
		if r.Header.Get("Authorization") != "Bearer "+f.Token {
			f.cfg.Unauthorized(w)
			return
		}
		if failing {
			for k, v := range fail.header {
				w.Header().Set(k, v)
			}
			w.Header().Set("Content-Type", f.cfg.FailureType)
			w.WriteHeader(fail.status)
			fmt.Fprint(w, fail.body)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		api.ServeHTTP(w, r)
	}
}

// FailWith makes every later request to method and path (without query) answer status,
// header and body.
func (f *Fake) FailWith(method, path string, status int, header map[string]string, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method+" "+path] = response{status: status, header: header, body: body}
}

// Calls returns the requests received so far, as "METHOD /path?query", in order.
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// Body returns the body of the last request to method and path.
func (f *Fake) Body(method, path string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bodies[method+" "+path]
}

// WriteJSON answers status with v encoded as JSON, sent as contentType.
func WriteJSON(w http.ResponseWriter, contentType string, status int, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
