package whatsapp_test

import (
	"strings"
	"testing"

	"go.mau.fi/whatsmeow/types"

	"github.com/gatewayforge/clawops/channels/channelstest"
	"github.com/gatewayforge/clawops/governance"
)

// TestCardSurvivesRestart sends a card from one adapter, stops it, and has a new adapter over
// the same database (a restarted gateway, or the next leader) take a reply with the card's
// short code: the code still names the approval, and the change is sent as a status line,
// not as a second card.
func TestCardSurvivesRestart(t *testing.T) {
	r := start(t)
	id := r.fx.Request(t, "i-001", "large")
	code := r.cardCode(t, id)
	r.stop()

	r.launch(t)
	r.incoming(pn(bob), types.EmptyJID, "approve "+code)
	channelstest.Eventually(t, "the run", func() bool { return r.fx.State(t, id) == governance.ApprovalExecuted })
	channelstest.Eventually(t, "the status line", func() bool {
		for _, m := range r.client.textsTo(bob) {
			if strings.HasPrefix(m, "Approval "+code) && strings.Contains(m, "done") {
				return true
			}
		}
		return false
	})
	var cards int
	for _, m := range r.client.textsTo(bob) {
		if strings.Contains(m, "*Approval needed*") {
			cards++
		}
	}
	if cards != 1 {
		t.Errorf("cards sent to bob: got %d, want 1", cards)
	}
}
