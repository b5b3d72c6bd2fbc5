package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/store"
)

// TestEndToEnd drives the walking skeleton the way an operator does: chat to the Commander
// over the HTTP API, the gate deciding, signed commands reaching real gf-clawnode processes
// that run a (fake) docker, approvals decided by an admin, and the audit chain verified by
// the clawops binary.
func TestEndToEnd(t *testing.T) {
	e := startGateway(t, 2)

	t.Run("status lists every instance ACTIVE", func(t *testing.T) {
		reply := e.chat(operatorToken, "/status")
		if !strings.Contains(reply, "4 instances: 4 ACTIVE") {
			t.Fatalf("got %q, want 4 ACTIVE", reply)
		}
		status, env := e.call("GET", "/v1/fleet/status", operatorToken, "")
		if status != http.StatusOK {
			t.Fatalf("fleet status: got %d", status)
		}
		var views []struct {
			ID    string `json:"id"`
			State string `json:"state"`
			Node  string `json:"node"`
		}
		if err := json.Unmarshal(env.Data, &views); err != nil {
			t.Fatal(err)
		}
		if len(views) != 4 {
			t.Fatalf("got %d instances, want 4", len(views))
		}
		for _, v := range views {
			if v.State != "ACTIVE" || v.Node == "" {
				t.Errorf("%s: state %s node %q, want ACTIVE with a node", v.ID, v.State, v.Node)
			}
		}
	})

	t.Run("restart runs the exact argv on the right node only, audited", func(t *testing.T) {
		before := len(e.dockerCalls())
		afterSeq := lastSeq(t, e)
		reply := e.chat(operatorToken, "/restart acct1-pri")
		if !strings.Contains(reply, "Restarted") {
			t.Fatalf("reply %q, want a restart confirmation", reply)
		}
		calls := e.dockerCalls()[before:]
		want := []string{"compose", "-f", composeFile(e, "acct1-pri"), "restart", "openclaw"}
		if len(calls) != 1 || !slices.Equal(calls[0], want) {
			t.Fatalf("docker calls: got %q, want exactly [%q]", calls, want)
		}
		events := auditEvents(t, e, afterSeq, "gf_restart")
		if !slices.Equal(events, []string{"requested", "allowed", "completed"}) {
			t.Fatalf("audit events for gf_restart: got %v, want requested, allowed, completed", events)
		}
	})

	t.Run("logs reach the node's docker with the tail", func(t *testing.T) {
		before := len(e.dockerCalls())
		reply := e.chat(operatorToken, "/logs acct2-sby 7")
		if !strings.Contains(reply, "gateway ready") {
			t.Fatalf("reply %q, want the container's log lines", reply)
		}
		calls := e.dockerCalls()[before:]
		want := []string{"compose", "-f", composeFile(e, "acct2-sby"), "logs", "--tail", "7", "openclaw"}
		if len(calls) != 1 || !slices.Equal(calls[0], want) {
			t.Fatalf("docker calls: got %q, want [%q]", calls, want)
		}
	})

	var teardownID string
	t.Run("teardown by an operator waits for approval and executes nothing", func(t *testing.T) {
		before := len(e.dockerCalls())
		reply := e.chat(operatorToken, "/teardown acct2-sby")
		if !strings.Contains(reply, "Approval apr_") {
			t.Fatalf("reply %q, want an approval request", reply)
		}
		teardownID = pendingApproval(t, e, "acct2-sby")
		if got := len(e.dockerCalls()); got != before {
			t.Fatalf("docker ran %d times while approval pending", got-before)
		}
		assertState(t, e, "acct2-sby", "ACTIVE")
	})

	t.Run("the operator cannot approve", func(t *testing.T) {
		status, env := e.call("POST", "/v1/approvals/"+teardownID+"/decision", operatorToken, `{"decision":"approve"}`)
		if status != http.StatusForbidden || env.Error == nil || env.Error.Code != "NOT_APPROVER" {
			t.Fatalf("got %d %+v, want 403 NOT_APPROVER", status, env.Error)
		}
		assertState(t, e, "acct2-sby", "ACTIVE")
	})

	t.Run("an admin's approval executes once; a second changes nothing", func(t *testing.T) {
		status, env := e.call("POST", "/v1/approvals/"+teardownID+"/decision", adminToken, `{"decision":"approve","reason":"user left"}`)
		if status != http.StatusOK || !env.OK {
			t.Fatalf("approve: got %d %+v", status, env.Error)
		}
		assertState(t, e, "acct2-sby", "TERMINATED")
		// With no fleet.archive configured, the workspace was kept under <data_dir>/archives.
		if files, _ := filepath.Glob(filepath.Join(e.dataDir, "archives", "acct2", "acct2-sby-*.tar.gz")); len(files) != 1 {
			t.Errorf("archives of acct2-sby: got %v, want one under <data_dir>/archives", files)
		}
		status, env = e.call("POST", "/v1/approvals/"+teardownID+"/decision", adminToken, `{"decision":"approve"}`)
		if status != http.StatusConflict || env.Error.Code != "APPROVAL_ALREADY_DECIDED" {
			t.Fatalf("second approve: got %d %+v, want 409 APPROVAL_ALREADY_DECIDED", status, env.Error)
		}
		if n := countEvents(t, e, "gf_teardown", "completed"); n != 1 {
			t.Fatalf("teardown completed %d times, want 1", n)
		}
	})

	t.Run("teardown of an ACTIVE primary without an ACTIVE standby is denied", func(t *testing.T) {
		reply := e.chat(operatorToken, "/teardown acct2-pri")
		if !strings.Contains(reply, "STANDBY_NOT_ACTIVE") {
			t.Fatalf("reply %q, want STANDBY_NOT_ACTIVE", reply)
		}
		assertState(t, e, "acct2-pri", "ACTIVE")
	})

	t.Run("a denied approval executes nothing", func(t *testing.T) {
		e.chat(operatorToken, "/teardown acct1-sby")
		id := pendingApproval(t, e, "acct1-sby")
		status, env := e.call("POST", "/v1/approvals/"+id+"/decision", adminToken, `{"decision":"deny","reason":"not today"}`)
		if status != http.StatusOK {
			t.Fatalf("deny: got %d %+v", status, env.Error)
		}
		status, env = e.call("POST", "/v1/approvals/"+id+"/decision", adminToken, `{"decision":"approve"}`)
		if status != http.StatusConflict {
			t.Fatalf("approve after deny: got %d %+v, want 409", status, env.Error)
		}
		assertState(t, e, "acct1-sby", "ACTIVE")
	})

	t.Run("bad input gets a clear error and executes nothing", func(t *testing.T) {
		before := len(e.dockerCalls())
		cases := []struct {
			name, method, path, token, body string
			status                          int
			code                            string
		}{
			{"malformed JSON", "POST", "/v1/chat", operatorToken, `{"text":`, 400, "MALFORMED_REQUEST"},
			{"no token", "POST", "/v1/chat", "", `{"text":"/status"}`, 401, "UNAUTHENTICATED"},
			{"wrong token", "GET", "/v1/fleet/status", "not-a-real-token-at-all", "", 401, "UNAUTHENTICATED"},
			{"unknown approval", "POST", "/v1/approvals/apr_00000000000000000000000000000000/decision", adminToken, `{"decision":"approve"}`, 404, "APPROVAL_NOT_FOUND"},
			{"bad decision", "POST", "/v1/approvals/" + teardownID + "/decision", adminToken, `{"decision":"maybe"}`, 400, ""},
		}
		for _, c := range cases {
			status, env := e.call(c.method, c.path, c.token, c.body)
			if status != c.status || env.OK || (c.code != "" && env.Error.Code != c.code) {
				t.Errorf("%s: got %d %+v, want %d %s", c.name, status, env.Error, c.status, c.code)
			}
		}
		for text, want := range map[string]string{
			"/restart nosuch-instance":         "UNKNOWN_INSTANCE",
			"/frobnicate acct1-pri":            "/help",
			"/restart acct1-pri;reboot":        "BAD_ARGUMENTS",
			"/restart $(touch /tmp/pwned)":     "",
			"/logs acct1-pri 10|cat /etc/pass": "",
		} {
			reply := e.chat(operatorToken, text)
			if want != "" && !strings.Contains(reply, want) {
				t.Errorf("%q: reply %q, want it to mention %s", text, reply, want)
			}
		}
		if got := len(e.dockerCalls()); got != before {
			t.Fatalf("bad input ran docker %d times", got-before)
		}
	})

	t.Run("an expired approval executes nothing", func(t *testing.T) {
		e.chat(operatorToken, "/teardown acct1-sby")
		id := pendingApproval(t, e, "acct1-sby")
		e.clock.Advance(31 * time.Minute)
		status, env := e.call("POST", "/v1/approvals/"+id+"/decision", adminToken, `{"decision":"approve"}`)
		if status != http.StatusConflict || env.Error.Code != "APPROVAL_EXPIRED" {
			t.Fatalf("got %d %+v, want 409 APPROVAL_EXPIRED", status, env.Error)
		}
		assertState(t, e, "acct1-sby", "ACTIVE")
	})

	t.Run("audit chain verifies over the API and by the CLI", func(t *testing.T) {
		status, env := e.call("GET", "/v1/audit/verify", adminToken, "")
		if status != http.StatusOK || !strings.Contains(string(env.Data), `"ok":true`) {
			t.Fatalf("verify: got %d %s", status, env.Data)
		}
	})
}

