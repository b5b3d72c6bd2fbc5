package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/keyfile"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// ConfigFile owns the instance's OpenClaw config file (openclaw.json) for config.get and
// config.apply. A change is all or nothing: the candidate is validated, written atomically
// (temporary file, fsync, rename), OpenClaw is restarted and must pass its health check;
// otherwise the previous bytes are put back, OpenClaw is restarted again and the command
// fails with CONFIG_ROLLED_BACK. The version label the gateway gave is recorded in the
// node's state folder together with the SHA-256 of the bytes it labels, so a hand edit of
// the file shows as version "".
type ConfigFile struct {
	path     string
	record   string   // version record: {"version","sha256"}
	validate []string // optional validator argv; the candidate's path is in OPENCLAW_CONFIG_PATH
	log      *slog.Logger

	mu sync.Mutex // one change at a time
}

// ConfigFileOptions configure a ConfigFile.
type ConfigFileOptions struct {
	Path     string   // the OpenClaw config file
	StateDir string   // the node's state folder, for the version record
	Validate []string // optional validator command, e.g. ["openclaw","config","validate"]
	Logger   *slog.Logger
}

// NewConfigFile manages the file at opts.Path.
func NewConfigFile(opts ConfigFileOptions) (*ConfigFile, error) {
	if opts.Path == "" || !filepath.IsAbs(opts.Path) {
		return nil, fmt.Errorf("config file: path %q must be absolute", opts.Path)
	}
	if opts.StateDir == "" {
		return nil, errors.New("config file: state dir is required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ConfigFile{path: opts.Path, record: filepath.Join(opts.StateDir, "config-version.json"),
		validate: slices.Clone(opts.Validate), log: log}, nil
}

type versionRecord struct {
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// read returns the file's bytes (nil when it does not exist) and its recorded version.
func (c *ConfigFile) read() ([]byte, string, error) {
	data, err := os.ReadFile(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read config: %w", err)
	}
	var rec versionRecord
	if b, err := os.ReadFile(c.record); err == nil && json.Unmarshal(b, &rec) == nil && rec.SHA256 == sum(data) {
		return data, rec.Version, nil
	}
	return data, "", nil
}

// Get returns the config in force and its version.
func (c *ConfigFile) Get(context.Context) (proto.ConfigGetResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	data, version, err := c.read()
	if err != nil {
		return proto.ConfigGetResult{}, err
	}
	if data == nil {
		return proto.ConfigGetResult{Version: "", Config: json.RawMessage("{}")}, nil
	}
	if !json.Valid(data) {
		return proto.ConfigGetResult{}, fmt.Errorf("config %s is not plain JSON (JSON5 or a hand edit?): config.get reads JSON only", c.path)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return proto.ConfigGetResult{}, fmt.Errorf("config %s: %w", c.path, err)
	}
	return proto.ConfigGetResult{Version: version, Config: compact.Bytes()}, nil
}

// Healther restarts OpenClaw and waits for it to be healthy: what config.apply needs
// after a change.
type Healther interface {
	// RestartHealthy restarts OpenClaw and returns nil once it is healthy, or why not.
	RestartHealthy(ctx context.Context) error
	// Healthy checks OpenClaw's health once and returns nil when it is healthy.
	Healthy(ctx context.Context) error
}

// Apply installs p.Config as version p.Version (see ConfigFile).
func (c *ConfigFile) Apply(ctx context.Context, p proto.ConfigApplyParams, h Healther) (proto.ConfigApplyResult, error) {
	const op = "config.apply"
	c.mu.Lock()
	defer c.mu.Unlock()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, p.Config, "", "  "); err != nil {
		return proto.ConfigApplyResult{}, clawops.E(op, clawops.KindInvalid, proto.CodeConfigInvalid, err)
	}
	pretty.WriteByte('\n')
	next := pretty.Bytes()
	prev, prevVersion, err := c.read()
	if err != nil {
		return proto.ConfigApplyResult{}, err
	}
	if prev != nil && bytes.Equal(prev, next) && prevVersion == p.Version {
		// Already in force (a retried push): report health, change nothing.
		return proto.ConfigApplyResult{Version: p.Version, Healthy: h.Healthy(ctx) == nil}, nil
	}
	if err := c.runValidator(ctx, next); err != nil {
		return proto.ConfigApplyResult{}, clawops.E(op, clawops.KindInvalid, proto.CodeConfigInvalid, err)
	}
	if err := c.install(next, p.Version); err != nil {
		return proto.ConfigApplyResult{}, err
	}
	c.log.Info("config written; restarting OpenClaw", "version", p.Version, "previous", prevVersion)
	cause := h.RestartHealthy(ctx)
	if cause == nil {
		return proto.ConfigApplyResult{Version: p.Version, Healthy: true}, nil
	}
	c.log.Warn("new config unhealthy; rolling back", "version", p.Version, "err", cause)
	// The rollback gets its own time: the caller's deadline may be what just ran out.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if err := c.restore(prev, prevVersion); err != nil {
		return proto.ConfigApplyResult{}, clawops.E(op, proto.CodeRollbackFailed,
			fmt.Errorf("version %s failed (%v) and the previous config could not be restored: %w", p.Version, cause, err))
	}
	if err := h.RestartHealthy(rctx); err != nil {
		return proto.ConfigApplyResult{}, clawops.E(op, proto.CodeRollbackFailed,
			fmt.Errorf("version %s failed (%v); previous config restored but OpenClaw is still unhealthy: %w", p.Version, cause, err))
	}
	return proto.ConfigApplyResult{}, clawops.E(op, proto.CodeConfigRolledBack,
		fmt.Errorf("version %s failed: %v; previous config %q restored and healthy", p.Version, cause, prevVersion))
}

