package hetzner

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/fleet/providers/providertest"
)

func testSpec() fleet.ServerSpec {
	return fleet.ServerSpec{
		Name:      "demo1-pri",
		Region:    "nbg1",
		Size:      "cx22",
		Labels:    map[string]string{LabelInstance: "demo1-pri", LabelAccount: "acme"},
		SSHKeys:   []string{"202"},
		Bootstrap: providertest.Bootstrap("demo1-pri"),
	}
}

// testOptions completes what a test sets with this driver's image and fast polling.
func testOptions(c providertest.Conn) Options {
	return Options{
		Token:           c.Token,
		Endpoint:        c.Endpoint,
		HTTPClient:      c.HTTPClient,
		Image:           "debian-12",
		SSHKeys:         c.SSHKeys,
		CloudInit:       c.CloudInit,
		PollInterval:    time.Millisecond,
		ShutdownTimeout: 5 * time.Second,
		Logger:          c.Logger,
	}
}

// newTestProvider starts a fake Hetzner API and a driver pointed at it.
func newTestProvider(t *testing.T, edit ...func(*Options)) (*Provider, *fakeAPI) {
	t.Helper()
	api := newFakeAPI(t)
	conn := api.Conn(t)
	conn.SSHKeys = []string{"101"}
	opts := testOptions(conn)
	for _, e := range edit {
		e(&opts)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p, api
}

func TestConformance(t *testing.T) {
	reset := time.Date(2026, 11, 20, 11, 0, 0, 0, time.UTC)
	invalid, unavailable := fleet.ReasonProviderInvalid, fleet.ReasonProviderUnavailable
	providertest.Run(t, providertest.Driver[Options]{
		Fake: func(t *testing.T) providertest.Fixture {
			api := newFakeAPI(t)
			return providertest.Fixture{API: api.Fake, Add: func(name string) string {
				return itoa(api.addServer(name, "running", "cx22", map[string]string{LabelInstance: name}).ID)
			}}
		},
		Options:     testOptions,
		New:         func(o Options) (fleet.Provider, error) { return New(o) },
		Spec:        testSpec,
		UnknownID:   "999999",
		MalformedID: "../servers",
		ServerPath:  "/v1/servers/{id}",
		APIErrors: []providertest.APIError{
			{Name: "429 rate limit", Method: "GET", Path: "/v1/servers/{id}", Status: 429,
				Header: map[string]string{"RateLimit-Limit": "3600", "RateLimit-Remaining": "0", "RateLimit-Reset": itoa(reset.Unix())},
				Body:   `{"error":{"code":"rate_limit_exceeded","message":"limit of 3600 requests per hour reached","details":{}}}`,
				Call:   "get", Reason: fleet.ReasonProviderRateLimited, Kind: clawops.KindTransient, RetryAt: reset, Says: "rate limit"},
			{Name: "429 with Retry-After", Method: "POST", Path: "/v1/servers", Status: 429,
				Header: map[string]string{"Retry-After": "30"},
				Body:   `{"error":{"code":"rate_limit_exceeded","message":"limit reached","details":{}}}`,
				Call:   "create", Reason: fleet.ReasonProviderRateLimited, Kind: clawops.KindTransient, RetryAt: time.Unix(1_000_030, 0), Says: "retry"},
			{Name: "quota", Method: "POST", Path: "/v1/servers", Status: 403,
				Body: `{"error":{"code":"resource_limit_exceeded","message":"server limit exceeded","details":{"limits":[{"name":"project_limits.server"}]}}}`,
				Call: "create", Reason: fleet.ReasonProviderQuota, Kind: clawops.KindDenied, Says: "raise"},
			{Name: "404", Method: "GET", Path: "/v1/servers/{id}", Status: 404,
				Body: `{"error":{"code":"not_found","message":"server with ID '1' not found","details":{}}}`,
				Call: "get", Reason: fleet.ReasonProviderNotFound, Kind: clawops.KindNotFound, Says: "deleted outside"},
			{Name: "401", Method: "GET", Path: "/v1/servers/{id}", Status: 401,
				Body: `{"error":{"code":"unauthorized","message":"unable to authenticate","details":{}}}`,
				Call: "get", Reason: fleet.ReasonProviderAuth, Kind: clawops.KindUnauthorized, Says: "token"},
			{Name: "403 forbidden", Method: "POST", Path: "/v1/servers", Status: 403,
				Body: `{"error":{"code":"forbidden","message":"insufficient permissions for this request","details":{}}}`,
				Call: "create", Reason: fleet.ReasonProviderAuth, Kind: clawops.KindUnauthorized, Says: "Read & Write"},
			{Name: "500 on create", Method: "POST", Path: "/v1/servers", Status: 500,
				Body: `{"error":{"code":"server_error","message":"internal server error","details":{}}}`,
				Call: "create", Reason: unavailable, Kind: clawops.KindTransient, MaybeCreated: true, Says: "reconcile"},
			{Name: "502 html", Method: "GET", Path: "/v1/servers/{id}", Status: 502, Body: `<html>bad gateway</html>`,
				Call: "get", Reason: unavailable, Kind: clawops.KindTransient, Says: "retry later"},
			{Name: "422 invalid input", Method: "POST", Path: "/v1/servers", Status: 422,
				Body: `{"error":{"code":"invalid_input","message":"invalid input in field 'server_type'","details":{"fields":[{"name":"server_type","messages":["unknown server type"]}]}}}`,
				Call: "create", Reason: invalid, Kind: clawops.KindInvalid, Says: "check region, size and image"},
			{Name: "uniqueness", Method: "POST", Path: "/v1/servers", Status: 409,
				Body: `{"error":{"code":"uniqueness_error","message":"server name is already used","details":{}}}`,
				Call: "create", Reason: invalid, Kind: clawops.KindInvalid, Says: "reconcile with List"},
			{Name: "protected", Method: "DELETE", Path: "/v1/servers/{id}", Status: 403,
				Body: `{"error":{"code":"protected","message":"server is delete protected","details":{}}}`,
				Call: "delete", Reason: invalid, Kind: clawops.KindDenied, Says: "lift its protection"},
			{Name: "list 503 maintenance", Method: "GET", Path: "/v1/servers", Status: 503,
				Body: `{"error":{"code":"maintenance","message":"cannot perform operation due to maintenance","details":{}}}`,
				Call: "list", Reason: unavailable, Kind: clawops.KindTransient, Says: "retry later"},
			{Name: "list 401", Method: "GET", Path: "/v1/servers", Status: 401,
				Body: `{"error":{"code":"unauthorized","message":"unable to authenticate","details":{}}}`,
				Call: "list", Reason: fleet.ReasonProviderAuth, Kind: clawops.KindUnauthorized, Says: "token"},
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
		Region:     "nbg1",
		Size:       "cx22",
		Status:     "initializing",
		PublicIPv4: "203.0.113.10",
		Labels:     map[string]string{LabelInstance: "demo1-pri", LabelAccount: "acme"},
		CreatedAt:  time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC),
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("Create result (-want +got):\n%s", diff)
	}
	if got.ProviderID == "" {
		t.Error("ProviderID is empty")
	}

	var body struct {
		Name             string            `json:"name"`
		ServerType       string            `json:"server_type"`
		Image            string            `json:"image"`
		Location         string            `json:"location"`
		UserData         string            `json:"user_data"`
		Labels           map[string]string `json:"labels"`
		SSHKeys          []int64           `json:"ssh_keys"`
		StartAfterCreate bool              `json:"start_after_create"`
	}
	if err := json.Unmarshal(api.Body("POST", "/v1/servers"), &body); err != nil {
		t.Fatalf("decode create body: %v", err)
	}
	wantUserData := providertest.UserData(t, spec)
	if body.UserData != wantUserData {
		t.Errorf("user_data is not the rendered cloud-init:\n%.200s", body.UserData)
	}
	if body.Name != "demo1-pri" || body.ServerType != "cx22" || body.Image != "debian-12" || body.Location != "nbg1" || !body.StartAfterCreate {
		t.Errorf("create body = name %q type %q image %q location %q start %v; want demo1-pri cx22 debian-12 nbg1 true",
			body.Name, body.ServerType, body.Image, body.Location, body.StartAfterCreate)
	}
	if diff := cmp.Diff(want.Labels, body.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{101, 202}, body.SSHKeys); diff != "" {
		t.Errorf("ssh_keys (-want +got):\n%s", diff)
	}
}

func TestGet(t *testing.T) {
	p, api := newTestProvider(t)
	s := api.addServer("demo2-pri", "running", "cx32", map[string]string{LabelInstance: "demo2-pri", LabelAccount: "acme"})
	got, err := p.Get(context.Background(), itoa(s.ID))
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Name != "demo2-pri" || got.Status != "running" || got.Size != "cx32" || got.Region != "nbg1" {
		t.Errorf("Get = %+v", got)
	}
}

func TestResize(t *testing.T) {
	tests := []struct {
		name           string
		status, from   string
		to             string
		ignoreShutdown bool
		wantActions    []string
		wantErr        clawops.ReasonCode
		wantType       string
		wantStatus     string
	}{
		{"running server is stopped and started", "running", "cx22", "cx32", false,
			[]string{"shutdown", "change_type", "poweron"}, "", "cx32", "running"},
		{"stopped server stays stopped", "off", "cx22", "cx32", false,
			[]string{"change_type"}, "", "cx32", "off"},
		{"same size does nothing", "running", "cx22", "cx22", false,
			nil, "", "cx22", "running"},
		{"shutdown ignored falls back to power off", "running", "cx22", "cx32", true,
			[]string{"shutdown", "poweroff", "change_type", "poweron"}, "", "cx32", "running"},
		{"failed change is powered back on", "running", "cx22", "cx-broken", false,
			[]string{"shutdown", "change_type", "poweron"}, clawops.ReasonExecutionFailed, "cx22", "running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, api := newTestProvider(t, func(o *Options) { o.ShutdownTimeout = 30 * time.Millisecond })
			api.ignoreShutdown = tt.ignoreShutdown
			s := api.addServer("demo4-pri", tt.status, tt.from, map[string]string{LabelInstance: "demo4-pri"})
			err := p.Resize(context.Background(), itoa(s.ID), tt.to)
			if got := clawops.ReasonOf(err); got != tt.wantErr || (tt.wantErr == "" && err != nil) {
				t.Fatalf("Resize = %v, want reason %q", err, tt.wantErr)
			}
			var actions []string
			for _, c := range api.Calls() {
				if strings.HasPrefix(c, "POST ") && strings.Contains(c, "/actions/") {
					actions = append(actions, c[strings.LastIndex(c, "/")+1:])
				}
			}
			if diff := cmp.Diff(tt.wantActions, actions); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
			if slices.Contains(actions, "change_type") {
				var body map[string]any
				if err := json.Unmarshal(api.Body("POST", "/v1/servers/"+itoa(s.ID)+"/actions/change_type"), &body); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(map[string]any{"server_type": tt.to, "upgrade_disk": false}, body); diff != "" {
					t.Errorf("change_type body (-want +got):\n%s", diff)
				}
			}
			got, err := p.Get(context.Background(), itoa(s.ID))
			if err != nil {
				t.Fatal(err)
			}
			if got.Size != tt.wantType || got.Status != tt.wantStatus {
				t.Errorf("after Resize: type %q status %q, want %q %q", got.Size, got.Status, tt.wantType, tt.wantStatus)
			}
		})
	}
}

func TestResizeUnknownServer(t *testing.T) {
	p, _ := newTestProvider(t)
	err := p.Resize(context.Background(), "424242", "cx32")
	if clawops.ReasonOf(err) != fleet.ReasonProviderNotFound {
		t.Errorf("Resize(unknown) = %v, want PROVIDER_NOT_FOUND", err)
	}
}

func TestListFollowsPages(t *testing.T) {
	p, api := newTestProvider(t)
	var want []string
	for i := range 5 {
		name := "acct" + itoa(int64(i)) + "-pri"
		api.addServer(name, "running", "cx22", map[string]string{LabelInstance: name, LabelAccount: "acme"})
		want = append(want, name)
	}
	api.addServer("not-ours", "running", "cx22", map[string]string{"team": "web"})
	api.addServer("no-labels", "running", "cx22", nil)
	api.maxPerPage = 2

	got, err := p.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var names []string
	for _, s := range got {
		names = append(names, s.Name)
		if s.Labels[LabelAccount] != "acme" {
			t.Errorf("%s labels = %v", s.Name, s.Labels)
		}
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("List names (-want +got):\n%s", diff)
	}
	var pages []string
	for _, c := range api.Calls() {
		if strings.HasPrefix(c, "GET /v1/servers?") {
			pages = append(pages, c)
		}
	}
	if len(pages) != 3 {
		t.Errorf("List made %d page requests, want 3: %v", len(pages), pages)
	}
	for _, c := range pages {
		if !strings.Contains(c, "label_selector=clawops.instance") {
			t.Errorf("list request %q lacks the clawops label selector", c)
		}
	}
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }
