package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestReplayGuard(t *testing.T) {
	path := filepath.Join(t.TempDir(), ReplayFile)
	g, err := openReplayGuard(path, 4, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.check("k1", 5000, 1000); err != nil {
		t.Fatalf("fresh key: %v", err)
	}
	if err := g.check("k1", 5000, 1001); !errors.Is(err, errReplayed) {
		t.Fatalf("replayed key: got %v, want errReplayed", err)
	}
	if err := g.check("k2", 1500, 1000); err != nil {
		t.Fatal(err)
	}
	g.close()

	// A restart keeps the unexpired keys and forgets the expired ones.
	g, err = openReplayGuard(path, 4, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.check("k1", 6000, 2000); !errors.Is(err, errReplayed) {
		t.Errorf("k1 after reopen: got %v, want errReplayed", err)
	}
	if err := g.check("k2", 6000, 2000); err != nil {
		t.Errorf("expired k2 after reopen: got %v, want accepted", err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("journal mode = %v (%v), want 0600", st.Mode().Perm(), err)
	}

	// Bounded: with 4 live keys the next one is refused until some expire.
	g.check("k3", 6000, 2000)
	g.check("k4", 6000, 2000)
	if err := g.check("k5", 6000, 2000); !errors.Is(err, errReplayFull) {
		t.Errorf("full set: got %v, want errReplayFull", err)
	}
	if err := g.check("k5", 9000, 7000); err != nil {
		t.Errorf("after expiry: got %v, want accepted", err)
	}
	g.close()
}

func TestReplayGuardCompacts(t *testing.T) {
	path := filepath.Join(t.TempDir(), ReplayFile)
	g, err := openReplayGuard(path, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	// Each key expires before the next arrives, so the journal should not keep growing.
	for i := range 600 {
		if err := g.check("key-"+strconv.Itoa(i), int64(i*10+5), int64(i*10)); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(path)
	if n := strings.Count(string(data), "\n"); n > 300 {
		t.Errorf("journal has %d lines, want compaction to keep it small", n)
	}
	// The newest key survives compaction.
	if err := g.check("key-599", 1e9, 5990); !errors.Is(err, errReplayed) {
		t.Errorf("newest key after compaction: got %v, want errReplayed", err)
	}
}
