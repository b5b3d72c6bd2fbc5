package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Limits and defaults of rolling pushes.
const (
	// DefaultBatchSize is the batch size of a rolling push when none is given.
	DefaultBatchSize = 50
	// MaxBatchSize is the largest batch; it is also the most instances a push may touch
	// without being split into validated batches.
	MaxBatchSize = 100
	// MaxPushTargets bounds one push.
	MaxPushTargets = 20000
	// MaxConfigBytes bounds the config one push carries: what a node accepts.
	MaxConfigBytes = proto.MaxConfigBytes
)

// Push states. Running moves to paused (and back), or ends in stopped (failure threshold
// crossed), aborted or completed.
const (
	PushRunning   = "running"
	PushPaused    = "paused"
	PushStopped   = "stopped"
	PushAborted   = "aborted"
	PushCompleted = "completed"
)

// Push kinds: what a rolling push changes on each instance.
const (
	// PushKindConfig applies an OpenClaw config (config.apply), validated with config.get.
	PushKindConfig = "config"
	// PushKindUpgrade switches OpenClaw to a container image (openclaw.upgrade), validated
	// with vps.info.
	PushKindUpgrade = "upgrade"
)

// Push target states: pending until sent; sending from just before the command goes out
// until its outcome is recorded (a target found sending after a restart is reconciled
// with config.get, or vps.info for an upgrade, before anything is sent again); then
// applied, failed or skipped.
const (
	TargetPending = "pending"
	TargetSending = "sending"
	TargetApplied = "applied"
	TargetFailed  = "failed"
	TargetSkipped = "skipped"
)

// Push is one rolling push, of a config or of an OpenClaw image, journaled so that a
// restarted gateway resumes it.
type Push struct {
	ID uint `gorm:"primaryKey"`
	// Kind is PushKindConfig or PushKindUpgrade; empty in rows written before upgrades
	// existed, which are config pushes.
	Kind           string `gorm:"size:16"`
	Image          string `gorm:"size:255"` // the image an upgrade switches to
	Version        string `gorm:"size:64"`
	Config         string
	ConfigSHA256   string `gorm:"size:64"`
	BatchSize      int
	MaxFailPercent int
	State          string `gorm:"index;size:16"`
	StopReason     string `gorm:"size:1000"`
	RequestedBy    string `gorm:"size:200"`
	Reason         string `gorm:"size:1000"`
	Total          int
	Batches        int
	CreatedAt      time.Time
	UpdatedAt      time.Time
	FinishedAt     *time.Time
}

// TableName is fleet_pushes.
func (Push) TableName() string { return "fleet_pushes" }

// PushTarget is one instance of a push and where its push stands.
type PushTarget struct {
	PushID    uint               `gorm:"primaryKey;autoIncrement:false;index:idx_fleet_push_targets_batch,priority:1"`
	Instance  clawops.InstanceID `gorm:"primaryKey;size:40"`
	Seq       int
	Batch     int    `gorm:"index:idx_fleet_push_targets_batch,priority:2"`
	State     string `gorm:"size:16"`
	Attempts  int
	Key       string `gorm:"size:128"` // idempotency key of the last attempt
	Detail    string `gorm:"size:1000"`
	Validated bool
	UpdatedAt time.Time
}

// TableName is fleet_push_targets.
func (PushTarget) TableName() string { return "fleet_push_targets" }

// PushSpec asks for a rolling push of one OpenClaw config to a list of instances.
type PushSpec struct {
	// Config is the whole OpenClaw config to apply, a JSON object.
	Config json.RawMessage
	// Version names the config; empty: "cfg-" and the first 12 hex digits of its SHA-256.
	// It is what config.get reports once applied, so it must differ from the version the
	// instances run now for the push to change anything.
	Version string
	// Targets are the instances, in push order.
	Targets []clawops.InstanceID
	// BatchSize is 1..MaxBatchSize; DefaultBatchSize when zero.
	BatchSize int
	// MaxFailPercent stops the push after a batch when more than this percentage of the
	// instances done so far failed (0: the first failure stops it).
	MaxFailPercent int
	RequestedBy    string
	Reason         string
}

