package digitalocean

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/fleet/providers/providertest"
)

const fingerprint = "3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"

func testSpec() fleet.ServerSpec {
	return fleet.ServerSpec{
		Name:      "demo1-pri",
		Region:    "fra1",
		Size:      "s-1vcpu-2gb",
		Labels:    map[string]string{LabelInstance: "demo1-pri", LabelAccount: "acme", "clawops.role": "primary"},
		SSHKeys:   []string{fingerprint},
		Bootstrap: providertest.Bootstrap("demo1-pri"),
	}
}

// testOptions completes what a test sets with this driver's image and fast polling.
func testOptions(c providertest.Conn) Options {
	return Options{
		Token:        c.Token,
		Endpoint:     c.Endpoint,
		HTTPClient:   c.HTTPClient,
		Image:        "debian-12-x64",
		SSHKeys:      c.SSHKeys,
		CloudInit:    c.CloudInit,
		PollInterval: time.Millisecond,
		Logger:       c.Logger,
	}
}

func newTestProvider(t *testing.T) (*Provider, *fakeAPI) {
	t.Helper()
	api := newFakeAPI(t)
	conn := api.Conn(t)
	conn.SSHKeys = []string{"512190"}
	p, err := New(testOptions(conn))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p, api
}

func TestConformance(t *testing.T) {
	unavailable := fleet.ReasonProviderUnavailable
	providertest.Run(t, providertest.Driver[Options]{
		Fake: func(t *testing.T) providertest.Fixture {
			api := newFakeAPI(t)
			return providertest.Fixture{API: api.Fake, Add: func(name string) string {
				return strconv.Itoa(api.addDroplet(name, "active", "s-1vcpu-2gb", []string{"clawops"}).ID)
			}}
		},
		Options:     testOptions,
		New:         func(o Options) (fleet.Provider, error) { return New(o) },
		Spec:        testSpec,
		UnknownID:   "999",
		MalformedID: "1?x=y",
		ServerPath:  "/v2/droplets/{id}",
		BadSpecs: []providertest.SpecCase{
			{Name: "label value with dot", Edit: func(s *fleet.ServerSpec) { s.Labels[LabelAccount] = "acme.eu" }, Reason: fleet.ReasonProviderInvalid},
		},
		APIErrors: []providertest.APIError{
			{Name: "429 with RateLimit-Reset", Method: "GET", Path: "/v2/droplets/{id}", Status: 429,
				Header: map[string]string{"RateLimit-Remaining": "0", "RateLimit-Reset": "1795003600"},
				Body:   `{"id":"too_many_requests","message":"API Rate limit exceeded."}`,
				Call:   "get", Reason: fleet.ReasonProviderRateLimited, Kind: clawops.KindTransient, RetryAt: time.Unix(1795003600, 0), Says: "rate limit"},
			{Name: "429 with Retry-After", Method: "POST", Path: "/v2/droplets", Status: 429,
				Header: map[string]string{"Retry-After": "12", "RateLimit-Reset": "1795003600"},
				Body:   `{"id":"too_many_requests","message":"API Rate limit exceeded."}`,
				Call:   "create", Reason: fleet.ReasonProviderRateLimited, Kind: clawops.KindTransient, RetryAt: time.Unix(1_000_012, 0), Says: "retry"},
			{Name: "quota 422", Method: "POST", Path: "/v2/droplets", Status: 422,
				Body: `{"id":"unprocessable_entity","message":"creating this/these droplet(s) will exceed your droplet limit"}`,
				Call: "create", Reason: fleet.ReasonProviderQuota, Kind: clawops.KindDenied, Says: "raise"},
			{Name: "quota 403", Method: "POST", Path: "/v2/droplets", Status: 403,
				Body: `{"id":"forbidden","message":"You have reached the droplet limit for this account."}`,
				Call: "create", Reason: fleet.ReasonProviderQuota, Kind: clawops.KindDenied, Says: "limit"},
			{Name: "404", Method: "GET", Path: "/v2/droplets/{id}", Status: 404,
				Body: `{"id":"not_found","message":"The resource you were accessing could not be found."}`,
				Call: "get", Reason: fleet.ReasonProviderNotFound, Kind: clawops.KindNotFound, Says: "deleted outside"},
			{Name: "401", Method: "GET", Path: "/v2/droplets/{id}", Status: 401,
				Body: `{"id":"unauthorized","message":"Unable to authenticate you"}`,
				Call: "get", Reason: fleet.ReasonProviderAuth, Kind: clawops.KindUnauthorized, Says: "write scope"},
			{Name: "403 read-only token", Method: "POST", Path: "/v2/droplets", Status: 403,
				Body: `{"id":"forbidden","message":"You do not have access for the attempted action."}`,
				Call: "create", Reason: fleet.ReasonProviderAuth, Kind: clawops.KindUnauthorized, Says: "token"},
			{Name: "500 on create", Method: "POST", Path: "/v2/droplets", Status: 500,
				Body: `{"id":"server_error","message":"Server Error"}`,
				Call: "create", Reason: unavailable, Kind: clawops.KindTransient, MaybeCreated: true, Says: "reconcile"},
			{Name: "503 on get", Method: "GET", Path: "/v2/droplets/{id}", Status: 503, Body: `upstream connect error`,
				Call: "get", Reason: unavailable, Kind: clawops.KindTransient, Says: "retry later"},
			{Name: "422 bad size", Method: "POST", Path: "/v2/droplets", Status: 422,
				Body: `{"id":"unprocessable_entity","message":"You specified an invalid size for Droplet creation."}`,
				Call: "create", Reason: fleet.ReasonProviderInvalid, Kind: clawops.KindInvalid, Says: "check region, size and image"},
			{Name: "list 429", Method: "GET", Path: "/v2/droplets", Status: 429,
				Header: map[string]string{"RateLimit-Reset": "1795003600"},
				Body:   `{"id":"too_many_requests","message":"API Rate limit exceeded."}`,
				Call:   "list", Reason: fleet.ReasonProviderRateLimited, Kind: clawops.KindTransient, Says: "rate limit"},
			{Name: "list 500", Method: "GET", Path: "/v2/droplets", Status: 500,
				Body: `{"id":"server_error","message":"Server Error"}`,
				Call: "list", Reason: unavailable, Kind: clawops.KindTransient, Says: "retry later"},
		},
	})
}

