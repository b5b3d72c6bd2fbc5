//go:build unix

package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
	"github.com/gatewayforge/clawops/store"

	"github.com/gatewayforge/clawops/internal/syncbuf"
)

// fileNodes are simulated nodes whose state lives in files, so it outlives the gateway
// process that talks to them: one JSON file per node with its config version and image,
// how many times a config was applied and an image switched, and the idempotency keys it
// has seen.
type fileNodes struct {
	dir   string
	delay time.Duration // per config.apply or openclaw.upgrade, to give a kill something in flight
	mu    sync.Mutex
}

type fileNodeState struct {
	Version  string   `json:"version"`
	Applies  int      `json:"applies"`
	Image    string   `json:"image"`
	Upgrades int      `json:"upgrades"`
	Keys     []string `json:"keys"`
}

func (f *fileNodes) path(node clawops.NodeID) string {
	return filepath.Join(f.dir, string(node)+".json")
}

func (f *fileNodes) read(node clawops.NodeID) (fileNodeState, error) {
	var st fileNodeState
	b, err := os.ReadFile(f.path(node))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

func (f *fileNodes) write(node clawops.NodeID, st fileNodeState) error {
	b, _ := json.Marshal(st)
	tmp := f.path(node) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, f.path(node))
}

func (f *fileNodes) Invoke(ctx context.Context, node clawops.NodeID, command string, params any) (json.RawMessage, error) {
	key := proto.IdempotencyKeyFrom(ctx)
	if (command == CmdConfigApply || command == CmdUpgrade) && f.delay > 0 {
		time.Sleep(f.delay)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.read(node)
	if err != nil {
		return nil, clawops.E("file node", clawops.KindTransient, clawops.ReasonNodeOffline, err)
	}
	switch command {
	case CmdConfigGet:
		return json.Marshal(ConfigGetResult{Version: st.Version, Config: json.RawMessage(`{}`)})
	case CmdHealth:
		return json.RawMessage(`{"ok":true,"status":200,"latencyMs":1,"checkedAt":1}`), nil
	case CmdInfo:
		return json.Marshal(proto.VPSInfo{Hostname: string(node), OS: "linux", Runtime: "docker", Image: st.Image})
	}
	if command != CmdConfigApply && command != CmdUpgrade {
		return nil, clawops.E("file node", clawops.KindDenied, clawops.ReasonNotAllowlisted, command)
	}
	if slices.Contains(st.Keys, key) {
		return nil, clawops.E("file node", clawops.KindDenied, clawops.ReasonCommandReplayed, "replayed")
	}
	b, _ := json.Marshal(params)
	var out any
	if command == CmdUpgrade {
		var p proto.UpgradeParams
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, err
		}
		out = proto.UpgradeResult{Image: p.Image, PreviousImage: st.Image, Healthy: true}
		st.Image, st.Upgrades = p.Image, st.Upgrades+1
	} else {
		var p ConfigApplyParams
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, err
		}
		out = ConfigApplyResult{Version: p.Version, Healthy: true}
		st.Version, st.Applies = p.Version, st.Applies+1
	}
	st.Keys = append(st.Keys, key)
	if err := f.write(node, st); err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

// totalApplies counts the changes every node took: configs applied and images switched.
func (f *fileNodes) totalApplies(t *testing.T) int {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	files, _ := filepath.Glob(filepath.Join(f.dir, "*.json"))
	n := 0
	for _, file := range files {
		var st fileNodeState
		b, err := os.ReadFile(file)
		if err != nil || json.Unmarshal(b, &st) != nil {
			continue
		}
		n += st.Applies + st.Upgrades
	}
	return n
}

