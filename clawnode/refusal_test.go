package clawnode

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/daemon"
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

// TestEveryCommandRefusesBadParams sends each of the ten commands malformed params over
// the real protocol and checks the node refuses them with a reason code before anything
// runs: no restart, no pull, no file written.
func TestEveryCommandRefusesBadParams(t *testing.T) {
	e := newEnv(t)
	rt := &recRuntime{}
	health := daemon.NewHealthChecker(e.health, nil, 2*time.Second, nil)
	work := t.TempDir()
	cfgPath := filepath.Join(work, "openclaw.json")
	os.WriteFile(cfgPath, []byte(`{"ok":true}`), 0o600)
	cf, err := daemon.NewConfigFile(daemon.ConfigFileOptions{Path: cfgPath, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	backups := filepath.Join(t.TempDir(), "backups")
	ar, err := daemon.NewArchiver(work, backups, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	cmds := daemon.NewCommands(daemon.CommandDeps{Runtime: rt, Health: health, Metrics: daemon.NewSampler("", "/"),
		Config: cf, Backups: ar})
	n := e.startNode(t.TempDir(), e.mint("demo1-pri"), nil, func(c *daemon.Config) { c.Commands = cmds })
	e.waitConnected(n.id())
	big := `{"config":{"blob":"` + strings.Repeat("a", proto.MaxConfigBytes) + `"},"version":"v1"}`

	for _, tc := range []struct {
		command, params string
		want            clawops.ReasonCode
	}{
		{"openclaw.health", `{"x":1}`, clawops.ReasonBadParams},
		{"openclaw.health", `[]`, clawops.ReasonBadParams},
		{"openclaw.restart", `{"force":true}`, clawops.ReasonBadParams},
		{"openclaw.restart", `{"container":"$(reboot)"}`, clawops.ReasonShellMetachar},
		{"openclaw.logs", `{"tail":0}`, clawops.ReasonBadParams},
		{"openclaw.logs", `{"tail":5001}`, clawops.ReasonBadParams},
		{"openclaw.logs", `{"tail":"20"}`, clawops.ReasonBadParams},
		{"openclaw.logs", `{"tail":1.5}`, clawops.ReasonBadParams},
		{"openclaw.logs", `{"Tail":5}`, clawops.ReasonBadParams},
		{"openclaw.upgrade", `{}`, clawops.ReasonBadParams},
		{"openclaw.upgrade", `{"image":"ghcr.io/openclaw/openclaw"}`, clawops.ReasonBadParams},
		{"openclaw.upgrade", `{"image":"ghcr.io/openclaw/openclaw:latest"}`, clawops.ReasonBadParams},
		{"openclaw.upgrade", `{"image":"GHCR.io/OpenClaw:1"}`, clawops.ReasonBadParams},
		{"openclaw.upgrade", `{"image":"openclaw:1 --privileged"}`, clawops.ReasonBadParams},
		{"openclaw.upgrade", `{"image":"openclaw:1;reboot"}`, clawops.ReasonShellMetachar},
		{"openclaw.upgrade", `{"image":"openclaw:1","pull":false}`, clawops.ReasonBadParams},
		{"config.get", `{"path":"/etc/shadow"}`, clawops.ReasonBadParams},
		{"config.apply", `{}`, clawops.ReasonBadParams},
		{"config.apply", `{"config":[],"version":"v1"}`, clawops.ReasonBadParams},
		{"config.apply", `{"config":"x","version":"v1"}`, clawops.ReasonBadParams},
		{"config.apply", `{"config":{},"version":""}`, clawops.ReasonBadParams},
		{"config.apply", `{"config":{},"version":"v 1"}`, clawops.ReasonBadParams},
		{"config.apply", `{"config":{},"version":"v1;reboot"}`, clawops.ReasonShellMetachar},
		{"config.apply", `{"config":{},"version":"v1","path":"/etc/passwd"}`, clawops.ReasonBadParams},
		{"config.apply", `{"config":{},"version":"v1","$(id)":1}`, clawops.ReasonShellMetachar},
		{"config.apply", big, clawops.ReasonBadParams},
		{"vps.metrics", `{"all":true}`, clawops.ReasonBadParams},
		{"vps.info", `{"x":null}`, clawops.ReasonBadParams},
		{"backup.create", `{"dest":"/tmp"}`, clawops.ReasonBadParams},
		{"backup.create", `{"dest":"/tmp/x;id"}`, clawops.ReasonShellMetachar},
		{"backup.read", `{}`, clawops.ReasonBadParams},
		{"backup.read", `{"path":"/etc/../etc/shadow","offset":0,"length":10}`, clawops.ReasonBadParams},
		{"backup.read", `{"path":"backups/x.tar.gz","offset":0,"length":10}`, clawops.ReasonBadParams},
		{"backup.read", `{"path":"/tmp/x.tar.gz","offset":-1,"length":10}`, clawops.ReasonBadParams},
		{"backup.read", `{"path":"/tmp/x.tar.gz","offset":0,"length":0}`, clawops.ReasonBadParams},
		{"backup.read", `{"path":"/tmp/x.tar.gz","offset":0,"length":4194305}`, clawops.ReasonBadParams},
		{"backup.read", `{"path":"/tmp/*.tar.gz","offset":0,"length":10}`, clawops.ReasonShellMetachar},
	} {
		t.Run(tc.command+" "+clipName(tc.params), func(t *testing.T) {
			_, err := e.sendRequest(t, request(n.id(), tc.command, tc.params, e.key, time.Now().Add(time.Minute)))
			if got := clawops.ReasonOf(err); got != tc.want {
				t.Errorf("reason = %q (%v), want %q", got, err, tc.want)
			}
		})
	}
	if r, l := rt.counts(); r != 0 || l != 0 {
		t.Errorf("runtime calls = %d restarts, %d logs; want none", r, l)
	}
	if b, _ := os.ReadFile(cfgPath); string(b) != `{"ok":true}` {
		t.Errorf("config file = %s, want untouched", b)
	}
	if _, err := os.Stat(backups); !os.IsNotExist(err) {
		t.Errorf("backup folder exists (%v): a backup ran", err)
	}
	// The opaque config may hold any text: prompts and patterns are data, not arguments.
	raw, err := e.sendRequest(t, request(n.id(), "config.apply",
		`{"config":{"ok":true,"prompt":"Be terse; don't run $(anything) | ever!"},"version":"v2"}`, e.key, time.Now().Add(time.Minute)))
	if err != nil || !strings.Contains(string(raw), `"healthy":true`) {
		t.Errorf("config.apply with punctuation in the config = %s, %v; want applied", raw, err)
	}
}

func clipName(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}
