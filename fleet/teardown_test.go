package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops"
)

// fetchingProvider is a fakeProvider that can also read files from its servers.
type fetchingProvider struct {
	*fakeProvider
	files map[string][]byte // path → content
}

func (p *fetchingProvider) FetchBackup(_ context.Context, providerID, path string) (io.ReadCloser, error) {
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
	// The standby lives at a provider that cannot fetch files: no archive, no delete.
	_, err = h.svc.TeardownWith(context.Background(), "demo1-sby", TeardownOptions{})
	wantReason(t, err, ReasonArchiveFailed)
	if _, deletes := h.vu.calls(); len(deletes) != 0 {
		t.Errorf("deletes: got %v, want none", deletes)
	}
	if c := sim.commandsOf("node-demo1-sby"); len(c) != 0 {
		t.Errorf("node commands: got %v, want none (the provider check comes first)", c)
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
