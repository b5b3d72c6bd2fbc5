package clawnode

import (
	"strings"
	"testing"
)

// TestInstanceLookupUsesIndex keeps enrollment O(log N): the queries that find an
// instance's active devices must use the (instance, revoked_at_ms) index.
func TestInstanceLookupUsesIndex(t *testing.T) {
	e := newEnv(t)
	for _, q := range []string{
		"SELECT id FROM clawnode_devices WHERE instance = 'i' AND id <> 'x' AND revoked_at_ms = 0",
		"SELECT * FROM clawnode_devices WHERE instance = 'i' AND revoked_at_ms = 0 AND rotation_pending = false ORDER BY enrolled_at_ms DESC LIMIT 1",
	} {
		var rows []struct {
			ID, Parent, Notused int
			Detail              string
		}
		if err := e.db.Raw("EXPLAIN QUERY PLAN " + q).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		var plan []string
		for _, r := range rows {
			plan = append(plan, r.Detail)
		}
		if !strings.Contains(strings.Join(plan, "; "), "idx_clawnode_devices_inst_rev") {
			t.Errorf("plan of %q = %q, want the (instance, revoked_at_ms) index", q, plan)
		}
	}
}
