package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

// NodeInvoker sends one signed command to a connected node and returns its result. The
// clawnode hub implements it.
type NodeInvoker interface {
	Invoke(ctx context.Context, node clawops.NodeID, command string, params any) (json.RawMessage, error)
}

// JoinTokenMinter mints the one-time enrollment token a new server presents on its first
// connection. The clawnode hub implements it.
type JoinTokenMinter interface {
	MintJoinToken(ctx context.Context, instance clawops.InstanceID, ttl time.Duration) (string, error)
}

// UsersPerAccount is how many end users one account (and so one pair) serves.
const UsersPerAccount = 1

// Defaults for Options fields left zero.
const (
	DefaultHeartbeatTimeout = 45 * time.Second
	DefaultJoinTokenTTL     = time.Hour
	DefaultImage            = "debian-12"
)

// Options configure a Service.
type Options struct {
	DB        *gorm.DB
	Nodes     NodeInvoker
	Tokens    JoinTokenMinter
	Providers map[string]Provider // keyed by Provider.Name()

	GatewayURL    string // node endpoint handed to new servers
	GatewayKey    string // gateway public key (base64url) new servers pin
	TailscaleKey  string // tailnet auth key for cloud servers; a secret, never logged
	OpenClawImage string // pinned OpenClaw image tag
	Image         string // base OS image slug; DefaultImage when empty
	// Sizes maps provider → tier → the provider's size slug. A tier missing here is passed
	// to the provider as its own size slug.
	Sizes map[string]map[string]string

	JoinTokenTTL     time.Duration // DefaultJoinTokenTTL when zero
	HeartbeatTimeout time.Duration // DefaultHeartbeatTimeout when zero

	Clock  clawops.Clock
	Logger *slog.Logger
	// OnTransition, when set, is called after every recorded state change (heartbeats,
	// sweeps, provisioning, teardown), e.g. to raise INSTANCE_DEGRADED events. It must not
	// block for long.
	OnTransition func(ctx context.Context, t Transition)
}

// Service is the fleet: its records and the operations on them.
type Service struct {
	db   *gorm.DB
	opts Options
	clk  clawops.Clock
	log  *slog.Logger
}

