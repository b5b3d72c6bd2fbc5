// Package fleet is the domain of ClawOps: accounts, primary/standby pairs of instances, the
// instance state machine driven by node heartbeats, and the operations (provision, health,
// restart, logs, teardown) that the governed tools call. It knows nothing of agents,
// channels or governance: nodes are reached through the small NodeInvoker interface and
// servers through Provider.
package fleet

import (
	"fmt"
	"regexp"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

// State is where an instance is in its life.
type State string

// Instance states.
//
//	CREATING ──provider accepted──► BOOTSTRAPPING ──healthy heartbeat──► ACTIVE
//	ACTIVE ──unhealthy heartbeat or no heartbeat──► DEGRADED ──healthy heartbeat──► ACTIVE
//	any ──provider call failed──► FAILED;  any ──teardown──► TERMINATED
//
// STANDBY_PROMOTING belongs to the failover operation; heartbeats do not move it.
const (
	StateCreating         State = "CREATING"
	StateBootstrapping    State = "BOOTSTRAPPING"
	StateActive           State = "ACTIVE"
	StateDegraded         State = "DEGRADED"
	StateFailed           State = "FAILED"
	StateStandbyPromoting State = "STANDBY_PROMOTING"
	StateTerminated       State = "TERMINATED"
)

// States lists every instance state in a stable order.
var States = []State{StateCreating, StateBootstrapping, StateActive, StateDegraded,
	StateFailed, StateStandbyPromoting, StateTerminated}

// Role is an instance's place in its pair.
type Role string

// Pair roles.
const (
	RolePrimary Role = "primary"
	RoleStandby Role = "standby"
)

// Reason codes of the fleet room, beside the shared ones in package clawops.
const (
	// ReasonPairExists means a pair with that ID is already recorded.
	ReasonPairExists clawops.ReasonCode = "PAIR_EXISTS"
	// ReasonUnknownPair means no pair has that ID.
	ReasonUnknownPair clawops.ReasonCode = "UNKNOWN_PAIR"
	// ReasonUnknownProvider means the placement names a provider that is not configured.
	ReasonUnknownProvider clawops.ReasonCode = "UNKNOWN_PROVIDER"
)

// InstanceIDPattern is the form of an instance ID. Chat users type IDs, so they are short,
// lowercase and free of anything a shell or a chat client would mangle.
const InstanceIDPattern = `^[a-z0-9][a-z0-9-]{1,39}$`

var instanceIDRE = regexp.MustCompile(InstanceIDPattern)

// ValidInstanceID reports whether s has the form of an instance ID.
func ValidInstanceID(s string) bool { return instanceIDRE.MatchString(s) }

// ParseInstanceID checks s and returns it as an InstanceID, or a BAD_ARGUMENTS error.
func ParseInstanceID(s string) (clawops.InstanceID, error) {
	if !ValidInstanceID(s) {
		return "", clawops.E("parse instance id", clawops.KindInvalid, clawops.ReasonBadArguments,
			fmt.Errorf("%q is not an instance id: want 2-40 of a-z, 0-9 and '-', starting with a letter or digit", s))
	}
	return clawops.InstanceID(s), nil
}

// Account is one end user's account; each account is served by one pair.
type Account struct {
	ID        string    `gorm:"primaryKey;size:40"`
	Name      string    `gorm:"size:200"`
	CreatedAt time.Time `gorm:"autoCreateTime:false"`
}

// Pair is a primary instance and its standby, serving one account.
type Pair struct {
	ID        string             `gorm:"primaryKey;size:40" json:"id"`
	AccountID string             `gorm:"index;size:40" json:"account"`
	PrimaryID clawops.InstanceID `gorm:"size:40" json:"primary"`
	StandbyID clawops.InstanceID `gorm:"size:40" json:"standby"`
	CreatedAt time.Time          `gorm:"autoCreateTime:false" json:"created_at"`
}

// Instance is one VPS of the fleet as the gateway records it.
type Instance struct {
	ID              clawops.InstanceID `gorm:"primaryKey;size:40"`
	AccountID       string             `gorm:"index;size:40"`
	PairID          string             `gorm:"index;size:40"`
	Provider        string             `gorm:"size:40"`
	ProviderID      string             `gorm:"size:200"`
	Region          string             `gorm:"size:80"`
	Tier            string             `gorm:"size:40"`
	Role            Role               `gorm:"size:16"`
	State           State              `gorm:"index;size:24"`
	NodeID          clawops.NodeID     `gorm:"index;size:80"`
	LastHeartbeat   *time.Time
	HealthOK        bool
	HealthStatus    int
	HealthLatencyMs int64
	HealthError     string    `gorm:"size:1000"`
	LastMetrics     string    // JSON of the last proto.Metrics
	Error           string    `gorm:"size:2000"` // last operation failure, e.g. a provider error
	CreatedAt       time.Time `gorm:"autoCreateTime:false"`
	UpdatedAt       time.Time `gorm:"autoUpdateTime:false"`
}

// Table names carry the room's prefix so they cannot clash with another room's.

// TableName is fleet_accounts.
func (Account) TableName() string { return "fleet_accounts" }

// TableName is fleet_pairs.
func (Pair) TableName() string { return "fleet_pairs" }

// TableName is fleet_instances.
func (Instance) TableName() string { return "fleet_instances" }

// Migrate creates or updates the fleet tables.
func Migrate(db *gorm.DB) error {
	if err := db.AutoMigrate(&Account{}, &Pair{}, &Instance{}); err != nil {
		return fmt.Errorf("migrate fleet: %w", err)
	}
	return nil
}