func TestCreate(t *testing.T) {
	p, api := newTestProvider(t)
	spec := testSpec()
	got, err := p.Create(context.Background(), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	want := fleet.Server{
		ProviderID: got.ProviderID,
		Name:       "demo1-pri",
		Region:     "fra1",
		Size:       "s-1vcpu-2gb",
		Status:     "new",
		PublicIPv4: "198.51.100.20",
		Labels:     map[string]string{LabelInstance: "demo1-pri", LabelAccount: "acme", "clawops.role": "primary"},
		CreatedAt:  time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Create result (-want +got):\n%s", diff)
	}

	var body struct {
		Name     string   `json:"name"`
		Region   string   `json:"region"`
		Size     string   `json:"size"`
		Image    string   `json:"image"`
		SSHKeys  []any    `json:"ssh_keys"`
		UserData string   `json:"user_data"`
		Tags     []string `json:"tags"`
	}
	if err := json.Unmarshal(api.Body("POST", "/v2/droplets"), &body); err != nil {
		t.Fatalf("decode create body: %v", err)
	}
	wantUserData := providertest.UserData(t, spec)
	if body.UserData != wantUserData {
		t.Errorf("user_data is not the rendered cloud-init:\n%.200s", body.UserData)
	}
	if body.Name != "demo1-pri" || body.Region != "fra1" || body.Size != "s-1vcpu-2gb" || body.Image != "debian-12-x64" {
		t.Errorf("create body = %q %q %q %q, want demo1-pri fra1 s-1vcpu-2gb debian-12-x64", body.Name, body.Region, body.Size, body.Image)
	}
	wantTags := []string{"clawops", "clawops_account:acme", "clawops_instance:demo1-pri", "clawops_role:primary"}
	if diff := cmp.Diff(wantTags, body.Tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]any{512190.0, fingerprint}, body.SSHKeys); diff != "" {
		t.Errorf("ssh_keys (-want +got):\n%s", diff)
	}
}

