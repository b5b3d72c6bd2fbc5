// Package clawnode is the gateway side of the node plane: the Hub accepts gf-clawnode
// connections on a WebSocket endpoint, authenticates and enrolls them, routes signed
// commands to them and waits for their results, and passes their heartbeats on.
//
// The wire protocol is in clawnode/proto; the node side is clawnode/daemon.
package clawnode

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/keyfile"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// ReasonNodeBusy is returned by Invoke when the node refused to start a command because it
// is at its concurrency limit. Retry later.
const ReasonNodeBusy clawops.ReasonCode = "NODE_BUSY"

// HubOptions configure a Hub. DB and Key are required.
type HubOptions struct {
	DB  *gorm.DB           // holds devices and join tokens; call Migrate first
	Key ed25519.PrivateKey // the gateway key that signs commands; nodes pin its public half

	TickInterval time.Duration // tick event period (default 15s)
	// HeartbeatInterval is sent to nodes in hello-ok (policy.heartbeatIntervalMs); zero
	// leaves each node at its own interval.
	HeartbeatInterval time.Duration
	IdleTimeout       time.Duration // close a node silent this long (default 3 ticks, at least 45s)
	HandshakeTimeout  time.Duration // connect must arrive within this (default 10s)
	WriteTimeout      time.Duration // per-frame write budget (default 10s)
	InvokeTimeout     time.Duration // Invoke budget when ctx has no deadline (default 60s)
	CommandTTL        time.Duration // signed command validity (default 2m)
	MaxHandshakes     int           // concurrent handshakes before answering 503 (default 256)
	Version           string        // hello-ok server.version (default "clawops")

	Clock  clawops.Clock
	Logger *slog.Logger

	// OnHeartbeat receives every heartbeat. It runs on a small pool of hub goroutines
	// (HeartbeatWorkers), not on the node's reader, fed by a bounded queue: when the queue
	// is full a heartbeat is dropped and counted (Stats), never allowed to stall a node.
	OnHeartbeat func(context.Context, proto.Heartbeat)
	// HeartbeatWorkers run OnHeartbeat (default 4); HeartbeatQueue bounds what waits (default 8192).
	HeartbeatWorkers int
	HeartbeatQueue   int
	// OnConnect and OnDisconnect observe node sessions.
	OnConnect    func(context.Context, NodeStatus)
	OnDisconnect func(context.Context, NodeStatus)
	// OnRefused receives every command refusal a node reports.
	OnRefused func(context.Context, Refusal)
	// OnStale observes a connected node that has been silent for StaleAfter (the hub then
	// pings it; it is closed, and offline, after IdleTimeout). It runs on the tick loop:
	// keep it short and never block.
	OnStale func(context.Context, NodeStatus)

	// Audit records every pairing decision before it takes effect (see PairingEvent); an
	// error refuses the decision. Nil only logs them.
	Audit func(context.Context, PairingEvent) error
	// OnPairingRequest is told of each new pairing request, e.g. to ask an operator.
	OnPairingRequest func(context.Context, PairingRequest)
	// DisableManualPairing refuses unknown devices without a join token instead of
	// recording a pairing request for an operator.
	DisableManualPairing bool
	PairingTTL           time.Duration // a request expires this long after the node's last attempt (default 10m)
	MaxPendingPairings   int           // pending requests kept at once (default 1000)
	RejectCooldown       time.Duration // a rejected device is refused this long (default 1h)

	// Peers, when set, checks every connection before its WebSocket is accepted (for
	// example a tailnet identity check with clawnode/tailnet); the identity it returns is
	// recorded with the device.
	Peers PeerVerifier
	// StaleAfter is how long a connected node may be silent before it counts as stale
	// (default 2 ticks).
	StaleAfter time.Duration
}

// Liveness of a node (NodeStatus.State).
const (
	StateOnline  = "online"  // connected and heard from recently
	StateStale   = "stale"   // connected but silent for StaleAfter: being pinged
	StateOffline = "offline" // not connected
)

// NodeStatus is the hub's view of one node.
type NodeStatus struct {
	Node        clawops.NodeID     `json:"node"`
	Instance    clawops.InstanceID `json:"instance"`
	State       string             `json:"state"`
	Connected   bool               `json:"connected"`
	ConnectedAt time.Time          `json:"connectedAt"`
	LastSeen    time.Time          `json:"lastSeen"`
	Platform    string             `json:"platform,omitempty"`
	Version     string             `json:"version,omitempty"`
	RemoteAddr  string             `json:"remoteAddr,omitempty"`
	Commands    []string           `json:"commands,omitempty"` // the node's declared allowlist
	Tailnet     PeerIdentity       `json:"tailnet,omitzero"`
}

// Refusal is a command a node refused to run, as it reported it.
type Refusal struct {
	Node     clawops.NodeID
	Instance clawops.InstanceID
	At       time.Time
	proto.CommandRefused
}

