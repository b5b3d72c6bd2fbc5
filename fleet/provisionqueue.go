package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

// ProvisionBatch is one provisioning request: N pairs asked for together, whose progress is
// reported together ("4/20 ACTIVE, 11/20 BOOTSTRAPPING, 5/20 CREATING").
type ProvisionBatch struct {
	ID             uint   `gorm:"primaryKey"`
	RequestedBy    string `gorm:"size:200"`
	Reason         string `gorm:"size:1000"`
	Pairs          int
	Tier           string `gorm:"size:40"`
	MonthlyUSD     float64
	RoutingVersion int
	LastProgress   string `gorm:"size:500"`
	CompletedAt    *time.Time
	CreatedAt      time.Time
}

// TableName is fleet_provision_batches.
func (ProvisionBatch) TableName() string { return "fleet_provision_batches" }

// Provision job kinds and states.
const (
	JobPair     = "pair"     // provision a new pair from Spec
	JobInstance = "instance" // create the server of a recorded instance (a failover's new standby)

	JobQueued  = "queued"
	JobRunning = "running"
	JobDone    = "done"
	JobFailed  = "failed"
)

// ProvisionJob is one journaled unit of provisioning work. A job survives a gateway
// restart: one left running is queued again, and its retry first looks for a server the
// provider may already have created (by the clawops.instance label) before creating one.
type ProvisionJob struct {
	ID        uint               `gorm:"primaryKey"`
	BatchID   uint               `gorm:"index"`
	Kind      string             `gorm:"size:16"`
	PairID    string             `gorm:"index;size:40"`
	Instance  clawops.InstanceID `gorm:"size:40"`
	Spec      string             // JSON PairSpec for JobPair
	State     string             `gorm:"index;size:16"`
	Attempts  int
	NextAt    time.Time
	Error     string `gorm:"size:2000"`
	CreatedAt time.Time
	UpdatedAt time.Time
	DoneAt    *time.Time
}

// TableName is fleet_provision_jobs.
func (ProvisionJob) TableName() string { return "fleet_provision_jobs" }

// ProvisionBatchView is a batch with the progress of its pairs.
type ProvisionBatchView struct {
	ID             uint           `json:"id"`
	RequestedBy    string         `json:"requested_by"`
	Pairs          []string       `json:"pairs"`
	Counts         map[string]int `json:"counts"` // pair progress state → pairs
	Summary        string         `json:"summary"`
	Done           bool           `json:"done"`
	Failed         []string       `json:"failed,omitempty"` // pairs whose job gave up
	MonthlyUSD     float64        `json:"monthly_usd"`
	RoutingVersion int            `json:"routing_version"`
	CreatedAt      time.Time      `json:"created_at"`
	CompletedAt    *time.Time     `json:"completed_at,omitempty"`
	FastestMs      int64          `json:"fastest_provision_ms,omitempty"`
	SlowestMs      int64          `json:"slowest_provision_ms,omitempty"`
}

