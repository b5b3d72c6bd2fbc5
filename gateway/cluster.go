package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gatewayforge/clawops/cluster"
	"github.com/gatewayforge/clawops/config"
)

// ErrLeadershipLost is what Run returns when this replica stops holding the leader
// lease while it runs (its database stopped answering, or another replica took the lease
// after this one could not renew it). The loops that only the leader runs have been
// stopped and the nodes disconnected; the process should exit, and its supervisor
// (systemd Restart=always, a Kubernetes Deployment) start it again as a follower. That
// fail-stop is what Kubernetes' own controller managers do on losing their lease: it
// leaves no half-stopped loop behind.
var ErrLeadershipLost = errors.New("gateway: leader lease lost; exit and restart as a follower")

// ForwardedHeader marks a request one replica forwarded to the leader. A replica that
// receives such a request and does not lead answers 503 instead of forwarding it again,
// so two replicas with stale views cannot bounce a request between them.
const ForwardedHeader = "X-Clawops-Forwarded-By"

// leaderWait is how long a request waits for this replica to learn who leads, when it
// arrives before the first lease round has finished (at start).
const leaderWait = 5 * time.Second

// ReplicaID is the replica ID a gateway started with cfg campaigns under.
func ReplicaID(cfg *config.Config) string { return replicaID(cfg) }

// replicaID is cluster.replica_id, or <hostname>-<8 hex of the machine ID and the data
// folder's absolute path>: the same across restarts of one replica, different for two
// replicas on one host (which cannot share a data folder: it is locked) and for cloned
// machines that kept one hostname.
func replicaID(cfg *config.Config) string {
	if cfg.Cluster.ReplicaID != "" {
		return cfg.Cluster.ReplicaID
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "gateway"
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		dir = cfg.DataDir
	}
	machine, _ := os.ReadFile("/etc/machine-id") // absent off systemd hosts: the path still differs
	sum := sha256.Sum256([]byte(strings.TrimSpace(string(machine)) + "\x00" + dir))
	return fmt.Sprintf("%.100s-%s", host, hex.EncodeToString(sum[:4]))
}

// wireCluster checks that this replica holds the fleet's gateway key and builds the
// elector. advertise is this replica's base URL when cluster.advertise_url is empty.
func (g *Gateway) wireCluster(ctx context.Context, advertise string) error {
	if err := cluster.CheckGatewayKey(ctx, g.db, g.hub.PublicKey()); err != nil {
		return fmt.Errorf("new gateway: %w", err)
	}
	if g.cfg.Cluster.AdvertiseURL != "" {
		advertise = g.cfg.Cluster.AdvertiseURL
	}
	var err error
	g.elector, err = cluster.New(g.db, cluster.Options{ID: replicaID(g.cfg), Addr: advertise,
		TTL: g.cfg.Cluster.LeaseTTL, Logger: g.log.With("room", "cluster")})
	if err != nil {
		return fmt.Errorf("new gateway: %w", err)
	}
	g.proxies = map[string]*httputil.ReverseProxy{}
	return nil
}

// Cluster returns what this replica knows of the leader lease.
func (g *Gateway) Cluster() cluster.Status { return g.elector.Status() }

// routeToLeader serves a request here when this replica leads, and forwards it to the
// leader otherwise: API calls, the console, chat webhooks and node WebSockets alike, so
// every replica's address is a working address. /healthz (the process is up) and
// /readyz (this replica leads: what a load balancer should route to) are always
// answered here.
func (g *Gateway) routeToLeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			next.ServeHTTP(w, r)
			return
		case "/readyz":
			g.readyz(w, r)
			return
		}
		st := g.knownLeader(r.Context())
		switch {
		case st.Leader:
			next.ServeHTTP(w, r)
		case r.Header.Get(ForwardedHeader) != "":
			noLeader(w, "this replica does not lead either; the lease is changing hands")
		case st.Addr == "" || st.Holder == st.Replica:
			noLeader(w, "no replica leads right now")
		default:
			g.proxy(st.Addr).ServeHTTP(w, r)
		}
	})
}

// knownLeader returns what this replica knows of the lease; a request that arrives
// before the first lease round has finished (at start) waits for it, up to leaderWait.
// Later requests never wait: they are forwarded, served, or refused at once.
func (g *Gateway) knownLeader(ctx context.Context) cluster.Status {
	select {
	case <-g.elector.Ready():
	default:
		t := time.NewTimer(leaderWait)
		defer t.Stop()
		select {
		case <-g.elector.Ready():
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return g.elector.Status()
}

// proxy returns the reverse proxy to the replica at addr, built once per address.
func (g *Gateway) proxy(addr string) http.Handler {
	g.proxyMu.Lock()
	defer g.proxyMu.Unlock()
	if p, ok := g.proxies[addr]; ok {
		return p
	}
	target, err := url.Parse(addr)
	if err != nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			noLeader(w, "the leader's advertised address is not a URL")
		})
	}
	me := g.elector.Status().Replica
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			pr.Out.Header.Set(ForwardedHeader, me)
		},
		FlushInterval: -1, // chat replies and node frames go through as they come
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			g.log.Warn("forward to leader failed", "leader", addr, "path", r.URL.Path, "err", err)
			writeEnvelopeError(w, http.StatusBadGateway, "LEADER_UNREACHABLE",
				"the leader replica did not answer; retry in a few seconds")
		},
	}
	g.proxies[addr] = p
	return p
}

func (g *Gateway) readyz(w http.ResponseWriter, _ *http.Request) {
	st := g.elector.Status()
	role, status := "follower", http.StatusServiceUnavailable
	if st.Leader {
		role, status = "leader", http.StatusOK
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": st.Leader,
		"data": map[string]any{"role": role, "epoch": st.Epoch}})
}

func noLeader(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", "2")
	writeEnvelopeError(w, http.StatusServiceUnavailable, "NO_LEADER", msg)
}

// writeEnvelopeError writes the API's error envelope.
func writeEnvelopeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": map[string]string{"code": code, "message": msg}})
}

// lead runs the loops only the leader may run, until ctx (the lease) ends. When the
// lease ends while the gateway still runs, it disconnects every node (they reconnect
// through any replica to the new leader) and reports the loss on lost.
func (g *Gateway) lead(outer context.Context, lost chan<- struct{}, loops []func(context.Context) error) func(context.Context) error {
	var once sync.Once
	return func(ctx context.Context) error {
		var wg sync.WaitGroup
		errs := make(chan error, len(loops))
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for _, loop := range loops {
			wg.Go(func() {
				if err := loop(lctx); err != nil && lctx.Err() == nil {
					errs <- err
					cancel()
				}
			})
		}
		wg.Wait()
		close(errs)
		if outer.Err() == nil {
			g.hub.DisconnectAll("this replica no longer leads")
			once.Do(func() { close(lost) })
		}
		return errors.Join(collect(errs)...)
	}
}

func collect(errs <-chan error) []error {
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}
