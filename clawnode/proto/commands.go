package proto

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/gatewayforge/clawops"
)

// Names of gf-clawnode's commands. Each is in the node's local allowlist and declared in
// connect.commands; docs/commands.md is the table of their params and results.
const (
	CmdHealth      = "openclaw.health"
	CmdRestart     = "openclaw.restart"
	CmdLogs        = "openclaw.logs"
	CmdUpgrade     = "openclaw.upgrade"
	CmdConfigGet   = "config.get"
	CmdConfigApply = "config.apply"
	CmdMetrics     = "vps.metrics"
	CmdInfo        = "vps.info"
	CmdBackup      = "backup.create"
	CmdBackupRead  = "backup.read"
)

// Execution error codes: a command ran (it was not refused) and ended in a known way that a
// caller acts on. The hub keeps these codes as the error's reason instead of folding them
// into EXECUTION_FAILED.
const (
	// CodeConfigRolledBack: the new config failed validation after the write, the restart
	// or the health check; the previous config is back in place and healthy.
	CodeConfigRolledBack clawops.ReasonCode = "CONFIG_ROLLED_BACK"
	// CodeUpgradeRolledBack: the new image failed to start or to pass the health check; the
	// previous image runs again and is healthy.
	CodeUpgradeRolledBack clawops.ReasonCode = "UPGRADE_ROLLED_BACK"
	// CodeRollbackFailed: the change failed and restoring the previous state failed too.
	// The instance needs a human.
	CodeRollbackFailed clawops.ReasonCode = "ROLLBACK_FAILED"
	// CodeConfigInvalid: the config was refused by validation before anything was written.
	CodeConfigInvalid clawops.ReasonCode = "CONFIG_INVALID"
	// CodeNotConfigured: the node has no setting the command needs (for example no
	// OpenClaw config path for config.apply). Nothing ran.
	CodeNotConfigured clawops.ReasonCode = "NOT_CONFIGURED"
	// CodeNotImplemented: the node's runtime cannot do this (the process runtime has no
	// images to upgrade). Nothing ran.
	CodeNotImplemented = clawops.ReasonNotImplemented
)

// IsExecutionCode reports whether code is one of the execution codes above, which the hub
// passes through unchanged.
func IsExecutionCode(code clawops.ReasonCode) bool {
	switch code {
	case CodeConfigRolledBack, CodeUpgradeRolledBack, CodeRollbackFailed, CodeConfigInvalid,
		CodeNotConfigured, CodeNotImplemented:
		return true
	}
	return false
}

// LogsParams are the params of openclaw.logs.
type LogsParams struct {
	Tail *int `json:"tail,omitempty"` // lines, 1..5000, default 200
}

// Validate checks the tail range.
func (p LogsParams) Validate() error {
	if p.Tail != nil && (*p.Tail < 1 || *p.Tail > 5000) {
		return fmt.Errorf("tail %d: must be between 1 and 5000", *p.Tail)
	}
	return nil
}

// LogsResult is the result of openclaw.logs.
type LogsResult struct {
	Lines []string `json:"lines"`
}

// RestartResult is the result of openclaw.restart.
type RestartResult struct {
	Restarted bool   `json:"restarted"`
	Container string `json:"container"`
}

// UpgradeParams are the params of openclaw.upgrade: the image to run, pinned by tag or
// digest. A missing tag and the tag "latest" are refused.
type UpgradeParams struct {
	Image string `json:"image"`
}

