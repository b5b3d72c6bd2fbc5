//go:build linux

package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode"
	"github.com/gatewayforge/clawops/clawnode/proto"
	"github.com/gatewayforge/clawops/store"
)

// startGatewayInProc runs the gateway role in this process and returns its ready event.
func startGatewayInProc(t *testing.T) (event, string) {
	t.Helper()
	dir := t.TempDir()
	p := startInProc(t, runGateway, gatewayConfig{Dir: dir, Listen: "127.0.0.1:0", TickMs: 1000})
	return p.waitEvent(t, "gateway ready", isReady), dir
}

func countTokens(t *testing.T, dir string) int64 {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(db)
	var n int64
	if err := db.Model(&clawnode.JoinToken{}).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func TestGatewayControlRejectsBadRequests(t *testing.T) {
	ready, dir := startGatewayInProc(t)
	ctl, err := newControl(ready.ControlURL)
	if err != nil {
		t.Fatal(err)
	}
	post := func(path, body string) (int, string) {
		resp, err := http.Post(ready.ControlURL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]string
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m["error"]
	}
	for _, tc := range []struct {
		path, body, want string
	}{
		{apiTokens, `{`, "unexpected EOF"},
		{apiTokens, `{"prefix":"bench-","start":0,"count":1,"ttlSeconds":60,"extra":1}`, "unknown field"},
		{apiTokens, `{"prefix":"bench-","start":0,"count":1,"ttlSeconds":60} {}`, "unexpected data"},
		{apiTokens, `{"prefix":"Bench","start":0,"count":1,"ttlSeconds":60}`, "prefix"},
		{apiTokens, `{"prefix":"bench-","start":-1,"count":1,"ttlSeconds":60}`, "start"},
		{apiTokens, `{"prefix":"bench-","start":0,"count":0,"ttlSeconds":60}`, "count"},
		{apiTokens, `{"prefix":"bench-","start":0,"count":5001,"ttlSeconds":60}`, "count"},
		{apiTokens, `{"prefix":"bench-","start":199999,"count":2,"ttlSeconds":60}`, "start+count"},
		{apiTokens, `{"prefix":"bench-","start":0,"count":1,"ttlSeconds":59}`, "ttlSeconds"},
		{apiFanout, `{"command":"","concurrency":1,"timeoutMs":1000}`, "command"},
		{apiFanout, `{"command":"vps.metrics","concurrency":0,"timeoutMs":1000}`, "concurrency"},
		{apiFanout, `{"command":"vps.metrics","concurrency":1,"timeoutMs":0}`, "timeoutMs"},
		{apiFanout, `{"command":"vps.metrics","reqBytes":10,"concurrency":1,"timeoutMs":10}`, "reqBytes"},
		{apiProfile, `{"path":"relative.pprof"}`, "absolute"},
	} {
		t.Run(tc.path+" "+tc.body, func(t *testing.T) {
			code, msg := post(tc.path, tc.body)
			if code != http.StatusBadRequest || !strings.Contains(msg, tc.want) {
				t.Errorf("POST %s = %d %q, want 400 mentioning %q", tc.path, code, msg, tc.want)
			}
		})
	}
	if n := countTokens(t, dir); n != 0 {
		t.Fatalf("bad requests minted %d tokens, want 0", n)
	}
	nodes, err := ctl.mint(context.Background(), 7, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 3 || nodes[0].Instance != "bench-000007" || nodes[0].Index != 7 || !strings.HasPrefix(nodes[2].Token, "gfj_") {
		t.Errorf("mint(7, 3) = %+v, want bench-000007… with join tokens", nodes)
	}
	if n := countTokens(t, dir); n != 3 {
		t.Errorf("tokens stored = %d, want 3", n)
	}
	// A fan-out with no node connected is an empty round, not an error.
	fr, err := ctl.fanout(context.Background(), fanoutRequest{Command: "vps.metrics", Concurrency: 1, TimeoutMs: 1000}, 10*time.Second)
	if err != nil || fr.Targets != 0 {
		t.Errorf("empty fan-out = %+v, %v; want 0 targets", fr, err)
	}
}

func simConfigFor(ready event, nodes []simNodeConfig) simConfig {
	return simConfig{Name: "sim-t", GatewayURL: ready.NodeURL, GatewayKey: ready.GatewayKey, SourceIPs: 3,
		Nodes: nodes, HeartbeatMs: 100, DialConcurrency: 4, HandshakeTimeoutMs: 5000, StatusEveryMs: 20}
}

func TestSimNodesSpeakTheProtocol(t *testing.T) {
	ready, _ := startGatewayInProc(t)
	ctl, err := newControl(ready.ControlURL)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	nodes, err := ctl.mint(ctx, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	sim := startInProc(t, runSim, simConfigFor(ready, nodes))
	sim.waitEvent(t, "sim ready", isReady)
	sim.send(t, cmdGo)
	sim.waitEvent(t, "3 nodes connected and heartbeating", func(e event) bool {
		return e.Status != nil && e.Status.Connected == 3 && e.Status.AllConnectedMs > 0 && e.Status.Heartbeats >= 6
	})
	for _, cmd := range []string{"vps.metrics", "openclaw.health"} {
		fr, err := ctl.fanout(ctx, fanoutRequest{Command: cmd, Concurrency: 2, TimeoutMs: 5000}, 10*time.Second)
		if err != nil || fr.Targets != 3 || fr.OK != 3 || len(fr.LatUs) != 3 {
			t.Errorf("fan-out %s = %+v, %v; want 3 of 3", cmd, fr, err)
		}
	}
	// A command outside the simulated allowlist is refused by every node, as gf-clawnode would.
	fr, err := ctl.fanout(ctx, fanoutRequest{Command: "openclaw.restart", Concurrency: 3, TimeoutMs: 5000}, 10*time.Second)
	if err != nil || fr.OK != 0 || fr.Errors[string(clawops.ReasonNotAllowlisted)] != 3 {
		t.Errorf("fan-out openclaw.restart = %+v, %v; want 3 COMMAND_NOT_ALLOWLISTED", fr, err)
	}
	st, err := ctl.stats(ctx)
	if err != nil || st.Connected != 3 || st.Heartbeats < 6 {
		t.Errorf("gateway stats = %+v, %v; want 3 connected and heartbeats", st, err)
	}
	if got := waitStat(t, ctl, func(s statsResponse) bool { return s.Refusals >= 3 }); got.Refusals != 3 {
		t.Errorf("gateway saw %d refusal events, want 3", got.Refusals)
	}

	// Nodes that pin another gateway key never present their tokens to this one.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	more, err := ctl.mint(ctx, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	wrong := simConfigFor(ready, more)
	wrong.GatewayKey = proto.EncodePublicKey(other.Public().(ed25519.PublicKey))
	impostor := startInProc(t, runSim, wrong)
	impostor.waitEvent(t, "sim ready", isReady)
	impostor.send(t, cmdGo)
	e := impostor.waitEvent(t, "refused gateway", func(e event) bool { return e.Status != nil && e.Status.FailedAttempts >= 2 })
	if e.Status.EverConnected != 0 || !strings.Contains(e.Status.LastError, "refusing to authenticate") {
		t.Errorf("status = %+v, want no connect and a refusal to authenticate", e.Status)
	}
	if st, _ := ctl.stats(ctx); st.Connected != 3 {
		t.Errorf("gateway connected = %d, want still 3", st.Connected)
	}
}

func waitStat(t *testing.T, ctl *control, ok func(statsResponse) bool) statsResponse {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := ctl.stats(context.Background())
		if err == nil && ok(st) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCheckInvoke(t *testing.T) {
	_, gw, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	gwPub := gw.Public().(ed25519.PublicKey)
	_, nodeKey, _ := ed25519.GenerateKey(rand.Reader)
	now := time.UnixMilli(1_800_000_000_000)
	newNode := func() *simNode {
		return &simNode{cfg: simNodeConfig{Index: 4}, key: nodeKey, id: proto.DeviceID(nodeKey.Public().(ed25519.PublicKey)),
			replay: make(map[string]int64)}
	}
	signed := func(mut func(*proto.InvokeRequest), key ed25519.PrivateKey, exp time.Time) []byte {
		r := proto.InvokeRequest{ID: "inv_1", NodeID: newNode().id, Command: "vps.metrics", ParamsJSON: "{}",
			TimeoutMs: 1000, IdempotencyKey: "ik_1"}
		if mut != nil {
			mut(&r)
		}
		proto.SignInvoke(key, &r, exp)
		b, _ := json.Marshal(r)
		return b
	}
	good := signed(nil, gw, now.Add(time.Minute))
	for _, tc := range []struct {
		name    string
		payload []byte
		want    clawops.ReasonCode
	}{
		{"good", good, ""},
		{"garbage", []byte(`{"id":`), clawops.ReasonMalformedRequest},
		{"unknown field", []byte(`{"id":"i","nodeId":"n","command":"c","extra":1}`), clawops.ReasonMalformedRequest},
		{"pipe in id", signed(func(r *proto.InvokeRequest) { r.ID = "a|b" }, gw, now.Add(time.Minute)), clawops.ReasonMalformedRequest},
		{"other node", signed(func(r *proto.InvokeRequest) { r.NodeID = "someone-else" }, gw, now.Add(time.Minute)), clawops.ReasonForbidden},
		{"unsigned", []byte(`{"id":"i","nodeId":"` + newNode().id + `","command":"vps.metrics"}`), clawops.ReasonUnsignedCommand},
		{"other key", signed(nil, other, now.Add(time.Minute)), clawops.ReasonBadSignature},
		{"expired", signed(nil, gw, now.Add(-time.Second)), clawops.ReasonCommandExpired},
		{"too far ahead", signed(nil, gw, now.Add(time.Hour)), clawops.ReasonCommandExpired},
		{"not allowlisted", signed(func(r *proto.InvokeRequest) { r.Command = "openclaw.restart" }, gw, now.Add(time.Minute)), clawops.ReasonNotAllowlisted},
		{"params", signed(func(r *proto.InvokeRequest) { r.ParamsJSON = `{"tail":5}` }, gw, now.Add(time.Minute)), clawops.ReasonBadParams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, result, err := checkInvoke(gwPub, newNode(), tc.payload, now)
			if got := clawops.ReasonOf(err); got != tc.want {
				t.Fatalf("checkInvoke reason = %q (%v), want %q", got, err, tc.want)
			}
			if tc.want != "" {
				if result != "" {
					t.Errorf("refused command produced result %s", result)
				}
				return
			}
			var m proto.Metrics
			if err := proto.UnmarshalStrict([]byte(result), &m); err != nil || m.MemTotalBytes == 0 || r.ID != "inv_1" {
				t.Errorf("result %s (%v) for %s, want canned metrics", result, err, r.ID)
			}
		})
	}
	n := newNode()
	if _, _, err := checkInvoke(gwPub, n, good, now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := checkInvoke(gwPub, n, good, now); clawops.ReasonOf(err) != clawops.ReasonCommandReplayed {
		t.Errorf("second delivery = %v, want COMMAND_REPLAYED", err)
	}
}

func TestMeasureParsers(t *testing.T) {
	stat := []byte("4242 (bench nodes (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 12 0 100 1000 50 18446744073709551615")
	if got, err := parseStatCPU(stat); err != nil || got != 1801 {
		t.Errorf("parseStatCPU = %d, %v; want 1801", got, err)
	}
	for _, bad := range []string{"no paren", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 x y 1 1"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) = nil error, want one", bad)
		}
	}
	rss, hwm, th := parseStatus([]byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t7\nbad line\n"))
	if rss != 1024*1024 || hwm != 2048*1024 || th != 7 {
		t.Errorf("parseStatus = %d, %d, %d; want 1 MiB, 2 MiB, 7", rss, hwm, th)
	}
	lat := []int64{5000, 1000, 3000, 2000, 4000, 6000, 7000, 8000, 9000, 100000}
	s := summarise(lat)
	if s.Count != 10 || s.P50Ms != 5 || s.P90Ms != 9 || s.P99Ms != 100 || s.MaxMs != 100 {
		t.Errorf("summarise = %+v, want p50 5, p90 9, p99 100, max 100", s)
	}
	if got, err := parseMachineBusy([]byte("cpu  10 1 5 100 7 2 3 4 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n")); err != nil || got != 25 {
		t.Errorf("parseMachineBusy = %d, %v; want 25 (user+nice+system+irq+softirq+steal)", got, err)
	}
	if _, err := parseMachineBusy([]byte("intr 1 2 3\n")); err == nil {
		t.Error("parseMachineBusy(no cpu line) = nil error, want one")
	}
	if got := split(10, 3); got[0] != 4 || got[1] != 3 || got[2] != 3 {
		t.Errorf("split(10, 3) = %v, want [4 3 3]", got)
	}
	if got := sourceIP(33, 32); got != "127.0.0.3" {
		t.Errorf("sourceIP(33, 32) = %s, want 127.0.0.3", got)
	}
	if got := paddedFrame("e", 100); len(got) != 100 || !json.Valid([]byte(got)) {
		t.Errorf("paddedFrame(e, 100) = %d bytes, valid %v; want 100 bytes of JSON", len(got), json.Valid([]byte(got)))
	}
}
