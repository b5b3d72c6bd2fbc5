package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

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
	var pairs []Pair
	if err := s.db.WithContext(ctx).Find(&pairs).Error; err != nil {
		return nil, clawops.E("list instances", clawops.ReasonInternal, err)
	}
	return viewsOf(rows, pairs), nil
}

// viewsOf builds the views of rows, finding each one's peer through its pair.
func viewsOf(rows []Instance, pairs []Pair) []InstanceView {
	byID := make(map[clawops.InstanceID]int, len(rows))
	for i, r := range rows {
		byID[r.ID] = i
	}
	pairByID := make(map[string]*Pair, len(pairs))
	for i := range pairs {
		pairByID[pairs[i].ID] = &pairs[i]
	}
	out := make([]InstanceView, 0, len(rows))
	for _, r := range rows {
		var peer *Instance
		if p := pairByID[r.PairID]; p != nil {
			if j, ok := byID[peerIDOf(*p, r.ID)]; ok {
				peer = &rows[j]
			}
		}
		out = append(out, viewOf(r, peer))
	}
	return out
}

// peerIDOf returns the other member of p for id, or "" when id is not a member (a retired
// former primary).
func peerIDOf(p Pair, id clawops.InstanceID) clawops.InstanceID {
	switch id {
	case p.PrimaryID:
		return p.StandbyID
	case p.StandbyID:
		return p.PrimaryID
	}
	return ""
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
