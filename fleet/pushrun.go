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
// configured (config.apply) or upgraded (openclaw.upgrade) PushConcurrency instances at a
// time, then validated (config.get reports the push's version, or vps.info its image, and
// OpenClaw answers healthy) before the next starts.
//
// Every instance's progress is journaled, with the idempotency key its command carries,
// before the command leaves, so RunPush may be called again after a crash (by a new
// Service over the same database): an instance found "sending" is asked what it runs
// first (config.get or vps.info) and is only sent again when it does not run the push's
// version or image, under a new idempotency key. When ctx ends, instances in flight stay
// "sending" for that reconciliation.
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

// pushOne configures or upgrades one instance, journaling each step.
func (s *Service) pushOne(ctx context.Context, p Push, t PushTarget) {
	op := p.words().op
	if t.State == TargetSending {
		// A previous run sent (or was about to send) the command and stopped before
		// recording the outcome: ask before sending again.
		cur, err := s.running(ctx, p, t.Instance)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && cur == p.want():
			s.markTarget(ctx, p.ID, t.Instance, TargetApplied, "confirmed by "+p.words().probe+" after an interrupted attempt")
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
		s.markTarget(ctx, p.ID, t.Instance, TargetSkipped, fmt.Sprintf("no node to %s (state %s)", p.words().verb, in.State))
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
	detail, err := s.send(ctx, p, in, key)
	if err != nil {
		if ctx.Err() != nil {
			return // stays "sending": the next run reconciles
		}
		if cur, gerr := s.running(ctx, p, t.Instance); gerr == nil && cur == p.want() {
			s.markTarget(ctx, p.ID, t.Instance, TargetApplied, "applied; the answer was lost: "+err.Error())
			return
		}
		s.markTarget(ctx, p.ID, t.Instance, TargetFailed, failureDetail(err))
		return
	}
	if detail != "" {
		s.markTarget(ctx, p.ID, t.Instance, TargetFailed, detail)
		return
	}
	s.markTarget(ctx, p.ID, t.Instance, TargetApplied, "")
}

// UpgradeTimeout bounds the wait for one openclaw.upgrade: the node pulls the image,
// recreates the container, waits for health (90 s by default) and may roll back, which
// takes longer than the hub's default command budget. gf-clawnode caps a run at its
// MaxExecTime (10 min by default) and gives a rollback 5 more minutes, so the gateway
// waits that long for the node's own answer.
const UpgradeTimeout = 15 * time.Minute

// send runs the push's command on in under key and judges the answer: "" when the node
// reports it runs the push's target, else why not. An error is the command's own: a
// refusal, a failure the node reported, or a lost answer, which pushOne reconciles.
func (s *Service) send(ctx context.Context, p Push, in Instance, key string) (string, error) {
	if p.kind() == PushKindUpgrade {
		ctx, cancel := context.WithTimeout(ctx, UpgradeTimeout)
		defer cancel()
		raw, err := s.invokeKeyed(ctx, p.words().op, in, CmdUpgrade, proto.UpgradeParams{Image: p.Image}, key)
		if err != nil {
			return "", err
		}
		var r proto.UpgradeResult
		switch {
		case json.Unmarshal(raw, &r) != nil:
			return "unreadable " + CmdUpgrade + " result", nil
		case r.RolledBack:
			return fmt.Sprintf("rolled back by the node: it runs %.255q again (healthy=%v)", r.PreviousImage, r.Healthy), nil
		case !r.Healthy:
			return fmt.Sprintf("node reports image %.255q unhealthy", r.Image), nil
		case r.Image != p.Image:
			return fmt.Sprintf("node reports image %.255q, want %s", r.Image, p.Image), nil
		}
		return "", nil
	}
	raw, err := s.invokeKeyed(ctx, p.words().op, in, CmdConfigApply, ConfigApplyParams{Config: json.RawMessage(p.Config), Version: p.Version}, key)
	if err != nil {
		return "", err
	}
	var r ConfigApplyResult
	switch {
	case json.Unmarshal(raw, &r) != nil:
		return "unreadable config.apply result", nil
	case r.RolledBack || !r.Healthy:
		return fmt.Sprintf("node reports healthy=%v rolledBack=%v", r.Healthy, r.RolledBack), nil
	case r.Version != p.Version:
		return fmt.Sprintf("node reports version %.64q, want %s", r.Version, p.Version), nil
	}
	return "", nil
}

// failureDetail words a command error for the journal, naming a rollback and a runtime
// that cannot do the change.
func failureDetail(err error) string {
	detail := err.Error()
	reason := clawops.ReasonOf(err)
	switch {
	case reason == ReasonConfigRolledBack || reason == ReasonUpgradeRolledBack ||
		strings.Contains(detail, string(ReasonConfigRolledBack)) || strings.Contains(detail, string(ReasonUpgradeRolledBack)):
		return "rolled back by the node: " + detail
	case reason == proto.CodeRollbackFailed:
		return "the change failed and so did the node's rollback; the instance needs a human: " + detail
	case reason == proto.CodeNotImplemented:
		return "the node's runtime cannot do this: " + detail
	}
	return detail
}

// want is what a node runs once the push reached it: the config version or the image.
func (p Push) want() string {
	if p.kind() == PushKindUpgrade {
		return p.Image
	}
	return p.Version
}

// kindWords are what a push's kind puts in its journal details and errors.
type kindWords struct {
	op    string // the operation
	verb  string // what happens to an instance
	probe string // the command that asks a node what it runs
	noun  string // what the probe reports
}

func (p Push) words() kindWords {
	if p.kind() == PushKindUpgrade {
		return kindWords{op: "upgrade openclaw", verb: "upgrade", probe: CmdInfo, noun: "image"}
	}
	return kindWords{op: "push config", verb: "configure", probe: CmdConfigGet, noun: "version"}
}

// running asks id's node what it runs now: its config version (config.get) or, for an
// upgrade, its OpenClaw image (vps.info).
func (s *Service) running(ctx context.Context, p Push, id clawops.InstanceID) (string, error) {
	if p.kind() == PushKindUpgrade {
		info, err := s.VPSInfo(ctx, id)
		return info.Image, err
	}
	return s.configVersion(ctx, id)
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
	r, err := invokeDecode[ConfigGetResult](ctx, s, "config version", id, CmdConfigGet)
	return r.Version, err
}

// validateBatch checks every instance of a batch that took the push: it must report the
// push's version (config.get) or image (vps.info) and answer healthy. One that does not
// is failed.
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
				cur, err := s.running(ctx, p, t.Instance)
				detail := ""
				switch {
				case ctx.Err() != nil:
					return
				case err != nil:
					detail = "validation: " + p.words().probe + ": " + err.Error()
				case cur != p.want():
					detail = fmt.Sprintf("validation: runs %s %.255q, want %s", p.words().noun, cur, p.want())
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
		Payload: payload(p.eventFields(map[string]any{"push": p.ID, "batch": batch + 1, "batches": p.Batches, "applied": bApplied,
			"failed": bFailed, "skipped": bSkipped, "done_so_far": done, "failed_so_far": failed}))})
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
	summary := fmt.Sprintf("push %d (%s) %s: %d applied, %d failed, %d skipped", p.ID, p.label(), state,
		v.Counts[TargetApplied], v.Counts[TargetFailed], v.Counts[TargetSkipped])
	typ, sev := EventPushCompleted, SeverityInfo
	if state == PushStopped {
		typ, sev = EventPushStopped, SeverityCritical
		summary += "; " + reason
	} else if v.Counts[TargetFailed] > 0 {
		sev = SeverityWarning
	}
	s.log.Info("rolling push finished", "push", p.ID, "kind", p.kind(), "state", state, "applied", v.Counts[TargetApplied], "failed", v.Counts[TargetFailed])
	s.publish(Event{Type: typ, Subject: pushSubject(p.ID), Severity: sev, Summary: summary, Payload: payload(v)})
	return v, nil
}