// NewService returns a Service over opts.DB. The caller runs Migrate first.
func NewService(opts Options) (*Service, error) {
	if opts.DB == nil {
		return nil, errors.New("new fleet service: DB is nil")
	}
	if opts.HeartbeatTimeout <= 0 {
		opts.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if opts.JoinTokenTTL <= 0 {
		opts.JoinTokenTTL = DefaultJoinTokenTTL
	}
	if opts.Image == "" {
		opts.Image = DefaultImage
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{db: opts.DB, opts: opts, clk: clawops.ClockOrSystem(opts.Clock), log: log.With("room", "fleet")}, nil
}

// Transition is one recorded change of an instance's state.
type Transition struct {
	Instance clawops.InstanceID `json:"instance"`
	Account  string             `json:"account"`
	Pair     string             `json:"pair"`
	Role     Role               `json:"role"`
	From     State              `json:"from"`
	To       State              `json:"to"`
	Reason   string             `json:"reason,omitempty"`
	At       time.Time          `json:"at"`
}

// HealthView is the last OpenClaw health an instance's node reported.
type HealthView struct {
	OK        bool   `json:"ok"`
	Status    int    `json:"status,omitempty"`
	LatencyMs int64  `json:"latency_ms"`
	Error     string `json:"error,omitempty"`
}

// InstanceView is an instance as readers see it, with its pair peer's state so that
// invariants ("no teardown of an ACTIVE primary unless its standby is ACTIVE") can be
// checked from one value.
type InstanceView struct {
	ID            clawops.InstanceID `json:"id"`
	Account       string             `json:"account"`
	Pair          string             `json:"pair"`
	Provider      string             `json:"provider"`
	ProviderID    string             `json:"provider_id,omitempty"`
	Region        string             `json:"region"`
	Tier          string             `json:"tier"`
	Role          Role               `json:"role"`
	State         State              `json:"state"`
	Node          clawops.NodeID     `json:"node,omitempty"`
	LastHeartbeat *time.Time         `json:"last_heartbeat,omitempty"`
	Health        HealthView         `json:"health"`
	Metrics       json.RawMessage    `json:"metrics,omitempty"`
	Peer          clawops.InstanceID `json:"peer,omitempty"`
	PeerState     State              `json:"peer_state,omitempty"`
	Error         string             `json:"error,omitempty"`
	CreatedAt     time.Time          `json:"created_at"`
	UpdatedAt     time.Time          `json:"updated_at"`
}

// PairView is a pair with both of its instances.
type PairView struct {
	Pair
	Primary InstanceView `json:"primary_instance"`
	Standby InstanceView `json:"standby_instance"`
}

func viewOf(in Instance, peer *Instance) InstanceView {
	v := InstanceView{
		ID: in.ID, Account: in.AccountID, Pair: in.PairID, Provider: in.Provider,
		ProviderID: in.ProviderID, Region: in.Region, Tier: in.Tier, Role: in.Role,
		State: in.State, Node: in.NodeID, LastHeartbeat: in.LastHeartbeat,
		Health: HealthView{OK: in.HealthOK, Status: in.HealthStatus,
			LatencyMs: in.HealthLatencyMs, Error: in.HealthError},
		Error: in.Error, CreatedAt: in.CreatedAt, UpdatedAt: in.UpdatedAt,
	}
	if in.LastMetrics != "" && json.Valid([]byte(in.LastMetrics)) {
		v.Metrics = json.RawMessage(in.LastMetrics)
	}
	if peer != nil {
		v.Peer, v.PeerState = peer.ID, peer.State
	}
	return v
}

// Instances returns every recorded instance, terminated ones included, ordered by ID.
func (s *Service) Instances(ctx context.Context) ([]InstanceView, error) {
	var rows []Instance
	if err := s.db.WithContext(ctx).Order("id").Find(&rows).Error; err != nil {
		return nil, clawops.E("list instances", clawops.ReasonInternal, err)
	}
	byPair := make(map[string][]int, len(rows))
	for i, r := range rows {
		byPair[r.PairID] = append(byPair[r.PairID], i)
	}
	out := make([]InstanceView, 0, len(rows))
	for _, r := range rows {
		var peer *Instance
		for _, j := range byPair[r.PairID] {
			if rows[j].ID != r.ID {
				peer = &rows[j]
				break
			}
		}
		out = append(out, viewOf(r, peer))
	}
	return out, nil
}

// Instance returns one instance. An ID of the wrong form is BAD_ARGUMENTS; an unknown one
// is UNKNOWN_INSTANCE.
func (s *Service) Instance(ctx context.Context, id clawops.InstanceID) (InstanceView, error) {
	in, err := s.load(ctx, "get instance", id)
	if err != nil {
		return InstanceView{}, err
	}
	peer, err := s.peerOf(ctx, in)
	if err != nil {
		return InstanceView{}, clawops.E("get instance", clawops.ReasonInternal, err)
	}
	return viewOf(in, peer), nil
}

// PeerState returns the state of the other member of id's pair ("" when it has none).
func (s *Service) PeerState(ctx context.Context, id clawops.InstanceID) (State, error) {
	v, err := s.Instance(ctx, id)
	if err != nil {
		return "", err
	}
	return v.PeerState, nil
}

// Pair returns one pair with both instances; an unknown ID is UNKNOWN_PAIR.
func (s *Service) Pair(ctx context.Context, id string) (PairView, error) {
	const op = "get pair"
	if !ValidInstanceID(id) {
		return PairView{}, clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments,
			fmt.Errorf("%q is not a pair id", id))
	}
	var p Pair
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&p).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return PairView{}, clawops.E(op, clawops.KindNotFound, ReasonUnknownPair, fmt.Errorf("no pair %q", id))
	}
	if err != nil {
		return PairView{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	var rows []Instance
	if err := s.db.WithContext(ctx).Where("pair_id = ?", id).Find(&rows).Error; err != nil {
		return PairView{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	pv := PairView{Pair: p}
	var pri, sby *Instance
	for i := range rows {
		switch rows[i].ID {
		case p.PrimaryID:
			pri = &rows[i]
		case p.StandbyID:
			sby = &rows[i]
		}
	}
	if pri != nil {
		pv.Primary = viewOf(*pri, sby)
	}
	if sby != nil {
		pv.Standby = viewOf(*sby, pri)
	}
	return pv, nil
}

// load reads one instance row, mapping a bad or unknown ID to its reason code.
func (s *Service) load(ctx context.Context, op string, id clawops.InstanceID) (Instance, error) {
	if _, err := ParseInstanceID(string(id)); err != nil {
		return Instance{}, clawops.E(op, err)
	}
	var in Instance
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&in).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Instance{}, clawops.E(op, clawops.KindNotFound, clawops.ReasonUnknownInstance,
			fmt.Errorf("no instance %q", id))
	}
	if err != nil {
		return Instance{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	return in, nil
}

func (s *Service) peerOf(ctx context.Context, in Instance) (*Instance, error) {
	if in.PairID == "" {
		return nil, nil
	}
	var peer Instance
	err := s.db.WithContext(ctx).Where("pair_id = ? AND id <> ?", in.PairID, in.ID).Take(&peer).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &peer, nil
}

// now is the service clock in UTC at microsecond precision, so that times survive a round
// trip through SQLite and PostgreSQL unchanged.
func (s *Service) now() time.Time { return s.clk.Now().UTC().Truncate(time.Microsecond) }

// setState moves id from one state to another only if it is still in from, merging extra
// column updates; it reports whether the row changed.
func (s *Service) setState(ctx context.Context, id clawops.InstanceID, from, to State, extra map[string]any) (bool, error) {
	cols := map[string]any{"state": to, "updated_at": s.now()}
	for k, v := range extra {
		cols[k] = v
	}
	res := s.db.WithContext(ctx).Model(&Instance{}).Where("id = ? AND state = ?", id, from).Updates(cols)
	if res.Error != nil {
		return false, res.Error
	}
	return res.RowsAffected == 1, nil
}

func (s *Service) emit(ctx context.Context, in Instance, from, to State, reason string) {
	if from == to {
		return
	}
	s.log.Info("instance state", "instance", in.ID, "from", from, "to", to, "reason", reason)
	if s.opts.OnTransition != nil {
		s.opts.OnTransition(ctx, Transition{Instance: in.ID, Account: in.AccountID, Pair: in.PairID,
			Role: in.Role, From: from, To: to, Reason: reason, At: s.now()})
	}
}
