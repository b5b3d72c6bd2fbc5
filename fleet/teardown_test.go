package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// fetchingProvider is a fakeProvider that can also read files from its servers.
type fetchingProvider struct {
	*fakeProvider
	files   map[string][]byte // path → content
	fetches int
}

func (p *fetchingProvider) FetchBackup(_ context.Context, providerID, path string) (io.ReadCloser, error) {
	p.fetches++
	b, ok := p.files[path]
	if !ok {
		return nil, fmt.Errorf("%s: no such file on %s", path, providerID)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestTeardownArchivesFirst: the simulated nodes here have no backup.read, so each backup
// comes through the provider (the fallback for old nodes); the checks on the backup and the
// store hold either way.
func TestTeardownArchivesFirst(t *testing.T) {
	workspace := []byte("a tarball of the OpenClaw workspace")
	for _, tc := range []struct {
		name      string
		backup    *Backup
		opts      TeardownOptions
		node      bool // the instance has a node
		reason    clawops.ReasonCode
		archived  bool
		deleted   bool
		noteMatch string
	}{
		{name: "archived then deleted", backup: &Backup{Path: "/var/lib/gf/backup.tar.gz", SHA256: sha(workspace), Size: int64(len(workspace))},
			node: true, archived: true, deleted: true},
		{name: "checksum mismatch keeps the server", backup: &Backup{Path: "/var/lib/gf/backup.tar.gz", SHA256: sha([]byte("other")), Size: int64(len(workspace))},
			node: true, reason: ReasonArchiveFailed},
		{name: "size mismatch keeps the server", backup: &Backup{Path: "/var/lib/gf/backup.tar.gz", SHA256: sha(workspace), Size: 3},
			node: true, reason: ReasonArchiveFailed},
		{name: "relative path refused", backup: &Backup{Path: "../../etc/shadow", SHA256: sha(workspace), Size: int64(len(workspace))},
			node: true, reason: ReasonArchiveFailed},
		{name: "bad sha refused", backup: &Backup{Path: "/var/lib/gf/backup.tar.gz", SHA256: "nothex", Size: 1},
			node: true, reason: ReasonArchiveFailed},
		{name: "backup command fails", backup: nil, node: true, reason: ReasonArchiveFailed},
		{name: "skip archive on request", backup: nil, node: true, opts: TeardownOptions{SkipArchive: true}, deleted: true, noteMatch: "skipped"},
		{name: "never enrolled", node: false, deleted: true, noteMatch: "no node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			archDir := t.TempDir()
			var fp *fetchingProvider
			h, sim := newSimHarness(t, func(o *Options) {
				fp = &fetchingProvider{fakeProvider: o.Providers["vultr"].(*fakeProvider),
					files: map[string][]byte{"/var/lib/gf/backup.tar.gz": workspace}}
				o.Providers["vultr"] = fp
				o.Archive = DirStore{Root: archDir}
			})
			h.activePairsNamed(t, sim, "demo1")
			sim.with("node-demo1-sby", func(n *simNode) { n.backup = tc.backup })
			if !tc.node {
				h.setRow(t, "demo1-sby", map[string]any{"node_id": "", "state": StateBootstrapping})
			}
			res, err := h.svc.TeardownWith(context.Background(), "demo1-sby", tc.opts)
			if tc.reason != "" {
				wantReason(t, err, tc.reason)
			} else if err != nil {
				t.Fatal(err)
			}
			_, deletes := fp.calls()
			if got := len(deletes) == 1; got != tc.deleted {
				t.Errorf("deleted: got %v (%v), want %v", got, deletes, tc.deleted)
			}
			st := h.row(t, "demo1-sby")
			if tc.deleted != (st.State == StateTerminated) || (tc.deleted && st.TerminatedAt == nil) {
				t.Errorf("state: got %s terminated_at %v", st.State, st.TerminatedAt)
			}
			if !strings.Contains(res.Note, tc.noteMatch) {
				t.Errorf("note: got %q, want %q", res.Note, tc.noteMatch)
			}
			files, _ := filepath.Glob(filepath.Join(archDir, "demo1", "*"))
			if tc.archived {
				if res.Archive == nil || len(files) != 1 || res.Archive.SHA256 != sha(workspace) ||
					!strings.HasPrefix(res.Archive.Location, "file://") || !strings.HasPrefix(res.Archive.Key, "demo1/demo1-sby-20261103T090000Z-backup.tar.gz") {
					t.Fatalf("archive: got %+v, files %v", res.Archive, files)
				}
				if b, _ := os.ReadFile(files[0]); !bytes.Equal(b, workspace) {
					t.Errorf("archived content: got %q", b)
				}
				if list, _ := h.svc.Archives(context.Background(), "demo1"); len(list) != 1 {
					t.Errorf("archives recorded: got %d, want 1", len(list))
				}
			} else if len(files) != 0 || res.Archive != nil {
				t.Errorf("archive files: got %v, want none (no partial file either)", files)
			}
		})
	}
}

func TestTeardownInvariantAndProviderWithoutFetch(t *testing.T) {
	h, sim := newSimHarness(t, func(o *Options) { o.Archive = DirStore{Root: t.TempDir()} })
	h.activePairsNamed(t, sim, "demo1")
	h.setRow(t, "demo1-sby", map[string]any{"state": StateDegraded})
	// The ACTIVE primary with a DEGRADED standby is refused here too.
	_, err := h.svc.TeardownWith(context.Background(), "demo1-pri", TeardownOptions{SkipArchive: true})
	wantReason(t, err, clawops.ReasonStandbyNotActive)
	// The standby's node predates backup.read and its provider cannot fetch files: no
	// archive, no delete, and the error says what to do.
	sim.with("node-demo1-sby", func(n *simNode) {
		n.backup = &Backup{Path: "/var/lib/gf/backups/openclaw-20261103T090000.000Z.tar.gz", SHA256: sha(nil), Size: 0}
	})
	_, err = h.svc.TeardownWith(context.Background(), "demo1-sby", TeardownOptions{})
	wantReason(t, err, ReasonArchiveFailed)
	if err == nil || !strings.Contains(err.Error(), "upgrade gf-clawnode") {
		t.Errorf("error: got %v, want it to say the node needs upgrading", err)
	}
	if _, deletes := h.vu.calls(); len(deletes) != 0 {
		t.Errorf("deletes: got %v, want none", deletes)
	}
	if c := sim.commandsOf("node-demo1-sby"); strings.Join(c, ",") != "backup.create,backup.read" {
		t.Errorf("node commands: got %v, want backup.create then one backup.read", c)
	}
}

// TestTeardownArchivesOverNodePlane tears down a standby at a provider that cannot read
// files from its servers, as every cloud is: the archive comes over the node plane, chunk by
// chunk, and is stored byte for byte before the server is deleted.
func TestTeardownArchivesOverNodePlane(t *testing.T) {
	const path = "/var/lib/gf-clawnode/backups/openclaw-20261103T090000.000Z.tar.gz"
	for _, size := range []int{0, 1, 6, 7, 8, 100} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			archive := bytes.Repeat([]byte("0123456789abcdef"), 7)[:size]
			archDir := t.TempDir()
			bus := NewBus(nil)
			h, sim := newSimHarness(t, func(o *Options) {
				o.Archive, o.ArchiveChunk, o.Bus = DirStore{Root: archDir}, 7, bus
			})
			events := collect(t, bus, EventInstanceArchived)
			h.activePairsNamed(t, sim, "demo1")
			sim.with("node-demo1-sby", func(n *simNode) {
				n.backup = &Backup{Path: path, SHA256: sha(archive), Size: int64(size)}
				n.archive = archive
			})
			res, err := h.svc.TeardownWith(context.Background(), "demo1-sby", TeardownOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Archive == nil || res.Archive.SHA256 != sha(archive) || res.Archive.Size != int64(size) {
				t.Fatalf("archive: got %+v", res.Archive)
			}
			b, err := os.ReadFile(strings.TrimPrefix(res.Archive.Location, "file://"))
			if err != nil || !bytes.Equal(b, archive) {
				t.Errorf("stored archive: got %q, %v; want the node's %q", b, err, archive)
			}
			reads := max((size+6)/7, 1)
			want := "backup.create" + strings.Repeat(",backup.read", reads)
			if got := strings.Join(sim.commandsOf("node-demo1-sby"), ","); got != want {
				t.Errorf("node commands: got %s, want %s", got, want)
			}
			if _, deletes := h.vu.calls(); len(deletes) != 1 {
				t.Errorf("deletes: got %v, want the standby's server", deletes)
			}
			if st := h.row(t, "demo1-sby"); st.State != StateTerminated {
				t.Errorf("state: got %s, want TERMINATED", st.State)
			}
			if len(events()) != 1 {
				t.Error("no INSTANCE_ARCHIVED event")
			}
		})
	}
}

