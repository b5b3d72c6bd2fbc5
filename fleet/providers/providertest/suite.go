package providertest

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/fleet/cloudinit"
	"github.com/gatewayforge/clawops/fleet/providers/providerkit"
)

// Driver is what the conformance suite needs to know of one driver; O is its Options.
type Driver[O any] struct {
	// Fake starts the driver's fake API, holding no servers.
	Fake func(t *testing.T) Fixture
	// Options turns what the suite sets into the driver's options.
	Options func(Conn) O
	// New is the driver's constructor.
	New func(O) (fleet.Provider, error)
	// Spec returns a spec the driver accepts.
	Spec func() fleet.ServerSpec
	// Secrets are further strings that must never reach a log or an error, such as a
	// password the fake API hands out.
	Secrets []string
	// UnknownID is a well-formed provider ID of a server that does not exist;
	// MalformedID one the driver must refuse without calling the API.
	UnknownID, MalformedID string
	// ServerPath is the API path of one server, with {id} for its ID: "/v2/droplets/{id}".
	ServerPath string

	// The driver's own cases, run after the suite's common ones.
	BadSpecs   []SpecCase
	BadOptions []OptionCase[O]
	APIErrors  []APIError
}

// Fixture is a driver's fake API, started for one test.
type Fixture struct {
	API *Fake
	// Add puts a running server named name into the fake and returns its provider ID.
	Add func(name string) string
}

// SpecCase is a spec Create must refuse, with reason, before calling the API.
type SpecCase struct {
	Name   string
	Edit   func(*fleet.ServerSpec)
	Reason clawops.ReasonCode
}

// OptionCase is an option New must refuse as invalid.
type OptionCase[O any] struct {
	Name string
	Edit func(*O)
}

// APIError is a failure the API answers and the error the driver must make of it.
type APIError struct {
	Name   string
	Method string
	Path   string // may hold {id}, the ID of a server the fake holds
	Status int
	Header map[string]string
	Body   string
	Call   string // "create", "get", "delete" or "list"

	Reason       clawops.ReasonCode
	Kind         clawops.Kind
	MaybeCreated bool      // the error wraps fleet.ErrMaybeCreated
	RetryAt      time.Time // when set, what fleet.RetryAt says at time.Unix(1_000_000, 0)
	Says         string    // a piece of the message
}

// Run runs the conformance suite against d, one subtest per behaviour.
func Run[O any](t *testing.T, d Driver[O]) {
	t.Run("NewRefusesBadOptions", func(t *testing.T) { newRefusesBadOptions(t, d) })
	t.Run("NewKeepsCallersClient", func(t *testing.T) { newKeepsCallersClient(t, d) })
	t.Run("CreateRefusesBadSpecWithoutCalling", func(t *testing.T) { createRefusesBadSpec(t, d) })
	t.Run("GetUnknown", func(t *testing.T) { getUnknown(t, d) })
	t.Run("MalformedIDNeverReachesTheAPI", func(t *testing.T) { malformedID(t, d) })
	t.Run("DeleteIsIdempotent", func(t *testing.T) { deleteIsIdempotent(t, d) })
	t.Run("APIErrors", func(t *testing.T) { apiErrors(t, d) })
	t.Run("NoAnswer", func(t *testing.T) { noAnswer(t, d) })
}

// start starts d's fake API and a driver pointed at it.
func start[O any](t *testing.T, d Driver[O]) (fleet.Provider, Fixture) {
	t.Helper()
	fx := d.Fake(t)
	return mustNew(t, d, fx.API.Conn(t, d.Secrets...)), fx
}

func mustNew[O any](t *testing.T, d Driver[O], c Conn) fleet.Provider {
	t.Helper()
	p, err := d.New(d.Options(c))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func newRefusesBadOptions[O any](t *testing.T, d Driver[O]) {
	good := Conn{Token: "t0ken", CloudInit: CloudInit()}
	common := []struct {
		name string
		edit func(*Conn)
	}{
		{"no token", func(c *Conn) { c.Token = "" }},
		{"token with newline", func(c *Conn) { c.Token = "abc\ndef" }},
		{"token with trailing newline", func(c *Conn) { c.Token = "KEY\n" }},
		{"token with space", func(c *Conn) { c.Token = "dop v1" }},
		{"endpoint with ftp scheme", func(c *Conn) { c.Endpoint = "ftp://x" }},
		{"endpoint without scheme", func(c *Conn) { c.Endpoint = "api.digitalocean.com" }},
		{"endpoint without scheme or host", func(c *Conn) { c.Endpoint = "://x" }},
		{"ssh key as a name", func(c *Conn) { c.SSHKeys = []string{"laptop"} }},
		{"ssh key as a hyphenated name", func(c *Conn) { c.SSHKeys = []string{"my-laptop"} }},
		{"no cloud-init download", func(c *Conn) { c.CloudInit = cloudinit.Options{} }},
	}
	check := func(t *testing.T, o O) {
		if _, err := d.New(o); clawops.KindOf(err) != clawops.KindInvalid {
			t.Errorf("New = %v, want an invalid error", err)
		}
	}
	for _, tt := range common {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			check(t, d.Options(c))
		})
	}
	for _, tt := range d.BadOptions {
		t.Run(tt.Name, func(t *testing.T) {
			o := d.Options(good)
			tt.Edit(&o)
			check(t, o)
		})
	}
	if _, err := d.New(d.Options(good)); err != nil {
		t.Errorf("New(good) = %v", err)
	}
}

