package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/store"
)

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeProvider stands in for a cloud at the Provider boundary and records every call.
type fakeProvider struct {
	name string

	mu        sync.Mutex
	creates   []ServerSpec
	deletes   []string
	resizes   []string
	failOn    map[string]error   // server name → Create error
	failSeq   map[string][]error // server name → errors of successive Creates (nil: success)
	maybe     map[string]bool    // server name → create the server but answer ErrMaybeCreated
	servers   map[string]Server  // by provider ID: what List returns
	deleteErr error
}

func (p *fakeProvider) Name() string { return p.name }

func (p *fakeProvider) Create(_ context.Context, spec ServerSpec) (Server, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.creates = append(p.creates, spec)
	if err := p.failOn[spec.Name]; err != nil {
		return Server{}, err
	}
	if seq := p.failSeq[spec.Name]; len(seq) > 0 {
		err := seq[0]
		p.failSeq[spec.Name] = seq[1:]
		if err != nil {
			return Server{}, err
		}
	}
	srv := Server{ProviderID: p.name + "-" + spec.Name, Name: spec.Name, Region: spec.Region, Size: spec.Size,
		Status: "starting", Labels: spec.Labels}
	if p.servers == nil {
		p.servers = map[string]Server{}
	}
	p.servers[srv.ProviderID] = srv
	if p.maybe[spec.Name] {
		delete(p.maybe, spec.Name)
		return Server{}, fmt.Errorf("%w: connection reset", ErrMaybeCreated)
	}
	return srv, nil
}

func (p *fakeProvider) Get(context.Context, string) (Server, error) { return Server{}, nil }

func (p *fakeProvider) Delete(_ context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deletes = append(p.deletes, id)
	if p.deleteErr == nil {
		delete(p.servers, id)
	}
	return p.deleteErr
}

func (p *fakeProvider) Resize(_ context.Context, id, size string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resizes = append(p.resizes, id+"="+size)
	return nil
}

func (p *fakeProvider) List(context.Context) ([]Server, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Server
	for _, s := range p.servers {
		out = append(out, s)
	}
	return out, nil
}

func (p *fakeProvider) calls() ([]ServerSpec, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ServerSpec(nil), p.creates...), append([]string(nil), p.deletes...)
}

type fakeMinter struct{ err error }

func (m fakeMinter) MintJoinToken(_ context.Context, id clawops.InstanceID, _ time.Duration) (string, error) {
	if m.err != nil {
		return "", m.err
	}
	return "join-" + string(id), nil
}

// invocation is one recorded node command.
type invocation struct {
	Node    clawops.NodeID
	Command string
	Params  string
}

// recordingInvoker records commands and answers from a table keyed by command.
type recordingInvoker struct {
	mu      sync.Mutex
	calls   []invocation
	answers map[string]json.RawMessage
	err     error
}

func (r *recordingInvoker) Invoke(_ context.Context, node clawops.NodeID, command string, params any) (json.RawMessage, error) {
	b, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, invocation{node, command, string(b)})
	if r.err != nil {
		return nil, r.err
	}
	return r.answers[command], nil
}

func (r *recordingInvoker) recorded() []invocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]invocation(nil), r.calls...)
}

type harness struct {
	db    *gorm.DB
	svc   *Service
	clock *testClock
	hz    *fakeProvider
	vu    *fakeProvider
	nodes *recordingInvoker

	mu          sync.Mutex
	transitions []Transition
}

func (h *harness) seen() []Transition {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Transition(nil), h.transitions...)
}

