package proto

import (
	"time"

	"github.com/gatewayforge/clawops"
)

// Metrics is a VPS resource sample taken by gf-clawnode from /proc and statfs.
type Metrics struct {
	CPUPercent     float64 `json:"cpuPercent"`
	MemUsedBytes   uint64  `json:"memUsedBytes"`
	MemTotalBytes  uint64  `json:"memTotalBytes"`
	DiskUsedBytes  uint64  `json:"diskUsedBytes"`
	DiskTotalBytes uint64  `json:"diskTotalBytes"`
	Load1          float64 `json:"load1"`
	Load5          float64 `json:"load5"`
	Load15         float64 `json:"load15"`
}

// Health is the result of one GET of the instance's OpenClaw health URL.
type Health struct {
	OK        bool   `json:"ok"`
	Status    int    `json:"status,omitempty"` // HTTP status code, 0 when no answer
	LatencyMs int64  `json:"latencyMs"`
	Error     string `json:"error,omitempty"`
	CheckedAt int64  `json:"checkedAt"` // unix milliseconds
}

// Heartbeat is what the hub reports to the fleet each time a node sends its periodic
// heartbeat (a `node.event` request with event `clawops.heartbeat`, see HeartbeatEvent):
// who it is, which instance it serves, and how that instance is.
type Heartbeat struct {
	Node      clawops.NodeID     `json:"node"`
	Instance  clawops.InstanceID `json:"instance"`
	At        time.Time          `json:"at"`
	Metrics   Metrics            `json:"metrics"`
	OpenClaw  Health             `json:"openclaw"`
	Container string             `json:"container,omitempty"` // runtime's view: running, exited, unknown
}