// EnqueueProvision journals plan as a new batch of pair jobs and wakes the provisioner. It
// returns at once; progress arrives as PROVISION_PROGRESS events and through
// ProvisionBatch. The plan is checked again (a pair recorded or queued since it was made
// is PAIR_EXISTS).
func (s *Service) EnqueueProvision(ctx context.Context, plan ProvisionPlan, requestedBy, reason string) (ProvisionBatchView, error) {
	const op = "enqueue provision"
	if len(plan.Pairs) == 0 {
		return ProvisionBatchView{}, clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, "the plan has no pairs")
	}
	ids := make([]string, 0, len(plan.Pairs))
	for i := range plan.Pairs {
		if err := s.checkPairSpec(&plan.Pairs[i]); err != nil {
			return ProvisionBatchView{}, err
		}
		ids = append(ids, plan.Pairs[i].Pair)
	}
	now := s.now()
	batch := ProvisionBatch{RequestedBy: truncate(requestedBy, 200), Reason: truncate(reason, 1000), Pairs: len(plan.Pairs),
		Tier: plan.Pairs[0].Tier, MonthlyUSD: plan.MonthlyUSD, RoutingVersion: plan.RoutingVersion, CreatedAt: now}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := s.checkFree(tx, ids); err != nil {
			return err
		}
		if err := tx.Create(&batch).Error; err != nil {
			return err
		}
		jobs := make([]ProvisionJob, 0, len(plan.Pairs))
		for _, spec := range plan.Pairs {
			b, err := json.Marshal(spec)
			if err != nil {
				return err
			}
			jobs = append(jobs, ProvisionJob{BatchID: batch.ID, Kind: JobPair, PairID: spec.Pair, Spec: string(b),
				State: JobQueued, NextAt: now, CreatedAt: now, UpdatedAt: now})
		}
		return tx.CreateInBatches(&jobs, 100).Error
	})
	if err != nil {
		if clawops.ReasonOf(err) != "" {
			return ProvisionBatchView{}, err
		}
		return ProvisionBatchView{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	s.log.Info("provisioning queued", "batch", batch.ID, "pairs", len(ids), "by", requestedBy)
	s.kickProvisioner()
	return s.ProvisionBatch(context.WithoutCancel(ctx), batch.ID)
}

// checkFree refuses pair IDs that are recorded or waiting in the queue.
func (s *Service) checkFree(tx *gorm.DB, ids []string) error {
	var taken []string
	if err := tx.Model(&Pair{}).Where("id IN ?", ids).Pluck("id", &taken).Error; err != nil {
		return err
	}
	var queued []string
	if err := tx.Model(&ProvisionJob{}).Where("pair_id IN ? AND kind = ? AND state IN ?", ids, JobPair,
		[]string{JobQueued, JobRunning}).Pluck("pair_id", &queued).Error; err != nil {
		return err
	}
	taken = append(taken, queued...)
	if len(taken) > 0 {
		return clawops.E("enqueue provision", clawops.KindInvalid, ReasonPairExists,
			fmt.Errorf("pairs already recorded or queued: %s", strings.Join(taken, ", ")))
	}
	return nil
}

func (s *Service) kickProvisioner() {
	select {
	case s.provisionKick <- struct{}{}:
	default:
	}
}

// QueueDepth is how many provisioning jobs are waiting or running.
func (s *Service) QueueDepth(ctx context.Context) (int, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&ProvisionJob{}).Where("state IN ?", []string{JobQueued, JobRunning}).Count(&n).Error
	if err != nil {
		return 0, clawops.E("queue depth", clawops.ReasonInternal, err)
	}
	return int(n), nil
}

