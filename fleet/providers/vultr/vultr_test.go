package vultr

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/fleet/providers/providertest"
)

const (
	keyA = "3b8066a7-b438-455a-9688-44afc9a3597f"
	keyB = "9f6c8f52-1a8e-4a3a-9c1b-6a8c3a1b2c3d"
	// rootPassword is what the fake hands out on create; it must never reach a log.
	rootPassword = "v8!Zq2#pL5"
)

func testSpec() fleet.ServerSpec {
	return fleet.ServerSpec{
		Name:      "demo1-pri",
		Region:    "fra",
		Size:      "vc2-1c-2gb",
		Labels:    map[string]string{LabelInstance: "demo1-pri", LabelAccount: "acme"},
		SSHKeys:   []string{keyB},
		Bootstrap: providertest.Bootstrap("demo1-pri"),
	}
}

// testOptions completes what a test sets with this driver's image.
func testOptions(c providertest.Conn) Options {
	return Options{
		Token:      c.Token,
		Endpoint:   c.Endpoint,
		HTTPClient: c.HTTPClient,
		Image:      "2136",
		SSHKeys:    c.SSHKeys,
		CloudInit:  c.CloudInit,
		Logger:     c.Logger,
	}
}

func newTestProvider(t *testing.T) (*Provider, *fakeAPI) {
	t.Helper()
	api := newFakeAPI(t)
	conn := api.Conn(t, rootPassword)
	conn.SSHKeys = []string{keyA}
	p, err := New(testOptions(conn))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p, api
}

func TestConformance(t *testing.T) {
	rateLimited, unavailable := fleet.ReasonProviderRateLimited, fleet.ReasonProviderUnavailable
	providertest.Run(t, providertest.Driver[Options]{
		Fake: func(t *testing.T) providertest.Fixture {
			api := newFakeAPI(t)
			return providertest.Fixture{API: api.Fake, Add: func(name string) string {
				return api.add(name, "active", "running", "vc2-1c-2gb", []string{"clawops"}).ID
			}}
		},
		Options:     testOptions,
		New:         func(o Options) (fleet.Provider, error) { return New(o) },
		Spec:        testSpec,
		Secrets:     []string{rootPassword},
		UnknownID:   "cb676a46-66fd-4dfb-b839-999999999999",
		MalformedID: "../account",
		ServerPath:  "/v2/instances/{id}",
		BadSpecs: []providertest.SpecCase{
			{Name: "image slug", Edit: func(s *fleet.ServerSpec) { s.Image = "debian-12" }, Reason: fleet.ReasonProviderInvalid},
		},
		BadOptions: []providertest.OptionCase[Options]{
			{Name: "bad image", Edit: func(o *Options) { o.Image = "debian-12" }},
		},
		APIErrors: []providertest.APIError{
			{Name: "429 with Retry-After", Method: "GET", Path: "/v2/instances/{id}", Status: 429, Header: map[string]string{"Retry-After": "2"},
				Body: `{"error":"Rate limit reached - please try your request again later.","status":429}`,
				Call: "get", Reason: rateLimited, Kind: clawops.KindTransient, RetryAt: time.Unix(1_000_002, 0), Says: "rate limit"},
			{Name: "429 on create", Method: "POST", Path: "/v2/instances", Status: 429,
				Body: `{"error":"Rate limit reached - please try your request again later.","status":429}`,
				Call: "create", Reason: rateLimited, Kind: clawops.KindTransient, Says: "wait"},
			{Name: "quota", Method: "POST", Path: "/v2/instances", Status: 400,
				Body: `{"error":"Server add failed: You have reached the maximum number of active instances for this account. Please contact support to increase your limit.","status":400}`,
				Call: "create", Reason: fleet.ReasonProviderQuota, Kind: clawops.KindDenied, Says: "raise"},
			{Name: "404", Method: "GET", Path: "/v2/instances/{id}", Status: 404, Body: `{"error":"Invalid instance-id.","status":404}`,
				Call: "get", Reason: fleet.ReasonProviderNotFound, Kind: clawops.KindNotFound, Says: "deleted outside"},
			{Name: "401", Method: "GET", Path: "/v2/instances/{id}", Status: 401, Body: `{"error":"Invalid API token.","status":401}`,
				Call: "get", Reason: fleet.ReasonProviderAuth, Kind: clawops.KindUnauthorized, Says: "access control"},
			{Name: "403 ip not allowed", Method: "POST", Path: "/v2/instances", Status: 403, Body: `{"error":"Unauthorized IP address: 198.51.100.9","status":403}`,
				Call: "create", Reason: fleet.ReasonProviderAuth, Kind: clawops.KindUnauthorized, Says: "key"},
			{Name: "500 on create", Method: "POST", Path: "/v2/instances", Status: 500, Body: `{"error":"Internal server error.","status":500}`,
				Call: "create", Reason: unavailable, Kind: clawops.KindTransient, MaybeCreated: true, Says: "reconcile"},
			{Name: "503 html on get", Method: "GET", Path: "/v2/instances/{id}", Status: 503, Body: `<html>503 Service Unavailable</html>`,
				Call: "get", Reason: unavailable, Kind: clawops.KindTransient, Says: "retry later"},
			{Name: "400 bad plan", Method: "POST", Path: "/v2/instances", Status: 400, Body: `{"error":"Invalid plan chosen.","status":400}`,
				Call: "create", Reason: fleet.ReasonProviderInvalid, Kind: clawops.KindInvalid, Says: "check region, plan and image"},
			{Name: "list 500", Method: "GET", Path: "/v2/instances", Status: 500, Body: `{"error":"Internal server error.","status":500}`,
				Call: "list", Reason: unavailable, Kind: clawops.KindTransient, Says: "retry later"},
			{Name: "list 401", Method: "GET", Path: "/v2/instances", Status: 401, Body: `{"error":"Invalid API token.","status":401}`,
				Call: "list", Reason: fleet.ReasonProviderAuth, Kind: clawops.KindUnauthorized, Says: "key"},
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
		Region:     "fra",
		Size:       "vc2-1c-2gb",
		Status:     "pending",
		Labels:     map[string]string{LabelInstance: "demo1-pri", LabelAccount: "acme"},
		CreatedAt:  time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC),
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("Create result (-want +got):\n%s", diff)
	}

	var body struct {
		Region   string   `json:"region"`
		Plan     string   `json:"plan"`
		Label    string   `json:"label"`
		Hostname string   `json:"hostname"`
		OsID     int      `json:"os_id"`
		SSHKeys  []string `json:"sshkey_id"`
		Tags     []string `json:"tags"`
		Backups  string   `json:"backups"`
		UserData string   `json:"user_data"`
	}
	if err := json.Unmarshal(api.Body("POST", "/v2/instances"), &body); err != nil {
		t.Fatalf("decode create body: %v", err)
	}
	userData, err := base64.StdEncoding.DecodeString(body.UserData)
	if err != nil {
		t.Fatalf("user_data is not base64: %v", err)
	}
	wantUserData := providertest.UserData(t, spec)
	if string(userData) != wantUserData {
		t.Errorf("user_data is not the rendered cloud-init:\n%.200s", userData)
	}
	if body.Region != "fra" || body.Plan != "vc2-1c-2gb" || body.Label != "demo1-pri" || body.Hostname != "demo1-pri" || body.OsID != 2136 || body.Backups != "disabled" {
		t.Errorf("create body = %+v", body)
	}
	if diff := cmp.Diff([]string{"clawops", "clawops.account=acme", "clawops.instance=demo1-pri"}, body.Tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{keyA, keyB}, body.SSHKeys); diff != "" {
		t.Errorf("sshkey_id (-want +got):\n%s", diff)
	}
}

func TestCreateImageForms(t *testing.T) {
	tests := []struct {
		image string
		field string
		want  any
	}{
		{"2284", "os_id", 2284.0},
		{"snapshot:" + keyA, "snapshot_id", keyA},
		{"app:docker", "image_id", "docker"},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			p, api := newTestProvider(t)
			spec := testSpec()
			spec.Image = tt.image
			if _, err := p.Create(context.Background(), spec); err != nil {
				t.Fatalf("Create: %v", err)
			}
			var body map[string]any
			if err := json.Unmarshal(api.Body("POST", "/v2/instances"), &body); err != nil {
				t.Fatal(err)
			}
			if body[tt.field] != tt.want {
				t.Errorf("%s = %v, want %v", tt.field, body[tt.field], tt.want)
			}
		})
	}
}