func newKeepsCallersClient[O any](t *testing.T, d Driver[O]) {
	hc := &http.Client{}
	if _, err := d.New(d.Options(Conn{Token: "t0ken", CloudInit: CloudInit(), HTTPClient: hc})); err != nil {
		t.Fatal(err)
	}
	if hc.Transport != nil {
		t.Error("New replaced the caller's transport; the token would leak into other requests")
	}
}

func createRefusesBadSpec[O any](t *testing.T, d Driver[O]) {
	invalid := fleet.ReasonProviderInvalid
	bootstrap := cloudinit.ReasonInvalidBootstrap
	cases := []SpecCase{
		{"bad name", func(s *fleet.ServerSpec) { s.Name = "demo 1" }, invalid},
		{"name with underscore", func(s *fleet.ServerSpec) { s.Name = "demo1_pri" }, invalid},
		{"capitalised name with underscore", func(s *fleet.ServerSpec) { s.Name = "Demo_1" }, invalid},
		{"no name", func(s *fleet.ServerSpec) { s.Name = "" }, invalid},
		{"no region", func(s *fleet.ServerSpec) { s.Region = "" }, invalid},
		{"no size", func(s *fleet.ServerSpec) { s.Size = "" }, invalid},
		{"bad label value", func(s *fleet.ServerSpec) { s.Labels["team"] = "a b" }, invalid},
		{"bad label key", func(s *fleet.ServerSpec) { s.Labels["-x"] = "v" }, invalid},
		{"label value with colon", func(s *fleet.ServerSpec) { s.Labels["team"] = "a:b" }, invalid},
		{"label value with equals", func(s *fleet.ServerSpec) { s.Labels["team"] = "a=b" }, invalid},
		{"label key with colon", func(s *fleet.ServerSpec) { s.Labels["a:b"] = "c" }, invalid},
		{"no account label", func(s *fleet.ServerSpec) { delete(s.Labels, providerkit.LabelAccount) }, invalid},
		{"instance label mismatch", func(s *fleet.ServerSpec) { s.Labels[providerkit.LabelInstance] = "other" }, invalid},
		{"ssh key as a name", func(s *fleet.ServerSpec) { s.SSHKeys = []string{"laptop"} }, invalid},
		{"ssh key as public key text", func(s *fleet.ServerSpec) { s.SSHKeys = []string{"ssh-ed25519 AAAA"} }, invalid},
		{"ssh key as short fingerprint", func(s *fleet.ServerSpec) { s.SSHKeys = []string{"ab:cd"} }, invalid},
		{"bad bootstrap", func(s *fleet.ServerSpec) { s.Bootstrap.GatewayURL = "http://x" }, bootstrap},
		{"newline in join token", func(s *fleet.ServerSpec) { s.Bootstrap.JoinToken = "abcdefghijklmnopq\nruncmd: [x]" }, bootstrap},
		{"unpinned openclaw image", func(s *fleet.ServerSpec) { s.Bootstrap.OpenClawImage = "openclaw/openclaw:latest" }, bootstrap},
		{"quote in gateway url", func(s *fleet.ServerSpec) { s.Bootstrap.GatewayURL = `wss://x/"` }, bootstrap},
		{"no tailscale key", func(s *fleet.ServerSpec) { s.Bootstrap.TailscaleKey = "" }, bootstrap},
	}
	for _, tt := range append(cases, d.BadSpecs...) {
		t.Run(tt.Name, func(t *testing.T) {
			p, fx := start(t, d)
			spec := d.Spec()
			tt.Edit(&spec)
			_, err := p.Create(context.Background(), spec)
			if got := clawops.ReasonOf(err); got != tt.Reason {
				t.Fatalf("reason = %q (err %v), want %q", got, err, tt.Reason)
			}
			if got := clawops.KindOf(err); got != clawops.KindInvalid {
				t.Errorf("kind = %v, want invalid", got)
			}
			if calls := fx.API.Calls(); len(calls) != 0 {
				t.Errorf("the API was called: %v", calls)
			}
		})
	}
}

func getUnknown[O any](t *testing.T, d Driver[O]) {
	p, _ := start(t, d)
	_, err := p.Get(context.Background(), d.UnknownID)
	if clawops.ReasonOf(err) != fleet.ReasonProviderNotFound || clawops.KindOf(err) != clawops.KindNotFound {
		t.Errorf("Get(unknown) = %v, want PROVIDER_NOT_FOUND / not found", err)
	}
}