// RunProvisioner works the provisioning queue until ctx ends: at start (after requeueing
// jobs a previous process left running), whenever work is enqueued, and every interval
// (for retries that have come due). Only one provisioner may run per database: the
// gateway's leader.
func (s *Service) RunProvisioner(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	if err := s.db.WithContext(ctx).Model(&ProvisionJob{}).Where("state = ?", JobRunning).
		Updates(map[string]any{"state": JobQueued, "updated_at": s.now()}).Error; err != nil {
		return fmt.Errorf("provisioner: requeue jobs left running: %w", err)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.ProcessProvisionQueue(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("provisioning queue", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.provisionKick:
		}
	}
}

// ProcessProvisionQueue runs every job that is due, ProvisionConcurrency at a time, and
// returns how many it ran. Each finished job updates its batch's progress.
func (s *Service) ProcessProvisionQueue(ctx context.Context) (int, error) {
	var jobs []ProvisionJob
	err := s.db.WithContext(ctx).Where("state = ? AND next_at <= ?", JobQueued, s.now()).
		Order("id").Limit(1000).Find(&jobs).Error
	if err != nil {
		return 0, clawops.E("process provision queue", clawops.ReasonInternal, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.ProvisionConcurrency)
	ran := 0
	for _, j := range jobs {
		res := s.db.WithContext(ctx).Model(&ProvisionJob{}).Where("id = ? AND state = ?", j.ID, JobQueued).
			Updates(map[string]any{"state": JobRunning, "updated_at": s.now()})
		if res.Error != nil {
			return ran, clawops.E("process provision queue", clawops.ReasonInternal, res.Error)
		}
		if res.RowsAffected == 0 {
			continue
		}
		ran++
		g.Go(func() error {
			s.runJob(gctx, j)
			return nil
		})
	}
	_ = g.Wait()
	batches := map[uint]bool{}
	for _, j := range jobs {
		batches[j.BatchID] = true
	}
	for id := range batches {
		if id != 0 {
			s.reportBatch(context.WithoutCancel(ctx), id)
		}
	}
	return ran, nil
}

// runJob does one attempt of j and records the outcome: done, queued for a retry, or
// failed with an alert.
func (s *Service) runJob(ctx context.Context, j ProvisionJob) {
	attempt := j.Attempts + 1
	err := s.attemptJob(ctx, j)
	rec := context.WithoutCancel(ctx)
	now := s.now()
	cols := map[string]any{"attempts": attempt, "updated_at": now}
	switch {
	case err == nil:
		cols["state"], cols["error"], cols["done_at"] = JobDone, "", now
	case ctx.Err() != nil:
		// Shutting down: the job is not counted as an attempt and runs again next time.
		cols["state"], cols["attempts"] = JobQueued, j.Attempts
	case attempt <= s.opts.ProvisionRetries:
		next := now.Add(s.opts.ProvisionRetryDelay)
		if at, ok := RetryAt(err, now); ok && at.After(next) {
			next = at
		}
		cols["state"], cols["error"], cols["next_at"] = JobQueued, truncate(err.Error(), 2000), next
		s.publish(Event{Type: EventProvisionRetry, Subject: j.PairID, Severity: SeverityWarning,
			Summary: fmt.Sprintf("provisioning %s failed (attempt %d of %d), retrying at %s: %s", j.PairID, attempt,
				s.opts.ProvisionRetries+1, next.Format(time.RFC3339), truncate(err.Error(), 300)),
			Payload: payload(map[string]any{"pair": j.PairID, "batch": j.BatchID, "attempt": attempt, "error": err.Error(), "next_at": next})})
	default:
		cols["state"], cols["error"], cols["done_at"] = JobFailed, truncate(err.Error(), 2000), now
		s.publish(Event{Type: EventProvisionFailed, Subject: j.PairID, Severity: SeverityCritical,
			Summary: fmt.Sprintf("provisioning %s failed after %d attempts: %s", j.PairID, attempt, truncate(err.Error(), 500)),
			Payload: payload(map[string]any{"pair": j.PairID, "batch": j.BatchID, "attempts": attempt,
				"error": err.Error(), "reason": clawops.ReasonOf(err)})})
	}
	if uerr := s.db.WithContext(rec).Model(&ProvisionJob{}).Where("id = ?", j.ID).Updates(cols).Error; uerr != nil {
		s.log.Error("record provision job", "job", j.ID, "err", uerr)
	}
}

// attemptJob provisions what j asks for, or finishes what an earlier attempt left.
func (s *Service) attemptJob(ctx context.Context, j ProvisionJob) error {
	switch j.Kind {
	case JobPair:
		var spec PairSpec
		if err := json.Unmarshal([]byte(j.Spec), &spec); err != nil {
			return clawops.E("provision job", clawops.ReasonInternal, fmt.Errorf("job %d spec: %w", j.ID, err))
		}
		var n int64
		if err := s.db.WithContext(ctx).Model(&Pair{}).Where("id = ?", spec.Pair).Count(&n).Error; err != nil {
			return clawops.E("provision job", clawops.ReasonInternal, err)
		}
		if n == 0 {
			if _, err := s.ProvisionPair(ctx, spec); err != nil && clawops.ReasonOf(err) != ReasonPairExists {
				return err
			}
			return nil
		}
		return s.ensurePair(ctx, spec.Pair)
	case JobInstance:
		in, err := s.load(ctx, "provision job", j.Instance)
		if err != nil {
			return err
		}
		return s.ensureServer(ctx, in)
	}
	return clawops.E("provision job", clawops.ReasonInternal, fmt.Errorf("job %d has unknown kind %q", j.ID, j.Kind))
}

// ensurePair makes sure both members of a recorded pair have a server.
func (s *Service) ensurePair(ctx context.Context, pairID string) error {
	var p Pair
	if err := s.db.WithContext(ctx).Where("id = ?", pairID).Take(&p).Error; err != nil {
		return clawops.E("provision pair", clawops.ReasonInternal, err)
	}
	var errs []error
	for _, id := range []clawops.InstanceID{p.PrimaryID, p.StandbyID} {
		in, err := s.load(ctx, "provision pair", id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := s.ensureServer(ctx, in); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return clawops.E("provision pair", errors.Join(errs...))
	}
	return nil
}

// ProvisionBatch returns a batch with the progress of its pairs.
func (s *Service) ProvisionBatch(ctx context.Context, id uint) (ProvisionBatchView, error) {
	const op = "provision batch"
	var b ProvisionBatch
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&b).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return ProvisionBatchView{}, clawops.E(op, clawops.KindNotFound, ReasonUnknownBatch, fmt.Errorf("no provisioning batch %d", id))
	}
	if err != nil {
		return ProvisionBatchView{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	var jobs []ProvisionJob
	if err := s.db.WithContext(ctx).Where("batch_id = ? AND kind = ?", id, JobPair).Order("id").Find(&jobs).Error; err != nil {
		return ProvisionBatchView{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	v := ProvisionBatchView{ID: b.ID, RequestedBy: b.RequestedBy, Counts: map[string]int{}, MonthlyUSD: b.MonthlyUSD,
		RoutingVersion: b.RoutingVersion, CreatedAt: b.CreatedAt.UTC(), CompletedAt: b.CompletedAt}
	var pairIDs []string
	for _, j := range jobs {
		pairIDs = append(pairIDs, j.PairID)
	}
	var rows []Instance
	if len(pairIDs) > 0 {
		if err := s.db.WithContext(ctx).Where("pair_id IN ? AND role IN ?", pairIDs, []Role{RolePrimary, RoleStandby}).Find(&rows).Error; err != nil {
			return ProvisionBatchView{}, clawops.E(op, clawops.ReasonInternal, err)
		}
	}
	members := map[string][]Instance{}
	for _, r := range rows {
		members[r.PairID] = append(members[r.PairID], r)
	}
	done := true
	for _, j := range jobs {
		v.Pairs = append(v.Pairs, j.PairID)
		st := pairProgress(j, members[j.PairID])
		v.Counts[st]++
		switch st {
		case "FAILED":
			if j.State == JobFailed {
				v.Failed = append(v.Failed, j.PairID)
			} else {
				done = false
			}
		case string(StateActive):
			for _, m := range members[j.PairID] {
				if m.ActiveAt == nil {
					continue
				}
				ms := m.ActiveAt.Sub(m.CreatedAt).Milliseconds()
				if v.FastestMs == 0 || ms < v.FastestMs {
					v.FastestMs = ms
				}
				v.SlowestMs = max(v.SlowestMs, ms)
			}
		default:
			done = false
		}
	}
	v.Done = done && len(jobs) > 0
	v.Summary = progressSummary(v.Counts, len(jobs))
	return v, nil
}

// Pair progress states, from least to most advanced.
var progressOrder = []string{"QUEUED", "FAILED", string(StateCreating), string(StateBootstrapping),
	string(StateDegraded), string(StateActive)}

// pairProgress is the least advanced provisioning state of a pair's members (ACTIVE once
// a member has been ACTIVE), or QUEUED before the pair is recorded. A pair whose job gave
// up is FAILED.
func pairProgress(j ProvisionJob, members []Instance) string {
	if j.State == JobFailed {
		return "FAILED"
	}
	if len(members) == 0 {
		return "QUEUED"
	}
	rank := func(st State) int {
		switch st {
		case StateFailed:
			return 1
		case StateCreating:
			return 2
		case StateBootstrapping:
			return 3
		case StateActive:
			return 5
		}
		return 4
	}
	// A member that has been ACTIVE once is provisioned, whatever it is now.
	st := func(m Instance) State {
		if m.ActiveAt != nil {
			return StateActive
		}
		return m.State
	}
	least := st(members[0])
	for _, m := range members[1:] {
		if rank(st(m)) < rank(least) {
			least = st(m)
		}
	}
	if least == StateFailed {
		return "FAILED"
	}
	if rank(least) == 4 {
		return string(StateDegraded)
	}
	return string(least)
}

// progressSummary renders e.g. "4/20 ACTIVE, 11/20 BOOTSTRAPPING, 5/20 CREATING".
func progressSummary(counts map[string]int, total int) string {
	var parts []string
	for i := len(progressOrder) - 1; i >= 0; i-- {
		if n := counts[progressOrder[i]]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d/%d %s", n, total, progressOrder[i]))
		}
	}
	return strings.Join(parts, ", ")
}

// reportBatch publishes a batch's progress when it changed since the last report, and
// PROVISION_COMPLETED once every pair is ACTIVE or given up.
func (s *Service) reportBatch(ctx context.Context, id uint) {
	v, err := s.ProvisionBatch(ctx, id)
	if err != nil || v.CompletedAt != nil {
		return
	}
	var b ProvisionBatch
	if err := s.db.WithContext(ctx).Where("id = ?", id).Take(&b).Error; err != nil || b.LastProgress == v.Summary && !v.Done {
		return
	}
	cols := map[string]any{"last_progress": truncate(v.Summary, 500)}
	if v.Done {
		now := s.now()
		cols["completed_at"] = now
		v.CompletedAt = &now
	}
	res := s.db.WithContext(ctx).Model(&ProvisionBatch{}).Where("id = ? AND last_progress = ? AND completed_at IS NULL", id, b.LastProgress).Updates(cols)
	if res.Error != nil || res.RowsAffected == 0 {
		return
	}
	subject := fmt.Sprintf("batch-%d", id)
	if !v.Done {
		s.publish(Event{Type: EventProvisionProgress, Subject: subject, Summary: "provisioning " + v.Summary, Payload: payload(v)})
		return
	}
	sev, sum := SeverityInfo, fmt.Sprintf("provisioning batch %d done: %s", id, v.Summary)
	if len(v.Failed) > 0 {
		sev = SeverityWarning
	}
	if v.SlowestMs > 0 {
		sum += fmt.Sprintf("; fastest %s, slowest %s", time.Duration(v.FastestMs)*time.Millisecond, time.Duration(v.SlowestMs)*time.Millisecond)
	}
	s.publish(Event{Type: EventProvisionCompleted, Subject: subject, Severity: sev, Summary: sum, Payload: payload(v)})
}

// reportOpenBatches updates the progress of every batch not yet completed; the monitor
// calls it each sweep, since heartbeats (not jobs) move pairs to ACTIVE.
func (s *Service) reportOpenBatches(ctx context.Context) error {
	var ids []uint
	if err := s.db.WithContext(ctx).Model(&ProvisionBatch{}).Where("completed_at IS NULL").Pluck("id", &ids).Error; err != nil {
		return err
	}
	for _, id := range ids {
		s.reportBatch(ctx, id)
	}
	return nil
}
