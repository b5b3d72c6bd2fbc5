package clawnode

import (
	"context"
	"testing"
	"time"

	"github.com/gatewayforge/clawops/clawnode/daemon"
)

// BenchmarkInvokeRoundTrip measures one command over a real loopback WebSocket: the hub
// signs it, the node verifies signature, expiry and replay (journaled), runs a trivial
// command and the result comes back.
func BenchmarkInvokeRoundTrip(b *testing.B) {
	e := newEnv(b, func(o *HubOptions) { o.Logger = nil })
	echo := daemon.Handle(func(context.Context, daemon.NoParams) (any, error) { return "pong", nil })
	n := e.startNode(b.TempDir(), e.mint("bench-1"), map[string]daemon.Command{"test.echo": echo},
		func(c *daemon.Config) { c.Logger = nil })
	e.waitConnected(n.id())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		raw, err := e.hub.Invoke(ctx, n.id(), "test.echo", nil)
		cancel()
		if err != nil || string(raw) != `"pong"` {
			b.Fatalf("Invoke = %s, %v", raw, err)
		}
	}
}