// TestAuditVerifyCLI shows `clawops audit verify` failing, naming the entry, once one row of
// the audit table is changed behind the gateway's back.
func TestAuditVerifyCLI(t *testing.T) {
	e := startGateway(t, 1)
	e.chat(operatorToken, "/restart acct1-pri")
	e.chat(operatorToken, "/status")

	verify := func() (string, error) {
		cmd := exec.Command(filepath.Join(e.bin, "clawops"), "audit", "verify", "--data", e.dataDir)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := verify(); err != nil || !strings.Contains(out, "audit chain OK") {
		t.Fatalf("untouched chain: %v %s", err, out)
	}

	// An exported bundle verifies offline against the gateway's key, and not after a byte
	// of it changes.
	clawops := func(args ...string) (string, int) {
		cmd := exec.Command(filepath.Join(e.bin, "clawops"), args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errorsAs(err, &exit) {
			return string(out), exit.ExitCode()
		}
		if err != nil {
			t.Fatalf("clawops %v: %v", args, err)
		}
		return string(out), 0
	}
	pub, code := clawops("audit", "pubkey", "--data", e.dataDir)
	if code != 0 || len(strings.TrimSpace(pub)) != 64 {
		t.Fatalf("audit pubkey: exit %d %q", code, pub)
	}
	pub = strings.TrimSpace(pub)
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, code := clawops("audit", "export", "--data", e.dataDir, "--out", bundle); code != 0 {
		t.Fatalf("audit export: exit %d %s", code, out)
	}
	if out, code := clawops("audit", "verify-bundle", "--key", pub, bundle); code != 0 || !strings.Contains(out, "bundle OK") {
		t.Fatalf("verify-bundle: exit %d %s", code, out)
	}
	entries := filepath.Join(bundle, "entries.jsonl")
	raw, err := os.ReadFile(entries)
	if err != nil {
		t.Fatalf("bundle entries: %v", err)
	}
	raw[len(raw)/2] ^= 0x01
	if err := os.WriteFile(entries, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := clawops("audit", "verify-bundle", "--key", pub, bundle); code != 1 || !strings.Contains(out, "INVALID") {
		t.Fatalf("verify-bundle after a flipped byte: exit %d %s, want 1 INVALID", code, out)
	}
	db, err := store.Open(context.Background(), store.Options{DataDir: e.dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(db)
	if err := db.Exec("UPDATE governance_audit SET actor = 'mallory' WHERE seq = 2").Error; err != nil {
		t.Fatal(err)
	}
	out, err := verify()
	var exit *exec.ExitError
	if !errorsAs(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("tampered chain: got err %v, want exit 1; output %s", err, out)
	}
	if !strings.Contains(out, "entry 2") {
		t.Fatalf("output %q, want it to name entry 2", out)
	}
}

func composeFile(e *env, instance string) string {
	return filepath.Join(filepath.Dir(e.dockerLog), "compose", instance, "compose.yml")
}

func assertState(t *testing.T, e *env, id, want string) {
	t.Helper()
	v, err := e.gw.Fleet().Instance(context.Background(), instanceID(id))
	if err != nil {
		t.Fatal(err)
	}
	if string(v.State) != want {
		t.Fatalf("%s: state %s, want %s", id, v.State, want)
	}
}

func pendingApproval(t *testing.T, e *env, instance string) string {
	t.Helper()
	status, env := e.call("GET", "/v1/approvals?state=pending", adminToken, "")
	if status != http.StatusOK {
		t.Fatalf("list approvals: %d %+v", status, env.Error)
	}
	var list []governance.Approval
	if err := json.Unmarshal(env.Data, &list); err != nil {
		t.Fatal(err)
	}
	for _, a := range list {
		if strings.Contains(string(a.Plan.Args), `"`+instance+`"`) {
			return a.ID
		}
	}
	t.Fatalf("no pending approval for %s in %d pending", instance, len(list))
	return ""
}

func auditEntries(t *testing.T, e *env, after int64) []governance.AuditEntry {
	t.Helper()
	status, env := e.call("GET", "/v1/audit?limit=1000&after="+itoa(after), adminToken, "")
	if status != http.StatusOK {
		t.Fatalf("audit: %d %+v", status, env.Error)
	}
	var entries []governance.AuditEntry
	if err := json.Unmarshal(env.Data, &entries); err != nil {
		t.Fatal(err)
	}
	return entries
}

func lastSeq(t *testing.T, e *env) int64 {
	entries := auditEntries(t, e, 0)
	if len(entries) == 0 {
		return 0
	}
	return entries[len(entries)-1].Seq
}

func auditEvents(t *testing.T, e *env, after int64, tool string) []string {
	var out []string
	for _, a := range auditEntries(t, e, after) {
		if a.Tool == tool {
			out = append(out, a.Event)
		}
	}
	return out
}

func countEvents(t *testing.T, e *env, tool, event string) int {
	n := 0
	for _, ev := range auditEvents(t, e, 0, tool) {
		if ev == event {
			n++
		}
	}
	return n
}
