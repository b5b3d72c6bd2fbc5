package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
	"github.com/gatewayforge/clawops/clawnode/sshfallback"
	"github.com/gatewayforge/clawops/clawnode/standin"
)

const sshd = "/usr/sbin/sshd"

// startSSHD runs OpenSSH's sshd on 127.0.0.1 with a generated host key and the given
// authorized_keys, and returns its address and host key. As root, sshd needs
// /run/sshd; when that folder is missing it runs in a private mount namespace with a
// tmpfs on /run, so the host is not touched.
func startSSHD(t *testing.T, authorizedKeys string) (string, ssh.PublicKey) {
	t.Helper()
	if _, err := os.Stat(sshd); err != nil {
		t.Skip("OpenSSH's sshd is not installed (Debian package openssh-server; make deps installs it)")
	}
	dir := t.TempDir()
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(hk, "")
	if err != nil {
		t.Fatal(err)
	}
	hostKey := filepath.Join(dir, "host_ed25519")
	if err := os.WriteFile(hostKey, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	ak := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(ak, []byte(authorizedKeys), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "sshd_config")
	os.WriteFile(conf, []byte(strings.Join([]string{
		"HostKey " + hostKey, "ListenAddress 127.0.0.1", "PidFile none", "UsePAM no",
		"PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
		"AuthorizedKeysFile " + ak, "StrictModes no", "PermitRootLogin forced-commands-only",
		"AllowTcpForwarding no", "X11Forwarding no", "PermitTTY no", "LogLevel VERBOSE",
	}, "\n")+"\n"), 0o600)
	port := strconv.Itoa(freePort(t))
	argv := []string{sshd, "-D", "-e", "-f", conf, "-p", port}
	if _, err := os.Stat("/run/sshd"); err != nil && os.Geteuid() == 0 {
		unshare, lerr := exec.LookPath("unshare")
		if lerr != nil {
			t.Skip("sshd needs /run/sshd, and unshare is missing to provide one privately")
		}
		argv = []string{unshare, "-m", "sh", "-c",
			"mount -t tmpfs -o size=1m,mode=755 tmpfs /run && mkdir -m 755 /run/sshd && exec " + strings.Join(argv, " ")}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		t.Logf("sshd output:\n%s", out.String())
	})
	addr := "127.0.0.1:" + port
	waitFor(t, "sshd to listen", func() bool {
		select {
		case <-exited:
			t.Fatalf("sshd exited: %s", out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	pub, _ := ssh.NewPublicKey(hk.Public())
	return addr, pub
}

// TestSSHFallbackWithOpenSSH drives the real gf-clawnode ssh-exec, as the forced command
// of the gateway's key behind OpenSSH's sshd, with the gateway's SSH client.
func TestSSHFallbackWithOpenSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sshd and builds a binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	// A fake docker that records its argv and prints logs.
	fake := filepath.Join(dir, "fakebin")
	os.MkdirAll(fake, 0o755)
	argvFile := filepath.Join(dir, "docker-argv")
	os.WriteFile(filepath.Join(fake, "docker"), []byte(`#!/bin/sh
echo "$*" >> `+argvFile+`
case "$*" in *" logs "*) printf 'openclaw-1 | one\nopenclaw-1 | two\nopenclaw-1 | three\n';; esac
exit 0
`), 0o755)
	health := httptest.NewServer(standin.Handler(&syncBuffer{}))
	defer health.Close()
	work := filepath.Join(dir, "openclaw")
	os.MkdirAll(work, 0o700)
	os.WriteFile(filepath.Join(work, "openclaw.json"), []byte(`{"gateway":{"port":18789}}`), 0o600)
	state := filepath.Join(dir, "state")
	compose := filepath.Join(dir, "compose.yml")

	_, gk, _ := ed25519.GenerateKey(rand.Reader)
	gw, _ := ssh.NewSignerFromKey(gk)
	forced := "env PATH=" + fake + ":/usr/bin:/bin " + bin + " ssh-exec --state-dir " + state + " --compose-file " + compose +
		" --health-url " + health.URL + "/health --openclaw-config " + filepath.Join(work, "openclaw.json") +
		" --workspace-dir " + work + " --backup-dir " + filepath.Join(dir, "backups")
	addr, hostKey := startSSHD(t, `command="`+forced+`",restrict `+string(ssh.MarshalAuthorizedKey(gw.PublicKey())))

	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, []byte(knownhosts.Line([]string{addr}, hostKey)+"\n"), 0o600)
	u, _ := user.Current()
	c, err := sshfallback.NewClient(sshfallback.ClientOptions{User: u.Username, Signer: gw, KnownHosts: kh, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	raw, err := c.Invoke(ctx, addr, proto.CmdLogs, map[string]any{"tail": 2})
	if err != nil || string(raw) != `{"lines":["openclaw-1 | two","openclaw-1 | three"]}` {
		t.Fatalf("openclaw.logs over sshd = %s, %v", raw, err)
	}
	raw, err = c.Invoke(ctx, addr, proto.CmdHealth, nil)
	var h proto.Health
	if err != nil || json.Unmarshal(raw, &h) != nil || !h.OK {
		t.Errorf("openclaw.health = %s, %v", raw, err)
	}
	if _, err := c.Invoke(ctx, addr, proto.CmdRestart, nil); err != nil {
		t.Errorf("openclaw.restart = %v", err)
	}
	raw, err = c.Invoke(ctx, addr, proto.CmdConfigGet, nil)
	if err != nil || !strings.Contains(string(raw), `"config":{"gateway":{"port":18789}}`) {
		t.Errorf("config.get = %s, %v", raw, err)
	}
	raw, err = c.Invoke(ctx, addr, proto.CmdBackup, nil)
	var b proto.BackupResult
	if err != nil || json.Unmarshal(raw, &b) != nil || b.Size == 0 {
		t.Errorf("backup.create = %s, %v", raw, err)
	} else if _, err := os.Stat(b.Path); err != nil {
		t.Errorf("backup archive: %v", err)
	}
	if _, err := c.Invoke(ctx, addr, proto.CmdUpgrade, map[string]any{"image": "ghcr.io/openclaw/openclaw:latest"}); clawops.ReasonOf(err) != clawops.ReasonBadParams {
		t.Errorf("upgrade to latest = %v, want INVALID_PARAMS from the node", err)
	}
	docker, _ := os.ReadFile(argvFile)
	for _, want := range []string{"compose -f " + compose + " logs --tail 2 openclaw", "compose -f " + compose + " restart openclaw"} {
		if !strings.Contains(string(docker), want) {
			t.Errorf("docker argv %q lacks %q", docker, want)
		}
	}

	// Metacharacters are refused by the client before it connects...
	if _, err := c.Invoke(ctx, addr, proto.CmdLogs, map[string]any{"tail": "2;reboot"}); clawops.ReasonOf(err) != clawops.ReasonShellMetachar {
		t.Errorf("metacharacter = %v, want SHELL_METACHARACTER", err)
	}
	// ...and by gf-clawnode ssh-exec when a raw client sends them anyway.
	conn, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: u.Username, Auth: []ssh.AuthMethod{ssh.PublicKeys(gw)},
		HostKeyCallback: ssh.FixedHostKey(hostKey), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, line := range []string{"gf-clawnode exec openclaw.restart; touch " + filepath.Join(dir, "pwned"), "sh -c id", "gf-clawnode exec config.apply"} {
		s, _ := conn.NewSession()
		out, _ := s.Output(line)
		s.Close()
		var res proto.SSHResult
		if json.Unmarshal(out, &res) != nil || res.OK {
			t.Errorf("raw line %q answered %s, want a refusal", line, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Error("a shell ran the injected command")
	}
	after, _ := os.ReadFile(argvFile)
	if strings.Count(string(after), "restart") != 1 {
		t.Errorf("docker argv after refusals = %q, want only the one restart", after)
	}

	// A node whose host key is not the pinned one gets nothing.
	other := filepath.Join(dir, "known_hosts.other")
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	okPub, _ := ssh.NewPublicKey(otherPub)
	os.WriteFile(other, []byte(knownhosts.Line([]string{addr}, okPub)+"\n"), 0o600)
	c2, _ := sshfallback.NewClient(sshfallback.ClientOptions{User: u.Username, Signer: gw, KnownHosts: other})
	if _, err := c2.Invoke(ctx, addr, proto.CmdRestart, nil); clawops.ReasonOf(err) != sshfallback.ReasonHostKey {
		t.Errorf("changed host key = %v, want %s", err, sshfallback.ReasonHostKey)
	}
}
