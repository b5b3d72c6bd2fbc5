package tailnet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"tailscale.com/client/local"
	"tailscale.com/client/tailscale/apitype"
	"tailscale.com/tailcfg"

	"github.com/gatewayforge/clawops/clawnode"
	"github.com/gatewayforge/clawops/store"
)

func TestCheckListen(t *testing.T) {
	for _, tc := range []struct {
		addr        string
		allowPublic bool
		ok          bool
	}{
		{"127.0.0.1:8080", false, true},
		{"[::1]:8080", false, true},
		{"localhost:8080", false, true},
		{"100.101.102.103:8080", false, true},
		{"[fd7a:115c:a1e0::1]:8080", false, true},
		{"0.0.0.0:8080", false, false},
		{":8080", false, false},
		{"[::]:8080", false, false},
		{"203.0.113.7:8080", false, false},
		{"192.168.1.10:8080", false, false},
		{"100.128.0.1:8080", false, false}, // just past 100.64.0.0/10
		{"[fd7a:115c:a1e1::1]:8080", false, false},
		{"gateway.example.com:8080", false, false},
		{"0.0.0.0:8080", true, true},
		{"203.0.113.7:8080", true, true},
		{"no-port", true, false},
	} {
		err := CheckListen(tc.addr, tc.allowPublic)
		if (err == nil) != tc.ok {
			t.Errorf("CheckListen(%q, %v) = %v, want ok=%v", tc.addr, tc.allowPublic, err, tc.ok)
		}
		if err != nil && tc.addr != "no-port" && !errors.Is(err, ErrPublicListener) {
			t.Errorf("CheckListen(%q) = %v, want ErrPublicListener", tc.addr, err)
		}
	}
	ln, err := Listen("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if _, err := Listen("0.0.0.0:0", false); !errors.Is(err, ErrPublicListener) {
		t.Errorf("Listen(0.0.0.0) = %v, want refused", err)
	}
}

// fakeLocalAPI serves tailscaled's /localapi/v0/whois on a unix socket, answering from
// peers (address → response) and 404 for anything else.
func fakeLocalAPI(t *testing.T, peers map[string]*apitype.WhoIsResponse) (socket string, calls *atomic.Int32) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "tailscaled.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	calls = &atomic.Int32{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /localapi/v0/whois", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Host != "local-tailscaled.sock" {
			http.Error(w, "bad host", http.StatusBadRequest)
			return
		}
		addr := r.URL.Query().Get("addr")
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			http.Error(w, `{"error":"invalid addr"}`, http.StatusBadRequest)
			return
		}
		resp, ok := peers[ap.Addr().String()]
		if !ok {
			http.Error(w, "no match for IP:port", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return socket, calls
}

func node(id, name string, tags ...string) *apitype.WhoIsResponse {
	return &apitype.WhoIsResponse{
		Node:        &tailcfg.Node{StableID: tailcfg.StableNodeID(id), Name: name, Tags: tags},
		UserProfile: &tailcfg.UserProfile{LoginName: "tagged-devices"},
	}
}

func TestVerifier(t *testing.T) {
	expired := node("nEXP", "old.tail.ts.net.", "tag:clawnode")
	expired.Node.Expired = true
	socket, calls := fakeLocalAPI(t, map[string]*apitype.WhoIsResponse{
		"100.64.0.10":       node("nVPS1CNTRL", "vps-1.tail1234.ts.net.", "tag:clawnode", "tag:eu"),
		"fd7a:115c:a1e0::a": node("nVPS2CNTRL", "vps-2.tail1234.ts.net.", "tag:clawnode"),
		"100.64.0.11":       node("nLAPTOP", "laptop.tail1234.ts.net.", "tag:dev"),
		"100.64.0.12":       expired,
	})
	v, err := NewVerifier(Options{Socket: socket, Tag: "tag:clawnode"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	id, err := v.VerifyPeer(ctx, "100.64.0.10:41234")
	want := clawnode.PeerIdentity{Node: "nVPS1CNTRL", Name: "vps-1.tail1234.ts.net.", User: "tagged-devices",
		Tags: []string{"tag:clawnode", "tag:eu"}, Addr: "100.64.0.10:41234"}
	if err != nil || id.Node != want.Node || id.Name != want.Name || id.User != want.User || strings.Join(id.Tags, ",") != "tag:clawnode,tag:eu" || id.Addr != want.Addr {
		t.Errorf("VerifyPeer = %+v, %v; want %+v", id, err, want)
	}
	if id, err := v.VerifyPeer(ctx, "[fd7a:115c:a1e0::a]:5000"); err != nil || id.Node != "nVPS2CNTRL" {
		t.Errorf("VerifyPeer(IPv6) = %+v, %v", id, err)
	}
	before := calls.Load()
	for _, tc := range []struct{ addr, errHas string }{
		{"100.64.0.11:1", "does not carry tag:clawnode"},
		{"100.64.0.12:1", "expired"},
		{"100.64.0.99:1", "does not know"},
		{"203.0.113.5:1", "not a tailnet address"},
		{"127.0.0.1:1", "loopback"},
		{"garbage", "peer address"},
	} {
		if _, err := v.VerifyPeer(ctx, tc.addr); err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("VerifyPeer(%s) = %v, want an error containing %q", tc.addr, err, tc.errHas)
		}
	}
	if got := calls.Load() - before; got != 3 {
		t.Errorf("LocalAPI called %d times for the refusals, want 3 (no call for non-tailnet peers)", got)
	}

	loop, _ := NewVerifier(Options{Socket: socket, Tag: "tag:clawnode", AllowLoopback: true})
	if id, err := loop.VerifyPeer(ctx, "127.0.0.1:5555"); err != nil || id.Node != "" {
		t.Errorf("loopback with AllowLoopback = %+v, %v; want an empty identity", id, err)
	}
	down, _ := NewVerifier(Options{Socket: filepath.Join(t.TempDir(), "absent.sock"), Tag: "tag:clawnode"})
	if _, err := down.VerifyPeer(ctx, "100.64.0.10:1"); err == nil || !strings.Contains(err.Error(), "tailscaled") {
		t.Errorf("VerifyPeer with tailscaled down = %v, want an error naming tailscaled", err)
	}
	for _, tag := range []string{"", "clawnode", "tag:"} {
		if _, err := NewVerifier(Options{Tag: tag}); err == nil {
			t.Errorf("NewVerifier(tag %q) = nil error", tag)
		}
	}
	var _ WhoIser = (*local.Client)(nil)
}

// TestHubRefusesPeersOffTheTailnet wires the verifier into a real hub: a node dialing
// from loopback is refused unless loopback is allowed.
func TestHubRefusesPeersOffTheTailnet(t *testing.T) {
	socket, _ := fakeLocalAPI(t, nil)
	for _, allow := range []bool{false, true} {
		v, err := NewVerifier(Options{Socket: socket, Tag: "tag:clawnode", AllowLoopback: allow})
		if err != nil {
			t.Fatal(err)
		}
		db, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close(db) })
		if err := clawnode.Migrate(db); err != nil {
			t.Fatal(err)
		}
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		hub, err := clawnode.NewHub(clawnode.HubOptions{DB: db, Key: key, Peers: v})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(hub)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ws, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
		cancel()
		if allow {
			if err != nil {
				t.Errorf("loopback allowed: dial = %v", err)
			} else {
				ws.CloseNow()
			}
		} else if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("loopback refused: dial = %v (%v), want 403", err, resp)
		}
		hub.Close()
		srv.Close()
	}
}
