package clawnode

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// request builds an invoke request for n, signed with key (nil: unsigned).
func request(n clawops.NodeID, command, params string, key ed25519.PrivateKey, expires time.Time) proto.InvokeRequest {
	r := proto.InvokeRequest{ID: "inv_" + randomToken()[:12], NodeID: string(n), Command: command,
		ParamsJSON: params, TimeoutMs: 10_000, IdempotencyKey: "ik_" + randomToken()[:16]}
	if key != nil {
		proto.SignInvoke(key, &r, expires)
	}
	return r
}

func (e *env) sendRequest(t testing.TB, r proto.InvokeRequest) (json.RawMessage, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.hub.send(ctx, clawops.NodeID(r.NodeID), r, "test invoke")
}

func TestNodeRefusesCommands(t *testing.T) {
	e := newEnv(t)
	n := e.startNode(t.TempDir(), e.mint("demo1-pri"), nil)
	e.waitConnected(n.id())
	id := n.id()
	soon := time.Now().Add(time.Minute)

	replayed := request(id, "openclaw.restart", "{}", e.key, soon)
	if _, err := e.sendRequest(t, replayed); err != nil {
		t.Fatalf("first send of a valid command: %v", err)
	}

	for _, tc := range []struct {
		name string
		req  proto.InvokeRequest
		want clawops.ReasonCode
	}{
		{"unsigned", request(id, "openclaw.restart", "{}", nil, soon), clawops.ReasonUnsignedCommand},
		{"signed by another key", request(id, "openclaw.restart", "{}", newKey(), soon), clawops.ReasonBadSignature},
		{"tampered after signing", func() proto.InvokeRequest {
			r := request(id, "openclaw.logs", `{"tail":1}`, e.key, soon)
			r.Command = "openclaw.restart"
			r.ParamsJSON = "{}"
			return r
		}(), clawops.ReasonBadSignature},
		{"expired", request(id, "openclaw.restart", "{}", e.key, time.Now().Add(-time.Second)), clawops.ReasonCommandExpired},
		{"expiry too far ahead", request(id, "openclaw.restart", "{}", e.key, time.Now().Add(24*time.Hour)), clawops.ReasonCommandExpired},
		{"replayed", replayed, clawops.ReasonCommandReplayed},
		{"not allowlisted", request(id, "system.run", `{}`, e.key, soon), clawops.ReasonNotAllowlisted},
		{"tail out of range", request(id, "openclaw.logs", `{"tail":0}`, e.key, soon), clawops.ReasonBadParams},
		{"unknown param", request(id, "openclaw.restart", `{"force":true}`, e.key, soon), clawops.ReasonBadParams},
		{"params not an object", request(id, "openclaw.logs", `[1]`, e.key, soon), clawops.ReasonBadParams},
		{"shell metacharacter", request(id, "openclaw.logs", `{"tail":"1; rm -rf /"}`, e.key, soon), clawops.ReasonShellMetachar},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.sendRequest(t, tc.req)
			if got := clawops.ReasonOf(err); got != tc.want {
				t.Fatalf("reason = %q (%v), want %q", got, err, tc.want)
			}
			if clawops.KindOf(err) != clawops.KindDenied {
				t.Errorf("kind = %v, want denied", clawops.KindOf(err))
			}
			select {
			case r := <-e.refusals:
				if r.Code != tc.want || r.Node != id || r.Instance != "demo1-pri" || r.ID != tc.req.ID {
					t.Errorf("refusal report = %+v, want code %s for %s", r, tc.want, tc.req.ID)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("refusal not reported to the hub")
			}
		})
	}
	// Only the one valid command ran.
	if r, l := n.rt.counts(); r != 1 || l != 0 {
		t.Errorf("runtime calls = %d restarts, %d logs; want 1 restart, 0 logs", r, l)
	}
}

func TestNodeRefusesCommandForAnotherNode(t *testing.T) {
	e := newEnv(t)
	n := e.startNode(t.TempDir(), e.mint("demo1-pri"), nil)
	e.waitConnected(n.id())
	// Correctly signed, but for a different node id: it must not run here. The hub routes
	// by connection, so send it down this node's connection by hand.
	r := request("someone-else", "openclaw.restart", "{}", e.key, time.Now().Add(time.Minute))
	c := e.hub.conn(n.id())
	ch := make(chan proto.InvokeResult, 1)
	c.addPending(r.ID, ch)
	f, _ := proto.NewEvent(proto.EventInvokeRequest, r)
	if err := c.send(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-ch:
		if res.OK || res.Error.Code != string(clawops.ReasonForbidden) {
			t.Errorf("result = %+v, want FORBIDDEN", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no result")
	}
	if r, _ := n.rt.counts(); r != 0 {
		t.Errorf("restarts = %d, want 0", r)
	}
}
