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
	"github.com/gatewayforge/clawops/clawnode/proto"
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

// Pair roles. A retired instance is a former primary replaced by a failover: it keeps its
// record (and its server, which is never deleted automatically) until someone tears it down.
const (
	RolePrimary Role = "primary"
	RoleStandby Role = "standby"
	RoleRetired Role = "retired"
)

// Reason codes of the fleet room, beside the shared ones in package clawops.
const (
	// ReasonPairExists means a pair with that ID is already recorded.
	ReasonPairExists clawops.ReasonCode = "PAIR_EXISTS"
	// ReasonUnknownPair means no pair has that ID.
	ReasonUnknownPair clawops.ReasonCode = "UNKNOWN_PAIR"
	// ReasonUnknownProvider means the placement names a provider that is not configured.
	ReasonUnknownProvider clawops.ReasonCode = "UNKNOWN_PROVIDER"
	// ReasonOperationInProgress means another heal, failover or resize holds the pair.
	ReasonOperationInProgress clawops.ReasonCode = "OPERATION_IN_PROGRESS"
	// ReasonArchiveFailed means the workspace could not be archived, so nothing was deleted.
	ReasonArchiveFailed clawops.ReasonCode = "ARCHIVE_FAILED"
	// ReasonFailoverFailed means the standby could not be promoted; the pair is unchanged.
	ReasonFailoverFailed clawops.ReasonCode = "FAILOVER_FAILED"
	// ReasonUnknownTier means the tier is not in the price table.
	ReasonUnknownTier clawops.ReasonCode = "UNKNOWN_TIER"
	// ReasonUnknownPush means no rolling push has that ID.
	ReasonUnknownPush clawops.ReasonCode = "UNKNOWN_PUSH"
	// ReasonPushState means the push is not in a state that allows the request.
	ReasonPushState clawops.ReasonCode = "PUSH_STATE"
	// ReasonConfigRolledBack is the node's code for a config that failed its health check
	// and was rolled back.
	ReasonConfigRolledBack = proto.CodeConfigRolledBack
	// ReasonUpgradeRolledBack is the node's code for an image that failed to start or its
	// health check; the previous image runs again.
	ReasonUpgradeRolledBack = proto.CodeUpgradeRolledBack
	// ReasonNoPlacement means the routing policy yields no usable provider.
	ReasonNoPlacement clawops.ReasonCode = "NO_PLACEMENT"
	// ReasonUnknownBatch means no provisioning batch has that ID.
	ReasonUnknownBatch clawops.ReasonCode = "UNKNOWN_BATCH"
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
	// LastActivityAt is the last time the user was seen using OpenClaw (RecordActivity).
	LastActivityAt *time.Time
}

// Pair is a primary instance and its standby, serving one account.
type Pair struct {
	ID        string             `gorm:"primaryKey;size:40" json:"id"`
	AccountID string             `gorm:"index;size:40" json:"account"`
	PrimaryID clawops.InstanceID `gorm:"size:40" json:"primary"`
	StandbyID clawops.InstanceID `gorm:"size:40" json:"standby"`
	CreatedAt time.Time          `gorm:"autoCreateTime:false" json:"created_at"`
	// Replacements counts the standbys created by failovers; it names the next one.
	Replacements int `json:"replacements"`
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

	// ActiveAt is when the instance first became ACTIVE; ActiveAt-CreatedAt is its
	// provision time, which feeds the provider health score.
	ActiveAt *time.Time
	// TerminatedAt is when teardown recorded it TERMINATED; it ends its cost.
	TerminatedAt *time.Time
	// LastActiveAt is the last heartbeat whose CPU showed the user at work.
	LastActiveAt *time.Time
	// Usage of the current week (from UsageSince): sums of the heartbeat CPU and memory
	// percentages and their count; UsageWeekCPU/Mem are the means of the last full week,
	// valid when UsageWeekFull.
	UsageSince    *time.Time
	UsageCPUSum   float64
	UsageMemSum   float64
	UsageSamples  int64
	UsageWeekCPU  float64
	UsageWeekMem  float64
	UsageWeekFull bool
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
	if err := db.AutoMigrate(&Account{}, &Pair{}, &Instance{}, &ProvisionBatch{}, &ProvisionJob{},
		&ProviderSample{}, &RoutingRecord{}, &Push{}, &PushTarget{}, &Archive{}); err != nil {
		return fmt.Errorf("migrate fleet: %w", err)
	}
	return nil
}