// Hub is the gateway's end of the node plane. It is an http.Handler (mount it at
// /v1/nodes/ws). Create it with NewHub and stop it with Close.
type Hub struct {
	opts  HubOptions
	db    *gorm.DB
	key   ed25519.PrivateKey
	clock clawops.Clock
	log   *slog.Logger
	start time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	slots  chan struct{} // handshake semaphore

	heartbeats        chan proto.Heartbeat
	heartbeatsDropped atomic.Int64

	mu         sync.RWMutex
	closed     bool
	conns      map[clawops.NodeID]*nodeConn
	byInstance map[clawops.InstanceID]clawops.NodeID
	offline    map[clawops.NodeID]NodeStatus
}

// NewHub builds a hub and starts its tick loop.
func NewHub(opts HubOptions) (*Hub, error) {
	if opts.DB == nil {
		return nil, errors.New("new hub: DB is required")
	}
	if len(opts.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("new hub: Key must be an Ed25519 private key")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.TickInterval, 15*time.Second)
	def(&opts.IdleTimeout, max(3*opts.TickInterval, 45*time.Second))
	def(&opts.HandshakeTimeout, 10*time.Second)
	def(&opts.WriteTimeout, 10*time.Second)
	def(&opts.InvokeTimeout, 60*time.Second)
	def(&opts.CommandTTL, 2*time.Minute)
	def(&opts.StaleAfter, 2*opts.TickInterval)
	def(&opts.PairingTTL, defaultPairingTTL)
	def(&opts.RejectCooldown, time.Hour)
	if opts.MaxHandshakes <= 0 {
		opts.MaxHandshakes = 256
	}
	if opts.MaxPendingPairings <= 0 {
		opts.MaxPendingPairings = 1000
	}
	if opts.HeartbeatWorkers <= 0 {
		opts.HeartbeatWorkers = 4
	}
	if opts.HeartbeatQueue <= 0 {
		opts.HeartbeatQueue = 8192
	}
	if opts.Version == "" {
		opts.Version = "clawops"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		opts: opts, db: opts.DB, key: opts.Key, clock: clawops.ClockOrSystem(opts.Clock),
		log: log.With("component", "clawnode.hub"), ctx: ctx, cancel: cancel,
		slots:      make(chan struct{}, opts.MaxHandshakes),
		conns:      make(map[clawops.NodeID]*nodeConn),
		byInstance: make(map[clawops.InstanceID]clawops.NodeID),
		offline:    make(map[clawops.NodeID]NodeStatus),
		heartbeats: make(chan proto.Heartbeat, opts.HeartbeatQueue),
	}
	h.start = h.clock.Now()
	h.wg.Add(1)
	go h.tickLoop()
	if opts.OnHeartbeat != nil {
		for range opts.HeartbeatWorkers {
			h.wg.Add(1)
			go h.heartbeatWorker()
		}
	}
	return h, nil
}

func (h *Hub) heartbeatWorker() {
	defer h.wg.Done()
	for {
		select {
		case <-h.ctx.Done():
			return
		case hb := <-h.heartbeats:
			h.opts.OnHeartbeat(h.ctx, hb)
		}
	}
}

// queueHeartbeat hands a heartbeat to the workers, dropping it when they are behind.
func (h *Hub) queueHeartbeat(hb proto.Heartbeat) {
	select {
	case h.heartbeats <- hb:
	default:
		if n := h.heartbeatsDropped.Add(1); n&(n-1) == 0 { // log at 1, 2, 4, 8, ...
			h.log.Warn("heartbeat handlers are behind; dropping heartbeats", "dropped", n)
		}
	}
}

// HubStats are the hub's counters.
type HubStats struct {
	Connected         int   `json:"connected"`
	Stale             int   `json:"stale"`
	HeartbeatsQueued  int   `json:"heartbeatsQueued"`
	HeartbeatsDropped int64 `json:"heartbeatsDropped"`
}

// Stats returns the hub's counters.
func (h *Hub) Stats() HubStats {
	h.mu.RLock()
	s := HubStats{Connected: len(h.conns)}
	for _, c := range h.conns {
		if c.stale.Load() {
			s.Stale++
		}
	}
	h.mu.RUnlock()
	s.HeartbeatsQueued, s.HeartbeatsDropped = len(h.heartbeats), h.heartbeatsDropped.Load()
	return s
}

// PublicKey is the gateway's public key, which nodes pin (see proto.EncodePublicKey).
func (h *Hub) PublicKey() ed25519.PublicKey { return h.key.Public().(ed25519.PublicKey) }

// Close disconnects every node, stops the tick loop and waits for both.
func (h *Hub) Close() error {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
	return nil
}

// Nodes lists the nodes this hub has seen since it started, connected or not, by node id.
func (h *Hub) Nodes() []NodeStatus {
	h.mu.RLock()
	out := make([]NodeStatus, 0, len(h.conns)+len(h.offline))
	for _, c := range h.conns {
		out = append(out, c.status(true))
	}
	for id, s := range h.offline {
		if _, on := h.conns[id]; !on {
			out = append(out, s)
		}
	}
	h.mu.RUnlock()
	slices.SortFunc(out, func(a, b NodeStatus) int { return strings.Compare(string(a.Node), string(b.Node)) })
	return out
}

