package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// The shapes of config.apply and config.get are gf-clawnode's (clawnode/proto).
type (
	// ConfigApplyParams are the parameters of config.apply.
	ConfigApplyParams = proto.ConfigApplyParams
	// ConfigApplyResult is the result of config.apply.
	ConfigApplyResult = proto.ConfigApplyResult
	// ConfigGetResult is the result of config.get.
	ConfigGetResult = proto.ConfigGetResult
)

// RunPushWorker runs the pushes that are running until ctx ends: at start (resuming the
// ones a previous process left), whenever one is started or resumed, and every interval.
// Only one worker may run per database: the gateway's leader.
func (s *Service) RunPushWorker(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		var ids []uint
		if err := s.db.WithContext(ctx).Model(&Push{}).Where("state = ?", PushRunning).Order("id").Pluck("id", &ids).Error; err != nil && ctx.Err() == nil {
			s.log.Warn("list running pushes", "err", err)
		}
		for _, id := range ids {
			if _, err := s.RunPush(ctx, id); err != nil && ctx.Err() == nil && clawops.ReasonOf(err) != ReasonOperationInProgress {
				s.log.Warn("rolling push", "push", id, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.pushKick:
		}
	}
}

// RunPush drives push id batch by batch until it completes, is stopped by its failure
// threshold, or is paused or aborted; it returns the push as it then is. Each batch is
// configured PushConcurrency instances at a time, then validated (config.get reports the
// push's version and OpenClaw answers healthy) before the next starts.
//
// Every instance's progress is journaled, with the idempotency key its command carries,
// before the command leaves, so RunPush may be called again after a crash (by a new
// Service over the same database): an instance found "sending" is asked for its config
// version first and is only sent again when it does not run the push's version, under a
// new idempotency key. When ctx ends, instances in
// flight stay "sending" for that reconciliation.
func (s *Service) RunPush(ctx context.Context, id uint) (PushView, error) {
	const op = "run push"
	s.pushMu.Lock()
	if s.pushing[id] {
		s.pushMu.Unlock()
		return PushView{}, clawops.E(op, clawops.KindTransient, ReasonOperationInProgress, fmt.Errorf("push %d is already running here", id))
	}
	s.pushing[id] = true
	s.pushMu.Unlock()
	defer func() {
		s.pushMu.Lock()
		delete(s.pushing, id)
		s.pushMu.Unlock()
	}()

	for {
		p, err := s.loadPush(ctx, op, id)
		if err != nil {
			return PushView{}, err
		}
		if p.State != PushRunning {
			return s.PushStatus(ctx, id)
		}
		batch, ok, err := s.nextBatch(ctx, id)
		if err != nil {
			return PushView{}, clawops.E(op, clawops.ReasonInternal, err)
		}
		if !ok {
			return s.finishPush(ctx, p, PushCompleted, "")
		}
		interrupted, err := s.runBatch(ctx, p, batch)
		if err != nil {
			return PushView{}, err
		}
		if interrupted {
			if ctx.Err() != nil {
				return PushView{}, clawops.E(op, clawops.KindTransient, ctx.Err())
			}
			continue // paused or aborted: the loop reads the new state
		}
		if err := s.validateBatch(ctx, p, batch); err != nil {
			if ctx.Err() != nil {
				return PushView{}, clawops.E(op, clawops.KindTransient, ctx.Err())
			}
			return PushView{}, err
		}
		stop, err := s.afterBatch(ctx, p, batch)
		if err != nil {
			return PushView{}, err
		}
		if stop != "" {
			return s.finishPush(ctx, p, PushStopped, stop)
		}
	}
}

// nextBatch is the lowest batch with an instance not yet done or not yet validated.
func (s *Service) nextBatch(ctx context.Context, id uint) (int, bool, error) {
	var t PushTarget
	res := s.db.WithContext(ctx).Where("push_id = ? AND (state IN ? OR (state = ? AND validated = ?))",
		id, []string{TargetPending, TargetSending}, TargetApplied, false).Order("batch").Limit(1).Find(&t)
	if res.Error != nil {
		return 0, false, res.Error
	}
	return t.Batch, res.RowsAffected == 1, nil
}

// runBatch configures the open instances of one batch; it reports true when it stopped
// early because the push was paused or aborted or ctx ended.
func (s *Service) runBatch(ctx context.Context, p Push, batch int) (bool, error) {
	var targets []PushTarget
	if err := s.db.WithContext(ctx).Where("push_id = ? AND batch = ? AND state IN ?", p.ID, batch,
		[]string{TargetPending, TargetSending}).Order("seq").Find(&targets).Error; err != nil {
		if ctx.Err() != nil {
			return true, nil
		}
		return false, clawops.E("run push", clawops.ReasonInternal, fmt.Errorf("load batch %d: %w", batch, err))
	}
	for chunk := range chunks(targets, s.opts.PushConcurrency) {
		if ctx.Err() != nil {
			return true, nil
		}
		var states []string
		if err := s.db.WithContext(ctx).Model(&Push{}).Where("id = ?", p.ID).Pluck("state", &states).Error; err != nil {
			if ctx.Err() != nil {
				return true, nil
			}
			return false, clawops.E("run push", clawops.ReasonInternal, err)
		}
		if len(states) != 1 || states[0] != PushRunning {
			return true, nil
		}
		var wg sync.WaitGroup
		for _, t := range chunk {
			wg.Go(func() { s.pushOne(ctx, p, t) })
		}
		wg.Wait()
	}
	return ctx.Err() != nil, nil
}

// pushOne configures one instance, journaling each step.
func (s *Service) pushOne(ctx context.Context, p Push, t PushTarget) {
	const op = "push config"
	if t.State == TargetSending {
		// A previous run sent (or was about to send) the command and stopped before
		// recording the outcome: ask before sending again.
		ver, err := s.configVersion(ctx, t.Instance)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && ver == p.Version:
			s.markTarget(ctx, p.ID, t.Instance, TargetApplied, "confirmed by config.get after an interrupted attempt")
			return
		case err != nil:
			s.markTarget(ctx, p.ID, t.Instance, TargetFailed, "unreachable while checking an interrupted attempt: "+err.Error())
			return
		}
	}
	in, err := s.load(ctx, op, t.Instance)
	if err != nil {
		if ctx.Err() == nil {
			s.markTarget(ctx, p.ID, t.Instance, TargetSkipped, err.Error())
		}
		return
	}
	if in.State == StateTerminated || in.NodeID == "" {
		s.markTarget(ctx, p.ID, t.Instance, TargetSkipped, fmt.Sprintf("no node to configure (state %s)", in.State))
		return
	}
	attempt := t.Attempts + 1
	key := fmt.Sprintf("push-%d-%s-%d", p.ID, t.Instance, attempt)
	res := s.db.WithContext(ctx).Model(&PushTarget{}).
		Where("push_id = ? AND instance = ? AND state IN ? AND attempts = ?", p.ID, t.Instance, []string{TargetPending, TargetSending}, t.Attempts).
		Updates(map[string]any{"state": TargetSending, "attempts": attempt, "key": key, "updated_at": s.now()})
	if res.Error != nil || res.RowsAffected != 1 {
		return // someone else moved it (an abort), or the journal is unwritable: send nothing
	}
	raw, err := s.invokeKeyed(ctx, op, in, CmdConfigApply, ConfigApplyParams{Config: json.RawMessage(p.Config), Version: p.Version}, key)
	if err != nil {
		if ctx.Err() != nil {
			return // stays "sending": the next run reconciles
		}
		if ver, gerr := s.configVersion(ctx, t.Instance); gerr == nil && ver == p.Version {
			s.markTarget(ctx, p.ID, t.Instance, TargetApplied, "applied; the answer was lost: "+err.Error())
			return
		}
		detail := err.Error()
		if clawops.ReasonOf(err) == ReasonConfigRolledBack || strings.Contains(detail, string(ReasonConfigRolledBack)) {
			detail = "rolled back by the node: " + detail
		}
		s.markTarget(ctx, p.ID, t.Instance, TargetFailed, detail)
		return
	}
	var r ConfigApplyResult
	switch {
	case json.Unmarshal(raw, &r) != nil:
		s.markTarget(ctx, p.ID, t.Instance, TargetFailed, "unreadable config.apply result")
	case r.RolledBack || !r.Healthy:
		s.markTarget(ctx, p.ID, t.Instance, TargetFailed, fmt.Sprintf("node reports healthy=%v rolledBack=%v", r.Healthy, r.RolledBack))
	case r.Version != p.Version:
		s.markTarget(ctx, p.ID, t.Instance, TargetFailed, fmt.Sprintf("node reports version %.64q, want %s", r.Version, p.Version))
	default:
		s.markTarget(ctx, p.ID, t.Instance, TargetApplied, "")
	}
}