// TestTeardownRefusesALyingNode has the node answer backup.read with something other than
// the archive backup.create described. Every such answer fails the teardown with
// ARCHIVE_FAILED: no archive stored (no partial file either), the server not deleted.
func TestTeardownRefusesALyingNode(t *testing.T) {
	const path = "/var/lib/gf-clawnode/backups/openclaw-20261103T090000.000Z.tar.gz"
	archive := []byte("the user's workspace, packed: 37 bytes")
	for _, tc := range []struct {
		name      string
		tamper    func(p proto.BackupReadParams, r *proto.BackupReadResult)
		serve     []byte // what the node's file holds, when not the archive
		failLater bool   // backup.read fails after the first chunk
		msg       string
	}{
		{name: "more bytes than asked", msg: "more than the",
			tamper: func(_ proto.BackupReadParams, r *proto.BackupReadResult) { r.Data = append(r.Data, 'x') }},
		{name: "fewer bytes than asked", msg: "fewer than the",
			tamper: func(_ proto.BackupReadParams, r *proto.BackupReadResult) { r.Data = r.Data[:len(r.Data)-1] }},
		{name: "one byte changed", msg: "sha256",
			tamper: func(p proto.BackupReadParams, r *proto.BackupReadResult) {
				if p.Offset == 14 {
					r.Data[3] ^= 1
				}
			}},
		{name: "wrong size", msg: "backup.create said",
			tamper: func(_ proto.BackupReadParams, r *proto.BackupReadResult) { r.Size++ }},
		{name: "file differs from what backup.create said", serve: archive[:30], msg: "backup.create said"},
		{name: "end of file too early", msg: "eof true",
			tamper: func(_ proto.BackupReadParams, r *proto.BackupReadResult) { r.EOF = true }},
		{name: "no end of file", msg: "eof false",
			tamper: func(_ proto.BackupReadParams, r *proto.BackupReadResult) { r.EOF = false }},
		{name: "data after the end", msg: "more than the",
			tamper: func(_ proto.BackupReadParams, r *proto.BackupReadResult) {
				if r.EOF {
					r.Data = append(r.Data, "trailing"...)
				}
			}},
		{name: "nothing, forever", msg: "fewer than the",
			tamper: func(_ proto.BackupReadParams, r *proto.BackupReadResult) { r.Data, r.EOF = nil, false }},
		{name: "fails half way", failLater: true, msg: "disk on fire"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			archDir := t.TempDir()
			var fp *fetchingProvider
			h, sim := newSimHarness(t, func(o *Options) {
				// The provider could fetch the file: a lying node must not make the
				// teardown fall back to it.
				fp = &fetchingProvider{fakeProvider: o.Providers["vultr"].(*fakeProvider), files: map[string][]byte{path: archive}}
				o.Providers["vultr"] = fp
				o.Archive, o.ArchiveChunk = DirStore{Root: archDir}, 14
				if tc.failLater {
					o.Nodes = failingReads{o.Nodes.(*simNodes)}
				}
			})
			h.activePairsNamed(t, sim, "demo1")
			sim.with("node-demo1-sby", func(n *simNode) {
				n.backup = &Backup{Path: path, SHA256: sha(archive), Size: int64(len(archive))}
				n.archive, n.tamper = archive, tc.tamper
				if tc.serve != nil {
					n.archive = tc.serve
				}
			})
			_, err := h.svc.TeardownWith(context.Background(), "demo1-sby", TeardownOptions{})
			wantReason(t, err, ReasonArchiveFailed)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error: got %v, want it to say %q", err, tc.msg)
			}
			if _, deletes := fp.calls(); len(deletes) != 0 {
				t.Errorf("deletes: got %v, want none", deletes)
			}
			if fp.fetches != 0 {
				t.Errorf("provider fetches: got %d, want none (only a node without backup.read falls back)", fp.fetches)
			}
			if st := h.row(t, "demo1-sby"); st.State == StateTerminated {
				t.Error("state: TERMINATED, want the instance kept")
			}
			if files, _ := filepath.Glob(filepath.Join(archDir, "demo1", "*")); len(files) != 0 {
				t.Errorf("archive files: got %v, want none", files)
			}
			if list, _ := h.svc.Archives(context.Background(), "demo1"); len(list) != 0 {
				t.Errorf("archives recorded: got %d, want 0", len(list))
			}
		})
	}
}