// NodeForInstance returns the node that serves instance: the connected one if any, else
// the newest enrolled device that is not revoked.
func (h *Hub) NodeForInstance(ctx context.Context, instance clawops.InstanceID) (clawops.NodeID, bool) {
	h.mu.RLock()
	id, ok := h.byInstance[instance]
	h.mu.RUnlock()
	if ok {
		return id, true
	}
	return h.instanceNode(ctx, instance)
}

// Connected reports whether node has a live connection.
func (h *Hub) Connected(node clawops.NodeID) bool { return h.conn(node) != nil }

func (h *Hub) conn(node clawops.NodeID) *nodeConn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.conns[node]
}

// register makes c the node's connection, replacing (and closing) an older one.
func (h *Hub) register(c *nodeConn) bool {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return false
	}
	old := h.conns[c.node]
	h.conns[c.node] = c
	h.byInstance[c.instance] = c.node
	delete(h.offline, c.node)
	h.mu.Unlock()
	if old != nil {
		h.log.Info("node reconnected; closing its older connection", "node", short(c.node))
		old.closeNow()
	}
	return true
}

// unregister removes c if it is still the node's connection and remembers its last status.
func (h *Hub) unregister(c *nodeConn) {
	h.mu.Lock()
	if h.conns[c.node] == c {
		delete(h.conns, c.node)
		if h.byInstance[c.instance] == c.node {
			delete(h.byInstance, c.instance)
		}
		h.offline[c.node] = c.status(false)
	}
	h.mu.Unlock()
}

// DisconnectAll closes every node connection; the nodes reconnect on their own. A
// gateway replica that stops leading calls it so its nodes move to the new leader.
func (h *Hub) DisconnectAll(why string) {
	h.mu.RLock()
	conns := make([]*nodeConn, 0, len(h.conns))
	for _, c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.RUnlock()
	if len(conns) > 0 {
		h.log.Info("disconnecting all nodes", "nodes", len(conns), "why", why)
	}
	for _, c := range conns {
		c.closeNow()
	}
}

func (h *Hub) disconnect(node clawops.NodeID, why string) {
	if c := h.conn(node); c != nil {
		h.log.Info("disconnecting node", "node", short(node), "why", why)
		c.closeNow()
	}
}

func (h *Hub) tickLoop() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
			h.broadcastTick()
		}
	}
}

// broadcastTick sends one tick to every node, pings the nodes that went stale and closes
// the ones silent for IdleTimeout. A node whose previous tick is still being written is
// skipped: it will miss ticks and reconnect, which is the right outcome for a stuck
// connection. At most 64 writes are in flight at once.
func (h *Hub) broadcastTick() {
	now := h.clock.Now()
	f, _ := proto.NewEvent(proto.EventTick, proto.Tick{Ts: now.UnixMilli()})
	data, err := proto.Encode(f)
	if err != nil {
		return
	}
	h.mu.RLock()
	conns := make([]*nodeConn, 0, len(h.conns))
	for _, c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.RUnlock()
	sem := make(chan struct{}, 64)
	idleMs, staleMs := h.opts.IdleTimeout.Milliseconds(), h.opts.StaleAfter.Milliseconds()
	for _, c := range conns {
		silent := now.UnixMilli() - c.lastSeen.Load()
		if silent > idleMs {
			h.log.Warn("node silent too long; closing", "node", short(c.node), "idle", h.opts.IdleTimeout)
			c.closeNow()
			continue
		}
		stale := silent > staleMs
		if stale && c.stale.CompareAndSwap(false, true) {
			h.log.Info("node stale; pinging it", "node", short(c.node), "silent", time.Duration(silent)*time.Millisecond)
			if h.opts.OnStale != nil {
				h.opts.OnStale(h.ctx, c.status(true))
			}
		}
		if !c.tickBusy.CompareAndSwap(false, true) {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-h.ctx.Done():
			return
		}
		go func() {
			defer func() { <-sem; c.tickBusy.Store(false) }()
			ctx, cancel := context.WithTimeout(h.ctx, h.opts.TickInterval)
			defer cancel()
			if c.writeRaw(ctx, data) != nil || !stale {
				return
			}
			// A stock node host sends nothing between commands; its pong proves it is there.
			if c.ws.Ping(ctx) == nil {
				c.seen(h.clock.Now().UnixMilli())
			}
		}()
	}
}

// LoadOrCreateGatewayKey returns the gateway's Ed25519 key kept in dataDir/gateway.key,
// creating it (mode 0600) on first use.
func LoadOrCreateGatewayKey(dataDir string) (ed25519.PrivateKey, error) {
	k, err := keyfile.LoadOrCreate(filepath.Join(dataDir, "gateway.key"))
	if err != nil {
		return nil, fmt.Errorf("gateway key: %w", err)
	}
	return k, nil
}
