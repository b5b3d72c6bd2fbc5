package slack_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops/channels/channelstest"
	chslack "github.com/gatewayforge/clawops/channels/slack"
	"github.com/gatewayforge/clawops/governance"
)

// TestCardSurvivesRestart posts a card from one adapter, stops it, and has a new adapter
// over the same database (a restarted gateway, or the next leader) take a refused press and
// then the approval on that old card through the interactivity endpoint: both update the
// first message (chat.update with its ts), and no second card is posted.
func TestCardSurvivesRestart(t *testing.T) {
	r := start(t, chslack.ModeHTTP)
	id := r.fx.Request(t, "i-001", "large")
	v := r.cardValue(t, id, "clawops_approve_once")
	posted := r.slack.callsOf("chat.postMessage")
	if len(posted) != 1 {
		t.Fatalf("cards before the restart: got %d, want 1", len(posted))
	}
	r.stop()

	r.launch(t, chslack.ModeHTTP)
	srv := httptest.NewServer(r.a.Handler())
	t.Cleanup(srv.Close)
	pressSigned(t, srv.URL, press("U3003", approvals, "clawops_approve_once", v))
	channelstest.Eventually(t, "the refusal on the old card", func() bool {
		return len(r.updatesOf("carol may not decide approvals")) == 1
	})
	pressSigned(t, srv.URL, press("U2002", approvals, "clawops_approve_once", v))
	channelstest.Eventually(t, "the decision on the old card", func() bool {
		for _, u := range r.updatesOf("Resize i-001") {
			if strings.Contains(u, "Approved by bob") && strings.Contains(u, "done") {
				return true
			}
		}
		return false
	})
	if got := r.fx.State(t, id); got != governance.ApprovalExecuted {
		t.Errorf("approval: got %s, want executed", got)
	}
	if n := len(r.slack.callsOf("chat.postMessage")); n != 1 {
		t.Errorf("cards posted: got %d, want 1 (updates edit the first)", n)
	}
	// The fake answers the first post with ts 1790000000.000001.
	for _, u := range r.slack.callsOf("chat.update") {
		if u.Get("channel") != approvals || u.Get("ts") != "1790000000.000001" {
			t.Errorf("update of %s/%s, want %s/1790000000.000001", u.Get("channel"), u.Get("ts"), approvals)
		}
	}
}

// pressSigned posts a block_actions payload to the interactivity endpoint at u, signed with
// the app's signing secret, and wants 200.
func pressSigned(t *testing.T, u string, payload map[string]any) {
	t.Helper()
	raw, _ := json.Marshal(payload)
	body := url.Values{"payload": {string(raw)}}.Encode()
	now := time.Now().Unix()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(now, 10))
	req.Header.Set("X-Slack-Signature", sign(now, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("press: got status %d, want 200", resp.StatusCode)
	}
}
