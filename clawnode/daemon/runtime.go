package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Runtime runs the instance's OpenClaw container (or its stand-in).
type Runtime interface {
	// Restart stops and starts OpenClaw and returns when it has been started again.
	Restart(ctx context.Context) error
	// Logs returns up to tail of the most recent output lines, oldest first.
	Logs(ctx context.Context, tail int) ([]string, error)
	// Status is the runtime's word for the container's state: running, exited, stopped, unknown.
	Status(ctx context.Context) (string, error)
}

// Container states reported by Status.
const (
	StateRunning = "running"
	StateExited  = "exited"
	StateStopped = "stopped"
	StateUnknown = "unknown"
)

// ComposeService is the compose service that runs OpenClaw.
const ComposeService = "openclaw"

// maxOutput caps what is kept of a docker command's output.
const maxOutput = 8 << 20

// DockerRuntime drives OpenClaw through docker compose, always with a fixed argv and no
// shell: the compose file comes from the node's configuration, never from the wire, and the
// only variable from a command is the integer tail.
type DockerRuntime struct {
	composeFile string
}

// NewDockerRuntime uses the compose file at composeFile. docker is looked up on PATH at
// each call.
func NewDockerRuntime(composeFile string) (*DockerRuntime, error) {
	if composeFile == "" {
		return nil, errors.New("docker runtime: compose file is required")
	}
	return &DockerRuntime{composeFile: composeFile}, nil
}

// Restart runs `docker compose -f <file> restart openclaw`.
func (d *DockerRuntime) Restart(ctx context.Context) error {
	_, err := d.compose(ctx, "restart", ComposeService)
	return err
}

// Logs runs `docker compose -f <file> logs --tail <N> openclaw`.
func (d *DockerRuntime) Logs(ctx context.Context, tail int) ([]string, error) {
	if tail < 1 {
		return nil, fmt.Errorf("docker logs: tail %d must be positive", tail)
	}
	out, err := d.compose(ctx, "logs", "--tail", strconv.Itoa(tail), ComposeService)
	if err != nil {
		return nil, err
	}
	return splitLines(out, tail), nil
}

// Status runs `docker compose -f <file> ps -q openclaw`: a container id means running.
func (d *DockerRuntime) Status(ctx context.Context) (string, error) {
	out, err := d.compose(ctx, "ps", "-q", ComposeService)
	if err != nil {
		return StateUnknown, err
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return StateExited, nil
	}
	return StateRunning, nil
}

func (d *DockerRuntime) compose(ctx context.Context, args ...string) ([]byte, error) {
	bin, err := exec.LookPath("docker")
	if err != nil {
		return nil, fmt.Errorf("docker compose %s: %w", args[0], err)
	}
	argv := append([]string{"compose", "-f", d.composeFile}, args...)
	cmd := exec.CommandContext(ctx, bin, argv...)
	var stdout, stderr capped
	stdout.max, stderr.max = maxOutput, 64<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil {
		msg := lastLine(stderr.Bytes())
		if msg == "" {
			return nil, fmt.Errorf("docker compose %s: %w", args[0], err)
		}
		return nil, fmt.Errorf("docker compose %s: %w: %s", args[0], err, msg)
	}
	return stdout.Bytes(), nil
}

// capped is a buffer that keeps at most max bytes and drops the rest.
type capped struct {
	bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// splitLines splits output into lines and keeps the last n.
func splitLines(out []byte, n int) []string {
	s := strings.TrimRight(string(out), "\n")
	if s == "" {
		return []string{}
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return clipString(s, 300)
}
