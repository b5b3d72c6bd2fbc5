//go:build unix

package gateway_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayforge/clawops/internal/pgtest"
	"github.com/gatewayforge/clawops/internal/syncbuf"
)

const secondAdminToken = "second-admin-token-0123456789abcdef"

// replicaProc is one `clawops serve` process of a two-replica cluster.
type replicaProc struct {
	name    string
	url     string
	dataDir string
	cmd     *exec.Cmd
	log     syncbuf.Buffer // its stdout and stderr
	exited  chan struct{}
}

func (r *replicaProc) logText() string { return r.log.String() }

// readyz returns the replica's /readyz status code and role ("" when it does not answer).
func (r *replicaProc) readyz() (int, string, int64) {
	c := http.Client{Timeout: 2 * time.Second}
	res, err := c.Get(r.url + "/readyz")
	if err != nil {
		return 0, "", 0
	}
	defer res.Body.Close()
	var body struct {
		Data struct {
			Role  string `json:"role"`
			Epoch int64  `json:"epoch"`
		} `json:"data"`
	}
	_ = json.NewDecoder(res.Body).Decode(&body)
	return res.StatusCode, body.Data.Role, body.Data.Epoch
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// childrenOf lists the processes whose parent is pid (from /proc).
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// TestTwoReplicasFailover runs two real gateway processes on one PostgreSQL schema with a
// local fleet whose nodes dial replica B:
//   - A leads, B follows: only A's /readyz is 200, and B forwards the API (provisioning,
//     approval, chat) and the nodes' WebSockets to A;
//   - A is killed with SIGKILL (no release): B takes the lease once it runs out, with a
//     higher epoch; the nodes reconnect to B, and a restart sent through B reaches a node,
//     which verifies B's signature (both replicas hold the fleet's key);
//   - B never ran the leader's loops while A led.
func TestTwoReplicasFailover(t *testing.T) {
	dsn := pgtest.DSN(t, "gateway_replicas")
	bin := binaries(t)
	root := t.TempDir()
	fakeBin := filepath.Join(root, "fakebin")
	if err := os.MkdirAll(fakeBin, 0o755); err != nil {
		t.Fatal(err)
	}
	dockerLog := filepath.Join(root, "docker.argv")
	fakeDocker(t, fakeBin, dockerLog)

	addrA, addrB := freeAddr(t), freeAddr(t)
	cfgFile := filepath.Join(root, "clawops.yaml")
	writeTestFile(t, cfgFile, fmt.Sprintf(`
public_url: ws://%s/v1/nodes/ws
database: {driver: postgres}
auth:
  tokens:
    - {identity: alice-admin, role: admin, token_env: CLAWOPS_TEST_ADMIN_TOKEN}
    - {identity: omar-operator, role: operator, token_env: CLAWOPS_TEST_OPERATOR_TOKEN}
    - {identity: bob-admin, role: admin, token_env: CLAWOPS_TEST_ADMIN2_TOKEN}
nodes: {heartbeat_interval: 1s, heartbeat_timeout: 5s, tick_interval: 1s}
fleet:
  local: {node_binary: %s, runtime: docker, compose_dir: %s}
agents: {schedules: false}
cluster: {lease_ttl: 3s}
`, addrB, filepath.Join(bin, "gf-clawnode"), filepath.Join(root, "compose")))

	start := func(name, addr string) *replicaProc {
		r := &replicaProc{name: name, url: "http://" + addr, dataDir: filepath.Join(root, name), exited: make(chan struct{})}
		if err := os.MkdirAll(r.dataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		r.cmd = exec.Command(filepath.Join(bin, "clawops"), "serve", "--config", cfgFile)
		r.cmd.Env = append(os.Environ(),
			"PATH="+fakeBin+string(os.PathListSeparator)+os.Getenv("PATH"),
			"CLAWOPS_DATABASE_DSN="+dsn,
			"CLAWOPS_LISTEN="+addr,
			"CLAWOPS_DATA_DIR="+r.dataDir,
			"CLAWOPS_CLUSTER_REPLICA_ID=replica-"+name,
			"CLAWOPS_TEST_ADMIN_TOKEN="+adminToken,
			"CLAWOPS_TEST_OPERATOR_TOKEN="+operatorToken,
			"CLAWOPS_TEST_ADMIN2_TOKEN="+secondAdminToken,
		)
		r.cmd.Stdout, r.cmd.Stderr = &r.log, &r.log
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { r.cmd.Wait(); close(r.exited) }()
		t.Cleanup(func() {
			r.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-r.exited:
			case <-time.After(15 * time.Second):
				r.cmd.Process.Kill()
				<-r.exited
			}
			t.Logf("replica %s log:\n%s", r.name, r.logText())
		})
		return r
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	a := start("a", addrA)
	waitUntil("A to lead", func() bool { code, role, _ := a.readyz(); return code == 200 && role == "leader" })
	_, _, epochA := a.readyz()
	// Replicas share the key the nodes pin.
	key, err := os.ReadFile(filepath.Join(a.dataDir, "gateway.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "b"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(root, "b", "gateway.key"), string(key))
	b := start("b", addrB)
	waitUntil("B to follow", func() bool { code, role, _ := b.readyz(); return code == 503 && role == "follower" })

	// A request B receives already forwarded is not forwarded again (no loops between
	// replicas with stale views).
	req, _ := http.NewRequest("GET", b.url+"/v1/fleet/status", nil)
	req.Header.Set("Authorization", "Bearer "+operatorToken)
	req.Header.Set("X-Clawops-Forwarded-By", "replica-z")
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("forwarded request to the follower: %v %v, want 503", res, err)
	} else {
		res.Body.Close()
	}

	// Everything below goes through B, the follower.
	viaB := &env{t: t, url: b.url}
	reply := viaB.chat(adminToken, `/tool gf_provision {"accounts":["ha1"],"tier":"standard",`+
		`"primary":{"provider":"local","region":"local-a"},"standby":{"provider":"local","region":"local-b"}}`)
	if !strings.Contains(strings.ToLower(reply), "approv") {
		t.Fatalf("provision reply %q, want an approval request", reply)
	}
	status, env := viaB.call("GET", "/v1/approvals?state=pending", adminToken, "")
	var pending []struct {
		ID string `json:"id"`
	}
	if status != 200 || json.Unmarshal(env.Data, &pending) != nil || len(pending) != 1 {
		t.Fatalf("pending approvals via B: %d %s", status, env.Data)
	}
	if status, env := viaB.call("POST", "/v1/approvals/"+pending[0].ID+"/decision", secondAdminToken, `{"decision":"approve"}`); status != 200 {
		t.Fatalf("approve via B: %d %+v", status, env.Error)
	}
	instances := func() map[string]string {
		status, env := viaB.call("GET", "/v1/fleet/status", operatorToken, "")
		out := map[string]string{}
		if status != 200 {
			return out
		}
		var views []struct{ ID, State, Node string }
		json.Unmarshal(env.Data, &views)
		for _, v := range views {
			out[v.ID] = v.State
		}
		return out
	}
	waitUntil("the pair ACTIVE through B", func() bool {
		m := instances()
		return len(m) == 2 && m["ha1-pri"] == "ACTIVE" && m["ha1-sby"] == "ACTIVE"
	})
	if strings.Contains(b.logText(), "became leader") {
		t.Fatalf("B led while A held the lease:\n%s", b.logText())
	}
	if !strings.Contains(a.logText(), "instance started") {
		t.Errorf("A's log does not show its local provider starting the instances")
	}

	// The leader dies without releasing its lease; its local instances live on.
	orphans := childrenOf(a.cmd.Process.Pid)
	t.Cleanup(func() {
		for _, pid := range orphans {
			syscall.Kill(-pid, syscall.SIGKILL) // each instance process leads its own group
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if len(orphans) == 0 {
		t.Fatal("found no instance processes under A")
	}
	killed := time.Now()
	a.cmd.Process.Kill()
	<-a.exited
	waitUntil("B to lead", func() bool { code, role, _ := b.readyz(); return code == 200 && role == "leader" })
	t.Logf("B led %s after A was killed (lease ttl 3s)", time.Since(killed).Round(100*time.Millisecond))
	if _, _, epochB := b.readyz(); epochB <= epochA {
		t.Errorf("epoch after failover %d, want > %d", epochB, epochA)
	}

	// The nodes reconnect to B; a restart through B reaches the primary's node.
	before := 0
	if raw, err := os.ReadFile(dockerLog); err == nil {
		before = strings.Count(string(raw), "restart")
	}
	waitUntil("a restart through B to succeed", func() bool {
		reply := viaB.chat(operatorToken, "/restart ha1-pri")
		return strings.Contains(reply, "Restarted")
	})
	raw, err := os.ReadFile(dockerLog)
	if err != nil || strings.Count(string(raw), "restart") <= before {
		t.Errorf("docker log shows no new restart after the failover (before %d): %s", before, raw)
	}
	waitUntil("both instances ACTIVE under B", func() bool {
		m := instances()
		return m["ha1-pri"] == "ACTIVE" && m["ha1-sby"] == "ACTIVE"
	})
}
