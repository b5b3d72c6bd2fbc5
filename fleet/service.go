package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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

	// Bus receives the fleet's events (state changes, provisioning, heal, failover, pushes).
	// Nil: events are only logged.
	Bus *Bus
	// Prices is the price table per provider, region and tier; DefaultPriceTable when nil.
	Prices *PriceTable
	// DefaultRouting is the provider routing policy used until a version is stored.
	DefaultRouting *RoutingPolicy
	// Archive stores a workspace backup before a teardown deletes a server. Nil: teardown
	// archives nothing (and says so in its result).
	Archive ArchiveStore
	// ArchiveChunk is how many bytes one backup.read asks a node for while a teardown pulls
	// a backup over the node plane; 0 or more than proto.MaxBackupChunk means that maximum.
	// A smaller chunk keeps each command within Nodes' invoke timeout on a slow link.
	ArchiveChunk int

	// HealWait is how long the heal runbook waits for OpenClaw to answer healthy after a
	// restart (DefaultHealWait when zero); HealPoll is how often it asks meanwhile.
	HealWait time.Duration
	HealPoll time.Duration

	// PushConcurrency is how many instances of a batch a rolling push configures at once
	// (DefaultPushConcurrency when zero).
	PushConcurrency int

	// ProvisionRetries is how many times a failed server creation is retried before
	// PROVISION_FAILED (DefaultProvisionRetries when zero; negative: none);
	// ProvisionRetryDelay is the wait before a retry when the provider gave no hint.
	ProvisionRetries     int
	ProvisionRetryDelay  time.Duration
	ProvisionConcurrency int // pairs provisioned at once (DefaultProvisionConcurrency when zero)
	// ProvisionTarget is the provision time a healthy provider meets; slower ones lose score.
	ProvisionTarget time.Duration

	// IdleAfter: an account with no activity for this long is idle (DefaultIdleAfter).
	IdleAfter time.Duration
	// ActivityCPUPercent: a heartbeat at or above this CPU counts as user activity.
	ActivityCPUPercent float64
	// UnderusedPercent: a week's mean CPU and memory below this marks a tier under-used.
	UnderusedPercent float64

	Clock  clawops.Clock
	Logger *slog.Logger
	// OnTransition, when set, is called after every recorded state change (heartbeats,
	// sweeps, provisioning, teardown), e.g. to raise INSTANCE_DEGRADED events. It must not
	// block for long.
	OnTransition func(ctx context.Context, t Transition)
}

// Defaults of the operations' options.
const (
	DefaultHealWait             = 90 * time.Second
	DefaultHealPoll             = 5 * time.Second
	DefaultPushConcurrency      = 10
	DefaultProvisionRetries     = 2
	DefaultProvisionRetryDelay  = 30 * time.Second
	DefaultProvisionConcurrency = 4
	DefaultProvisionTarget      = 5 * time.Minute
	DefaultIdleAfter            = 14 * 24 * time.Hour
	DefaultActivityCPUPercent   = 10
	DefaultUnderusedPercent     = 20
)

// Service is the fleet: its records and the operations on them.
type Service struct {
	db     *gorm.DB
	opts   Options
	clk    clawops.Clock
	log    *slog.Logger
	prices PriceTable

	// busy holds the pairs a heal, failover or resize is working on, so two of them never
	// act on one pair at once.
	busyMu sync.Mutex
	busy   map[string]string

	// pushing holds the pushes RunPush is driving in this process.
	pushMu  sync.Mutex
	pushing map[uint]bool

	pushKick      chan struct{}
	provisionKick chan struct{}
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
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.HealWait, DefaultHealWait)
	def(&opts.HealPoll, DefaultHealPoll)
	def(&opts.ProvisionRetryDelay, DefaultProvisionRetryDelay)
	def(&opts.ProvisionTarget, DefaultProvisionTarget)
	def(&opts.IdleAfter, DefaultIdleAfter)
	if opts.PushConcurrency <= 0 {
		opts.PushConcurrency = DefaultPushConcurrency
	}
	if opts.ProvisionRetries == 0 {
		opts.ProvisionRetries = DefaultProvisionRetries
	}
	if opts.ProvisionConcurrency <= 0 {
		opts.ProvisionConcurrency = DefaultProvisionConcurrency
	}
	if opts.ActivityCPUPercent <= 0 {
		opts.ActivityCPUPercent = DefaultActivityCPUPercent
	}
	if opts.UnderusedPercent <= 0 {
		opts.UnderusedPercent = DefaultUnderusedPercent
	}
	prices := DefaultPriceTable()
	if opts.Prices != nil {
		if err := opts.Prices.Validate(); err != nil {
			return nil, fmt.Errorf("new fleet service: %w", err)
		}
		prices = opts.Prices.clone()
	}
	if opts.DefaultRouting != nil {
		if err := opts.DefaultRouting.validate(opts.Providers); err != nil {
			return nil, fmt.Errorf("new fleet service: default routing: %w", err)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{db: opts.DB, opts: opts, clk: clawops.ClockOrSystem(opts.Clock), log: log.With("room", "fleet"),
		prices: prices, busy: map[string]string{}, pushing: map[uint]bool{},
		pushKick: make(chan struct{}, 1), provisionKick: make(chan struct{}, 1)}, nil
}

// Bus returns the event bus the service publishes to (nil when none was configured).
func (s *Service) Bus() *Bus { return s.opts.Bus }

// Prices returns the price table the service uses.
func (s *Service) Prices() PriceTable { return s.prices.clone() }

// Now is the service clock in UTC.
func (s *Service) Now() time.Time { return s.now() }

// publish stamps and sends an event to the bus, if there is one.
func (s *Service) publish(e Event) {
	if s.opts.Bus == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	s.opts.Bus.Publish(e)
}

// hold marks pair as busy with op, or returns OPERATION_IN_PROGRESS when another operation
// holds it. The returned func releases it.
func (s *Service) hold(op, pair string) (func(), error) {
	s.busyMu.Lock()
	defer s.busyMu.Unlock()
	if cur, ok := s.busy[pair]; ok {
		return nil, clawops.E(op, clawops.KindTransient, ReasonOperationInProgress,
			fmt.Errorf("pair %s is busy with %s", pair, cur))
	}
	s.busy[pair] = op
	return func() {
		s.busyMu.Lock()
		delete(s.busy, pair)
		s.busyMu.Unlock()
	}, nil
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
	var p Pair
	err := s.db.WithContext(ctx).Where("id = ?", in.PairID).Take(&p).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	peerID := peerIDOf(p, in.ID)
	if peerID == "" {
		return nil, nil
	}
	var peer Instance
	err = s.db.WithContext(ctx).Where("id = ?", peerID).Take(&peer).Error
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
	t := Transition{Instance: in.ID, Account: in.AccountID, Pair: in.PairID,
		Role: in.Role, From: from, To: to, Reason: reason, At: s.now()}
	if s.opts.OnTransition != nil {
		s.opts.OnTransition(ctx, t)
	}
	sev := SeverityInfo
	if to == StateDegraded || to == StateFailed {
		sev = SeverityWarning
	}
	s.publish(Event{Type: EventInstanceState, Subject: string(in.ID), Severity: sev,
		Summary: fmt.Sprintf("%s %s → %s: %s", in.ID, from, to, reason), Payload: payload(t), Time: t.At})
}