// failingReads passes commands to the simulated nodes, but fails every backup.read after
// the first chunk.
type failingReads struct {
	*simNodes
}

func (f failingReads) Invoke(ctx context.Context, node clawops.NodeID, command string, params any) (json.RawMessage, error) {
	if command == CmdBackupRead && params.(proto.BackupReadParams).Offset > 0 {
		return nil, clawops.E("invoke", clawops.KindOther, clawops.ReasonExecutionFailed, "read: disk on fire")
	}
	return f.simNodes.Invoke(ctx, node, command, params)
}

// TestTeardownFallsBackForAnOldNode: a node without backup.read (COMMAND_NOT_ALLOWLISTED)
// at a provider that can fetch files has its backup fetched through the provider; a node
// with backup.read is read over the node plane even there.
func TestTeardownFallsBackForAnOldNode(t *testing.T) {
	const path = "/var/lib/gf-clawnode/backups/openclaw-20261103T090000.000Z.tar.gz"
	archive := []byte("the workspace")
	for _, tc := range []struct {
		name     string
		nodeHas  bool
		fetches  int
		commands string
	}{
		{"old node: through the provider", false, 1, "backup.create,backup.read"},
		{"new node: over the node plane", true, 0, "backup.create,backup.read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fp *fetchingProvider
			h, sim := newSimHarness(t, func(o *Options) {
				fp = &fetchingProvider{fakeProvider: o.Providers["vultr"].(*fakeProvider), files: map[string][]byte{path: archive}}
				o.Providers["vultr"] = fp
				o.Archive = DirStore{Root: t.TempDir()}
			})
			h.activePairsNamed(t, sim, "demo1")
			sim.with("node-demo1-sby", func(n *simNode) {
				n.backup = &Backup{Path: path, SHA256: sha(archive), Size: int64(len(archive))}
				if tc.nodeHas {
					n.archive = archive
				}
			})
			res, err := h.svc.TeardownWith(context.Background(), "demo1-sby", TeardownOptions{})
			if err != nil || res.Archive == nil || res.Archive.SHA256 != sha(archive) {
				t.Fatalf("teardown: got %+v, %v", res, err)
			}
			if fp.fetches != tc.fetches {
				t.Errorf("provider fetches: got %d, want %d", fp.fetches, tc.fetches)
			}
			if got := strings.Join(sim.commandsOf("node-demo1-sby"), ","); got != tc.commands {
				t.Errorf("node commands: got %s, want %s", got, tc.commands)
			}
			if _, deletes := fp.calls(); len(deletes) != 1 {
				t.Errorf("deletes: got %v, want one", deletes)
			}
		})
	}
}

