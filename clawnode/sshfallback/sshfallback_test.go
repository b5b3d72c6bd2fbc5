package sshfallback

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/daemon"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// recRuntime counts what the commands did to "OpenClaw"; Restart blocks while block is set.
type recRuntime struct {
	restarts atomic.Int32
	logs     atomic.Int32
	block    atomic.Bool
}

func (r *recRuntime) Restart(ctx context.Context) error {
	if r.block.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	r.restarts.Add(1)
	return nil
}
func (r *recRuntime) Logs(_ context.Context, n int) ([]string, error) {
	r.logs.Add(1)
	lines := []string{"one", "two", "three"}
	return lines[max(0, len(lines)-n):], nil
}
func (r *recRuntime) Status(context.Context) (string, error) { return daemon.StateRunning, nil }

func signer(t *testing.T) ssh.Signer {
	t.Helper()
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// server is an in-process SSH server that runs exec requests through Dispatch, like
// `gf-clawnode ssh-exec` behind a forced command.
type server struct {
	addr    string
	hostKey ssh.Signer
	conns   atomic.Int32 // TCP connections accepted
	mu      sync.Mutex
	lines   []string // exec requests received
}

func startServer(t *testing.T, client ssh.PublicKey, cmds *daemon.Allowlist) *server {
	t.Helper()
	s := &server{hostKey: signer(t)}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(client.Marshal()) {
			return nil, nil
		}
		return nil, os.ErrPermission
	}}
	cfg.AddHostKey(s.hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s.addr = ln.Addr().String()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go s.serve(nc, cfg, cmds)
		}
	}()
	return s
}

func (s *server) serve(nc net.Conn, cfg *ssh.ServerConfig, cmds *daemon.Allowlist) {
	defer nc.Close()
	_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, reqs, err := nch.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range reqs {
				if req.Type != "exec" || len(req.Payload) < 4 {
					req.Reply(false, nil)
					continue
				}
				line := string(req.Payload[4:])
				s.mu.Lock()
				s.lines = append(s.lines, line)
				s.mu.Unlock()
				req.Reply(true, nil)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				code := Dispatch(ctx, cmds, line, ch)
				cancel()
				status := make([]byte, 4)
				binary.BigEndian.PutUint32(status, uint32(code))
				ch.SendRequest("exit-status", false, status)
				return
			}
		}()
	}
}

func (s *server) execs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

