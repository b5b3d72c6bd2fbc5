// Package sshfallback runs a node's allowlisted commands over SSH when gf-clawnode is
// down. The gateway side (Client) authenticates with a key only, pins every node's host
// key (known_hosts), and sends a command line built from the shared table in
// clawnode/proto (proto.SSHCommandLine): only allowlisted commands, only the arguments
// each names, each value matching its pattern, no shell metacharacter anywhere. The node
// side (Dispatch, behind `gf-clawnode ssh-exec` as the forced command of the gateway's key
// in authorized_keys) checks the line again and runs the command from the same allowlist
// as the daemon, with the same params checks.
package sshfallback

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// ReasonHostKey is the reason code of a node whose SSH host key is unknown or changed.
const ReasonHostKey clawops.ReasonCode = "SSH_HOST_KEY_REFUSED"

// ClientOptions configure a Client.
type ClientOptions struct {
	User   string     // remote user (default "root")
	Signer ssh.Signer // the gateway's SSH key; the only authentication offered
	// KnownHosts is the known_hosts file pinning each node's host key. A host that is not
	// in it, or presents another key, is refused before anything is sent.
	KnownHosts string
	// HostKeyCallback replaces KnownHosts (both may not be empty).
	HostKeyCallback ssh.HostKeyCallback
	Timeout         time.Duration // connect and handshake budget (default 10s)
	MaxOutput       int64         // bytes of result read (default 8 MiB)
	Logger          *slog.Logger
}

// Client runs allowlisted commands on nodes over SSH.
type Client struct {
	cfg       ssh.ClientConfig
	timeout   time.Duration
	maxOutput int64
	log       *slog.Logger
}

// NewClient checks opts and loads the known_hosts file.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.Signer == nil {
		return nil, errors.New("ssh fallback: a signer (the gateway's SSH key) is required")
	}
	cb := opts.HostKeyCallback
	if cb == nil {
		if opts.KnownHosts == "" {
			return nil, errors.New("ssh fallback: a known_hosts file is required: host keys are pinned")
		}
		var err error
		if cb, err = knownhosts.New(opts.KnownHosts); err != nil {
			return nil, fmt.Errorf("ssh fallback: known_hosts: %w", err)
		}
	}
	if opts.User == "" {
		opts.User = "root"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.MaxOutput <= 0 {
		opts.MaxOutput = 8 << 20
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		cfg: ssh.ClientConfig{User: opts.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(opts.Signer)},
			HostKeyCallback: cb, Timeout: opts.Timeout},
		timeout: opts.Timeout, maxOutput: opts.MaxOutput, log: log.With("component", "clawnode.ssh"),
	}, nil
}

// Invoke runs command with params (a flat object of the command's SSH arguments, e.g.
// {"tail": 200}) on the node at addr (host:port) and returns its JSON result. Errors are
// *clawops.Error: a refused command line (nothing is sent), SSH_HOST_KEY_REFUSED,
// NODE_OFFLINE when the node cannot be reached, NODE_TIMEOUT, or the node's own code.
func (c *Client) Invoke(ctx context.Context, addr, command string, params map[string]any) (json.RawMessage, error) {
	op := "ssh " + command + " on " + addr
	line, err := proto.SSHCommandLine(command, params)
	if err != nil {
		return nil, rewrap(op, err)
	}
	conn, err := c.dial(ctx, addr)
	if err != nil {
		return nil, c.dialError(op, ctx, err)
	}
	defer conn.Close()
	// Closing the connection is how a cancelled context stops the remote command.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	sess, err := conn.NewSession()
	if err != nil {
		return nil, clawops.E(op, clawops.KindTransient, clawops.ReasonNodeOffline, fmt.Errorf("open session: %w", err))
	}
	defer sess.Close()
	var stdout bytes.Buffer
	var stderr limited
	stderr.max = 4 << 10
	out, err := sess.StdoutPipe()
	if err != nil {
		return nil, clawops.E(op, clawops.KindTransient, clawops.ReasonNodeOffline, err)
	}
	sess.Stderr = &stderr
	c.log.Info("running a command over ssh", "addr", addr, "command", command)
	if err := sess.Start(line); err != nil {
		return nil, clawops.E(op, clawops.KindTransient, clawops.ReasonNodeOffline, fmt.Errorf("start: %w", err))
	}
	_, copyErr := io.Copy(&stdout, io.LimitReader(out, c.maxOutput))
	waitErr := sess.Wait()
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, clawops.E(op, clawops.KindTransient, clawops.ReasonNodeTimeout, "no result before the deadline")
		}
		return nil, clawops.E(op, clawops.KindTransient, ctx.Err())
	}
	if copyErr != nil {
		return nil, clawops.E(op, clawops.KindTransient, clawops.ReasonNodeOffline, copyErr)
	}
	var res proto.SSHResult
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil || (!res.OK && res.Error == nil) {
		msg := fmt.Sprintf("node printed no result (%v)", waitErr)
		if s := bytes.TrimSpace(stderr.Bytes()); len(s) > 0 {
			msg += ": " + string(s)
		}
		return nil, clawops.E(op, clawops.KindOther, clawops.ReasonExecutionFailed, errors.New(msg))
	}
	if res.OK {
		if !json.Valid(res.Result) {
			return nil, clawops.E(op, clawops.KindOther, clawops.ReasonExecutionFailed, "node returned invalid JSON")
		}
		return res.Result, nil
	}
	return nil, errorOf(op, res.Error)
}

func (c *Client) dial(ctx context.Context, addr string) (*ssh.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := dctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, &c.cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), nil
}

func (c *Client) dialError(op string, ctx context.Context, err error) error {
	var ke *knownhosts.KeyError
	if errors.As(err, &ke) {
		why := "host key is not in known_hosts"
		if len(ke.Want) > 0 {
			why = "host key differs from the one pinned in known_hosts"
		}
		c.log.Warn("ssh host key refused", "op", op, "why", why)
		return clawops.E(op, clawops.KindDenied, ReasonHostKey, errors.New(why))
	}
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return clawops.E(op, clawops.KindTransient, clawops.ReasonNodeTimeout, err)
	}
	if strings.Contains(err.Error(), "unable to authenticate") {
		return clawops.E(op, clawops.KindUnauthorized, clawops.ReasonUnauthenticated, errors.New("the node does not accept the gateway's SSH key"))
	}
	return clawops.E(op, clawops.KindTransient, clawops.ReasonNodeOffline, err)
}

// errorOf maps a node's error to a *clawops.Error as the hub does for invoke results.
func errorOf(op string, e *proto.InvokeError) error {
	code := clawops.ReasonCode(e.Code)
	switch {
	case proto.IsRefusal(code):
		return clawops.E(op, clawops.KindDenied, code, e.Message)
	case code == clawops.ReasonNodeTimeout:
		return clawops.E(op, clawops.KindTransient, code, e.Message)
	case proto.IsExecutionCode(code):
		return clawops.E(op, clawops.KindOther, code, e.Message)
	}
	return clawops.E(op, clawops.KindOther, clawops.ReasonExecutionFailed, e.Message)
}

// rewrap puts a *clawops.Error under op without repeating its code.
func rewrap(op string, err error) error {
	var ce *clawops.Error
	if errors.As(err, &ce) {
		return clawops.E(op, ce.Kind, ce.Reason, ce.Err)
	}
	return clawops.E(op, err)
}

// limited keeps at most max bytes.
type limited struct {
	bytes.Buffer
	max int
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.max - l.Len(); room > 0 {
		l.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
