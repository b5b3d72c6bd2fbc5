package clawnode

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/daemon"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

func TestHubLiveness(t *testing.T) {
	stale := make(chan NodeStatus, 10)
	e := newEnv(t, func(o *HubOptions) {
		o.TickInterval = 20 * time.Millisecond
		o.StaleAfter = 60 * time.Millisecond
		o.IdleTimeout = 300 * time.Millisecond
		o.OnStale = func(_ context.Context, s NodeStatus) {
			select {
			case stale <- s:
			default:
			}
		}
	})

	// A client that keeps reading answers the hub's pings: it goes stale (it sends
	// nothing), is pinged, and stays connected — as a stock node host does between commands.
	key := newKey()
	c := dialRaw(t, e.url)
	if f := c.connect(t, key, nodeParams(e.mint("demo1-pri")), nil); !*f.OK {
		t.Fatalf("connect: %+v", f.Error)
	}
	node := clawops.NodeID(proto.DeviceID(key.Public().(ed25519.PublicKey)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ticks := make(chan struct{}, 1000)
	go func() {
		for {
			_, data, err := c.ws.Read(ctx)
			if err != nil {
				return
			}
			if fr, _ := proto.DecodeFrame(data); fr.Event == proto.EventTick {
				ticks <- struct{}{}
			}
		}
	}()
	select {
	case s := <-stale:
		if s.Node != node || s.State != StateStale {
			t.Errorf("OnStale got %s in state %q, want %s stale", short(s.Node), s.State, short(node))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node never went stale")
	}
	waitFor(t, "pong to bring the node back online", func() bool {
		s := e.hub.Nodes()
		return len(s) == 1 && s[0].State == StateOnline
	})
	// Well past IdleTimeout, it is still there: pongs count as life.
	deadline := time.Now().Add(4 * e.hub.opts.IdleTimeout)
	for time.Now().Before(deadline) {
		if !e.hub.Connected(node) {
			t.Fatal("a node that answers pings was closed as idle")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(ticks) == 0 {
		t.Error("no tick reached the node")
	}

	// A client that stops reading answers nothing: stale, then closed, then offline.
	key2 := newKey()
	c2 := dialRaw(t, e.url)
	if f := c2.connect(t, key2, nodeParams(e.mint("demo2-pri")), nil); !*f.OK {
		t.Fatalf("connect: %+v", f.Error)
	}
	mute := clawops.NodeID(proto.DeviceID(key2.Public().(ed25519.PublicKey)))
	waitFor(t, "mute node closed as idle", func() bool { return !e.hub.Connected(mute) })
	for _, s := range e.hub.Nodes() {
		if s.Node == mute && (s.State != StateOffline || s.Connected) {
			t.Errorf("mute node status = %s connected=%v, want offline", s.State, s.Connected)
		}
	}
	if _, err := invoke(t, e.hub, mute, daemon.CmdHealth, nil); clawops.ReasonOf(err) != clawops.ReasonNodeOffline {
		t.Errorf("invoke on the closed node = %v, want NODE_OFFLINE", err)
	}
}
