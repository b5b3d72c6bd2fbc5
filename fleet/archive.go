package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Backup is what a node's backup.create returns: where the archive of the instance's
// workspace is on the server, its SHA-256 and its size.
type Backup = proto.BackupResult

// BackupFetcher is implemented by providers that can read a file from one of their
// servers (the local provider reads its own disk). Teardown brings a backup over the node
// plane (backup.read) and uses a provider's FetchBackup only for a node too old to have
// that command.
type BackupFetcher interface {
	FetchBackup(ctx context.Context, providerID, path string) (io.ReadCloser, error)
}

// ArchiveStore keeps workspace archives: a folder (DirStore) or an S3-compatible bucket
// (S3Store). Put must refuse content whose size or SHA-256 differs from the given ones,
// and must not leave a partial object under key.
type ArchiveStore interface {
	Put(ctx context.Context, key string, r io.Reader, size int64, sha256hex string) (location string, err error)
}

// Archive records one stored workspace archive.
type Archive struct {
	ID        uint               `gorm:"primaryKey" json:"id"`
	Instance  clawops.InstanceID `gorm:"index;size:40" json:"instance"`
	Account   string             `gorm:"index;size:40" json:"account"`
	Key       string             `gorm:"size:500" json:"key"`
	Location  string             `gorm:"size:1000" json:"location"`
	SHA256    string             `gorm:"size:64" json:"sha256"`
	Size      int64              `json:"size"`
	CreatedAt time.Time          `json:"created_at"`
}

// TableName is fleet_archives.
func (Archive) TableName() string { return "fleet_archives" }

// MaxArchiveBytes bounds one workspace archive.
const MaxArchiveBytes = 20 << 30

var (
	sha256RE      = regexp.MustCompile(`^[0-9a-f]{64}$`)
	archiveKeyRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$`)
	unsafeNameRE  = regexp.MustCompile(`[^A-Za-z0-9._-]+`)
	errBadArchive = errors.New("archive")
)

// checkBackup validates a node's backup.create answer.
func checkBackup(b Backup) error {
	switch {
	case !filepath.IsAbs(b.Path) || filepath.Clean(b.Path) != b.Path || strings.ContainsAny(b.Path, "\x00\n\r"):
		return fmt.Errorf("%w: backup path %.200q is not a clean absolute path", errBadArchive, b.Path)
	case !sha256RE.MatchString(b.SHA256):
		return fmt.Errorf("%w: backup sha256 %.80q is not 64 lowercase hex digits", errBadArchive, b.SHA256)
	case b.Size < 0 || b.Size > MaxArchiveBytes:
		return fmt.Errorf("%w: backup size %d is outside 0..%d", errBadArchive, b.Size, int64(MaxArchiveBytes))
	}
	return nil
}

// archiveKey names an archive: <account>/<instance>-<UTC time>-<backup file name>.
func archiveKey(account string, id clawops.InstanceID, at time.Time, path string) string {
	base := unsafeNameRE.ReplaceAllString(filepath.Base(path), "_")
	base = strings.TrimLeft(base, "._-")
	if base == "" {
		base = "workspace"
	}
	return fmt.Sprintf("%s/%s-%s-%s", account, id, at.UTC().Format("20060102T150405Z"), truncate(base, 100))
}

// DirStore keeps archives in a folder on this machine.
type DirStore struct {
	Root string
}

var _ ArchiveStore = DirStore{}

// Put writes r to Root/key through a temporary file, checking size and SHA-256 before the
// file takes its name.
func (d DirStore) Put(ctx context.Context, key string, r io.Reader, size int64, sha256hex string) (string, error) {
	if d.Root == "" {
		return "", errors.New("dir archive: root folder is empty")
	}
	if !archiveKeyRE.MatchString(key) || strings.Contains(key, "..") {
		return "", fmt.Errorf("dir archive: key %.200q is not a safe relative path", key)
	}
	dst := filepath.Join(d.Root, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", fmt.Errorf("dir archive: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".part-*")
	if err != nil {
		return "", fmt.Errorf("dir archive: %w", err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(ctxReader{ctx, r}, size+1))
	if err != nil {
		return "", fmt.Errorf("dir archive: copy: %w", err)
	}
	if n != size {
		return "", fmt.Errorf("dir archive: got %d bytes, want %d", n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha256hex {
		return "", fmt.Errorf("dir archive: sha256 %s, want %s", got, sha256hex)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("dir archive: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("dir archive: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("dir archive: %w", err)
	}
	done = true
	abs, err := filepath.Abs(dst)
	if err != nil {
		abs = dst
	}
	return "file://" + filepath.ToSlash(abs), nil
}

// nodeBackupReader reads a backup file from a node through the node plane: one backup.read
// per chunk, in order, each answer checked against what backup.create said. A node that
// sends more or fewer bytes than asked, another size, an end of file in the wrong place or
// no progress is an error, so a wrong byte never reaches the archive store unnoticed (the
// store checks the size and SHA-256 of the whole as well).
type nodeBackupReader struct {
	ctx    context.Context // the teardown's: io.Reader has no other way to carry it
	s      *Service
	id     clawops.InstanceID
	backup Backup
	chunk  int

	off int64  // bytes received so far
	buf []byte // received, not yet read
	eof bool
}

func (s *Service) newNodeBackupReader(ctx context.Context, id clawops.InstanceID, b Backup) *nodeBackupReader {
	chunk := s.opts.ArchiveChunk
	if chunk <= 0 || chunk > proto.MaxBackupChunk {
		chunk = proto.MaxBackupChunk
	}
	return &nodeBackupReader{ctx: ctx, s: s, id: id, backup: b, chunk: chunk}
}

func (r *nodeBackupReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		if err := r.fetch(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// fetch asks the node for the next chunk. The last chunk is asked for exactly, so every
// answer must hold exactly the bytes asked, and eof exactly when they reach the end. An
// empty file is one read of length 1 answered with no bytes and eof.
func (r *nodeBackupReader) fetch() error {
	const op = "read backup from node"
	want := min(int64(r.chunk), r.backup.Size-r.off)
	params := proto.BackupReadParams{Path: r.backup.Path, Offset: r.off, Length: int(max(want, 1))}
	raw, err := r.s.invoke(r.ctx, op, r.id, CmdBackupRead, params)
	if err != nil {
		return fmt.Errorf("%s at offset %d: %w", CmdBackupRead, r.off, err)
	}
	var res proto.BackupReadResult
	if err := proto.UnmarshalStrict(raw, &res); err != nil {
		return fmt.Errorf("%w: decode %s result at offset %d: %v", errBadArchive, CmdBackupRead, r.off, err)
	}
	n := int64(len(res.Data))
	end := r.off+n == r.backup.Size
	switch {
	case res.Size != r.backup.Size:
		return fmt.Errorf("%w: at offset %d the node says %s is %d bytes; backup.create said %d",
			errBadArchive, r.off, r.backup.Path, res.Size, r.backup.Size)
	case n > want:
		return fmt.Errorf("%w: %d bytes at offset %d, more than the %d expected", errBadArchive, n, r.off, want)
	case n < want:
		return fmt.Errorf("%w: %d bytes at offset %d, fewer than the %d expected before the end of the file", errBadArchive, n, r.off, want)
	case res.EOF != end:
		return fmt.Errorf("%w: eof %v at byte %d of %d", errBadArchive, res.EOF, r.off+n, r.backup.Size)
	}
	r.off += n
	r.buf, r.eof = res.Data, res.EOF
	return nil
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
