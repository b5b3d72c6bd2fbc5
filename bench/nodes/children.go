//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is one process the driver started: the binary itself re-executed in a role. Each
// child leads its own process group (so stopping it stops anything it started) and gets
// SIGKILL if the driver's thread dies (Pdeathsig); it also exits when its stdin closes.
type child struct {
	name    string
	role    string
	pid     int
	logPath string

	inMu  sync.Mutex
	stdin io.WriteCloser

	mu      sync.Mutex
	ready   *event
	status  simStatus
	haveSt  bool
	readyCh chan struct{}
	exited  chan struct{}
	waitErr error
}

// children is every process the driver started; stopAll ends them all.
type children struct {
	mu   sync.Mutex
	all  []*child
	dir  string // working folder: children's logs and the gateway's database
	exe  string
	echo io.Writer // where children's stderr is copied besides their log (nil: log only)
}

func newChildren(dir string, verbose bool) (*children, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	c := &children{dir: dir, exe: exe}
	if verbose {
		c.echo = os.Stderr
	}
	return c, nil
}

// start runs the binary in role (with env added to the driver's environment), sends
// config as the first stdin line and begins reading the child's event lines.
func (cs *children) start(name, role string, config any, env ...string) (*child, error) {
	line, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("start %s: encode config: %w", name, err)
	}
	logPath := filepath.Join(cs.dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(cs.exe)
	cmd.Env = append(append(os.Environ(), env...), roleEnv+"="+role)
	cmd.Dir = cs.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = logf
	if cs.echo != nil {
		cmd.Stderr = io.MultiWriter(logf, prefixWriter{w: cs.echo, prefix: name + ": "})
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, role: role, pid: cmd.Process.Pid, logPath: logPath, stdin: stdin,
		readyCh: make(chan struct{}), exited: make(chan struct{})}
	cs.mu.Lock()
	cs.all = append(cs.all, c)
	cs.mu.Unlock()
	go c.read(cmd, stdout, logf)
	if _, err := stdin.Write(append(line, '\n')); err != nil {
		return c, fmt.Errorf("start %s: send config: %w", name, err)
	}
	return c, nil
}

// read consumes the child's event lines until EOF, then reaps it.
func (c *child) read(cmd *exec.Cmd, stdout io.Reader, logf *os.File) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), jsonMaxBytes)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		c.mu.Lock()
		switch e.Ev {
		case eventReady:
			if c.ready == nil {
				c.ready = &e
				close(c.readyCh)
			}
		case eventStatus:
			if e.Status != nil {
				c.status, c.haveSt = *e.Status, true
			}
		}
		c.mu.Unlock()
	}
	io.Copy(io.Discard, stdout)
	err := cmd.Wait()
	logf.Close()
	c.mu.Lock()
	c.waitErr = err
	c.mu.Unlock()
	close(c.exited)
}

// send writes one command line to the child.
func (c *child) send(cmd string) error {
	b, _ := json.Marshal(command{Cmd: cmd})
	c.inMu.Lock()
	defer c.inMu.Unlock()
	_, err := c.stdin.Write(append(b, '\n'))
	return err
}

// waitReady waits for the child's ready line.
func (c *child) waitReady(ctx context.Context, timeout time.Duration) (event, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.readyCh:
		c.mu.Lock()
		defer c.mu.Unlock()
		return *c.ready, nil
	case <-c.exited:
		return event{}, c.exitError()
	case <-t.C:
		return event{}, fmt.Errorf("%s: not ready after %s; log tail:\n%s", c.name, timeout, logTail(c.logPath, 20))
	case <-ctx.Done():
		return event{}, ctx.Err()
	}
}

// lastStatus returns the newest status line, and whether one arrived yet.
func (c *child) lastStatus() (simStatus, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status, c.haveSt
}

// alive returns nil while the child runs, else why it stopped.
func (c *child) alive() error {
	select {
	case <-c.exited:
		return c.exitError()
	default:
		return nil
	}
}

func (c *child) exitError() error {
	c.mu.Lock()
	err := c.waitErr
	c.mu.Unlock()
	if err == nil {
		err = errors.New("exited")
	}
	return fmt.Errorf("%s (pid %d) stopped: %w; log tail:\n%s", c.name, c.pid, err, logTail(c.logPath, 20))
}

// stop asks the child to exit, then signals its process group: SIGTERM, SIGKILL.
func (c *child) stop() {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.send(cmdStop)
	c.inMu.Lock()
	c.stdin.Close()
	c.inMu.Unlock()
	if c.waitExit(2 * time.Second) {
		return
	}
	_ = syscall.Kill(-c.pid, syscall.SIGTERM)
	if c.waitExit(2 * time.Second) {
		return
	}
	_ = syscall.Kill(-c.pid, syscall.SIGKILL)
	c.waitExit(5 * time.Second)
}

func (c *child) waitExit(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.exited:
		return true
	case <-t.C:
		return false
	}
}

// stopAll stops every child, concurrently (a slow one does not delay the others).
func (cs *children) stopAll() {
	cs.mu.Lock()
	all := cs.all
	cs.all = nil
	cs.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Go(c.stop)
	}
	wg.Wait()
}

// stopSome stops the given children and forgets them.
func (cs *children) stopSome(list []*child) {
	var wg sync.WaitGroup
	for _, c := range list {
		wg.Go(c.stop)
	}
	wg.Wait()
	cs.mu.Lock()
	cs.all = slicesDeleteAll(cs.all, list)
	cs.mu.Unlock()
}

func slicesDeleteAll(all, drop []*child) []*child {
	out := all[:0]
	for _, c := range all {
		keep := true
		for _, d := range drop {
			if c == d {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, c)
		}
	}
	return out
}

// logTail returns the last n lines of a child's log.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// prefixWriter prefixes each write (children write whole lines) with the child's name.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
