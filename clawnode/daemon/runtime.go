package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
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
	imageFile   string // compose override naming the image openclaw.upgrade chose
}

// DockerOptions configure a DockerRuntime.
type DockerOptions struct {
	ComposeFile string // the compose file with the openclaw service (required)
	// ImageFile is the compose override gf-clawnode writes to pin the image that
	// openclaw.upgrade selected (usually in the node's state folder). Empty: no upgrades.
	ImageFile string
}

// NewDockerRuntime uses the compose file at composeFile. docker is looked up on PATH at
// each call.
func NewDockerRuntime(composeFile string) (*DockerRuntime, error) {
	return NewDockerRuntimeWith(DockerOptions{ComposeFile: composeFile})
}

// NewDockerRuntimeWith builds a docker runtime from opts.
func NewDockerRuntimeWith(opts DockerOptions) (*DockerRuntime, error) {
	if opts.ComposeFile == "" {
		return nil, errors.New("docker runtime: compose file is required")
	}
	return &DockerRuntime{composeFile: opts.ComposeFile, imageFile: opts.ImageFile}, nil
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
	files := []string{"compose", "-f", d.composeFile}
	if d.imageFile != "" {
		if _, err := os.Stat(d.imageFile); err == nil {
			files = append(files, "-f", d.imageFile)
		}
	}
	return d.docker(ctx, append(files, args...)...)
}

// docker runs docker with argv (no shell) and returns its standard output.
func (d *DockerRuntime) docker(ctx context.Context, argv ...string) ([]byte, error) {
	args := argv
	if len(args) > 3 && args[0] == "compose" {
		args = args[3:]
		for len(args) > 2 && args[0] == "-f" {
			args = args[2:]
		}
	}
	bin, err := exec.LookPath("docker")
	if err != nil {
		return nil, fmt.Errorf("docker %s: %w", args[0], err)
	}
	cmd := exec.CommandContext(ctx, bin, argv...)
	var stdout, stderr capped
	stdout.max, stderr.max = maxOutput, 64<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 2 * time.Second
	what := "docker " + args[0]
	if argv[0] == "compose" {
		what = "docker compose " + args[0]
	}
	if err := cmd.Run(); err != nil {
		msg := lastLine(stderr.Bytes())
		if msg == "" {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return nil, fmt.Errorf("%s: %w: %s", what, err, msg)
	}
	return stdout.Bytes(), nil
}

// ImageRuntime is a Runtime that runs OpenClaw from a container image and can switch
// images: what openclaw.upgrade needs. The docker runtime is one when it has an image file.
type ImageRuntime interface {
	Runtime
	// CurrentImage is the image OpenClaw is configured to run.
	CurrentImage(ctx context.Context) (string, error)
	// PullImage fetches image without touching the running container.
	PullImage(ctx context.Context, image string) error
	// RunImage recreates OpenClaw from image.
	RunImage(ctx context.Context, image string) error
}

// CanUpgrade reports whether the runtime was given an image file.
func (d *DockerRuntime) CanUpgrade() bool { return d.imageFile != "" }

// CurrentImage reads the image file gf-clawnode wrote, else asks compose
// (`docker compose -f <file> config --images openclaw`).
func (d *DockerRuntime) CurrentImage(ctx context.Context) (string, error) {
	if d.imageFile != "" {
		if b, err := os.ReadFile(d.imageFile); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(l), "image: "); ok {
					return strings.Trim(v, `"`), nil
				}
			}
		}
	}
	out, err := d.compose(ctx, "config", "--images", ComposeService)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.ContainsAny(l, " \t") {
			return l, nil
		}
	}
	return "", errors.New("docker compose config --images: no image for the openclaw service")
}

// PullImage runs `docker pull <image>`.
func (d *DockerRuntime) PullImage(ctx context.Context, image string) error {
	_, err := d.docker(ctx, "pull", image)
	return err
}

// RunImage writes the image file naming image and runs
// `docker compose -f <file> -f <image file> up -d --no-deps --force-recreate openclaw`.
func (d *DockerRuntime) RunImage(ctx context.Context, image string) error {
	if d.imageFile == "" {
		return errors.New("docker runtime: no image file configured")
	}
	content := "# Written by gf-clawnode (openclaw.upgrade): the image the openclaw service runs.\n" +
		"services:\n  " + ComposeService + ":\n    image: \"" + image + "\"\n"
	if err := writeAtomic(d.imageFile, []byte(content)); err != nil {
		return err
	}
	_, err := d.compose(ctx, "up", "-d", "--no-deps", "--force-recreate", ComposeService)
	return err
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
