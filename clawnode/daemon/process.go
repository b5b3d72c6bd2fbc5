package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"
)

// ProcessOptions configure a ProcessRuntime.
type ProcessOptions struct {
	Dir      string        // working directory of the child
	Env      []string      // extra environment (KEY=VALUE) on top of the daemon's
	Grace    time.Duration // SIGTERM → SIGKILL delay (default 5s)
	MaxLines int           // output lines kept for Logs (default 5000)
	Echo     io.Writer     // optional copy of the child's output (e.g. the daemon's stderr)
	Logger   *slog.Logger
}

// ProcessRuntime supervises one child process standing in for the OpenClaw container: it
// starts it in its own process group, stops it with SIGTERM and then SIGKILL after a grace
// period, restarts it by really stopping and starting it, and keeps the last lines of its
// output for Logs. Run owns its lifetime.
type ProcessRuntime struct {
	argv []string
	opts ProcessOptions
	log  *slog.Logger
	out  *lineRing

	mu  sync.Mutex // serializes start, stop and restart
	cur *child
}

type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been waited for
}

// NewProcessRuntime supervises argv (argv[0] is looked up on PATH when it has no slash).
func NewProcessRuntime(argv []string, opts ProcessOptions) (*ProcessRuntime, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("process runtime: command is empty")
	}
	if opts.Grace <= 0 {
		opts.Grace = 5 * time.Second
	}
	if opts.MaxLines <= 0 {
		opts.MaxLines = 5000
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ProcessRuntime{argv: slices.Clone(argv), opts: opts, log: log.With("component", "process-runtime"),
		out: newLineRing(opts.MaxLines)}, nil
}

// Run starts the child and keeps it until ctx ends, then stops it.
func (p *ProcessRuntime) Run(ctx context.Context) error {
	if err := p.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.Grace+5*time.Second)
	defer cancel()
	return p.Stop(sctx)
}

// Start starts the child unless it is already running.
func (p *ProcessRuntime) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.startLocked()
}

func (p *ProcessRuntime) startLocked() error {
	if p.cur != nil && !p.cur.exited() {
		return nil
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Dir = p.opts.Dir
	if len(p.opts.Env) > 0 {
		cmd.Env = append(cmd.Environ(), p.opts.Env...)
	}
	var w io.Writer = p.out
	if p.opts.Echo != nil {
		w = io.MultiWriter(p.out, p.opts.Echo)
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = childSysProcAttr()
	cmd.WaitDelay = p.opts.Grace
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.argv[0], err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.log.Info("child exited", "pid", cmd.Process.Pid, "err", err)
		close(c.done)
	}()
	p.cur = c
	p.log.Info("child started", "pid", cmd.Process.Pid)
	return nil
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Stop stops the child's whole process group: SIGTERM, then SIGKILL after the grace
// period or when ctx ends. Stopping a child that is not running is not an error.
func (p *ProcessRuntime) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopLocked(ctx)
}

func (p *ProcessRuntime) stopLocked(ctx context.Context) error {
	c := p.cur
	if c == nil || c.exited() {
		return nil
	}
	pid := c.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	t := time.NewTimer(p.opts.Grace)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	p.log.Warn("child ignored SIGTERM; killing", "pid", pid)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-c.done
	return nil
}

// Restart stops the child and starts a new one.
func (p *ProcessRuntime) Restart(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.stopLocked(ctx); err != nil {
		return err
	}
	return p.startLocked()
}

// Logs returns the last tail lines the child (or its predecessors) wrote.
func (p *ProcessRuntime) Logs(_ context.Context, tail int) ([]string, error) {
	return p.out.last(tail), nil
}

// Status reports running, exited (it ran and ended) or stopped (never started).
func (p *ProcessRuntime) Status(context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.cur == nil:
		return StateStopped, nil
	case p.cur.exited():
		return StateExited, nil
	}
	return StateRunning, nil
}

// PID is the running child's process id, or 0.
func (p *ProcessRuntime) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || p.cur.exited() {
		return 0
	}
	return p.cur.cmd.Process.Pid
}

// lineRing keeps the last n lines written to it. Over-long lines are cut at 8 KiB.
type lineRing struct {
	mu      sync.Mutex
	lines   []string
	next    int
	full    bool
	partial []byte
}

const maxLineBytes = 8 << 10

func newLineRing(n int) *lineRing { return &lineRing{lines: make([]string, n)} }

func (r *lineRing) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range p {
		if b == '\n' {
			r.push(string(r.partial))
			r.partial = r.partial[:0]
			continue
		}
		if len(r.partial) < maxLineBytes {
			r.partial = append(r.partial, b)
		}
	}
	return len(p), nil
}

func (r *lineRing) push(s string) {
	r.lines[r.next] = s
	r.next++
	if r.next == len(r.lines) {
		r.next, r.full = 0, true
	}
}

// last returns up to n lines, oldest first, including an unfinished last line.
func (r *lineRing) last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []string
	if r.full {
		all = append(all, r.lines[r.next:]...)
	}
	all = append(all, r.lines[:r.next]...)
	if len(r.partial) > 0 {
		all = append(all, string(r.partial))
	}
	if n < len(all) {
		all = all[len(all)-n:]
	}
	if all == nil {
		all = []string{}
	}
	return all
}
