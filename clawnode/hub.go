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

	TickInterval     time.Duration // tick event period (default 15s)
	IdleTimeout      time.Duration // close a node silent this long (default 3 ticks, at least 45s)
	HandshakeTimeout time.Duration // connect must arrive within this (default 10s)
	WriteTimeout     time.Duration // per-frame write budget (default 10s)
	InvokeTimeout    time.Duration // Invoke budget when ctx has no deadline (default 60s)
	CommandTTL       time.Duration // signed command validity (default 2m)
	MaxHandshakes    int           // concurrent handshakes before answering 503 (default 256)
	Version          string        // hello-ok server.version (default "clawops")

	Clock  clawops.Clock
	Logger *slog.Logger

	// OnHeartbeat receives every heartbeat, on the node's reader goroutine: keep it short.
	OnHeartbeat func(context.Context, proto.Heartbeat)
	// OnConnect and OnDisconnect observe node sessions.
	OnConnect    func(context.Context, NodeStatus)
	OnDisconnect func(context.Context, NodeStatus)
	// OnRefused receives every command refusal a node reports.
	OnRefused func(context.Context, Refusal)
}

// NodeStatus is the hub's view of one node.
type NodeStatus struct {
	Node        clawops.NodeID     `json:"node"`
	Instance    clawops.InstanceID `json:"instance"`
	Connected   bool               `json:"connected"`
	ConnectedAt time.Time          `json:"connectedAt"`
	LastSeen    time.Time          `json:"lastSeen"`
	Platform    string             `json:"platform,omitempty"`
	Version     string             `json:"version,omitempty"`
	RemoteAddr  string             `json:"remoteAddr,omitempty"`
	Commands    []string           `json:"commands,omitempty"` // the node's declared allowlist
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
	if opts.MaxHandshakes <= 0 {
		opts.MaxHandshakes = 256
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
	}
	h.start = h.clock.Now()
	h.wg.Add(1)
	go h.tickLoop()
	return h, nil
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

// broadcastTick sends one tick to every node and closes nodes that went silent. A node whose
// previous tick is still being written is skipped: it will miss ticks and reconnect, which
// is the right outcome for a stuck connection. At most 64 writes are in flight at once.
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
	idleMs := h.opts.IdleTimeout.Milliseconds()
	for _, c := range conns {
		if now.UnixMilli()-c.lastSeen.Load() > idleMs {
			h.log.Warn("node silent too long; closing", "node", short(c.node), "idle", h.opts.IdleTimeout)
			c.closeNow()
			continue
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
			_ = c.writeRaw(ctx, data)
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