func newHarness(t testing.TB, mutate func(*Options)) *harness {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{DSN: filepath.Join(t.TempDir(), "fleet.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	return newHarnessDB(t, db, mutate)
}

func newHarnessDB(t testing.TB, db *gorm.DB, mutate func(*Options)) *harness {
	t.Helper()
	var err error
	if err := Migrate(db); err != nil {
		t.Fatal(err)
	}
	h := &harness{
		db:    db,
		clock: &testClock{t: time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)},
		hz:    &fakeProvider{name: "hetzner"},
		vu:    &fakeProvider{name: "vultr"},
		nodes: &recordingInvoker{answers: map[string]json.RawMessage{}},
	}
	opts := Options{
		DB: db, Nodes: h.nodes, Tokens: fakeMinter{},
		Providers:  map[string]Provider{"hetzner": h.hz, "vultr": h.vu},
		GatewayURL: "ws://127.0.0.1:1/v1/nodes/ws", GatewayKey: "gwkey",
		Sizes:            map[string]map[string]string{"hetzner": {"standard": "cx22"}},
		HeartbeatTimeout: 30 * time.Second, Clock: h.clock,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		OnTransition: func(_ context.Context, tr Transition) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.transitions = append(h.transitions, tr)
		},
	}
	if mutate != nil {
		mutate(&opts)
	}
	h.svc, err = NewService(opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var demoSpec = PairSpec{Account: "demo1", Tier: "standard",
	Primary: Placement{Provider: "hetzner", Region: "fsn1"},
	Standby: Placement{Provider: "vultr", Region: "ams"}}

// seedPair provisions demo-like pairs and sets their rows to the given states and nodes.
func (h *harness) seedPair(t *testing.T, account string, pri, sby State) {
	t.Helper()
	spec := demoSpec
	spec.Account = account
	if _, err := h.svc.ProvisionPair(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	h.setRow(t, clawops.InstanceID(account+PrimarySuffix), map[string]any{"state": pri, "node_id": "node-" + account + "-pri"})
	h.setRow(t, clawops.InstanceID(account+StandbySuffix), map[string]any{"state": sby, "node_id": "node-" + account + "-sby"})
}

func (h *harness) setRow(t *testing.T, id clawops.InstanceID, cols map[string]any) {
	t.Helper()
	if err := h.db.Model(&Instance{}).Where("id = ?", id).Updates(cols).Error; err != nil {
		t.Fatal(err)
	}
}

func (h *harness) row(t *testing.T, id clawops.InstanceID) Instance {
	t.Helper()
	var in Instance
	if err := h.db.Where("id = ?", id).Take(&in).Error; err != nil {
		t.Fatal(err)
	}
	return in
}

// wantReason fails unless err carries reason.
func wantReason(t *testing.T, err error, reason clawops.ReasonCode) {
	t.Helper()
	if got := clawops.ReasonOf(err); got != reason {
		t.Fatalf("reason: got %q (err %v), want %q", got, err, reason)
	}
}

func TestValidInstanceID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"demo1-pri", true}, {"a1", true}, {"0-x", true},
		{"", false}, {"a", false}, {"-abc", false}, {"Demo1", false}, {"demo_1", false},
		{"demo1;rm -rf /", false}, {"demo1 pri", false}, {"demo1$(id)", false}, {"dé", false},
		{"a234567890123456789012345678901234567890", true},
		{"a2345678901234567890123456789012345678901", false},
		{"demo1-pri\n", false},
	} {
		if got := ValidInstanceID(tc.id); got != tc.want {
			t.Errorf("ValidInstanceID(%q): got %v, want %v", tc.id, got, tc.want)
		}
	}
}

func TestProvisionPair(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	pv, err := h.svc.ProvisionPair(ctx, demoSpec)
	if err != nil {
		t.Fatal(err)
	}
	if pv.ID != "demo1" || pv.PrimaryID != "demo1-pri" || pv.StandbyID != "demo1-sby" {
		t.Fatalf("pair: got %+v, want demo1 with demo1-pri/demo1-sby", pv.Pair)
	}
	for _, v := range []InstanceView{pv.Primary, pv.Standby} {
		if v.State != StateBootstrapping {
			t.Errorf("%s state: got %s, want BOOTSTRAPPING", v.ID, v.State)
		}
	}
	if pv.Primary.ProviderID != "hetzner-demo1-pri" || pv.Standby.ProviderID != "vultr-demo1-sby" {
		t.Errorf("provider ids: got %q, %q", pv.Primary.ProviderID, pv.Standby.ProviderID)
	}
	if pv.Primary.PeerState != StateBootstrapping || pv.Primary.Peer != "demo1-sby" {
		t.Errorf("primary peer: got %s %s, want demo1-sby BOOTSTRAPPING", pv.Primary.Peer, pv.Primary.PeerState)
	}
	creates, _ := h.hz.calls()
	if len(creates) != 1 {
		t.Fatalf("hetzner creates: got %d, want 1", len(creates))
	}
	c := creates[0]
	if c.Size != "cx22" || c.Region != "fsn1" || c.Image != DefaultImage {
		t.Errorf("spec: got size %q region %q image %q, want cx22 fsn1 %s", c.Size, c.Region, c.Image, DefaultImage)
	}
	if c.Bootstrap.JoinToken != "join-demo1-pri" || c.Bootstrap.GatewayURL != "ws://127.0.0.1:1/v1/nodes/ws" ||
		c.Bootstrap.GatewayKey != "gwkey" || c.Bootstrap.Instance != "demo1-pri" {
		t.Errorf("bootstrap: got %+v", c.Bootstrap)
	}
	if c.Labels["clawops.instance"] != "demo1-pri" || c.Labels["clawops.account"] != "demo1" {
		t.Errorf("labels: got %v", c.Labels)
	}
	if vc, _ := h.vu.calls(); len(vc) != 1 || vc[0].Size != "standard" {
		t.Errorf("vultr creates: got %+v, want one with size standard (unmapped tier)", vc)
	}
	var acct Account
	if err := h.db.Take(&acct, "id = ?", "demo1").Error; err != nil {
		t.Fatalf("account not recorded: %v", err)
	}
	if got := len(h.seen()); got != 2 {
		t.Errorf("transitions: got %d, want 2 (CREATING→BOOTSTRAPPING each)", got)
	}

	// The same pair again is refused without calling a provider.
	_, err = h.svc.ProvisionPair(ctx, demoSpec)
	wantReason(t, err, ReasonPairExists)
	if creates, _ := h.hz.calls(); len(creates) != 1 {
		t.Errorf("hetzner creates after duplicate: got %d, want 1", len(creates))
	}
}

