package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gatewayforge/clawops/governance"
)

// TestConsoleInChromium drives the real page in headless Chromium over the DevTools
// protocol: the token comes from the URL fragment, the pending card renders, a chat
// round-trip shows the Commander's reply, the Approve button decides the approval, and the
// governance parts work (four-eyes progress, one-time code, approve for scope, traces).
func TestConsoleInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("no chromium on PATH")
	}
	s := newStack(t)
	s.gate.addGovApprovals()
	// A deadline for a wedged browser, not a speed target: with the whole suite running on
	// two cores, Chromium alone can take most of a minute to start and lay the page out.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	page := startChromium(ctx, t, bin)

	if _, err := page.call(ctx, "Page.navigate", map[string]any{"url": s.srv.URL + "/#token=" + approverToken}); err != nil {
		t.Fatal(err)
	}
	page.waitTrue(ctx, t, `document.getElementById("whoami").textContent === "bob (approver)"`)
	if got := page.eval(ctx, t, `location.hash + "|" + sessionStorage.getItem("clawops.token")`); got != "|"+approverToken {
		t.Errorf("fragment and storage: got %v, want the fragment removed and the token kept", got)
	}
	page.waitTrue(ctx, t, `!!document.querySelector('#cards li[data-id="ap-1"]')`)
	card := page.eval(ctx, t, `document.querySelector('#cards li[data-id="ap-1"]').textContent`)
	if c, _ := card.(string); !strings.Contains(c, "Tear down inst-2") || !strings.Contains(c, "olga") {
		t.Errorf("card text: got %q", c)
	}

	page.eval(ctx, t, `document.getElementById("chat-input").value = "/logs inst-1 ten";
		document.getElementById("chat-form").requestSubmit(); true`)
	page.waitTrue(ctx, t, `[...document.querySelectorAll("#log li.bot")].some(li => li.textContent.includes("usage: /logs <instance> [n]"))`)

	page.eval(ctx, t, `document.querySelector('#cards li[data-id="ap-1"] input').value = "checked in browser";
		document.querySelector('#cards li[data-id="ap-1"] button.approve').click(); true`)
	page.waitTrue(ctx, t, `(document.querySelector('#cards li[data-id="ap-1"] .result') || {}).textContent === "approved: Tear down inst-2: done"`)
	s.gate.mu.Lock()
	a := s.gate.approvals["ap-1"]
	s.gate.mu.Unlock()
	if a.State != governance.ApprovalExecuted || a.DecidedBy != "bob" || a.Reason != "checked in browser" {
		t.Errorf("ap-1 after the click: got state %s by %q reason %q", a.State, a.DecidedBy, a.Reason)
	}

	// An error shows its reason code: ap-3 expired.
	page.waitTrue(ctx, t, `!!document.querySelector('#cards li[data-id="ap-3"] button.deny')`)
	page.eval(ctx, t, `document.querySelector('#cards li[data-id="ap-3"] button.deny').click(); true`)
	page.waitTrue(ctx, t, `(document.querySelector('#cards li[data-id="ap-3"] .result') || {}).textContent.startsWith("APPROVAL_EXPIRED:")`)

	driveGovernanceCards(ctx, t, page, s)

	if strings.Contains(s.logs.String(), approverToken) {
		t.Error("server log contains the token")
	}
}