func TestGet(t *testing.T) {
	p, api := newTestProvider(t)
	d := api.addDroplet("demo2-pri", "active", "s-2vcpu-4gb", []string{"clawops", "clawops_instance:demo2-pri", "web"})
	got, err := p.Get(context.Background(), strconv.Itoa(d.ID))
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Name != "demo2-pri" || got.Status != "active" || got.Size != "s-2vcpu-4gb" || got.Region != "fra1" {
		t.Errorf("Get = %+v", got)
	}
	if diff := cmp.Diff(map[string]string{LabelInstance: "demo2-pri"}, got.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
}

func TestResize(t *testing.T) {
	tests := []struct {
		name         string
		status, from string
		to           string
		failShutdown bool
		wantActions  []string
		wantErr      clawops.ReasonCode
		wantSize     string
		wantStatus   string
	}{
		{"active droplet is stopped and started", "active", "s-1vcpu-2gb", "s-2vcpu-4gb", false,
			[]string{"shutdown", "resize", "power_on"}, "", "s-2vcpu-4gb", "active"},
		{"off droplet stays off", "off", "s-1vcpu-2gb", "s-2vcpu-4gb", false,
			[]string{"resize"}, "", "s-2vcpu-4gb", "off"},
		{"same size does nothing", "active", "s-1vcpu-2gb", "s-1vcpu-2gb", false,
			nil, "", "s-1vcpu-2gb", "active"},
		{"failed shutdown falls back to power off", "active", "s-1vcpu-2gb", "s-2vcpu-4gb", true,
			[]string{"shutdown", "power_off", "resize", "power_on"}, "", "s-2vcpu-4gb", "active"},
		{"failed resize is powered back on", "active", "s-1vcpu-2gb", "s-broken", false,
			[]string{"shutdown", "resize", "power_on"}, clawops.ReasonExecutionFailed, "s-1vcpu-2gb", "active"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, api := newTestProvider(t)
			api.failShutdown = tt.failShutdown
			d := api.addDroplet("demo4-pri", tt.status, tt.from, []string{"clawops"})
			id := strconv.Itoa(d.ID)
			err := p.Resize(context.Background(), id, tt.to)
			if got := clawops.ReasonOf(err); got != tt.wantErr || (tt.wantErr == "" && err != nil) {
				t.Fatalf("Resize = %v, want reason %q", err, tt.wantErr)
			}
			gotActions := actionTypes(t, api, d.ID)
			if diff := cmp.Diff(tt.wantActions, gotActions); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
			got, err := p.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if got.Size != tt.wantSize || got.Status != tt.wantStatus {
				t.Errorf("after Resize: size %q status %q, want %q %q", got.Size, got.Status, tt.wantSize, tt.wantStatus)
			}
		})
	}
}

// actionTypes lists the droplet actions the fake recorded, in order.
func actionTypes(t *testing.T, api *fakeAPI, id int) []string {
	t.Helper()
	api.mu.Lock()
	defer api.mu.Unlock()
	var out []string
	for aid := range api.nextID + 1 {
		a, ok := api.actions[aid]
		if !ok || a.Droplet != id {
			continue
		}
		out = append(out, a.Type)
	}
	return out
}

func TestResizeBody(t *testing.T) {
	p, api := newTestProvider(t)
	d := api.addDroplet("demo6-pri", "off", "s-1vcpu-2gb", []string{"clawops"})
	if err := p.Resize(context.Background(), strconv.Itoa(d.ID), "s-2vcpu-4gb"); err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(api.Body("POST", "/v2/droplets/"+strconv.Itoa(d.ID)+"/actions"), &body); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"type": "resize", "size": "s-2vcpu-4gb", "disk": false}, body); diff != "" {
		t.Errorf("resize body (-want +got):\n%s", diff)
	}
}

func TestListFollowsPages(t *testing.T) {
	p, api := newTestProvider(t)
	var want []string
	for i := range 5 {
		name := "acct" + strconv.Itoa(i) + "-pri"
		api.addDroplet(name, "active", "s-1vcpu-2gb", []string{"clawops", "clawops_instance:" + name, "clawops_account:acme"})
		want = append(want, name)
	}
	api.addDroplet("web-1", "active", "s-1vcpu-2gb", []string{"web"})
	api.maxPerPage = 2

	got, err := p.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var names []string
	for _, s := range got {
		names = append(names, s.Name)
		if s.Labels[LabelAccount] != "acme" || s.Labels[LabelInstance] != s.Name {
			t.Errorf("%s labels = %v", s.Name, s.Labels)
		}
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("List names (-want +got):\n%s", diff)
	}
	var pages []string
	for _, c := range api.Calls() {
		if strings.HasPrefix(c, "GET /v2/droplets?") {
			pages = append(pages, c)
			if !strings.Contains(c, "tag_name=clawops") {
				t.Errorf("list request %q does not filter on the clawops tag", c)
			}
		}
	}
	if len(pages) != 3 {
		t.Errorf("List made %d page requests, want 3: %v", len(pages), pages)
	}
}
