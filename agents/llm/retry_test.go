package llm

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	openai "github.com/sashabaranov/go-openai"

	"github.com/gatewayforge/clawops"
)

func TestRetryAfter429ThenSuccess(t *testing.T) {
	tests := []struct {
		name string
		hdr  map[string]string
		want time.Duration
	}{
		{"seconds", map[string]string{"Retry-After": "3"}, 3 * time.Second},
		{"milliseconds", map[string]string{"Retry-After-Ms": "250", "Retry-After": "9"}, 250 * time.Millisecond},
		{"http date", map[string]string{"Retry-After": time.Date(2026, 11, 1, 12, 0, 7, 0, time.UTC).Format(http.TimeFormat)}, 7 * time.Second},
		{"none: backoff", nil, 100 * time.Millisecond * 3 / 4},
		{"garbage: backoff", map[string]string{"Retry-After": "soon"}, 100 * time.Millisecond * 3 / 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, func(w http.ResponseWriter, n int, req openai.ChatCompletionRequest) {
				if n == 0 {
					writeAPIError(w, http.StatusTooManyRequests, "rate_limit_error", "slow down", tt.hdr)
					return
				}
				writeText(w, req.Model, "ok")
			})
			c, sl, _ := newTestClient(t, f, func(o *Options) { o.Clock = fixedClock{time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)} })
			resp, err := c.Complete(context.Background(), userReq("hi"))
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if resp.Attempts != 2 || resp.Model != "model-a" {
				t.Errorf("got attempts %d model %s, want 2 model-a", resp.Attempts, resp.Model)
			}
			if d := cmp.Diff([]time.Duration{tt.want}, sl.got()); d != "" {
				t.Errorf("waits (-want +got):\n%s", d)
			}
			if d := cmp.Diff([]string{"model-a", "model-a"}, f.models()); d != "" {
				t.Errorf("models called (-want +got):\n%s", d)
			}
		})
	}
}

type fixedClock struct{ t time.Time }

func TestFailoverAfter500s(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, _ int, req openai.ChatCompletionRequest) {
		if req.Model == "model-a" {
			writeAPIError(w, http.StatusInternalServerError, "server_error", "boom", nil)
			return
		}
		writeText(w, req.Model, "from b")
	})
	c, sl, logs := newTestClient(t, f, nil)
	resp, err := c.Complete(context.Background(), userReq("hi"))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if resp.Model != "model-b" || resp.Text() != "from b" || resp.Attempts != 4 {
		t.Errorf("got model %s text %q attempts %d, want model-b, from b, 4", resp.Model, resp.Text(), resp.Attempts)
	}
	if d := cmp.Diff([]string{"model-a", "model-a", "model-a", "model-b"}, f.models()); d != "" {
		t.Errorf("models called (-want +got):\n%s", d)
	}
	// Exponential with equal jitter at rand 0.5: 3/4 of 100ms, then of 200ms.
	if d := cmp.Diff([]time.Duration{75 * time.Millisecond, 150 * time.Millisecond}, sl.got()); d != "" {
		t.Errorf("waits (-want +got):\n%s", d)
	}
	if !strings.Contains(logs.String(), "failing over") {
		t.Errorf("logs: want a failover line, got:\n%s", logs.String())
	}
}

func TestBackoffBounds(t *testing.T) {
	for _, r := range []float64{0, 0.999} {
		c, err := New(Options{BaseURL: "http://127.0.0.1:1/v1", Models: []string{"m"}, Backoff: time.Second, MaxBackoff: 5 * time.Second, Rand: func() float64 { return r }})
		if err != nil {
			t.Fatal(err)
		}
		for try := 0; try < 10; try++ {
			cap := min(time.Second<<try, 5*time.Second)
			if got := c.backoff(try); got < cap/2 || got > cap {
				t.Errorf("rand %v try %d: got %v, want in [%v, %v]", r, try, got, cap/2, cap)
			}
		}
	}
}

