package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops/fleet"
)

// TestGuardianFailsOverThroughTheGateway crashes a primary's processes in a running
// gateway with no model configured: the gateway's own monitor marks it DEGRADED, the
// fleet event reaches the agent team, the Guardian's code runbook calls gf_heal through
// the gate (audited under the Guardian's name), and the pair fails over to the standby; a
// new standby is provisioned and enrolls.
func TestGuardianFailsOverThroughTheGateway(t *testing.T) {
	e := startGatewayWith(t, gatewaySetup{pairs: 1, yaml: `
nodes: {heartbeat_interval: 1s, heartbeat_timeout: 3s, tick_interval: 1s}
agents: {schedules: false}
`})
	ctx := context.Background()
	failedOver := e.gw.Bus().Subscribe(16, fleet.EventFailoverCompleted)
	defer failedOver.Close()
	if err := e.gw.Local().Crash("local-acct1-pri"); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-failedOver.C():
		t.Logf("failover: %s", ev.Summary)
	case <-time.After(90 * time.Second):
		t.Fatal("no failover within 90s of the crash")
	}
	pv, err := e.gw.Fleet().Pair(ctx, "acct1")
	if err != nil || pv.PrimaryID != "acct1-sby" || pv.Primary.State != fleet.StateActive {
		t.Fatalf("pair after failover: %+v, %v; want acct1-sby the ACTIVE primary", pv.Pair, err)
	}
	e.waitFor(2, fleet.StateActive, 60*time.Second) // the promoted standby and the new one

	entries, err := e.gw.Gate().Audit().List(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var trail []string
	for _, en := range entries {
		if en.Tool == "gf_heal" && strings.HasPrefix(en.Target, "acct1-pri") {
			if !strings.Contains(en.Actor, "guardian") {
				t.Errorf("heal audited as %q, want the Guardian", en.Actor)
			}
			trail = append(trail, en.Event+":"+en.Detail)
		}
	}
	if len(trail) < 2 || !strings.Contains(strings.Join(trail, " "), "failed_over") {
		t.Errorf("gf_heal audit trail %q: want requested … completed with failed_over", trail)
	}
}
