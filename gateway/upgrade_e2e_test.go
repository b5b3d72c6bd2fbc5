package gateway_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops/fleet"
)

// TestRollingUpgradeEndToEnd asks the Commander, over the HTTP chat route, for gf_upgrade
// on every instance: the gate lets the operator's Commander do it alone (2 users), the push
// worker sends openclaw.upgrade to real gf-clawnode processes batch by batch, and each
// node pulls the image, writes its image file and recreates the container through the
// (fake) docker, which then reports the new image in vps.info.
func TestRollingUpgradeEndToEnd(t *testing.T) {
	e := startGateway(t, 2)
	ctx := context.Background()
	ids := []string{"acct1-pri", "acct1-sby", "acct2-pri", "acct2-sby"}
	const image = "ghcr.io/openclaw/openclaw:2026.9.6"

	for _, id := range ids {
		info, err := e.gw.Fleet().VPSInfo(ctx, instanceID(id))
		if err != nil || info.Runtime != "docker" || info.Image != "openclaw:local" {
			t.Fatalf("%s before: vps.info %+v, %v; want the docker runtime on openclaw:local", id, info, err)
		}
	}

	t.Run("a bad image is refused and runs nothing", func(t *testing.T) {
		before := len(e.dockerCalls())
		for _, bad := range []string{"ghcr.io/openclaw/openclaw:latest", "ghcr.io/openclaw/openclaw", "openclaw:1;reboot"} {
			reply := e.chat(operatorToken, `/tool gf_upgrade {"image":"`+bad+`","targets":"all_active"}`)
			if !strings.Contains(reply, "BAD_ARGUMENTS") {
				t.Errorf("image %q: reply %q, want BAD_ARGUMENTS", bad, reply)
			}
		}
		if got := len(e.dockerCalls()); got != before {
			t.Fatalf("bad images ran docker %d times", got-before)
		}
	})

	before := len(e.dockerCalls())
	reply := e.chat(operatorToken, `/tool gf_upgrade {"image":"`+image+`","targets":"all_active","batch_size":2,"reason":"openclaw 2026.9.6"}`)
	m := regexp.MustCompile(`Push (\d+) started: upgrade to `).FindStringSubmatch(reply)
	if m == nil {
		t.Fatalf("reply %q, want the upgrade started", reply)
	}
	id, _ := strconv.Atoi(m[1])

	var v fleet.PushView
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var err error
		if v, err = e.gw.Fleet().PushStatus(ctx, uint(id)); err != nil {
			t.Fatal(err)
		}
		if v.State != fleet.PushRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upgrade still running after 3 minutes: %+v", v)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if v.State != fleet.PushCompleted || v.Kind != fleet.PushKindUpgrade || v.Counts[fleet.TargetApplied] != 4 || v.BatchesDone != 2 {
		t.Fatalf("upgrade: got %s %s %v, %d batches done, failures %+v; want completed, 4 applied in 2 batches",
			v.Kind, v.State, v.Counts, v.BatchesDone, v.Failures)
	}

	calls := e.dockerCalls()[before:]
	pulls := 0
	for _, c := range calls {
		if c[0] == "pull" {
			if !slices.Equal(c, []string{"pull", image}) {
				t.Errorf("pull argv: got %q, want [pull %s]", c, image)
			}
			pulls++
		}
	}
	if pulls != len(ids) {
		t.Errorf("docker pulls: got %d, want one per instance (%d)", pulls, len(ids))
	}
	for _, id := range ids {
		imageFile := filepath.Join(e.dataDir, "local", id, "node", "openclaw-image.yml")
		want := []string{"compose", "-f", composeFile(e, id), "-f", imageFile, "up", "-d", "--no-deps", "--force-recreate", "openclaw"}
		ups := 0
		for _, c := range calls {
			if slices.Equal(c, want) {
				ups++
			}
		}
		if ups != 1 {
			t.Errorf("%s: %d recreations %q, want exactly 1; docker calls:\n%q", id, ups, want, calls)
		}
		b, err := os.ReadFile(imageFile)
		if err != nil || !strings.Contains(string(b), `image: "`+image+`"`) {
			t.Errorf("%s image file: %q, %v; want it to name %s", id, b, err, image)
		}
		info, err := e.gw.Fleet().VPSInfo(ctx, instanceID(id))
		if err != nil || info.Image != image {
			t.Errorf("%s after: vps.info image %q, %v; want %s", id, info.Image, err, image)
		}
	}
	if n := countEvents(t, e, "gf_upgrade", "completed"); n != 1 {
		t.Errorf("gf_upgrade completed %d times in the audit, want 1", n)
	}
	status := e.chat(operatorToken, `/tool gf_push_status {"push":`+m[1]+`}`)
	if !strings.Contains(status, "(upgrade to "+image+") completed: 2/2 batches, 4 applied") {
		t.Errorf("push status: %q", status)
	}
}
