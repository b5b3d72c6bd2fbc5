package providerkit

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
)

var testCloud = Cloud{
	Name:            "Testcloud",
	DefaultEndpoint: "https://api.test.example",
	Server:          "box",
	TokenNoun:       "API token",
	NoToken:         "no API token: make one",
	Auth:            "check the token",
	Quota:           "ask for more",
	Refused:         "check region, size and image",
	Reconcile:       "label " + LabelInstance,
	NameRe:          regexp.MustCompile(`^[a-z0-9-]+$`),
	NameRule:        "use lowercase letters, digits and '-'",
	RegionHint:      "name a region",
	SizeHint:        "name a size",
	ImageHint:       "e.g. debian",
	MaxUserData:     1 << 10,
}

func answer(status int, header ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	return &http.Response{StatusCode: status, Header: h}
}

func TestMapError(t *testing.T) {
	cause := errors.New("the API said no")
	tests := []struct {
		name   string
		f      Failure
		kind   clawops.Kind
		reason clawops.ReasonCode
		maybe  bool
		says   string
	}{
		{"no answer", Failure{}, clawops.KindTransient, fleet.ReasonProviderUnavailable, false, "no answer"},
		{"no answer on create", Failure{Creating: true}, clawops.KindTransient, fleet.ReasonProviderUnavailable, true, "reconcile with List (label clawops.instance)"},
		{"answered without status", Failure{Answered: true}, clawops.KindTransient, fleet.ReasonProviderUnavailable, false, "unreadable answer"},
		{"429", Failure{Answer: answer(429, "Retry-After", "5")}, clawops.KindTransient, fleet.ReasonProviderRateLimited, false, "retry after 5s"},
		{"rate-limit code", Failure{Answer: answer(403), RateLimited: true}, clawops.KindTransient, fleet.ReasonProviderRateLimited, false, "wait before retrying"},
		{"429 on create", Failure{Answer: answer(429), Creating: true}, clawops.KindTransient, fleet.ReasonProviderRateLimited, false, "rate limit"},
		{"quota", Failure{Answer: answer(403), Quota: true}, clawops.KindDenied, fleet.ReasonProviderQuota, false, "ask for more"},
		{"404", Failure{Answer: answer(404)}, clawops.KindNotFound, fleet.ReasonProviderNotFound, false, "deleted outside ClawOps"},
		{"not-found code", Failure{Answer: answer(400), NotFound: true}, clawops.KindNotFound, fleet.ReasonProviderNotFound, false, "not found at Testcloud"},
		{"401", Failure{Answer: answer(401)}, clawops.KindUnauthorized, fleet.ReasonProviderAuth, false, "check the token"},
		{"403", Failure{Answer: answer(403)}, clawops.KindUnauthorized, fleet.ReasonProviderAuth, false, "check the token"},
		{"auth code", Failure{Answer: answer(400), Auth: true}, clawops.KindUnauthorized, fleet.ReasonProviderAuth, false, "check the token"},
		{"500", Failure{Answer: answer(500)}, clawops.KindTransient, fleet.ReasonProviderUnavailable, false, "retry later"},
		{"500 on create", Failure{Answer: answer(500), Creating: true}, clawops.KindTransient, fleet.ReasonProviderUnavailable, true, "reconcile"},
		{"transient code", Failure{Answer: answer(409), Transient: true}, clawops.KindTransient, fleet.ReasonProviderUnavailable, false, "retry later"},
		{"422", Failure{Answer: answer(422)}, clawops.KindInvalid, fleet.ReasonProviderInvalid, false, "check region, size and image"},
		{"422 on create", Failure{Answer: answer(422), Creating: true}, clawops.KindInvalid, fleet.ReasonProviderInvalid, false, "refused the request"},
		{"302", Failure{Answer: answer(302)}, clawops.KindTransient, fleet.ReasonProviderUnavailable, false, "(HTTP 302)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.f.Op, tt.f.Err = "test.Op", cause
			err := testCloud.MapError(tt.f)
			if got := clawops.KindOf(err); got != tt.kind {
				t.Errorf("kind = %v, want %v", got, tt.kind)
			}
			if got := clawops.ReasonOf(err); got != tt.reason {
				t.Errorf("reason = %q, want %q", got, tt.reason)
			}
			if got := errors.Is(err, fleet.ErrMaybeCreated); got != tt.maybe {
				t.Errorf("ErrMaybeCreated = %v, want %v (err: %v)", got, tt.maybe, err)
			}
			if !errors.Is(err, cause) {
				t.Errorf("err %v does not wrap the API's error", err)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error %q does not say %q", err, tt.says)
			}
		})
	}
}