// driveGovernanceCards covers the governance parts of the page: risk score, four-eyes
// progress, the one-time code field of a card that needs a second factor, the "Approve for
// scope" form, and the read-only traces list.
func driveGovernanceCards(ctx context.Context, t *testing.T, page *cdpPage, s *stack) {
	t.Helper()
	const crit = `document.querySelector('#cards li[data-id="ap-crit"]')`
	page.waitTrue(ctx, t, `!!`+crit)
	for expr, want := range map[string]string{
		crit + `.querySelector("dd.risk").textContent`:         "critical (score 100)",
		crit + `.querySelector("dd.progress").textContent`:     "1 of 2 approvals (ada)",
		crit + `.querySelector("input.totp").placeholder`:      "one-time code",
		`String(!!` + crit + `.querySelector("button.scope"))`: "false", // four eyes: no grant
	} {
		if got, _ := page.eval(ctx, t, expr).(string); got != want {
			t.Errorf("%s: got %q, want %q", expr, got, want)
		}
	}
	// Approving without the code is refused with the gate's reason; with it, it goes through.
	page.eval(ctx, t, crit+`.querySelector("button.approve").click(); true`)
	page.waitTrue(ctx, t, `(`+crit+`.querySelector(".result") || {}).textContent.startsWith("SECOND_FACTOR_REQUIRED:")`)
	page.eval(ctx, t, crit+`.querySelector("input.totp").value = "123456"; `+crit+`.querySelector("button.approve").click(); true`)
	// The card leaves the pending list soon after; the chat log keeps the notice.
	page.waitTrue(ctx, t, `[...document.querySelectorAll("#log li.notice")].some(li => li.textContent === "Approval ap-crit approved: Tear down 20 servers: done")`)
	s.gate.mu.Lock()
	a := s.gate.approvals["ap-crit"]
	s.gate.mu.Unlock()
	if a.State != governance.ApprovalExecuted || len(a.Decisions) != 2 || a.Decisions[1].By != "bob" || !a.Decisions[1].SecondFactor {
		t.Errorf("ap-crit after the code: got state %s decisions %+v", a.State, a.Decisions)
	}

	// Approve for scope: the form defaults to the approval's own instances and users.
	const sc = `document.querySelector('#cards li[data-id="ap-scope"]')`
	page.waitTrue(ctx, t, `!!`+sc)
	if got, _ := page.eval(ctx, t, `String(`+sc+`.querySelector(".scope-form").hidden) + "|" + !!`+sc+`.querySelector("input.totp")`).(string); got != "true|false" {
		t.Errorf("scope form before the click (hidden|totp): got %q, want true|false", got)
	}
	page.eval(ctx, t, sc+`.querySelector("button.scope").click(); true`)
	got, _ := page.eval(ctx, t, `[`+sc+`.querySelector(".scope-form").hidden, `+sc+`.querySelector(".scope-instances").textContent,
		`+sc+`.querySelector("input.scope-ttl").value, `+sc+`.querySelector("input.scope-users").value].join("|")`).(string)
	if got != "false|Instances: inst-7|4h|3" {
		t.Errorf("scope form (hidden|instances|ttl|users): got %q", got)
	}
	page.eval(ctx, t, sc+`.querySelector("input.scope-ttl").value = "2h"; `+sc+`.querySelector("button.grant").click(); true`)
	page.waitTrue(ctx, t, `[...document.querySelectorAll("#log li.notice")].some(li => li.textContent === "Approval ap-scope approved for scope: Tear down inst-7: done")`)
	grants, _ := s.gate.ListGrants(ctx, true)
	if len(grants) != 1 || grants[0].ApprovalID != "ap-scope" || len(grants[0].Instances) != 1 || grants[0].Instances[0] != "inst-7" ||
		grants[0].MaxUsers != 3 || !grants[0].ExpiresAt.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("grants after the scope form: got %+v", grants)
	}

	// Traces: listed read-only; a click shows the recorded calls.
	const tr = `document.querySelector('#trace-list li[data-id="` + knownTrace + `"]')`
	page.waitTrue(ctx, t, `!!`+tr+` && `+tr+`.textContent.includes("tear down inst-2")`)
	page.eval(ctx, t, tr+`.querySelector("button.trace-toggle").click(); true`)
	page.waitTrue(ctx, t, `(`+tr+`.querySelector("ol.spans li.span") || {}).textContent === "gf_teardown → needs_approval (APPROVAL_REQUIRED), risk high 60"`)
	if n, _ := page.eval(ctx, t, `document.querySelectorAll('#traces button:not(.trace-toggle), #traces input').length`).(float64); n != 0 {
		t.Errorf("controls in the traces list: got %v, want none (read-only)", n)
	}
}

// cdpPage is one Chromium tab driven over the DevTools protocol.
type cdpPage struct {
	conn *websocket.Conn
	id   atomic.Int64
}

func startChromium(ctx context.Context, t *testing.T, bin string) *cdpPage {
	t.Helper()
	cmd := exec.Command(bin, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--user-data-dir="+t.TempDir(),
		"--no-first-run", "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
		"--metrics-recording-only", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its helpers die with it
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`DevTools listening on (ws://\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	var browserURL string
	select {
	case browserURL = <-found:
	case <-ctx.Done():
		t.Fatal("chromium did not start")
	}
	browser, _, err := websocket.Dial(ctx, browserURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &cdpPage{conn: browser}
	res, err := b.call(ctx, "Target.createTarget", map[string]any{"url": "about:blank"})
	if err != nil {
		t.Fatal(err)
	}
	var target struct{ TargetID string }
	if err := json.Unmarshal(res, &target); err != nil {
		t.Fatal(err)
	}
	browser.Close(websocket.StatusNormalClosure, "")
	pageURL := strings.Replace(browserURL, "/devtools/browser/", "/devtools/page/", 1)
	pageURL = pageURL[:strings.LastIndex(pageURL, "/")+1] + target.TargetID
	conn, _, err := websocket.Dial(ctx, pageURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadLimit(16 << 20)
	t.Cleanup(func() { conn.CloseNow() })
	return &cdpPage{conn: conn}
}

func (p *cdpPage) call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	id := p.id.Add(1)
	msg, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err := p.conn.Write(ctx, websocket.MessageText, msg); err != nil {
		return nil, err
	}
	for {
		_, data, err := p.conn.Read(ctx)
		if err != nil {
			return nil, err
		}
		var r struct {
			ID     int64           `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(data, &r); err != nil || r.ID != id {
			continue // an event or another call's answer
		}
		if r.Error != nil {
			return nil, fmt.Errorf("%s: %s", method, r.Error.Message)
		}
		return r.Result, nil
	}
}

func (p *cdpPage) eval(ctx context.Context, t *testing.T, expr string) any {
	t.Helper()
	res, err := p.call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		t.Fatal(err)
	}
	if r.ExceptionDetails != nil {
		return nil
	}
	return r.Result.Value
}

// waitTrue polls expr until it is true or ctx ends.
func (p *cdpPage) waitTrue(ctx context.Context, t *testing.T, expr string) {
	t.Helper()
	for {
		if v, _ := p.eval(ctx, t, expr).(bool); v {
			return
		}
		select {
		case <-ctx.Done():
			html := p.eval(context.Background(), t, `document.body ? document.body.innerText : ""`)
			t.Fatalf("timed out waiting for %s; page text:\n%v", expr, html)
		case <-time.After(25 * time.Millisecond):
		}
	}
}
