package clawnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/daemon"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

func TestMultiInvoke(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	b := newBlocker(t)
	var nodes []*node
	for i := range 4 {
		n := e.startNode(t.TempDir(), e.mint(fmt.Sprintf("fan-%d", i)), map[string]daemon.Command{"test.block": b.command()})
		e.waitConnected(n.id())
		nodes = append(nodes, n)
	}
	gone := e.startNode(t.TempDir(), e.mint("fan-gone"), nil)
	e.waitConnected(gone.id())
	gone.stop()
	waitFor(t, "node gone", func() bool { return !e.hub.Connected(gone.id()) })

	t.Run("all connected nodes", func(t *testing.T) {
		res, err := e.hub.MultiInvoke(ctx, daemon.CmdHealth, nil, Selector{}, 2, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if res.OK != 4 || res.Errors != 0 || res.Timeouts != 0 || len(res.Results) != 4 {
			t.Fatalf("got %d ok, %d errors, %d timeouts of %d; want 4 ok", res.OK, res.Errors, res.Timeouts, len(res.Results))
		}
		for i, r := range res.Results {
			var h proto.Health
			if err := json.Unmarshal(r.Result, &h); err != nil || !h.OK {
				t.Errorf("result %d = %s, want healthy", i, r.Result)
			}
			if i > 0 && res.Results[i-1].Node >= r.Node {
				t.Error("results not sorted by node id")
			}
			if r.Instance == "" || r.Duration <= 0 {
				t.Errorf("result %d = %+v, want an instance and a duration", i, r)
			}
		}
	})
	t.Run("mixed outcomes", func(t *testing.T) {
		sel := Selector{Nodes: []clawops.NodeID{nodes[0].id(), gone.id(), nodes[0].id()},
			Instances: []clawops.InstanceID{"fan-1", "no-such-instance"}}
		res, err := e.hub.MultiInvoke(ctx, "openclaw.logs", map[string]int{"tail": 0}, sel, 0, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]clawops.ReasonCode{
			string(nodes[0].id()): clawops.ReasonBadParams, string(nodes[1].id()): clawops.ReasonBadParams,
			string(gone.id()): clawops.ReasonNodeOffline, "no-such-instance": clawops.ReasonUnknownInstance,
		}
		if len(res.Results) != len(want) || res.Errors != len(want) {
			t.Fatalf("results = %+v, want %d errors", res.Results, len(want))
		}
		for _, r := range res.Results {
			key := string(r.Node)
			if key == "" {
				key = string(r.Instance)
			}
			if r.Outcome != OutcomeError || r.Code != want[key] {
				t.Errorf("%s: outcome %s code %s, want error %s", key, r.Outcome, r.Code, want[key])
			}
		}
	})
	t.Run("timeouts", func(t *testing.T) {
		sel := Selector{Match: func(s NodeStatus) bool { return s.Instance == "fan-2" || s.Instance == "fan-3" }}
		res, err := e.hub.MultiInvoke(ctx, "test.block", nil, sel, 8, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if res.Timeouts != 2 || len(res.Results) != 2 {
			t.Fatalf("got %+v, want 2 timeouts", res)
		}
		if f := res.Failed(); len(f) != 2 || f[0].Code != clawops.ReasonNodeTimeout {
			t.Errorf("Failed() = %+v", f)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		if _, err := e.hub.MultiInvoke(ctx, "a|b", nil, Selector{}, 1, time.Second); clawops.KindOf(err) != clawops.KindInvalid {
			t.Errorf("bad command = %v, want invalid", err)
		}
		if _, err := e.hub.MultiInvoke(ctx, "x", func() {}, Selector{}, 1, time.Second); clawops.KindOf(err) != clawops.KindInvalid {
			t.Errorf("bad params = %v, want invalid", err)
		}
	})
}

func TestIdempotentRetry(t *testing.T) {
	e := newEnv(t)
	var runs atomic.Int32
	count := daemon.Handle(func(_ context.Context, p struct {
		N int `json:"n"`
	}) (any, error) {
		return map[string]int32{"run": runs.Add(1), "n": int32(p.N)}, nil
	})
	rolled := daemon.Handle(func(context.Context, daemon.NoParams) (any, error) {
		return nil, clawops.E("config.apply", proto.CodeConfigRolledBack, errors.New("unhealthy; previous config restored"))
	})
	n := e.startNode(t.TempDir(), e.mint("demo1-pri"), map[string]daemon.Command{"test.count": count, "test.rolled": rolled})
	e.waitConnected(n.id())
	ctx := proto.WithIdempotencyKey(context.Background(), "push-7.demo1-pri")

	first, err := e.hub.Invoke(ctx, n.id(), "test.count", map[string]int{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	// The gateway restarts, or times out, and asks again with the same key: same answer,
	// no second run.
	again, err := e.hub.Invoke(ctx, n.id(), "test.count", map[string]int{"n": 1})
	if err != nil || string(again) != string(first) || runs.Load() != 1 {
		t.Errorf("retry = %s, %v (runs %d); want %s from the one run", again, err, runs.Load(), first)
	}
	// The same key for other params is a replay, refused.
	if _, err := e.hub.Invoke(ctx, n.id(), "test.count", map[string]int{"n": 2}); clawops.ReasonOf(err) != clawops.ReasonCommandReplayed {
		t.Errorf("same key, other params = %v, want COMMAND_REPLAYED", err)
	}
	// A fresh key runs again.
	if _, err := invoke(t, e.hub, n.id(), "test.count", map[string]int{"n": 1}); err != nil || runs.Load() != 2 {
		t.Errorf("fresh key: %v, runs %d; want a second run", err, runs.Load())
	}
	// Known execution codes reach the caller as themselves, failures included on retry.
	rctx := proto.WithIdempotencyKey(context.Background(), "rolled-1")
	for range 2 {
		_, err := e.hub.Invoke(rctx, n.id(), "test.rolled", nil)
		if clawops.ReasonOf(err) != proto.CodeConfigRolledBack {
			t.Errorf("rolled-back command = %v, want CONFIG_ROLLED_BACK", err)
		}
	}
	if _, err := e.hub.Invoke(proto.WithIdempotencyKey(context.Background(), "bad key!"), n.id(), "test.count", nil); clawops.KindOf(err) != clawops.KindInvalid {
		t.Errorf("malformed idempotency key = %v, want invalid", err)
	}
}

func TestUnsignedReadOnly(t *testing.T) {
	e := newEnv(t)
	n := e.startNode(t.TempDir(), e.mint("demo1-pri"), nil, func(c *daemon.Config) { c.AllowUnsignedReadOnly = true })
	e.waitConnected(n.id())
	soon := time.Now().Add(time.Minute)
	if _, err := e.sendRequest(t, request(n.id(), daemon.CmdHealth, "{}", nil, soon)); err != nil {
		t.Errorf("unsigned read: %v", err)
	}
	_, err := e.sendRequest(t, request(n.id(), daemon.CmdRestart, "{}", nil, soon))
	if clawops.ReasonOf(err) != clawops.ReasonUnsignedCommand {
		t.Errorf("unsigned write = %v, want UNSIGNED_COMMAND", err)
	}
	if _, err := e.sendRequest(t, request(n.id(), "system.run", "{}", nil, soon)); clawops.ReasonOf(err) != clawops.ReasonNotAllowlisted {
		t.Errorf("unsigned unknown command = %v, want COMMAND_NOT_ALLOWLISTED", err)
	}
	if r, _ := n.rt.counts(); r != 0 {
		t.Errorf("runtime restarted %d times by unsigned commands", r)
	}
	// Signed commands still work, and a forged signature is still refused.
	if _, err := invoke(t, e.hub, n.id(), daemon.CmdRestart, nil); err != nil {
		t.Errorf("signed restart: %v", err)
	}
	if _, err := e.sendRequest(t, request(n.id(), daemon.CmdRestart, "{}", newKey(), soon)); clawops.ReasonOf(err) != clawops.ReasonBadSignature {
		t.Errorf("forged signature = %v, want BAD_SIGNATURE", err)
	}
}