// PushFailure is one instance a push could not configure.
type PushFailure struct {
	Instance clawops.InstanceID `json:"instance"`
	Batch    int                `json:"batch"`
	Detail   string             `json:"detail"`
}

// UpgradeSpec asks for a rolling upgrade of OpenClaw to one image on a list of instances.
type UpgradeSpec struct {
	// Image is the container image to run, pinned by a tag other than latest or by a
	// digest (proto.ValidateImage).
	Image string
	// Targets, BatchSize and MaxFailPercent are as in PushSpec.
	Targets        []clawops.InstanceID
	BatchSize      int
	MaxFailPercent int
	RequestedBy    string
	Reason         string
}

// PushView is a push and its progress.
type PushView struct {
	ID             uint           `json:"id"`
	Kind           string         `json:"kind"`
	Image          string         `json:"image,omitempty"`
	Version        string         `json:"version,omitempty"`
	ConfigSHA256   string         `json:"config_sha256,omitempty"`
	State          string         `json:"state"`
	StopReason     string         `json:"stop_reason,omitempty"`
	Total          int            `json:"total"`
	BatchSize      int            `json:"batch_size"`
	Batches        int            `json:"batches"`
	BatchesDone    int            `json:"batches_done"`
	MaxFailPercent int            `json:"max_fail_percent"`
	Counts         map[string]int `json:"counts"` // target state → instances
	Failures       []PushFailure  `json:"failures,omitempty"`
	RequestedBy    string         `json:"requested_by"`
	Reason         string         `json:"reason,omitempty"`
	CreatedAt      time.Time      `json:"created_at"`
	FinishedAt     *time.Time     `json:"finished_at,omitempty"`
}

// ConfigVersion is the default version of a config: "cfg-" and 12 hex digits of the
// SHA-256 of its compact JSON.
func ConfigVersion(config json.RawMessage) string {
	sum := sha256.Sum256(config)
	return "cfg-" + hex.EncodeToString(sum[:6])
}