func TestGet(t *testing.T) {
	p, api := newTestProvider(t)
	on := api.add("demo2-pri", "active", "running", "vc2-2c-4gb", []string{"clawops", "clawops.instance=demo2-pri", "web"})
	off := api.add("demo2-sby", "active", "stopped", "vc2-2c-4gb", []string{"clawops"})
	got, err := p.Get(context.Background(), on.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	want := fleet.Server{ProviderID: on.ID, Name: "demo2-pri", Region: "fra", Size: "vc2-2c-4gb", Status: "running",
		PublicIPv4: "192.0.2.7", Labels: map[string]string{LabelInstance: "demo2-pri"},
		CreatedAt: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("Get (-want +got):\n%s", diff)
	}
	if got, _ := p.Get(context.Background(), off.ID); got.Status != "stopped" {
		t.Errorf("stopped instance status = %q, want stopped", got.Status)
	}
}

func TestResize(t *testing.T) {
	p, api := newTestProvider(t)
	tags := []string{"clawops", "clawops.account=acme", "clawops.instance=demo4-pri"}
	in := api.add("demo4-pri", "active", "running", "vc2-1c-2gb", tags)

	if err := p.Resize(context.Background(), in.ID, "vc2-2c-4gb"); err != nil {
		t.Fatalf("Resize: %v", err)
	}
	var body map[string]any
	if err := json.Unmarshal(api.Body("PATCH", "/v2/instances/"+in.ID), &body); err != nil {
		t.Fatal(err)
	}
	if body["plan"] != "vc2-2c-4gb" {
		t.Errorf("PATCH plan = %v, want vc2-2c-4gb", body["plan"])
	}
	got, err := p.Get(context.Background(), in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != "vc2-2c-4gb" {
		t.Errorf("plan after Resize = %q, want vc2-2c-4gb", got.Size)
	}
	if got.Labels[LabelAccount] != "acme" || got.Labels[LabelInstance] != "demo4-pri" {
		t.Errorf("labels after Resize = %v; the plan change must keep the tags", got.Labels)
	}

	n := len(api.Calls())
	if err := p.Resize(context.Background(), in.ID, "vc2-2c-4gb"); err != nil {
		t.Errorf("Resize to the same plan = %v", err)
	}
	for _, c := range api.Calls()[n:] {
		if strings.HasPrefix(c, "PATCH") {
			t.Errorf("Resize to the same plan sent %s", c)
		}
	}

	err = p.Resize(context.Background(), in.ID, "vc2-1c-1gb")
	if clawops.ReasonOf(err) != fleet.ReasonProviderInvalid || clawops.KindOf(err) != clawops.KindInvalid {
		t.Errorf("downgrade = %v, want PROVIDER_INVALID_REQUEST", err)
	}
	if !strings.Contains(err.Error(), "larger") {
		t.Errorf("downgrade error %q does not carry Vultr's reason", err)
	}
}

func TestListFollowsCursor(t *testing.T) {
	p, api := newTestProvider(t)
	var want []string
	for i := range 5 {
		name := "acct" + string(rune('a'+i)) + "-pri"
		api.add(name, "active", "running", "vc2-1c-2gb", []string{"clawops", "clawops.instance=" + name, "clawops.account=acme"})
		want = append(want, name)
	}
	api.add("web-1", "active", "running", "vc2-1c-2gb", []string{"web"})
	api.maxPerPage = 2

	got, err := p.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var names []string
	for _, s := range got {
		names = append(names, s.Name)
		if s.Labels[LabelInstance] != s.Name {
			t.Errorf("%s labels = %v", s.Name, s.Labels)
		}
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("List names (-want +got):\n%s", diff)
	}
	var pages []string
	for _, c := range api.Calls() {
		if strings.HasPrefix(c, "GET /v2/instances?") {
			pages = append(pages, c)
			if !strings.Contains(c, "tag=clawops") {
				t.Errorf("list request %q does not filter on the clawops tag", c)
			}
		}
	}
	if len(pages) != 3 || !strings.Contains(pages[1], "cursor=") {
		t.Errorf("List page requests = %v, want 3 following the cursor", pages)
	}
}

// TestConcurrentCallsKeepTheirOwnStatus checks that the per-call exchange does not mix
// answers: a 404 for one call never becomes another call's error.
func TestConcurrentCallsKeepTheirOwnStatus(t *testing.T) {
	p, api := newTestProvider(t)
	in := api.add("demo7-pri", "active", "running", "vc2-1c-2gb", []string{"clawops"})
	missing := "cb676a46-66fd-4dfb-b839-999999999999"
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				_, err := p.Get(context.Background(), in.ID)
				errs <- err
				return
			}
			_, err := p.Get(context.Background(), missing)
			if clawops.ReasonOf(err) != fleet.ReasonProviderNotFound {
				errs <- errors.New("missing instance: got " + string(clawops.ReasonOf(err)))
				return
			}
			errs <- nil
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
