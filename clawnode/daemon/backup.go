package daemon

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Archiver writes backup.create's archives: a gzip-compressed tar of the OpenClaw
// workspace (state) folder, 0600, named openclaw-<UTC time>.tar.gz in its own folder, of
// which the newest Keep are kept. Regular files, folders and symbolic links (as links,
// never followed) are archived; sockets, devices and FIFOs are skipped.
type Archiver struct {
	src   string
	dst   string
	keep  int
	clock clawops.Clock

	mu sync.Mutex // one archive at a time
}

// NewArchiver archives src into dst (both absolute), keeping the newest keep archives
// (default 5).
func NewArchiver(src, dst string, keep int, clock clawops.Clock) (*Archiver, error) {
	if !filepath.IsAbs(src) || !filepath.IsAbs(dst) {
		return nil, fmt.Errorf("backup: workspace %q and backup folder %q must be absolute", src, dst)
	}
	src, dst = filepath.Clean(src), filepath.Clean(dst)
	if dst == src {
		return nil, errors.New("backup: the backup folder cannot be the workspace itself")
	}
	if keep <= 0 {
		keep = 5
	}
	return &Archiver{src: src, dst: dst, keep: keep, clock: clawops.ClockOrSystem(clock)}, nil
}

// Create writes one archive and returns where it is, its SHA-256 and size.
func (a *Archiver) Create(ctx context.Context) (proto.BackupResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if st, err := os.Stat(a.src); err != nil || !st.IsDir() {
		return proto.BackupResult{}, fmt.Errorf("backup: workspace %s is not a folder: %v", a.src, err)
	}
	if err := os.MkdirAll(a.dst, 0o700); err != nil {
		return proto.BackupResult{}, fmt.Errorf("backup: %w", err)
	}
	name := "openclaw-" + a.clock.Now().UTC().Format("20060102T150405.000Z") + ".tar.gz"
	final := filepath.Join(a.dst, name)
	f, err := os.CreateTemp(a.dst, "."+name+".*")
	if err != nil {
		return proto.BackupResult{}, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	if err := a.write(ctx, cw); err != nil {
		f.Close()
		return proto.BackupResult{}, fmt.Errorf("backup: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return proto.BackupResult{}, fmt.Errorf("backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return proto.BackupResult{}, fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return proto.BackupResult{}, fmt.Errorf("backup: %w", err)
	}
	a.prune()
	return proto.BackupResult{Path: final, SHA256: hex.EncodeToString(h.Sum(nil)), Size: cw.n}, nil
}

func (a *Archiver) write(ctx context.Context, w io.Writer) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	err := filepath.WalkDir(a.src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if path == a.dst || strings.HasPrefix(path, a.dst+string(filepath.Separator)) {
			return filepath.SkipDir // the backups themselves, when kept inside the workspace
		}
		rel, err := filepath.Rel(a.src, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		switch {
		case info.Mode().IsRegular(), info.IsDir():
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		default:
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		// A file that grows while archived is cut at its size in the header.
		_, err = io.Copy(tw, io.LimitReader(src, hdr.Size))
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// archiveName matches the names Create gives its archives, and nothing else.
var archiveName = regexp.MustCompile(`^openclaw-[0-9]{8}T[0-9]{6}\.[0-9]{3}Z\.tar\.gz$`)

// errNotAnArchive refuses a backup.read of anything but an archive Create wrote.
var errNotAnArchive = errors.New("not an archive of this node's backup folder")

// Read returns up to p.Length bytes of an archive from p.Offset (backup.read). Only an
// archive Create wrote can be read: a regular file directly inside the backup folder whose
// name is openclaw-<UTC time>.tar.gz, opened without following a symbolic link. Anything
// else is refused before a byte is read. An offset at or past the end returns no bytes and
// EOF true, as io.ReaderAt does.
func (a *Archiver) Read(ctx context.Context, p proto.BackupReadParams) (proto.BackupReadResult, error) {
	if err := p.Validate(); err != nil {
		return proto.BackupReadResult{}, fmt.Errorf("backup read: %w", err)
	}
	if filepath.Dir(p.Path) != a.dst || !archiveName.MatchString(filepath.Base(p.Path)) {
		return proto.BackupReadResult{}, fmt.Errorf("backup read %s: %w %s (want %s/openclaw-<time>.tar.gz)",
			p.Path, errNotAnArchive, a.dst, a.dst)
	}
	if err := ctx.Err(); err != nil {
		return proto.BackupReadResult{}, err
	}
	// O_NOFOLLOW: a symbolic link planted under an archive's name is refused, not followed.
	// O_NONBLOCK: a FIFO planted there cannot block the open; fstat refuses it below.
	f, err := os.OpenFile(p.Path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return proto.BackupReadResult{}, fmt.Errorf("backup read %s: %w (a symbolic link)", p.Path, errNotAnArchive)
		}
		return proto.BackupReadResult{}, fmt.Errorf("backup read: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return proto.BackupReadResult{}, fmt.Errorf("backup read: %w", err)
	}
	if !st.Mode().IsRegular() {
		return proto.BackupReadResult{}, fmt.Errorf("backup read %s: %w (a %s, not a regular file)", p.Path, errNotAnArchive, fileKind(st.Mode()))
	}
	size := st.Size()
	if p.Offset >= size {
		return proto.BackupReadResult{Data: []byte{}, Size: size, EOF: true}, nil
	}
	buf := make([]byte, min(int64(p.Length), size-p.Offset))
	n, err := f.ReadAt(buf, p.Offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return proto.BackupReadResult{}, fmt.Errorf("backup read: %w", err)
	}
	return proto.BackupReadResult{Data: buf[:n], Size: size, EOF: p.Offset+int64(n) >= size}, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "folder"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// prune removes all but the newest keep archives.
func (a *Archiver) prune() {
	entries, err := os.ReadDir(a.dst)
	if err != nil {
		return
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, "openclaw-") && strings.HasSuffix(n, ".tar.gz") {
			names = append(names, n)
		}
	}
	slices.Sort(names) // the UTC time in the name sorts oldest first
	for len(names) > a.keep {
		os.Remove(filepath.Join(a.dst, names[0]))
		names = names[1:]
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
