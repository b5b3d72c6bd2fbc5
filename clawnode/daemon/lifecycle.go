package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Lifecycle restarts, upgrades and health-checks OpenClaw: the steps config.apply and
// openclaw.upgrade share. It implements Healther.
type Lifecycle struct {
	rt       Runtime
	health   *HealthChecker
	wait     time.Duration // how long OpenClaw has to become healthy after a change
	interval time.Duration // between health checks while waiting
	log      *slog.Logger
}

// NewLifecycle builds a Lifecycle. wait defaults to 90s and interval to 1s.
func NewLifecycle(rt Runtime, health *HealthChecker, wait, interval time.Duration, log *slog.Logger) *Lifecycle {
	if wait <= 0 {
		wait = 90 * time.Second
	}
	if interval <= 0 {
		interval = time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Lifecycle{rt: rt, health: health, wait: wait, interval: interval, log: log}
}

// Healthy checks health once.
func (l *Lifecycle) Healthy(ctx context.Context) error {
	if h := l.health.Check(ctx); !h.OK {
		return fmt.Errorf("health check: %s", healthReason(h))
	}
	return nil
}

func healthReason(h proto.Health) string {
	if h.Error != "" {
		return h.Error
	}
	return fmt.Sprintf("HTTP %d", h.Status)
}

// WaitHealthy polls the health URL until it answers healthy or the wait runs out.
func (l *Lifecycle) WaitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.wait)
	defer cancel()
	t := time.NewTicker(l.interval)
	defer t.Stop()
	var last proto.Health
	for {
		if last = l.health.Check(ctx); last.OK {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy within %s: %s", l.wait, healthReason(last))
		case <-t.C:
		}
	}
}

// RestartHealthy restarts OpenClaw and waits for it to be healthy.
func (l *Lifecycle) RestartHealthy(ctx context.Context) error {
	if err := l.rt.Restart(ctx); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return l.WaitHealthy(ctx)
}

// Upgrade switches OpenClaw to image: pull it (nothing changes if that fails), recreate
// the container from it, wait for health; on failure recreate from the previous image
// and fail with UPGRADE_ROLLED_BACK (or ROLLBACK_FAILED if that fails too).
func (l *Lifecycle) Upgrade(ctx context.Context, image string) (proto.UpgradeResult, error) {
	const op = "openclaw.upgrade"
	ir, ok := l.rt.(ImageRuntime)
	if !ok {
		return proto.UpgradeResult{}, clawops.E(op, proto.CodeNotImplemented, "this node's runtime runs no container image")
	}
	if d, ok := l.rt.(*DockerRuntime); ok && !d.CanUpgrade() {
		return proto.UpgradeResult{}, clawops.E(op, proto.CodeNotConfigured, "this node has no image file for upgrades (--image-file)")
	}
	prev, err := ir.CurrentImage(ctx)
	if err != nil {
		return proto.UpgradeResult{}, fmt.Errorf("current image: %w", err)
	}
	if prev == image {
		return proto.UpgradeResult{Image: image, PreviousImage: prev, Healthy: l.Healthy(ctx) == nil}, nil
	}
	if err := ir.PullImage(ctx, image); err != nil {
		return proto.UpgradeResult{}, fmt.Errorf("pull %s (nothing changed): %w", image, err)
	}
	l.log.Info("upgrading OpenClaw", "image", image, "previous", prev)
	cause := ir.RunImage(ctx, image)
	if cause == nil {
		cause = l.WaitHealthy(ctx)
	}
	if cause == nil {
		return proto.UpgradeResult{Image: image, PreviousImage: prev, Healthy: true}, nil
	}
	l.log.Warn("new image unhealthy; rolling back", "image", image, "previous", prev, "err", cause)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	err = ir.RunImage(rctx, prev)
	if err == nil {
		err = l.WaitHealthy(rctx)
	}
	if err != nil {
		return proto.UpgradeResult{}, clawops.E(op, proto.CodeRollbackFailed,
			fmt.Errorf("image %s failed (%v) and rolling back to %s failed: %w", image, cause, prev, err))
	}
	return proto.UpgradeResult{}, clawops.E(op, proto.CodeUpgradeRolledBack,
		fmt.Errorf("image %s failed: %v; %s runs again and is healthy", image, cause, prev))
}

// errNotConfigured builds the error of a command whose node setting is missing.
func errNotConfigured(op, what string) error {
	return clawops.E(op, proto.CodeNotConfigured, errors.New(what))
}
