package web

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/governance"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Second)
	return c.now
}

func seqs(b Batch) []int64 {
	var out []int64
	for _, m := range b.Messages {
		out = append(out, m.Seq)
	}
	return out
}

func TestOutbox(t *testing.T) {
	c := New(Options{Clock: &fakeClock{now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}, Capacity: 3})
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Send(ctx, "alice", "a1"))                                              // 1
	must(c.PostCard(ctx, governance.Card{ApprovalID: "ap-1"}))                    // 2
	must(c.Send(ctx, "bob", "b1"))                                                // 3
	must(c.Send(ctx, "alice", "a2"))                                              // 4
	must(c.PostCard(ctx, governance.Card{ApprovalID: "ap-1", State: "approved"})) // 5

	tests := []struct {
		name     string
		identity string
		after    int64
		limit    int
		want     []int64
		next     int64
	}{
		{"all of alice", "alice", 0, 10, []int64{1, 2, 4, 5}, 5},
		{"bob", "bob", 0, 10, []int64{2, 3, 5}, 5},
		{"stranger sees cards only", "carol", 0, 10, []int64{2, 5}, 5},
		{"after cursor", "alice", 2, 10, []int64{4, 5}, 5},
		{"limited", "alice", 0, 2, []int64{1, 2}, 2},
		{"limit clamped up", "alice", 0, 0, []int64{1}, 1},
		{"nothing new", "alice", 5, 10, nil, 5},
		{"cursor beyond (restart)", "alice", 99, 10, nil, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := c.Messages(tt.identity, tt.after, tt.limit)
			if got := seqs(b); !equal(got, tt.want) {
				t.Errorf("seqs: got %v, want %v", got, tt.want)
			}
			if b.Next != tt.next {
				t.Errorf("next: got %d, want %d", b.Next, tt.next)
			}
			if b.Messages == nil {
				t.Error("messages: got nil, want an empty list for JSON")
			}
		})
	}

	// Capacity: the oldest fall off each stream.
	for i := range 5 {
		must(c.Send(ctx, "alice", "x"+string(rune('a'+i))))
	}
	got := c.Messages("alice", 0, 100)
	var texts []string
	for _, m := range got.Messages {
		if m.Kind == KindText {
			texts = append(texts, m.Text)
		}
	}
	if want := []string{"xc", "xd", "xe"}; strings.Join(texts, ",") != strings.Join(want, ",") {
		t.Errorf("texts after overflow: got %v, want %v", texts, want)
	}

	if err := c.Send(ctx, "", "to nobody"); clawops.ReasonOf(err) != clawops.ReasonMalformedRequest {
		t.Errorf("Send to empty: got %v, want MALFORMED_REQUEST", err)
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestServePage(t *testing.T) {
	srv := httptest.NewServer(New(Options{}))
	t.Cleanup(srv.Close)
	tests := []struct {
		method, path string
		status       int
		ctype        string
		contains     string
	}{
		{"GET", "/", 200, "text/html", `<script src="/console/app.js"`},
		{"HEAD", "/", 200, "text/html", ""},
		{"GET", "/index.html", 200, "text/html", "ClawOps console"},
		{"GET", "/console/app.js", 200, "text/javascript", "sessionStorage"},
		{"GET", "/console/app.css", 200, "text/css", "--accent"},
		{"GET", "/console/index.html", 404, "", ""},
		{"GET", "/console/../web.go", 404, "", ""},
		{"GET", "/etc/passwd", 404, "", ""},
		{"POST", "/", 405, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.status {
				t.Fatalf("status: got %d, want %d", res.StatusCode, tt.status)
			}
			if tt.ctype != "" && !strings.HasPrefix(res.Header.Get("Content-Type"), tt.ctype) {
				t.Errorf("Content-Type: got %q, want %s", res.Header.Get("Content-Type"), tt.ctype)
			}
			if tt.contains != "" && !strings.Contains(string(body), tt.contains) {
				t.Errorf("body does not contain %q", tt.contains)
			}
			if tt.status == 200 && !strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'none'") {
				t.Errorf("CSP: got %q, want a strict policy", res.Header.Get("Content-Security-Policy"))
			}
		})
	}
}

// TestAssetsSelfContained checks the promises the page makes: nothing loaded from
// elsewhere, server data never parsed as HTML, the token taken from the fragment and kept
// per tab.
func TestAssetsSelfContained(t *testing.T) {
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := fs.WalkDir(assets, "console", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(assets, path)
		if err != nil {
			return err
		}
		if m := external.Find(b); m != nil {
			t.Errorf("%s references an external URL: %s", path, m)
		}
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "localStorage"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s uses %s", path, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := fs.ReadFile(assets, "console/app.js")
	for _, want := range []string{`location.hash`, `sessionStorage.setItem`, `history.replaceState`, `"Bearer "`,
		`/v1/chat`, `/v1/approvals?state=pending`, `/decision`, `/v1/messages`, `err.code`,
		`/v1/traces?limit=`, `"approve_scope"`, `body.totp`, `second_factor`, `approvals_required`, `risk_score`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("app.js does not contain %q", want)
		}
	}
}

func TestFactory(t *testing.T) {
	for _, tt := range []struct {
		raw string
		ok  bool
	}{{"", true}, {"null", true}, {`{}`, true}, {`{"capacity":10}`, true}, {`{"capacity":-1}`, false}, {`{"cap":1}`, false}, {`[]`, false}} {
		_, err := Factory(channels.Env{}, []byte(tt.raw))
		if (err == nil) != tt.ok {
			t.Errorf("Factory(%q): got error %v, want ok=%v", tt.raw, err, tt.ok)
		}
	}
}
