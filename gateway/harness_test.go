package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayforge/clawops/config"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/gateway"
)

// The binaries the end-to-end tests run, built once per test binary from this repo.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds gf-clawnode and clawops (CGO_ENABLED=0, as shipped) and returns their
// folder.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "clawops-e2e-bin-")
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{"gf-clawnode", "clawops"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, pkg), "../cmd/"+pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// fakeDocker writes a `docker` executable that appends its argv (one line per call, in
// one write, arguments separated by tabs) to log, prints a few log lines for `logs` and the image
// the local provider's compose file names for `config --images`.
func fakeDocker(t *testing.T, dir, log string) {
	t.Helper()
	script := `#!/bin/sh
# One write per call: nodes run docker concurrently, and separate writes would interleave.
(IFS="$(printf '\t')"; printf '%s\n' "$*") >> "` + log + `"
case " $* " in
  *" logs "*) echo "openclaw  | gateway ready"; echo "openclaw  | health ok";;
  *" config --images "*) echo "openclaw:local";;
esac
exit 0
`
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// offsetClock is the real clock plus an offset a test can move forward.
type offsetClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *offsetClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

const (
	adminToken    = "admin-token-0123456789abcdef"
	operatorToken = "operator-token-0123456789abcdef"
)

// env is one running gateway with a local fleet of real gf-clawnode processes.
type env struct {
	t         *testing.T
	gw        *gateway.Gateway
	url       string
	dataDir   string
	dockerLog string
	clock     *offsetClock
	bin       string
}

// startGateway starts a gateway on 127.0.0.1:0 whose local provider runs gf-clawnode with
// the docker runtime, a fake docker first on PATH, and provisions pairs.
func startGateway(t *testing.T, pairs int) *env {
	t.Helper()
	return startGatewayWith(t, gatewaySetup{pairs: pairs})
}

// gatewaySetup is what a test may add to the default end-to-end gateway.
type gatewaySetup struct {
	pairs     int
	yaml      string                      // extra config file content
	lookupEnv func(string) (string, bool) // secrets for channel settings
}

func startGatewayWith(t *testing.T, setup gatewaySetup) *env {
	t.Helper()
	pairs := setup.pairs
	bin := binaries(t)
	root := t.TempDir()
	fakeBin := filepath.Join(root, "fakebin")
	if err := os.MkdirAll(fakeBin, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dataDir: filepath.Join(root, "data"), dockerLog: filepath.Join(root, "docker.argv"),
		clock: &offsetClock{}, bin: bin}
	fakeDocker(t, fakeBin, e.dockerLog)

	cfgFile := ""
	if setup.yaml != "" {
		cfgFile = filepath.Join(root, "clawops.yaml")
		if err := os.WriteFile(cfgFile, []byte(setup.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(cfgFile, []string{
		"CLAWOPS_DATA_DIR=" + e.dataDir,
		"CLAWOPS_LISTEN=127.0.0.1:0",
		"CLAWOPS_FLEET_LOCAL_NODE_BINARY=" + filepath.Join(bin, "gf-clawnode"),
		"CLAWOPS_FLEET_LOCAL_RUNTIME=docker",
		"CLAWOPS_FLEET_LOCAL_COMPOSE_DIR=" + filepath.Join(root, "compose"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gw, err := gateway.New(ctx, gateway.Options{
		Config: cfg,
		Tokens: []config.Token{
			{Identity: "alice-admin", Role: "admin", Secret: adminToken},
			{Identity: "omar-operator", Role: "operator", Secret: operatorToken},
		},
		Listener:  ln,
		LocalEnv:  []string{"PATH=" + fakeBin + string(os.PathListSeparator) + os.Getenv("PATH")},
		LookupEnv: setup.lookupEnv,
		Clock:     e.clock,
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	e.gw, e.url = gw, gw.URL()
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway run: %v", err)
		}
	})
	for i := 1; i <= pairs; i++ {
		_, err := gw.Fleet().ProvisionPair(ctx, fleet.PairSpec{
			Account: fmt.Sprintf("acct%d", i), Tier: "standard",
			Primary: fleet.Placement{Provider: "local", Region: "local-a"},
			Standby: fleet.Placement{Provider: "local", Region: "local-b"},
		})
		if err != nil {
			t.Fatalf("provision pair %d: %v", i, err)
		}
	}
	e.waitFor(2*pairs, fleet.StateActive, 60*time.Second)
	return e
}

// waitFor polls until n instances are in state.
func (e *env) waitFor(n int, state fleet.State, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		views, err := e.gw.Fleet().Instances(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		got := 0
		for _, v := range views {
			if v.State == state {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d instances %s after %s, want %d: %+v", got, state, timeout, n, views)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// envelope is the API's answer.
type envelope struct {
	OK    bool            `json:"ok"`
	Data  json.RawMessage `json:"data"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (e *env) call(method, path, token, body string) (int, envelope) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		e.t.Fatalf("%s %s: not an envelope (%d): %s", method, path, res.StatusCode, raw)
	}
	return res.StatusCode, env
}

// chat sends text to the Commander as token's identity and returns the joined replies.
func (e *env) chat(token, text string) string {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"text": text})
	status, env := e.call("POST", "/v1/chat", token, string(body))
	if status != http.StatusOK || !env.OK {
		e.t.Fatalf("chat %q: status %d, %+v", text, status, env.Error)
	}
	var data struct{ Replies []string }
	if err := json.Unmarshal(env.Data, &data); err != nil {
		e.t.Fatal(err)
	}
	return strings.Join(data.Replies, "\n")
}

// dockerCalls returns the recorded docker invocations that act on a container, one argv
// per entry. The node's read-only state probes (`compose ... ps`) are left out.
func (e *env) dockerCalls() [][]string {
	e.t.Helper()
	raw, err := os.ReadFile(e.dockerLog)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var out [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		argv := strings.Split(line, "\t")
		if line == "" || (len(argv) > 3 && argv[3] == "ps") {
			continue
		}
		out = append(out, argv)
	}
	return out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