func knownHostsFile(t *testing.T, addr string, key ssh.PublicKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(knownhosts.Line([]string{addr}, key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func setup(t *testing.T) (*Client, *server, *recRuntime) {
	t.Helper()
	rt := &recRuntime{}
	cmds := daemon.StandardCommands(rt, daemon.NewHealthChecker("", nil, time.Second, nil), daemon.NewSampler("", "/"))
	gw := signer(t)
	srv := startServer(t, gw.PublicKey(), cmds)
	c, err := NewClient(ClientOptions{Signer: gw, KnownHosts: knownHostsFile(t, srv.addr, srv.hostKey.PublicKey()), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c, srv, rt
}

func TestInvokeOverSSH(t *testing.T) {
	c, srv, rt := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	raw, err := c.Invoke(ctx, srv.addr, proto.CmdLogs, map[string]any{"tail": 2})
	if err != nil || string(raw) != `{"lines":["two","three"]}` {
		t.Fatalf("logs = %s, %v", raw, err)
	}
	if _, err := c.Invoke(ctx, srv.addr, proto.CmdRestart, nil); err != nil || rt.restarts.Load() != 1 {
		t.Errorf("restart = %v (restarts %d)", err, rt.restarts.Load())
	}
	// The node's own refusal travels back with its code.
	if _, err := c.Invoke(ctx, srv.addr, proto.CmdConfigGet, nil); clawops.ReasonOf(err) != proto.CodeNotConfigured {
		t.Errorf("config.get on a node without a config = %v, want NOT_CONFIGURED", err)
	}
	want := []string{"gf-clawnode exec openclaw.logs --tail 2", "gf-clawnode exec openclaw.restart", "gf-clawnode exec config.get"}
	if got := srv.execs(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("command lines = %q, want %q", got, want)
	}
}

func TestClientRefusesBeforeSending(t *testing.T) {
	c, srv, rt := setup(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		command string
		params  map[string]any
		want    clawops.ReasonCode
	}{
		{"metacharacter in a value", proto.CmdLogs, map[string]any{"tail": "5; reboot"}, clawops.ReasonShellMetachar},
		{"substitution", proto.CmdUpgrade, map[string]any{"image": "x:$(id)"}, clawops.ReasonShellMetachar},
		{"backquote", proto.CmdUpgrade, map[string]any{"image": "x:`id`"}, clawops.ReasonShellMetachar},
		{"newline", proto.CmdUpgrade, map[string]any{"image": "x:1\nreboot"}, clawops.ReasonShellMetachar},
		{"metacharacter in a name", proto.CmdLogs, map[string]any{"tail;x": 1}, clawops.ReasonShellMetachar},
		{"metacharacter in the command", "openclaw.logs;reboot", nil, clawops.ReasonShellMetachar},
		{"space in a value", proto.CmdUpgrade, map[string]any{"image": "x:1 --privileged"}, clawops.ReasonBadParams},
		{"unknown argument", proto.CmdRestart, map[string]any{"force": true}, clawops.ReasonBadParams},
		{"value off its pattern", proto.CmdLogs, map[string]any{"tail": 0}, clawops.ReasonBadParams},
		{"not allowlisted", "system.run", nil, clawops.ReasonNotAllowlisted},
		{"config.apply cannot travel", proto.CmdConfigApply, nil, clawops.ReasonNotAllowlisted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Invoke(ctx, srv.addr, tc.command, tc.params)
			if clawops.ReasonOf(err) != tc.want {
				t.Errorf("Invoke = %v, want %s", err, tc.want)
			}
		})
	}
	if n := srv.conns.Load(); n != 0 {
		t.Errorf("%d connections reached the node; refusals must happen before dialing", n)
	}
	if rt.restarts.Load()+rt.logs.Load() != 0 {
		t.Error("a refused command ran")
	}
}

func TestHostKeyPinning(t *testing.T) {
	_, srv, rt := setup(t)
	gw := signer(t)
	ctx := context.Background()
	for name, kh := range map[string]string{
		"changed host key": knownHostsFile(t, srv.addr, signer(t).PublicKey()),
		"unknown host":     knownHostsFile(t, "127.0.0.1:1", srv.hostKey.PublicKey()),
	} {
		c, err := NewClient(ClientOptions{Signer: gw, KnownHosts: kh})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Invoke(ctx, srv.addr, proto.CmdRestart, nil); clawops.ReasonOf(err) != ReasonHostKey {
			t.Errorf("%s: Invoke = %v, want %s", name, err, ReasonHostKey)
		}
	}
	if len(srv.execs()) != 0 || rt.restarts.Load() != 0 {
		t.Error("a command reached a host whose key was refused")
	}
	// A key the node does not accept.
	stranger, _ := NewClient(ClientOptions{Signer: gw, KnownHosts: knownHostsFile(t, srv.addr, srv.hostKey.PublicKey())})
	if _, err := stranger.Invoke(ctx, srv.addr, proto.CmdRestart, nil); clawops.ReasonOf(err) != clawops.ReasonUnauthenticated {
		t.Errorf("unknown client key = %v, want UNAUTHENTICATED", err)
	}
	if _, err := NewClient(ClientOptions{Signer: gw}); err == nil {
		t.Error("NewClient without known_hosts = nil error")
	}
	if _, err := NewClient(ClientOptions{KnownHosts: "/dev/null"}); err == nil {
		t.Error("NewClient without a signer = nil error")
	}
}

// TestNodeRefusesRawLines sends lines a well-behaved client never would, over a plain SSH
// session: the node side refuses them itself.
func TestNodeRefusesRawLines(t *testing.T) {
	gw := signer(t)
	rt := &recRuntime{}
	cmds := daemon.StandardCommands(rt, daemon.NewHealthChecker("", nil, time.Second, nil), daemon.NewSampler("", "/"))
	srv2 := startServer(t, gw.PublicKey(), cmds)
	cfg := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(gw)},
		HostKeyCallback: ssh.FixedHostKey(srv2.hostKey.PublicKey()), Timeout: 5 * time.Second}
	conn, err := ssh.Dial("tcp", srv2.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tc := range []struct {
		line string
		want clawops.ReasonCode
	}{
		{"gf-clawnode exec openclaw.restart; reboot", clawops.ReasonShellMetachar},
		{"gf-clawnode exec openclaw.logs --tail $(id)", clawops.ReasonShellMetachar},
		{"rm -rf /", clawops.ReasonMalformedRequest},
		{"gf-clawnode exec system.run --cmd id", clawops.ReasonNotAllowlisted},
		{"gf-clawnode exec config.apply", clawops.ReasonNotAllowlisted},
		{"gf-clawnode exec openclaw.logs --tail 99999", clawops.ReasonBadParams},
		{"gf-clawnode exec openclaw.logs --tail 5 --tail 6", clawops.ReasonBadParams},
		{"gf-clawnode exec openclaw.logs tail 5", clawops.ReasonBadParams},
		{"gf-clawnode exec openclaw.restart --force yes", clawops.ReasonBadParams},
	} {
		sess, err := conn.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out, err := sess.Output(tc.line)
		sess.Close()
		var res proto.SSHResult
		if jerr := json.Unmarshal(out, &res); jerr != nil || res.OK || res.Error.Code != string(tc.want) {
			t.Errorf("%q: output %s (exit %v), want refusal %s", tc.line, out, err, tc.want)
		}
		if _, isExit := err.(*ssh.ExitError); !isExit {
			t.Errorf("%q: exit = %v, want a non-zero exit status", tc.line, err)
		}
	}
	if rt.restarts.Load()+rt.logs.Load() != 0 {
		t.Error("a refused line ran a command")
	}
}

func TestInvokeTimeout(t *testing.T) {
	c, srv, rt := setup(t)
	rt.block.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Invoke(ctx, srv.addr, proto.CmdRestart, nil); clawops.ReasonOf(err) != clawops.ReasonNodeTimeout {
		t.Errorf("Invoke past its deadline = %v, want NODE_TIMEOUT", err)
	}
	c2, _ := NewClient(ClientOptions{Signer: signer(t), KnownHosts: knownHostsFile(t, "127.0.0.1:1", srv.hostKey.PublicKey()), Timeout: time.Second})
	if _, err := c2.Invoke(context.Background(), "127.0.0.1:1", proto.CmdRestart, nil); clawops.ReasonOf(err) != clawops.ReasonNodeOffline {
		t.Errorf("Invoke on a closed port = %v, want NODE_OFFLINE", err)
	}
}