// imageRef matches [registry[:port]/]path[:tag][@sha256:digest] with lower-case path
// components, as the Docker reference grammar allows them.
var imageRef = regexp.MustCompile(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]{1,5})?/)?` +
	`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` +
	`(?::([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@sha256:[a-f0-9]{64})?$`)

// ValidateImage checks that image is a well-formed reference pinned by a tag other than
// "latest" or by a sha256 digest.
func ValidateImage(image string) error {
	if len(image) > 255 {
		return errors.New("image reference longer than 255 characters")
	}
	m := imageRef.FindStringSubmatch(image)
	if m == nil {
		return fmt.Errorf("image %q is not a valid reference (want repo/name:tag or repo/name@sha256:<64 hex>)", image)
	}
	tag, digest := m[1], m[2]
	switch {
	case digest != "":
		return nil
	case tag == "":
		return fmt.Errorf("image %q has no tag: pin a version tag or a digest", image)
	case strings.EqualFold(tag, "latest"):
		return fmt.Errorf("image %q: the tag latest is not a pinned version", image)
	}
	return nil
}

// Validate checks the image reference.
func (p UpgradeParams) Validate() error { return ValidateImage(p.Image) }

// UpgradeResult is the result of openclaw.upgrade.
type UpgradeResult struct {
	Image         string `json:"image"`
	PreviousImage string `json:"previousImage"`
	Healthy       bool   `json:"healthy"`
	RolledBack    bool   `json:"rolledBack"`
}

// MaxConfigBytes caps the OpenClaw config a node accepts in config.apply.
const MaxConfigBytes = 1 << 20

var configVersion = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)

// ValidConfigVersion reports whether v is a well-formed config version label: 1-64 of
// [A-Za-z0-9._:-], starting with a letter or digit.
func ValidConfigVersion(v string) bool { return configVersion.MatchString(v) }

// ConfigGetResult is the result of config.get: the config in force and its version, ""
// when the file was not written by config.apply (or was edited since).
type ConfigGetResult struct {
	Version string          `json:"version"`
	Config  json.RawMessage `json:"config"`
}

// ConfigApplyParams are the params of config.apply: the whole OpenClaw config as a JSON
// object and the version label it is to carry.
type ConfigApplyParams struct {
	Config  json.RawMessage `json:"config"`
	Version string          `json:"version"`
}

// Validate checks the shape: a JSON object within MaxConfigBytes and a version label.
func (p ConfigApplyParams) Validate() error {
	if !ValidConfigVersion(p.Version) {
		return fmt.Errorf("version %q: use 1-64 of [A-Za-z0-9._:-]", p.Version)
	}
	if len(p.Config) == 0 {
		return errors.New("config is required")
	}
	if len(p.Config) > MaxConfigBytes {
		return fmt.Errorf("config is %d bytes, more than %d", len(p.Config), MaxConfigBytes)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(p.Config, &obj); err != nil || obj == nil {
		return errors.New("config must be a JSON object")
	}
	return nil
}

// ConfigApplyResult is the result of config.apply.
type ConfigApplyResult struct {
	Version    string `json:"version"`
	Healthy    bool   `json:"healthy"`
	RolledBack bool   `json:"rolledBack"`
}

// BackupResult is the result of backup.create: where the archive is on the node, its
// SHA-256 (hex) and its size in bytes.
type BackupResult struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// MaxBackupChunk is the most bytes one backup.read returns. Its base64 (4/3 of it) inside
// the JSON-in-JSON of a node.invoke.result frame stays well under MaxFrameBytes.
const MaxBackupChunk = 4 << 20

// BackupReadParams are the params of backup.read: a byte range of an archive that
// backup.create wrote on the node.
type BackupReadParams struct {
	Path   string `json:"path"`
	Offset int64  `json:"offset"`
	Length int    `json:"length"`
}

// Validate checks the shape: a clean absolute path, a non-negative offset and a length from
// 1 to MaxBackupChunk. Which files may be read is the node's decision.
func (p BackupReadParams) Validate() error {
	switch {
	case p.Path == "" || !path.IsAbs(p.Path) || path.Clean(p.Path) != p.Path || strings.ContainsAny(p.Path, "\x00\n\r"):
		return fmt.Errorf("path %.200q: must be a clean absolute path", p.Path)
	case p.Offset < 0:
		return fmt.Errorf("offset %d: must not be negative", p.Offset)
	case p.Length < 1 || p.Length > MaxBackupChunk:
		return fmt.Errorf("length %d: must be between 1 and %d", p.Length, MaxBackupChunk)
	}
	return nil
}

// BackupReadResult is the result of backup.read: the bytes from offset (at most length;
// fewer only at the end of the file), the size of the whole file, and whether offset plus
// the bytes returned reach its end. An offset at or past the end returns no bytes and
// eof true.
type BackupReadResult struct {
	Data []byte `json:"data"` // base64 in JSON
	Size int64  `json:"size"`
	EOF  bool   `json:"eof"`
}

// VPSInfo is the result of vps.info: what the machine is, as the node sees it.
type VPSInfo struct {
	Hostname       string   `json:"hostname"`
	OS             string   `json:"os"`
	Distro         string   `json:"distro,omitempty"`
	Kernel         string   `json:"kernel,omitempty"`
	Arch           string   `json:"arch"`
	CPUs           int      `json:"cpus"`
	MemTotalBytes  uint64   `json:"memTotalBytes"`
	DiskTotalBytes uint64   `json:"diskTotalBytes"`
	BootTimeMs     int64    `json:"bootTimeMs,omitempty"`
	UptimeSec      int64    `json:"uptimeSec,omitempty"`
	NodeVersion    string   `json:"nodeVersion"`
	Runtime        string   `json:"runtime"`
	Image          string   `json:"image,omitempty"`
	TailnetAddrs   []string `json:"tailnetAddrs"`
}