func malformedID[O any](t *testing.T, d Driver[O]) {
	p, fx := start(t, d)
	ctx := context.Background()
	calls := map[string]func() error{
		"Get":    func() error { _, err := p.Get(ctx, d.MalformedID); return err },
		"Delete": func() error { return p.Delete(ctx, d.MalformedID) },
		"Resize": func() error { return p.Resize(ctx, d.MalformedID, d.Spec().Size) },
	}
	for name, call := range calls {
		if err := call(); clawops.ReasonOf(err) != fleet.ReasonProviderInvalid {
			t.Errorf("%s(%q) = %v, want PROVIDER_INVALID_REQUEST", name, d.MalformedID, err)
		}
	}
	if got := fx.API.Calls(); len(got) != 0 {
		t.Errorf("a malformed ID reached the API: %v", got)
	}
}

func deleteIsIdempotent[O any](t *testing.T, d Driver[O]) {
	p, fx := start(t, d)
	id := fx.Add("demo3-pri")
	if err := p.Delete(context.Background(), id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := p.Delete(context.Background(), id); err != nil {
		t.Errorf("second Delete (404) = %v, want nil", err)
	}
	path := strings.Replace(d.ServerPath, "{id}", id, 1)
	if diff := cmp.Diff([]string{"DELETE " + path, "DELETE " + path}, fx.API.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func apiErrors[O any](t *testing.T, d Driver[O]) {
	for _, tt := range d.APIErrors {
		t.Run(tt.Name, func(t *testing.T) {
			p, fx := start(t, d)
			id := fx.Add("demo5-pri")
			fx.API.FailWith(tt.Method, strings.Replace(tt.Path, "{id}", id, 1), tt.Status, tt.Header, tt.Body)
			var err error
			switch tt.Call {
			case "create":
				_, err = p.Create(context.Background(), d.Spec())
			case "get":
				_, err = p.Get(context.Background(), id)
			case "delete":
				err = p.Delete(context.Background(), id)
			case "list":
				_, err = p.List(context.Background())
			default:
				t.Fatalf("unknown call %q", tt.Call)
			}
			checkErr(t, d, fx.API, err, tt.Reason, tt.Kind, tt.MaybeCreated, tt.Says)
			if !tt.RetryAt.IsZero() {
				at, ok := fleet.RetryAt(err, time.Unix(1_000_000, 0))
				if !ok || !at.Equal(tt.RetryAt) {
					t.Errorf("RetryAt = %v, %v; want %v", at, ok, tt.RetryAt)
				}
			}
		})
	}
}

func noAnswer[O any](t *testing.T, d Driver[O]) {
	t.Run("connection refused", func(t *testing.T) {
		fx := d.Fake(t)
		p := mustNew(t, d, Conn{Token: fx.API.Token, Endpoint: fx.API.Endpoint, CloudInit: CloudInit()})
		fx.API.Server.Close()
		_, err := p.Get(context.Background(), d.UnknownID)
		checkErr(t, d, fx.API, err, fleet.ReasonProviderUnavailable, clawops.KindTransient, false, "no answer")
		_, err = p.Create(context.Background(), d.Spec())
		checkErr(t, d, fx.API, err, fleet.ReasonProviderUnavailable, clawops.KindTransient, true, "no answer", "reconcile")
	})
	t.Run("timeout during create", func(t *testing.T) {
		fx := d.Fake(t)
		release := make(chan struct{})
		fx.API.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select { // as if the cloud were still working on it
			case <-r.Context().Done():
			case <-release:
			}
		})
		t.Cleanup(func() { close(release) })
		p := mustNew(t, d, Conn{Token: fx.API.Token, Endpoint: fx.API.Endpoint, CloudInit: CloudInit(),
			HTTPClient: &http.Client{Timeout: 100 * time.Millisecond}})
		_, err := p.Create(context.Background(), d.Spec())
		checkErr(t, d, fx.API, err, fleet.ReasonProviderUnavailable, clawops.KindTransient, true, "reconcile")
	})
}

// checkErr checks err's reason, kind, ErrMaybeCreated and message, and that it reveals
// no secret.
func checkErr[O any](t *testing.T, d Driver[O], api *Fake, err error, reason clawops.ReasonCode, kind clawops.Kind, maybe bool, says ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("err = nil, want an error")
	}
	if got := clawops.ReasonOf(err); got != reason {
		t.Errorf("reason = %q, want %q (err: %v)", got, reason, err)
	}
	if got := clawops.KindOf(err); got != kind {
		t.Errorf("kind = %v, want %v", got, kind)
	}
	if got := errors.Is(err, fleet.ErrMaybeCreated); got != maybe {
		t.Errorf("errors.Is(err, ErrMaybeCreated) = %v, want %v (err: %v)", got, maybe, err)
	}
	for _, text := range says {
		if !strings.Contains(err.Error(), text) {
			t.Errorf("error %q does not say %q", err, text)
		}
	}
	for _, secret := range append([]string{api.Token, JoinToken, TailscaleKey}, d.Secrets...) {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error reveals a secret: %v", err)
		}
	}
}