func TestErrorClasses(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string // raw body; "" means OpenAI error JSON
		wantReason clawops.ReasonCode
		wantKind   clawops.Kind
		wantModels []string
	}{
		{"401 no retry no failover", 401, "", ReasonAuthFailed, clawops.KindUnauthorized, []string{"model-a"}},
		{"403 no retry no failover", 403, "", ReasonAuthFailed, clawops.KindUnauthorized, []string{"model-a"}},
		{"400 no retry no failover", 400, "", ReasonBadRequest, clawops.KindInvalid, []string{"model-a"}},
		{"422 no retry no failover", 422, "", ReasonBadRequest, clawops.KindInvalid, []string{"model-a"}},
		{"404 fails over without retry", 404, "", ReasonModelNotFound, clawops.KindNotFound, []string{"model-a", "model-b"}},
		{"429 everywhere", 429, "", ReasonRateLimited, clawops.KindTransient, []string{"model-a", "model-a", "model-a", "model-b", "model-b", "model-b"}},
		{"503 everywhere", 503, "", ReasonUnavailable, clawops.KindTransient, []string{"model-a", "model-a", "model-a", "model-b", "model-b", "model-b"}},
		{"502 html body", 502, "<html>bad gateway</html>", ReasonUnavailable, clawops.KindTransient, []string{"model-a", "model-a", "model-a", "model-b", "model-b", "model-b"}},
		{"200 not json", 200, "not json", ReasonBadResponse, clawops.KindTransient, []string{"model-a", "model-a", "model-a", "model-b", "model-b", "model-b"}},
		{"200 no choices", 200, `{"id":"x","object":"chat.completion","choices":[]}`, ReasonBadResponse, clawops.KindTransient, []string{"model-a", "model-a", "model-a", "model-b", "model-b", "model-b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, func(w http.ResponseWriter, _ int, _ openai.ChatCompletionRequest) {
				if tt.body != "" {
					w.WriteHeader(tt.status)
					_, _ = w.Write([]byte(tt.body))
					return
				}
				writeAPIError(w, tt.status, "some_error", "nope: "+http.StatusText(tt.status), nil)
			})
			c, _, _ := newTestClient(t, f, nil)
			_, err := c.Complete(context.Background(), userReq("hi"))
			if err == nil {
				t.Fatal("got nil error")
			}
			if got := clawops.ReasonOf(err); got != tt.wantReason {
				t.Errorf("reason: got %s, want %s (err %v)", got, tt.wantReason, err)
			}
			if got := clawops.KindOf(err); got != tt.wantKind {
				t.Errorf("kind: got %v, want %v", got, tt.wantKind)
			}
			if d := cmp.Diff(tt.wantModels, f.models()); d != "" {
				t.Errorf("models called (-want +got):\n%s", d)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("error leaks the key: %v", err)
			}
		})
	}
}

func TestModelNotFoundCodeOn400FailsOver(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, _ int, req openai.ChatCompletionRequest) {
		if req.Model == "model-a" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"error":{"message":"The model does not exist","type":"invalid_request_error","code":"model_not_found"}}`))
			return
		}
		writeText(w, req.Model, "b")
	})
	c, _, _ := newTestClient(t, f, nil)
	resp, err := c.Complete(context.Background(), userReq("hi"))
	if err != nil || resp.Model != "model-b" {
		t.Fatalf("got %v, %v; want model-b", resp.Model, err)
	}
}

func TestTransportErrorsRetryThenFail(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now: connection refused
	sl := &sleeps{}
	c, err := New(Options{BaseURL: url + "/v1", Models: []string{"m1", "m2"}, MaxRetries: 1, Sleep: sl.sleep})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Complete(context.Background(), userReq("hi"))
	if got, want := clawops.ReasonOf(err), ReasonUnavailable; got != want {
		t.Fatalf("reason: got %s, want %s (resp %+v, err %v)", got, want, resp, err)
	}
	if got, want := len(sl.got()), 2; got != want {
		t.Errorf("waits: got %d, want %d (one retry per model)", got, want)
	}
}

func TestAttemptTimeoutIsRetried(t *testing.T) {
	release := make(chan struct{})
	f := newFakeAPI(t, func(w http.ResponseWriter, n int, req openai.ChatCompletionRequest) {
		if n == 0 {
			<-release // hang until the test ends; the client gives up first
			return
		}
		writeText(w, req.Model, "second try")
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	c, _, _ := newTestClient(t, f, func(o *Options) { o.AttemptTimeout = 50 * time.Millisecond })
	resp, err := c.Complete(context.Background(), userReq("hi"))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if resp.Text() != "second try" || resp.Attempts != 2 {
		t.Errorf("got %q after %d attempts, want second try after 2", resp.Text(), resp.Attempts)
	}
}

func TestCancelledWhileWaiting(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, _ int, _ openai.ChatCompletionRequest) {
		writeAPIError(w, 503, "server_error", "down", nil)
	})
	ctx, cancel := context.WithCancel(context.Background())
	c, _, _ := newTestClient(t, f, func(o *Options) {
		o.Sleep = func(ctx context.Context, _ time.Duration) error { cancel(); return ctx.Err() }
	})
	_, err := c.Complete(ctx, userReq("hi"))
	if got, want := clawops.ReasonOf(err), ReasonCancelled; got != want {
		t.Errorf("reason: got %s, want %s", got, want)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("errors.Is(err, context.Canceled): got false for %v", err)
	}
	if got, want := len(f.requests()), 1; got != want {
		t.Errorf("requests: got %d, want %d", got, want)
	}
}

func TestLongRetryAfterFailsOverAtOnce(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, _ int, req openai.ChatCompletionRequest) {
		if req.Model == "model-a" {
			writeAPIError(w, 429, "rate_limit_error", "quota", map[string]string{"Retry-After": "3600"})
			return
		}
		writeText(w, req.Model, "b")
	})
	c, sl, _ := newTestClient(t, f, nil)
	resp, err := c.Complete(context.Background(), userReq("hi"))
	if err != nil || resp.Model != "model-b" {
		t.Fatalf("got %q, %v; want model-b", resp.Model, err)
	}
	if got := sl.got(); len(got) != 0 {
		t.Errorf("waits: got %v, want none", got)
	}
}