// NormalizePushSpec checks spec and fills its defaults, as StartPush does; tools call it
// to plan exactly what StartPush will record.
func NormalizePushSpec(spec PushSpec) (PushSpec, error) {
	const op = "push config"
	bad := func(format string, a ...any) error { return badSpec(op, format, a...) }
	raw := bytes.TrimSpace(spec.Config)
	if len(raw) == 0 || raw[0] != '{' {
		return spec, bad("config must be a JSON object")
	}
	if len(raw) > MaxConfigBytes {
		return spec, bad("config is %d bytes, more than %d", len(raw), MaxConfigBytes)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil || !json.Valid(raw) {
		return spec, bad("config is not valid JSON")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(compact.Bytes(), &obj); err != nil {
		return spec, bad("config must be a JSON object: %v", err)
	}
	spec.Config = compact.Bytes()
	if spec.Version == "" {
		spec.Version = ConfigVersion(spec.Config)
	}
	if !proto.ValidConfigVersion(spec.Version) {
		return spec, bad("version %.80q: want 1-64 of A-Z a-z 0-9 . _ : - starting with a letter or digit", spec.Version)
	}
	var err error
	spec.BatchSize, err = normalizeRollout(op, spec.Targets, spec.BatchSize, spec.MaxFailPercent)
	return spec, err
}

// NormalizeUpgradeSpec checks spec and fills its defaults, as StartUpgrade does; tools
// call it to plan exactly what StartUpgrade will record.
func NormalizeUpgradeSpec(spec UpgradeSpec) (UpgradeSpec, error) {
	const op = "upgrade openclaw"
	if err := proto.ValidateImage(spec.Image); err != nil {
		return spec, badSpec(op, "%v", err)
	}
	var err error
	spec.BatchSize, err = normalizeRollout(op, spec.Targets, spec.BatchSize, spec.MaxFailPercent)
	return spec, err
}

func badSpec(op, format string, a ...any) error {
	return clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, fmt.Errorf(format, a...))
}

// normalizeRollout checks what every kind of rolling push shares (the batch size, the
// failure threshold and the targets) and returns the batch size, defaulted.
func normalizeRollout(op string, targets []clawops.InstanceID, batchSize, maxFailPercent int) (int, error) {
	bad := func(format string, a ...any) error { return badSpec(op, format, a...) }
	if batchSize == 0 {
		batchSize = DefaultBatchSize
	}
	if batchSize < 1 || batchSize > MaxBatchSize {
		return batchSize, clawops.E(op, clawops.KindInvalid, clawops.ReasonRollingRequired,
			fmt.Errorf("batch size %d: want 1..%d; a push to more instances goes in validated batches", batchSize, MaxBatchSize))
	}
	if maxFailPercent < 0 || maxFailPercent > 100 {
		return batchSize, bad("max fail percent %d: want 0..100", maxFailPercent)
	}
	if len(targets) == 0 || len(targets) > MaxPushTargets {
		return batchSize, bad("%d targets: want 1..%d", len(targets), MaxPushTargets)
	}
	seen := make(map[clawops.InstanceID]bool, len(targets))
	for _, id := range targets {
		if !ValidInstanceID(string(id)) {
			return batchSize, bad("target %.48q is not an instance id", id)
		}
		if seen[id] {
			return batchSize, bad("target %s is listed twice", id)
		}
		seen[id] = true
	}
	return batchSize, nil
}

// StartPush journals a rolling config push and wakes the push worker; it returns at once.
// Every target must be a recorded instance that is not terminated.
func (s *Service) StartPush(ctx context.Context, spec PushSpec) (PushView, error) {
	spec, err := NormalizePushSpec(spec)
	if err != nil {
		return PushView{}, err
	}
	sum := sha256.Sum256(spec.Config)
	return s.startPush(ctx, "push config", Push{Kind: PushKindConfig, Version: spec.Version, Config: string(spec.Config),
		ConfigSHA256: hex.EncodeToString(sum[:]), BatchSize: spec.BatchSize, MaxFailPercent: spec.MaxFailPercent,
		RequestedBy: spec.RequestedBy, Reason: spec.Reason}, spec.Targets)
}

// StartUpgrade journals a rolling upgrade of OpenClaw to spec.Image and wakes the push
// worker; it returns at once. It runs as a push of kind PushKindUpgrade: the same
// batches, validation, failure threshold, pause, resume and abort as a config push.
// Every target must be a recorded instance that is not terminated.
func (s *Service) StartUpgrade(ctx context.Context, spec UpgradeSpec) (PushView, error) {
	spec, err := NormalizeUpgradeSpec(spec)
	if err != nil {
		return PushView{}, err
	}
	return s.startPush(ctx, "upgrade openclaw", Push{Kind: PushKindUpgrade, Image: spec.Image, BatchSize: spec.BatchSize,
		MaxFailPercent: spec.MaxFailPercent, RequestedBy: spec.RequestedBy, Reason: spec.Reason}, spec.Targets)
}

// startPush journals p, with its batch size and threshold checked, and one row per
// target, then announces it and wakes the worker.
func (s *Service) startPush(ctx context.Context, op string, p Push, targets []clawops.InstanceID) (PushView, error) {
	now := s.now()
	n := len(targets)
	p.State, p.Total, p.Batches = PushRunning, n, (n+p.BatchSize-1)/p.BatchSize
	p.RequestedBy, p.Reason = truncate(p.RequestedBy, 200), truncate(p.Reason, 1000)
	p.CreatedAt, p.UpdatedAt = now, now
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var live int64
		for chunk := range chunks(targets, 500) {
			var c int64
			if err := tx.Model(&Instance{}).Where("id IN ? AND state <> ?", chunk, StateTerminated).Count(&c).Error; err != nil {
				return err
			}
			live += c
		}
		if int(live) != n {
			return clawops.E(op, clawops.KindNotFound, clawops.ReasonUnknownInstance,
				fmt.Errorf("%d of %d targets are unknown or terminated", n-int(live), n))
		}
		if err := tx.Create(&p).Error; err != nil {
			return err
		}
		rows := make([]PushTarget, n)
		for i, id := range targets {
			rows[i] = PushTarget{PushID: p.ID, Instance: id, Seq: i, Batch: i / p.BatchSize, State: TargetPending, UpdatedAt: now}
		}
		return tx.CreateInBatches(rows, 500).Error
	})
	if err != nil {
		if clawops.ReasonOf(err) != "" {
			return PushView{}, err
		}
		return PushView{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	s.log.Info("rolling push started", "push", p.ID, "kind", p.Kind, "version", p.Version, "image", p.Image,
		"targets", n, "batch", p.BatchSize)
	s.publish(Event{Type: EventPushStarted, Subject: pushSubject(p.ID),
		Summary: fmt.Sprintf("push %d (%s) started: %d instances in %d batches of %d, stop above %d%% failed",
			p.ID, p.label(), n, p.Batches, p.BatchSize, p.MaxFailPercent),
		Payload: payload(p.eventFields(map[string]any{"push": p.ID, "total": n, "batches": p.Batches}))})
	s.kickPush()
	return s.PushStatus(context.WithoutCancel(ctx), p.ID)
}

// kind is the push's kind; rows written before upgrades existed have none and are
// config pushes.
func (p Push) kind() string {
	if p.Kind == "" {
		return PushKindConfig
	}
	return p.Kind
}

// label names what the push changes, for summaries: the config version, or
// "upgrade to <image>".
func (p Push) label() string { return pushLabel(p.kind(), p.Version, p.Image) }

// Label names what the push changes, for summaries: the config version, or
// "upgrade to <image>".
func (v PushView) Label() string { return pushLabel(v.Kind, v.Version, v.Image) }

func pushLabel(kind, version, image string) string {
	if kind == PushKindUpgrade {
		return "upgrade to " + image
	}
	return version
}

// eventFields adds the push's kind and target (version or image) to an event payload.
func (p Push) eventFields(m map[string]any) map[string]any {
	m["kind"] = p.kind()
	if p.kind() == PushKindUpgrade {
		m["image"] = p.Image
	} else {
		m["version"] = p.Version
	}
	return m
}

func chunks[T any](xs []T, n int) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		for i := 0; i < len(xs); i += n {
			if !yield(xs[i:min(i+n, len(xs))]) {
				return
			}
		}
	}
}