func TestProvisionPairStandbyFails(t *testing.T) {
	h := newHarness(t, nil)
	quota := clawops.E("vultr create", clawops.KindDenied, ReasonProviderQuota, "instance limit reached")
	h.vu.failOn = map[string]error{"demo1-sby": quota}
	pv, err := h.svc.ProvisionPair(context.Background(), demoSpec)
	wantReason(t, err, ReasonProviderQuota)
	if pv.Primary.State != StateBootstrapping {
		t.Errorf("primary: got %s, want BOOTSTRAPPING", pv.Primary.State)
	}
	sby := h.row(t, "demo1-sby")
	if sby.State != StateFailed || sby.ProviderID != "" {
		t.Errorf("standby: got state %s provider id %q, want FAILED and none", sby.State, sby.ProviderID)
	}
	if want := "instance limit reached"; !strings.Contains(sby.Error, want) {
		t.Errorf("standby error: got %q, want it to contain %q", sby.Error, want)
	}
}

func TestProvisionPairTokenFails(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Tokens = fakeMinter{err: errors.New("hub down")} })
	_, err := h.svc.ProvisionPair(context.Background(), demoSpec)
	if err == nil {
		t.Fatal("got nil error, want one")
	}
	for _, id := range []clawops.InstanceID{"demo1-pri", "demo1-sby"} {
		if got := h.row(t, id).State; got != StateFailed {
			t.Errorf("%s: got %s, want FAILED", id, got)
		}
	}
	if c, _ := h.hz.calls(); len(c) != 0 {
		t.Errorf("provider creates: got %d, want 0", len(c))
	}
}

func TestProvisionPairBadSpec(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*PairSpec)
		reason clawops.ReasonCode
	}{
		{"bad account", func(s *PairSpec) { s.Account = "Demo;1" }, clawops.ReasonBadArguments},
		{"long account", func(s *PairSpec) { s.Account = "a2345678901234567890123456789012345678" }, clawops.ReasonBadArguments},
		{"bad pair", func(s *PairSpec) { s.Pair = "x" }, clawops.ReasonBadArguments},
		{"empty tier", func(s *PairSpec) { s.Tier = "" }, clawops.ReasonBadArguments},
		{"bad region", func(s *PairSpec) { s.Standby.Region = "eu west" }, clawops.ReasonBadArguments},
		{"unknown provider", func(s *PairSpec) { s.Primary.Provider = "aws" }, ReasonUnknownProvider},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			spec := demoSpec
			tc.mutate(&spec)
			_, err := h.svc.ProvisionPair(context.Background(), spec)
			wantReason(t, err, tc.reason)
			var n int64
			h.db.Model(&Instance{}).Count(&n)
			if n != 0 {
				t.Errorf("instances recorded: got %d, want 0", n)
			}
		})
	}
}

func TestInstancesAndPair(t *testing.T) {
	h := newHarness(t, nil)
	h.seedPair(t, "demo1", StateActive, StateDegraded)
	h.seedPair(t, "demo2", StateActive, StateActive)
	ctx := context.Background()
	all, err := h.svc.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range all {
		got = append(got, fmt.Sprintf("%s:%s peer %s:%s", v.ID, v.State, v.Peer, v.PeerState))
	}
	want := []string{
		"demo1-pri:ACTIVE peer demo1-sby:DEGRADED", "demo1-sby:DEGRADED peer demo1-pri:ACTIVE",
		"demo2-pri:ACTIVE peer demo2-sby:ACTIVE", "demo2-sby:ACTIVE peer demo2-pri:ACTIVE",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("instances:\n got %v\nwant %v", got, want)
	}
	ps, err := h.svc.PeerState(ctx, "demo1-pri")
	if err != nil || ps != StateDegraded {
		t.Errorf("PeerState: got %q, %v, want DEGRADED", ps, err)
	}
	pv, err := h.svc.Pair(ctx, "demo2")
	if err != nil || pv.Standby.ID != "demo2-sby" || pv.Primary.Node != "node-demo2-pri" {
		t.Errorf("Pair: got %+v, %v", pv, err)
	}
	_, err = h.svc.Pair(ctx, "nope9")
	wantReason(t, err, ReasonUnknownPair)
	_, err = h.svc.Instance(ctx, "nope9-pri")
	wantReason(t, err, clawops.ReasonUnknownInstance)
	if clawops.KindOf(err) != clawops.KindNotFound {
		t.Errorf("kind: got %v, want not found", clawops.KindOf(err))
	}
	_, err = h.svc.Instance(ctx, "../etc")
	wantReason(t, err, clawops.ReasonBadArguments)
}
