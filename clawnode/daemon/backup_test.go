package daemon

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// backupRig is a node allowlist with an Archiver over a workspace holding incompressible
// data, so its archive spans several chunks.
type backupRig struct {
	ws, dst string
	cmds    *Allowlist
	backup  proto.BackupResult
}

func newBackupRig(t *testing.T) *backupRig {
	t.Helper()
	ws := t.TempDir()
	noise := make([]byte, 300<<10)
	rand.Read(noise)
	if err := os.WriteFile(filepath.Join(ws, "MEMORY.md"), noise, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "backups")
	a, err := NewArchiver(ws, dst, 5, &stepClock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	r := &backupRig{ws: ws, dst: dst,
		cmds: NewCommands(CommandDeps{Runtime: &fakeRuntime{}, Health: NewHealthChecker("", nil, 0, nil),
			Metrics: NewSampler("", ""), Backups: a})}
	raw, err := r.run(t, CmdBackup, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &r.backup); err != nil || r.backup.Size < 300<<10 {
		t.Fatalf("backup.create: %s, %v", raw, err)
	}
	return r
}

// run executes command with params JSON as an invoke would, and returns the result JSON.
func (r *backupRig) run(t *testing.T, command, params string) (json.RawMessage, error) {
	t.Helper()
	cmd, ok := r.cmds.Lookup(command)
	if !ok {
		t.Fatalf("%s is not in the allowlist", command)
	}
	out, err := cmd.Execute(context.Background(), []byte(params))
	if err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

func (r *backupRig) read(t *testing.T, path string, off int64, n int) (proto.BackupReadResult, error) {
	t.Helper()
	p, _ := json.Marshal(proto.BackupReadParams{Path: path, Offset: off, Length: n})
	raw, err := r.run(t, CmdBackupRead, string(p))
	if err != nil {
		return proto.BackupReadResult{}, err
	}
	var res proto.BackupReadResult
	if err := proto.UnmarshalStrict(raw, &res); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return res, nil
}

func TestBackupReadChunks(t *testing.T) {
	r := newBackupRig(t)
	const chunk = 100_000
	h := sha256.New()
	var off int64
	reads := 0
	for {
		res, err := r.read(t, r.backup.Path, off, chunk)
		if err != nil {
			t.Fatal(err)
		}
		reads++
		if res.Size != r.backup.Size {
			t.Fatalf("size: got %d, want %d", res.Size, r.backup.Size)
		}
		if want := min(chunk, r.backup.Size-off); int64(len(res.Data)) != want {
			t.Fatalf("read at %d: got %d bytes, want %d", off, len(res.Data), want)
		}
		h.Write(res.Data)
		off += int64(len(res.Data))
		if res.EOF != (off == r.backup.Size) {
			t.Fatalf("eof at %d of %d: got %v", off, r.backup.Size, res.EOF)
		}
		if res.EOF {
			break
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != r.backup.SHA256 {
		t.Errorf("sha256 of the chunks: got %s, want %s", got, r.backup.SHA256)
	}
	if want := int((r.backup.Size + chunk - 1) / chunk); reads != want {
		t.Errorf("reads: got %d, want %d", reads, want)
	}
	// At or past the end: no bytes, eof, no error.
	for _, at := range []int64{r.backup.Size, r.backup.Size + 1, 1 << 40} {
		res, err := r.read(t, r.backup.Path, at, chunk)
		if err != nil || len(res.Data) != 0 || !res.EOF || res.Size != r.backup.Size {
			t.Errorf("read at %d: got %d bytes eof %v size %d, %v; want none, eof, no error", at, len(res.Data), res.EOF, res.Size, err)
		}
	}
	// The largest chunk reads the whole (smaller) archive at once.
	if res, err := r.read(t, r.backup.Path, 0, proto.MaxBackupChunk); err != nil || int64(len(res.Data)) != r.backup.Size || !res.EOF {
		t.Errorf("one read of MaxBackupChunk: got %d bytes eof %v, %v", len(res.Data), res.EOF, err)
	}
}

func TestBackupReadRefusals(t *testing.T) {
	r := newBackupRig(t)
	name := filepath.Base(r.backup.Path)
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("not yours"), 0o600); err != nil {
		t.Fatal(err)
	}
	at := func(n string) string { return filepath.Join(r.dst, n) }
	mustDo := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Things planted in the backup folder under an archive's name, and beside it.
	link := "openclaw-20200101T000000.000Z.tar.gz"
	mustDo(os.Symlink(outside, at(link)))
	linkToArchive := "openclaw-20200101T000001.000Z.tar.gz"
	mustDo(os.Symlink(r.backup.Path, at(linkToArchive)))
	dir := "openclaw-20200101T000002.000Z.tar.gz"
	mustDo(os.Mkdir(at(dir), 0o700))
	fifo := "openclaw-20200101T000003.000Z.tar.gz"
	mustDo(syscall.Mkfifo(at(fifo), 0o600))
	mustDo(os.WriteFile(at("notes.txt"), []byte("x"), 0o600))
	mustDo(os.WriteFile(at("."+name+".123"), []byte("x"), 0o600)) // Create's temporary name
	mustDo(os.WriteFile(at("openclaw-latest.tar.gz"), []byte("x"), 0o600))
	mustDo(os.MkdirAll(at("sub"), 0o700))
	mustDo(os.WriteFile(filepath.Join(at("sub"), name), []byte("x"), 0o600))

	for _, tc := range []struct {
		name   string
		params string
		reason clawops.ReasonCode // "" means refused by the node after decoding
		msg    string
	}{
		{"outside the folder", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, outside), "", "not an archive"},
		{"system file", `{"path":"/etc/passwd","offset":0,"length":10}`, "", "not an archive"},
		{"the workspace", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, filepath.Join(r.ws, "MEMORY.md")), "", "not an archive"},
		{"dot dot", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, r.dst+"/../backups/"+name), clawops.ReasonBadParams, "clean absolute path"},
		{"relative", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, "backups/"+name), clawops.ReasonBadParams, "clean absolute path"},
		{"empty path", `{"path":"","offset":0,"length":10}`, clawops.ReasonBadParams, "clean absolute path"},
		{"trailing slash", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, r.backup.Path+"/"), clawops.ReasonBadParams, "clean absolute path"},
		{"symlink out", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, at(link)), "", "symbolic link"},
		{"symlink to an archive", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, at(linkToArchive)), "", "symbolic link"},
		{"folder", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, at(dir)), "", "folder"},
		{"fifo", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, at(fifo)), "", "named pipe"},
		{"other file in the folder", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, at("notes.txt")), "", "not an archive"},
		{"temporary file", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, at("."+name+".123")), "", "not an archive"},
		{"near name", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, at("openclaw-latest.tar.gz")), "", "not an archive"},
		{"subfolder", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, filepath.Join(at("sub"), name)), "", "not an archive"},
		{"the folder itself", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, r.dst), "", "not an archive"},
		{"missing archive", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, at("openclaw-20200101T000009.000Z.tar.gz")), "", "no such file"},
		{"length 0", fmt.Sprintf(`{"path":%q,"offset":0,"length":0}`, r.backup.Path), clawops.ReasonBadParams, "length 0"},
		{"length missing", fmt.Sprintf(`{"path":%q,"offset":0}`, r.backup.Path), clawops.ReasonBadParams, "length 0"},
		{"length too big", fmt.Sprintf(`{"path":%q,"offset":0,"length":%d}`, r.backup.Path, proto.MaxBackupChunk+1), clawops.ReasonBadParams, "between 1 and"},
		{"negative offset", fmt.Sprintf(`{"path":%q,"offset":-1,"length":10}`, r.backup.Path), clawops.ReasonBadParams, "negative"},
		{"fractional offset", fmt.Sprintf(`{"path":%q,"offset":1.5,"length":10}`, r.backup.Path), clawops.ReasonBadParams, ""},
		{"string length", fmt.Sprintf(`{"path":%q,"offset":0,"length":"10"}`, r.backup.Path), clawops.ReasonBadParams, ""},
		{"unknown field", fmt.Sprintf(`{"path":%q,"offset":0,"length":10,"follow":true}`, r.backup.Path), clawops.ReasonBadParams, ""},
		{"glob", fmt.Sprintf(`{"path":%q,"offset":0,"length":10}`, at("openclaw-*.tar.gz")), clawops.ReasonShellMetachar, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := r.run(t, CmdBackupRead, tc.params)
			if err == nil {
				t.Fatalf("got %.100s, want a refusal", raw)
			}
			if got := clawops.ReasonOf(err); got != tc.reason {
				t.Errorf("reason: got %q (%v), want %q", got, err, tc.reason)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error: got %v, want it to say %q", err, tc.msg)
			}
		})
	}
	// Nothing planted was touched, and the real archive still reads.
	if b, _ := os.ReadFile(outside); string(b) != "not yours" {
		t.Errorf("outside file: got %q", b)
	}
	if _, err := r.read(t, r.backup.Path, 0, 10); err != nil {
		t.Errorf("real archive after the refusals: %v", err)
	}
}

func TestBackupReadNeedsConfigAndSignature(t *testing.T) {
	a := StandardCommands(&fakeRuntime{}, NewHealthChecker("", nil, 0, nil), NewSampler("", ""))
	cmd, ok := a.Lookup(CmdBackupRead)
	if !ok {
		t.Fatal("backup.read is not in the allowlist")
	}
	if cmd.IsReadOnly() {
		t.Error("backup.read is read-only: it would run unsigned, and an archive holds the user's workspace")
	}
	_, err := cmd.Execute(context.Background(), []byte(`{"path":"/var/lib/gf/backups/openclaw-20200101T000000.000Z.tar.gz","offset":0,"length":1}`))
	if got := clawops.ReasonOf(err); got != proto.CodeNotConfigured {
		t.Errorf("without an archiver: got %v, want NOT_CONFIGURED", err)
	}
}