func pushSubject(id uint) string { return fmt.Sprintf("push-%d", id) }

func (s *Service) kickPush() {
	select {
	case s.pushKick <- struct{}{}:
	default:
	}
}

func (s *Service) loadPush(ctx context.Context, op string, id uint) (Push, error) {
	var p Push
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&p).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Push{}, clawops.E(op, clawops.KindNotFound, ReasonUnknownPush, fmt.Errorf("no push %d", id))
	}
	if err != nil {
		return Push{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	return p, nil
}

// PushStatus returns a push and its progress.
func (s *Service) PushStatus(ctx context.Context, id uint) (PushView, error) {
	const op = "push status"
	p, err := s.loadPush(ctx, op, id)
	if err != nil {
		return PushView{}, err
	}
	v := PushView{ID: p.ID, Kind: p.kind(), Image: p.Image, Version: p.Version, ConfigSHA256: p.ConfigSHA256, State: p.State, StopReason: p.StopReason,
		Total: p.Total, BatchSize: p.BatchSize, Batches: p.Batches, MaxFailPercent: p.MaxFailPercent,
		Counts: map[string]int{}, RequestedBy: p.RequestedBy, Reason: p.Reason, CreatedAt: p.CreatedAt.UTC(), FinishedAt: p.FinishedAt}
	type row struct {
		State string
		N     int
	}
	var rows []row
	if err := s.db.WithContext(ctx).Model(&PushTarget{}).Select("state, count(*) AS n").
		Where("push_id = ?", id).Group("state").Scan(&rows).Error; err != nil {
		return PushView{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	for _, r := range rows {
		v.Counts[r.State] = r.N
	}
	var open int64
	if err := s.db.WithContext(ctx).Model(&PushTarget{}).Where("push_id = ? AND (state IN ? OR (state = ? AND validated = ?))",
		id, []string{TargetPending, TargetSending}, TargetApplied, false).Distinct("batch").Count(&open).Error; err != nil {
		return PushView{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	v.BatchesDone = p.Batches - int(open)
	var failed []PushTarget
	if err := s.db.WithContext(ctx).Where("push_id = ? AND state = ?", id, TargetFailed).Order("seq").Limit(50).Find(&failed).Error; err != nil {
		return PushView{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	for _, f := range failed {
		v.Failures = append(v.Failures, PushFailure{Instance: f.Instance, Batch: f.Batch + 1, Detail: f.Detail})
	}
	return v, nil
}

// Pushes returns the most recent pushes, newest first.
func (s *Service) Pushes(ctx context.Context, limit int) ([]PushView, error) {
	if limit <= 0 || limit > 100 {
		limit = 20
	}
	var ids []uint
	if err := s.db.WithContext(ctx).Model(&Push{}).Order("id DESC").Limit(limit).Pluck("id", &ids).Error; err != nil {
		return nil, clawops.E("list pushes", clawops.ReasonInternal, err)
	}
	out := make([]PushView, 0, len(ids))
	for _, id := range ids {
		v, err := s.PushStatus(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// PausePush asks a running push to stop before its next instances; the ones in flight
// finish. ResumePush continues it.
func (s *Service) PausePush(ctx context.Context, id uint, by string) (PushView, error) {
	return s.movePush(ctx, "pause push", id, []string{PushRunning}, PushPaused, EventPushPaused, by, nil)
}

// ResumePush continues a paused push from where it stopped.
func (s *Service) ResumePush(ctx context.Context, id uint, by string) (PushView, error) {
	v, err := s.movePush(ctx, "resume push", id, []string{PushPaused}, PushRunning, EventPushResumed, by, nil)
	if err == nil {
		s.kickPush()
	}
	return v, err
}

// AbortPush ends a running or paused push: its pending instances are skipped; the ones in
// flight finish.
func (s *Service) AbortPush(ctx context.Context, id uint, by string) (PushView, error) {
	return s.movePush(ctx, "abort push", id, []string{PushRunning, PushPaused}, PushAborted, EventPushAborted, by,
		func(tx *gorm.DB) error {
			return tx.Model(&PushTarget{}).Where("push_id = ? AND state = ?", id, TargetPending).
				Updates(map[string]any{"state": TargetSkipped, "detail": "push aborted", "updated_at": s.now()}).Error
		})
}

func (s *Service) movePush(ctx context.Context, op string, id uint, from []string, to string, ev EventType, by string, also func(*gorm.DB) error) (PushView, error) {
	p, err := s.loadPush(ctx, op, id)
	if err != nil {
		return PushView{}, err
	}
	now := s.now()
	cols := map[string]any{"state": to, "updated_at": now}
	if to == PushAborted {
		cols["finished_at"] = now
		cols["stop_reason"] = truncate("aborted by "+by, 1000)
	}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Model(&Push{}).Where("id = ? AND state IN ?", id, from).Updates(cols)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return clawops.E(op, clawops.KindInvalid, ReasonPushState, fmt.Errorf("push %d is %s", id, p.State))
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
	if err != nil {
		if clawops.ReasonOf(err) != "" {
			return PushView{}, err
		}
		return PushView{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	s.log.Info("push state", "push", id, "from", p.State, "to", to, "by", by)
	s.publish(Event{Type: ev, Subject: pushSubject(id), Severity: SeverityWarning,
		Summary: fmt.Sprintf("push %d (%s) %s by %s", id, p.label(), to, by)})
	return s.PushStatus(context.WithoutCancel(ctx), id)
}