func (s *Service) markTarget(ctx context.Context, push uint, id clawops.InstanceID, state, detail string) {
	err := s.db.WithContext(context.WithoutCancel(ctx)).Model(&PushTarget{}).Where("push_id = ? AND instance = ?", push, id).
		Updates(map[string]any{"state": state, "detail": truncate(detail, 1000), "updated_at": s.now()}).Error
	if err != nil {
		s.log.Error("record push target", "push", push, "instance", id, "err", err)
	}
}

// invokeKeyed sends command with key as its idempotency key (proto.WithIdempotencyKey,
// which the hub honours), so a node that already ran the command under that key answers
// with the first run's result instead of running it again.
func (s *Service) invokeKeyed(ctx context.Context, op string, in Instance, command string, params any, key string) (json.RawMessage, error) {
	return s.invoke(proto.WithIdempotencyKey(ctx, key), op, in.ID, command, params)
}

// configVersion asks id's node which config version it runs (config.get).
func (s *Service) configVersion(ctx context.Context, id clawops.InstanceID) (string, error) {
	raw, err := s.invoke(ctx, "config version", id, CmdConfigGet, noParams{})
	if err != nil {
		return "", err
	}
	var r ConfigGetResult
	if err := json.Unmarshal(raw, &r); err != nil {
		return "", clawops.E("config version", clawops.ReasonExecutionFailed, fmt.Errorf("decode %s result: %w", CmdConfigGet, err))
	}
	return r.Version, nil
}