func TestResize(t *testing.T) {
	bus := NewBus(nil)
	h, sim := newSimHarness(t, func(o *Options) { o.Bus = bus })
	events := collect(t, bus, EventInstanceResized)
	h.activePairsNamed(t, sim, "demo1")
	ctx := context.Background()
	r, err := h.svc.Resize(ctx, "demo1-pri", "nano")
	if err != nil {
		t.Fatal(err)
	}
	// hetzner standard 5.99 → nano 3.79; the harness maps no hetzner nano size.
	if r.From != "standard" || r.To != "nano" || r.Size != "nano" || r.MonthlyDeltaUSD != -2.2 {
		t.Errorf("resize: got %+v", r)
	}
	if st := h.row(t, "demo1-pri"); st.Tier != "nano" {
		t.Errorf("tier: got %s", st.Tier)
	}
	if len(h.hz.resizes) != 1 || h.hz.resizes[0] != "hetzner-demo1-pri=nano" {
		t.Errorf("provider resizes: got %v", h.hz.resizes)
	}
	if len(events()) != 1 {
		t.Error("no INSTANCE_RESIZED event")
	}
	if _, err := h.svc.Resize(ctx, "demo1-pri", "nano"); err != nil || len(h.hz.resizes) != 1 {
		t.Errorf("same tier: %v, resizes %v; want nothing done", err, h.hz.resizes)
	}
	_, err = h.svc.Resize(ctx, "demo1-pri", "gigantic")
	wantReason(t, err, ReasonUnknownTier)
	_, err = h.svc.Resize(ctx, "ghost-pri", "nano")
	wantReason(t, err, clawops.ReasonUnknownInstance)
	h.setRow(t, "demo1-sby", map[string]any{"state": StateTerminated})
	_, err = h.svc.Resize(ctx, "demo1-sby", "nano")
	wantReason(t, err, clawops.ReasonInstanceNotActive)
}

func TestDirStoreBad(t *testing.T) {
	d := DirStore{Root: t.TempDir()}
	ctx := context.Background()
	body := []byte("x")
	for _, key := range []string{"../escape", "/abs", "a/../../b", "", "a//b", ".hidden"} {
		if _, err := d.Put(ctx, key, bytes.NewReader(body), 1, sha(body)); err == nil {
			t.Errorf("Put(%q): got nil error", key)
		}
	}
	if _, err := (DirStore{}).Put(ctx, "a", bytes.NewReader(body), 1, sha(body)); err == nil {
		t.Error("Put without a root: got nil error")
	}
	// Too long a body is refused, and leaves nothing behind.
	if _, err := d.Put(ctx, "acct/x", bytes.NewReader([]byte("xy")), 1, sha(body)); err == nil {
		t.Error("Put of a longer body: got nil error")
	}
	if files, _ := filepath.Glob(filepath.Join(d.Root, "acct", "*")); len(files) != 0 {
		t.Errorf("files left: %v", files)
	}
}
