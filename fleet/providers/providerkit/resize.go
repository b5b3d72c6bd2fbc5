package providerkit

import (
	"context"
	"fmt"

	"github.com/gatewayforge/clawops"
)

// ResizeSteps are the calls of a resize on a cloud that changes only stopped servers.
type ResizeSteps struct {
	WasOn  bool                            // the server ran before the resize
	Stop   func(ctx context.Context) error // shuts the server down
	Change func(ctx context.Context) error // changes its size
	Start  func(ctx context.Context) error // powers it on
}

// ResizeStopped resizes a server that must be off to change: a running server is stopped
// first and started afterwards, also when the change failed, so the server is left
// running as it was found.
func (c Cloud) ResizeStopped(ctx context.Context, op, size string, s ResizeSteps) error {
	if s.WasOn {
		if err := s.Stop(ctx); err != nil {
			return err
		}
	}
	if err := s.Change(ctx); err != nil {
		if !s.WasOn {
			return clawops.E(op, fmt.Errorf("resize to %s: %w", size, err))
		}
		if perr := s.Start(ctx); perr != nil {
			return clawops.E(op, fmt.Errorf("resize to %s failed and the %s is still OFF (power it on by hand): %w; power on: %v", size, c.Server, err, perr))
		}
		return clawops.E(op, fmt.Errorf("resize to %s (%s powered back on): %w", size, c.Server, err))
	}
	if s.WasOn {
		if err := s.Start(ctx); err != nil {
			return clawops.E(op, fmt.Errorf("resized to %s but the %s is still OFF: %w", size, c.Server, err))
		}
	}
	return nil
}