// validateBatch checks every instance of a batch that took the config: it must report the
// push's version and answer healthy. One that does not is failed.
func (s *Service) validateBatch(ctx context.Context, p Push, batch int) error {
	var targets []PushTarget
	if err := s.db.WithContext(ctx).Where("push_id = ? AND batch = ? AND state = ? AND validated = ?", p.ID, batch,
		TargetApplied, false).Order("seq").Find(&targets).Error; err != nil {
		return clawops.E("validate batch", clawops.ReasonInternal, err)
	}
	for chunk := range chunks(targets, s.opts.PushConcurrency) {
		var wg sync.WaitGroup
		for _, t := range chunk {
			wg.Go(func() {
				ver, err := s.configVersion(ctx, t.Instance)
				detail := ""
				switch {
				case ctx.Err() != nil:
					return
				case err != nil:
					detail = "validation: config.get: " + err.Error()
				case ver != p.Version:
					detail = fmt.Sprintf("validation: runs version %.64q, want %s", ver, p.Version)
				default:
					if ok, hd := s.healthy(ctx, t.Instance); !ok {
						if ctx.Err() != nil {
							return
						}
						detail = "validation: unhealthy: " + hd
					}
				}
				cols := map[string]any{"validated": true, "updated_at": s.now()}
				if detail != "" {
					cols["state"], cols["detail"] = TargetFailed, truncate(detail, 1000)
				}
				if err := s.db.WithContext(context.WithoutCancel(ctx)).Model(&PushTarget{}).
					Where("push_id = ? AND instance = ?", p.ID, t.Instance).Updates(cols).Error; err != nil {
					s.log.Error("record validation", "push", p.ID, "instance", t.Instance, "err", err)
				}
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// afterBatch reports a validated batch and returns why the push must stop, or "".
func (s *Service) afterBatch(ctx context.Context, p Push, batch int) (string, error) {
	type row struct {
		Batch int
		State string
		N     int
	}
	var rows []row
	if err := s.db.WithContext(ctx).Model(&PushTarget{}).Select("batch, state, count(*) AS n").
		Where("push_id = ? AND batch <= ?", p.ID, batch).Group("batch, state").Scan(&rows).Error; err != nil {
		return "", clawops.E("push batch", clawops.ReasonInternal, err)
	}
	var done, failed, bApplied, bFailed, bSkipped, bTotal int
	for _, r := range rows {
		if r.State == TargetApplied || r.State == TargetFailed {
			done += r.N
		}
		if r.State == TargetFailed {
			failed += r.N
		}
		if r.Batch == batch {
			bTotal += r.N
			switch r.State {
			case TargetApplied:
				bApplied += r.N
			case TargetFailed:
				bFailed += r.N
			case TargetSkipped:
				bSkipped += r.N
			}
		}
	}
	var bad []PushTarget
	s.db.WithContext(ctx).Where("push_id = ? AND batch = ? AND state = ?", p.ID, batch, TargetFailed).Order("seq").Limit(5).Find(&bad)
	summary := fmt.Sprintf("push %d batch %d/%d (%d instances): %d applied, %d failed", p.ID, batch+1, p.Batches, bTotal, bApplied, bFailed)
	if bSkipped > 0 {
		summary += fmt.Sprintf(", %d skipped", bSkipped)
	}
	var notes []string
	for _, b := range bad {
		notes = append(notes, fmt.Sprintf("%s: %s", b.Instance, truncate(b.Detail, 120)))
	}
	if len(notes) > 0 {
		summary += " (" + strings.Join(notes, "; ") + ")"
	}
	sev := SeverityInfo
	if bFailed > 0 {
		sev = SeverityWarning
	}
	s.publish(Event{Type: EventPushBatch, Subject: pushSubject(p.ID), Severity: sev, Summary: summary,
		Payload: payload(map[string]any{"push": p.ID, "batch": batch + 1, "batches": p.Batches, "applied": bApplied,
			"failed": bFailed, "skipped": bSkipped, "done_so_far": done, "failed_so_far": failed})})
	// Stop when more than MaxFailPercent of the instances done so far failed.
	if done > 0 && failed*100 > p.MaxFailPercent*done {
		return fmt.Sprintf("%d of %d instances failed (%.1f%%), above the %d%% limit, after batch %d/%d",
			failed, done, 100*float64(failed)/float64(done), p.MaxFailPercent, batch+1, p.Batches), nil
	}
	return "", nil
}

// finishPush records the end of a push and announces it.
func (s *Service) finishPush(ctx context.Context, p Push, state, reason string) (PushView, error) {
	now := s.now()
	res := s.db.WithContext(context.WithoutCancel(ctx)).Model(&Push{}).Where("id = ? AND state = ?", p.ID, PushRunning).
		Updates(map[string]any{"state": state, "stop_reason": truncate(reason, 1000), "finished_at": now, "updated_at": now})
	if res.Error != nil {
		return PushView{}, clawops.E("finish push", clawops.ReasonInternal, res.Error)
	}
	v, err := s.PushStatus(context.WithoutCancel(ctx), p.ID)
	if err != nil || res.RowsAffected == 0 {
		return v, err
	}
	summary := fmt.Sprintf("push %d (%s) %s: %d applied, %d failed, %d skipped", p.ID, p.Version, state,
		v.Counts[TargetApplied], v.Counts[TargetFailed], v.Counts[TargetSkipped])
	typ, sev := EventPushCompleted, SeverityInfo
	if state == PushStopped {
		typ, sev = EventPushStopped, SeverityCritical
		summary += "; " + reason
	} else if v.Counts[TargetFailed] > 0 {
		sev = SeverityWarning
	}
	s.log.Info("rolling push finished", "push", p.ID, "state", state, "applied", v.Counts[TargetApplied], "failed", v.Counts[TargetFailed])
	s.publish(Event{Type: typ, Subject: pushSubject(p.ID), Severity: sev, Summary: summary, Payload: payload(v)})
	return v, nil
}