// TestPushChild is the gateway process TestRollingPushSurvivesKill starts and kills. Run
// alone it skips.
func TestPushChild(t *testing.T) {
	dbPath, nodesDir, pushID := os.Getenv("CLAWOPS_PUSH_CHILD_DB"), os.Getenv("CLAWOPS_PUSH_CHILD_NODES"), os.Getenv("CLAWOPS_PUSH_CHILD_ID")
	if dbPath == "" {
		t.Skip("only run as the child of TestRollingPushSurvivesKill")
	}
	id, _ := strconv.Atoi(pushID)
	db, err := store.Open(context.Background(), store.Options{DSN: dbPath})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(Options{DB: db, Nodes: &fileNodes{dir: nodesDir, delay: 5 * time.Millisecond}, PushConcurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	v, err := svc.RunPush(context.Background(), uint(id))
	t.Logf("child finished the push before being killed: %+v %v", v, err)
}

// TestRollingPushSurvivesKill runs a push, of a config and of an image, in a real gateway
// process, kills it with SIGKILL in the middle, and finishes the push from a new Service
// over the same SQLite file: every instance gets the config, or the image, exactly once.
func TestRollingPushSurvivesKill(t *testing.T) {
	for _, tc := range []struct {
		kind  string
		start func(s *Service, ids []clawops.InstanceID) (PushView, error)
		once  func(st fileNodeState) bool
		want  string
	}{
		{PushKindConfig,
			func(s *Service, ids []clawops.InstanceID) (PushView, error) {
				return s.StartPush(context.Background(), pushSpec(ids, 10, 0))
			},
			func(st fileNodeState) bool { return st.Applies == 1 && st.Version == "v48" && st.Upgrades == 0 },
			"version v48 applied exactly once"},
		{PushKindUpgrade,
			func(s *Service, ids []clawops.InstanceID) (PushView, error) {
				return s.StartUpgrade(context.Background(), upgradeSpec(ids, 10, 0))
			},
			func(st fileNodeState) bool { return st.Upgrades == 1 && st.Image == newImage && st.Applies == 0 },
			"image " + newImage + " switched to exactly once"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			dir := t.TempDir()
			dbPath, nodesDir := filepath.Join(dir, "clawops.db"), filepath.Join(dir, "nodes")
			if err := os.Mkdir(nodesDir, 0o700); err != nil {
				t.Fatal(err)
			}
			db, err := store.Open(context.Background(), store.Options{DSN: dbPath})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close(db) })
			nodes := &fileNodes{dir: nodesDir}
			h := newHarnessDB(t, db, func(o *Options) { o.Nodes = nodes })
			ids := h.activePairs(t, nil, "acct", 20) // 40 instances
			for _, id := range ids {
				if err := nodes.write(clawops.NodeID("node-"+string(id)), fileNodeState{Version: "v0", Image: oldImage}); err != nil {
					t.Fatal(err)
				}
			}
			v, err := tc.start(h.svc, ids)
			if err != nil {
				t.Fatal(err)
			}

			cmd := exec.Command(os.Args[0], "-test.run=^TestPushChild$", "-test.v")
			cmd.Env = append(os.Environ(), "CLAWOPS_PUSH_CHILD_DB="+dbPath, "CLAWOPS_PUSH_CHILD_NODES="+nodesDir,
				fmt.Sprintf("CLAWOPS_PUSH_CHILD_ID=%d", v.ID))
			out := &syncBuf{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for nodes.totalApplies(t) < 15 {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("child made %d changes before the deadline; output:\n%s", nodes.totalApplies(t), out.String())
				}
				time.Sleep(time.Millisecond)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			before := nodes.totalApplies(t)
			if before >= len(ids) {
				t.Fatalf("the child finished all %d instances before the kill; output:\n%s", before, out.String())
			}
			var sending int64
			db.Model(&PushTarget{}).Where("push_id = ? AND state = ?", v.ID, TargetSending).Count(&sending)
			t.Logf("killed the gateway after %d of %d instances, %d in flight", before, len(ids), sending)

			svc2, err := NewService(Options{DB: db, Nodes: nodes})
			if err != nil {
				t.Fatal(err)
			}
			v, err = svc2.RunPush(context.Background(), v.ID)
			if err != nil {
				t.Fatal(err)
			}
			if v.State != PushCompleted || v.Counts[TargetApplied] != len(ids) || v.Kind != tc.kind {
				t.Fatalf("resumed push: got %s %s %v, want %s completed with %d applied", v.Kind, v.State, v.Counts, tc.kind, len(ids))
			}
			for _, id := range ids {
				st, err := nodes.read(clawops.NodeID("node-" + string(id)))
				if err != nil || !tc.once(st) {
					t.Errorf("%s: got %+v (%v), want %s", id, st, err, tc.want)
				}
			}
		})
	}
}

// syncBuf collects a child process's output.
type syncBuf = syncbuf.Buffer