func TestCheckOptions(t *testing.T) {
	tests := []struct {
		name, token, endpoint string
		reason                clawops.ReasonCode
	}{
		{"good", "t0ken", "https://api.test.example", ""},
		{"no token", "", "https://api.test.example", fleet.ReasonProviderAuth},
		{"token with tab", "t0\tken", "https://api.test.example", fleet.ReasonProviderAuth},
		{"token with non-ASCII", "t0kén", "https://api.test.example", fleet.ReasonProviderAuth},
		{"endpoint without host", "t0ken", "https:///v1", fleet.ReasonProviderInvalid},
		{"endpoint unparsable", "t0ken", "http://[::1", fleet.ReasonProviderInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := testCloud.CheckOptions("test.New", tt.token, tt.endpoint, testCloudInit())
			if got := clawops.ReasonOf(err); got != tt.reason || (tt.reason == "" && err != nil) {
				t.Fatalf("CheckOptions = %v, want reason %q", err, tt.reason)
			}
			if err != nil && tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error reveals the token: %v", err)
			}
		})
	}
}

func TestUserDataLimit(t *testing.T) {
	spec := testSpec()
	c := testCloud
	c.MaxUserData = 100
	_, err := c.UserData("test.Create", spec, testCloudInit())
	if clawops.ReasonOf(err) != fleet.ReasonProviderInvalid || !strings.Contains(err.Error(), "Testcloud accepts at most 100") {
		t.Errorf("UserData over the limit = %v, want PROVIDER_INVALID_REQUEST naming the limit", err)
	}
	c.MaxUserData = 0
	got, err := c.UserData("test.Create", spec, testCloudInit())
	if err != nil || !strings.Contains(got, "demo1-pri") {
		t.Errorf("UserData without limit = %.80q, %v; want the rendered cloud-init naming the host", got, err)
	}
}

func TestResizeStopped(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name                  string
		wasOn                 bool
		stopErr, changeErr    error
		startErr              error
		wantSteps             []string
		wantErr               error
		wantSays, wantSaysNot string
	}{
		{"running", true, nil, nil, nil, []string{"stop", "change", "start"}, nil, "", ""},
		{"off", false, nil, nil, nil, []string{"change"}, nil, "", ""},
		{"stop fails", true, boom, nil, nil, []string{"stop"}, boom, "", ""},
		{"change fails on a running box", true, nil, boom, nil, []string{"stop", "change", "start"}, boom, "box powered back on", ""},
		{"change fails on a stopped box", false, nil, boom, nil, []string{"change"}, boom, "resize to big", "powered back on"},
		{"change and restart fail", true, nil, boom, errors.New("stuck"), []string{"stop", "change", "start"}, boom, "still OFF (power it on by hand)", ""},
		{"restart fails", true, nil, nil, boom, []string{"stop", "change", "start"}, boom, "resized to big but the box is still OFF", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var steps []string
			step := func(name string, err error) func(context.Context) error {
				return func(context.Context) error { steps = append(steps, name); return err }
			}
			err := testCloud.ResizeStopped(context.Background(), "test.Resize", "big", ResizeSteps{
				WasOn: tt.wasOn, Stop: step("stop", tt.stopErr), Change: step("change", tt.changeErr), Start: step("start", tt.startErr),
			})
			if diff := cmp.Diff(tt.wantSteps, steps); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantSays) {
				t.Errorf("error %q does not say %q", err, tt.wantSays)
			}
			if tt.wantSaysNot != "" && strings.Contains(err.Error(), tt.wantSaysNot) {
				t.Errorf("error %q says %q", err, tt.wantSaysNot)
			}
		})
	}
}

func TestBearerClient(t *testing.T) {
	var gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	caller := srv.Client()
	callerTransport := caller.Transport
	var observed int
	hc := BearerClient(caller, "s3cret", func(r *http.Request, resp *http.Response) { observed = resp.StatusCode })
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if gotAuth != "Bearer s3cret" {
		t.Errorf("Authorization = %q, want Bearer s3cret", gotAuth)
	}
	if req.Header.Get("Authorization") != "" {
		t.Error("the caller's request was changed")
	}
	if observed != http.StatusTeapot {
		t.Errorf("observed status %d, want %d", observed, http.StatusTeapot)
	}
	if caller.Transport != callerTransport {
		t.Error("the caller's client was changed")
	}
	if d := BearerClient(nil, "s3cret", nil); d.Timeout != DefaultTimeout {
		t.Errorf("default client timeout = %v, want %v", d.Timeout, DefaultTimeout)
	}
}

func TestPause(t *testing.T) {
	if !Pause(context.Background(), time.Microsecond) {
		t.Error("Pause = false with a live context, want true")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Pause(ctx, time.Hour) {
		t.Error("Pause = true with a cancelled context, want false")
	}
}