// runValidator writes the candidate beside the live file and runs the validator on it.
func (c *ConfigFile) runValidator(ctx context.Context, data []byte) error {
	if len(c.validate) == 0 {
		return nil
	}
	cand := filepath.Join(filepath.Dir(c.path), "."+filepath.Base(c.path)+".candidate")
	if err := keyfile.WriteSecret(cand, data); err != nil {
		return fmt.Errorf("write candidate: %w", err)
	}
	defer os.Remove(cand)
	vctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(vctx, c.validate[0], c.validate[1:]...)
	cmd.Env = append(os.Environ(), "OPENCLAW_CONFIG_PATH="+cand)
	var out capped
	out.max = 16 << 10
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("validator %s: %w: %s", c.validate[0], err, lastLine(out.Bytes()))
	}
	return nil
}

// install writes data as the live file (keeping the file's owner and mode) and records
// its version.
func (c *ConfigFile) install(data []byte, version string) error {
	if err := writeAtomic(c.path, data); err != nil {
		return err
	}
	rec, _ := json.Marshal(versionRecord{Version: version, SHA256: sum(data)})
	if err := keyfile.WriteSecret(c.record, rec); err != nil {
		return fmt.Errorf("record config version: %w", err)
	}
	return nil
}

// restore puts prev back (removing the file when there was none) with its version.
func (c *ConfigFile) restore(prev []byte, version string) error {
	if prev == nil {
		if err := os.Remove(c.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		os.Remove(c.record)
		return nil
	}
	if version == "" {
		if err := writeAtomic(c.path, prev); err != nil {
			return err
		}
		os.Remove(c.record)
		return nil
	}
	return c.install(prev, version)
}

// writeAtomic replaces path with data: a temporary file in the same folder, fsync,
// rename, fsync of the folder. An existing file's mode and owner are kept; a new file is
// 0600 and owned like its folder (OpenClaw's container user owns its state folder).
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	mode := fs.FileMode(0o600)
	uid, gid := -1, -1
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(sys.Uid), int(sys.Gid)
		}
	} else if st, err := os.Stat(dir); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(sys.Uid), int(sys.Gid)
		}
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	fail := func(err error) error {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fail(err)
	}
	if uid >= 0 && os.Geteuid() == 0 {
		if err := tmp.Chown(uid, gid); err != nil {
			return fail(err)
		}
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
