package fleet

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// DiagnoseLogLines is how many log lines a diagnosis reads.
const DiagnoseLogLines = 50

// Recommendations a diagnosis can make.
const (
	RecommendNone     = "none"     // healthy
	RecommendHeal     = "heal"     // run the heal runbook
	RecommendFailover = "failover" // primary unreachable, standby ACTIVE
	RecommendEscalate = "escalate" // a person must look: no safe automatic step
	RecommendWait     = "wait"     // still provisioning
	RecommendTeardown = "teardown" // retired by a failover: review and tear down
)

// Diagnosis is a read-only look at one instance: its record, what its node says now, and
// what the data suggests. Gathering it changes nothing.
type Diagnosis struct {
	Instance       InstanceView   `json:"instance"`
	HeartbeatAgeMs *int64         `json:"heartbeat_age_ms,omitempty"`
	Health         *proto.Health  `json:"health,omitempty"`
	HealthError    string         `json:"health_error,omitempty"`
	Metrics        *proto.Metrics `json:"metrics,omitempty"`
	MetricsError   string         `json:"metrics_error,omitempty"`
	Logs           []string       `json:"logs,omitempty"`
	LogsError      string         `json:"logs_error,omitempty"`
	Findings       []string       `json:"findings"`
	Recommendation string         `json:"recommendation"`
}

// Diagnose gathers a diagnosis of id: the record, OpenClaw's health, a metrics sample and
// the newest log lines from the node (each may fail on its own), findings, and a
// recommendation.
func (s *Service) Diagnose(ctx context.Context, id clawops.InstanceID) (Diagnosis, error) {
	v, err := s.Instance(ctx, id)
	if err != nil {
		return Diagnosis{}, err
	}
	d := Diagnosis{Instance: v, Findings: []string{}}
	now := s.now()
	if v.LastHeartbeat != nil {
		age := now.Sub(*v.LastHeartbeat).Milliseconds()
		d.HeartbeatAgeMs = &age
		if time.Duration(age)*time.Millisecond > s.opts.HeartbeatTimeout {
			d.Findings = append(d.Findings, fmt.Sprintf("no heartbeat for %s (timeout %s)",
				(time.Duration(age)*time.Millisecond).Round(time.Second), s.opts.HeartbeatTimeout))
		}
	}
	switch {
	case v.State == StateTerminated:
		d.Findings = append(d.Findings, "instance is terminated")
		d.Recommendation = RecommendNone
		return d, nil
	case v.Role == RoleRetired:
		d.Findings = append(d.Findings, "replaced by a failover; its server is kept for review")
		d.Recommendation = RecommendTeardown
		return d, nil
	case v.Node == "":
		d.Findings = append(d.Findings, fmt.Sprintf("no node has enrolled yet (state %s)", v.State))
		if v.Error != "" {
			d.Findings = append(d.Findings, "last error: "+truncate(v.Error, 300))
		}
		d.Recommendation = RecommendWait
		if v.State == StateFailed {
			d.Recommendation = RecommendEscalate
		}
		return d, nil
	}
	if h, err := s.Health(ctx, id); err != nil {
		d.HealthError = err.Error()
		d.Findings = append(d.Findings, "node did not answer openclaw.health: "+truncate(err.Error(), 200))
	} else {
		d.Health = &h
		if !h.OK {
			d.Findings = append(d.Findings, fmt.Sprintf("OpenClaw unhealthy: HTTP %d %s", h.Status, truncate(h.Error, 200)))
		}
	}
	if m, err := s.Metrics(ctx, id); err != nil {
		d.MetricsError = err.Error()
	} else {
		d.Metrics = &m
		d.Findings = append(d.Findings, metricFindings(m)...)
	}
	if text, err := s.Logs(ctx, id, DiagnoseLogLines); err != nil {
		d.LogsError = err.Error()
	} else if text = strings.TrimRight(text, "\n"); text != "" {
		d.Logs = strings.Split(text, "\n")
	}
	switch {
	case d.Health != nil && d.Health.OK:
		d.Recommendation = RecommendNone
		if len(d.Findings) == 0 {
			d.Findings = append(d.Findings, "healthy")
		}
	case d.Health != nil:
		d.Recommendation = RecommendHeal // the node answers: a restart may fix OpenClaw
	case v.Role == RolePrimary && v.PeerState == StateActive:
		d.Recommendation = RecommendFailover
	default:
		d.Recommendation = RecommendEscalate
	}
	return d, nil
}

// metricFindings flags resources near their end.
func metricFindings(m proto.Metrics) []string {
	var out []string
	pct := func(used, total uint64) float64 { return 100 * float64(used) / float64(total) }
	if m.DiskTotalBytes > 0 && pct(m.DiskUsedBytes, m.DiskTotalBytes) >= 90 {
		out = append(out, fmt.Sprintf("disk %.0f%% full", pct(m.DiskUsedBytes, m.DiskTotalBytes)))
	}
	if m.MemTotalBytes > 0 && pct(m.MemUsedBytes, m.MemTotalBytes) >= 90 {
		out = append(out, fmt.Sprintf("memory %.0f%% used", pct(m.MemUsedBytes, m.MemTotalBytes)))
	}
	if m.CPUPercent >= 90 {
		out = append(out, fmt.Sprintf("CPU at %.0f%%", m.CPUPercent))
	}
	return out
}
