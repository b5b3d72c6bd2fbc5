package governance

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops"
)

func testKey(t testing.TB, seed byte) ed25519.PrivateKey {
	t.Helper()
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func TestCheckpoint(t *testing.T) {
	db, _ := openDB(t)
	l := NewAuditLog(db, newFakeClock())
	ctx := context.Background()
	key := testKey(t, 1)
	if _, err := l.Checkpoint(ctx, key); clawops.ReasonOf(err) != clawops.ReasonBadArguments {
		t.Errorf("empty log: got %v", err)
	}
	if _, err := l.Checkpoint(ctx, ed25519.PrivateKey("short")); clawops.ReasonOf(err) != clawops.ReasonBadArguments {
		t.Errorf("bad key: got %v", err)
	}
	es := appendN(t, l, 10)
	cp, err := l.Checkpoint(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Seq != 10 || cp.HeadHash != es[9].Hash {
		t.Errorf("checkpoint: got %+v", cp)
	}
	again, err := l.Checkpoint(ctx, key)
	if err != nil || again != cp {
		t.Errorf("checkpoint at the same head: got %+v, %v; want the same", again, err)
	}
	appendN(t, l, 5)
	if _, err := l.Checkpoint(ctx, key); err != nil {
		t.Fatal(err)
	}
	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK || rep.Checkpoints != 2 || rep.Entries != 15 {
		t.Fatalf("verify: got %+v, %v", rep, err)
	}
	trusting := NewAuditLogWithOptions(db, AuditOptions{TrustedKeys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}})
	if rep, _ := trusting.Verify(ctx); !rep.OK {
		t.Errorf("verify with the trusted key: got %+v", rep)
	}
	other := NewAuditLogWithOptions(db, AuditOptions{TrustedKeys: []ed25519.PublicKey{testKey(t, 2).Public().(ed25519.PublicKey)}})
	if rep, _ := other.Verify(ctx); rep.OK || !strings.Contains(rep.Problem, "untrusted") {
		t.Errorf("verify with another key: got %+v", rep)
	}
}

func TestCheckpointCatchesTampering(t *testing.T) {
	tests := []struct {
		name    string
		tamper  string
		problem string
		badSeq  int64
	}{
		{"tail truncated", `DELETE FROM governance_audit WHERE seq > 17`, "log truncated", 18},
		{"whole log removed", `DELETE FROM governance_audit`, "log truncated", 1},
		{"signature changed", `UPDATE governance_audit_checkpoints SET signature = replace(signature, substr(signature, 1, 1), CASE substr(signature, 1, 1) WHEN 'a' THEN 'b' ELSE 'a' END) WHERE seq = 20`, "bad signature", 20},
		{"signed head re-hashed", `UPDATE governance_audit_checkpoints SET head_hash = '` + strings.Repeat("ab", 32) + `' WHERE seq = 20`, "bad signature", 20},
		{"key swapped", `UPDATE governance_audit_checkpoints SET public_key = '` + strings.Repeat("cd", 32) + `' WHERE seq = 20`, "bad signature", 20},
		{"malformed signature", `UPDATE governance_audit_checkpoints SET signature = 'zz' WHERE seq = 10`, "malformed signature", 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := openDB(t)
			l := NewAuditLog(db, newFakeClock())
			ctx := context.Background()
			appendN(t, l, 10)
			if _, err := l.Checkpoint(ctx, testKey(t, 1)); err != nil {
				t.Fatal(err)
			}
			appendN(t, l, 10)
			if _, err := l.Checkpoint(ctx, testKey(t, 1)); err != nil {
				t.Fatal(err)
			}
			if err := db.Exec(tc.tamper).Error; err != nil {
				t.Fatal(err)
			}
			rep, err := l.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK || !strings.Contains(rep.Problem, tc.problem) || rep.FirstBadSeq != tc.badSeq {
				t.Errorf("got %+v, want a problem with %q at seq %d", rep, tc.problem, tc.badSeq)
			}
		})
	}
}

func TestExportAndVerifyBundle(t *testing.T) {
	h := newHarness(t, newTestTool("fleet.restart", ActionRestart, clawops.RiskMedium, 5))
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := h.gate.Invoke(ctx, guardian, "fleet.restart", instancesArgs(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	key := testKey(t, 7)
	pub := key.Public().(ed25519.PublicKey)
	if _, err := h.gate.Audit().Checkpoint(ctx, key); err != nil {
		t.Fatal(err)
	}
	h.gate.Invoke(ctx, guardian, "fleet.restart", instancesArgs(1))
	dir := filepath.Join(t.TempDir(), "bundle")
	m, err := h.gate.Audit().ExportBundle(ctx, dir, key)
	if err != nil {
		t.Fatal(err)
	}
	if m.Entries != 18 || m.HeadSeq != 18 || m.Checkpoints != 2 || len(m.Files) != 3 {
		t.Errorf("manifest: got %+v", m)
	}
	rep, err := VerifyBundle(dir, pub)
	if err != nil || rep.Entries != 18 || rep.Checkpoints != 2 || rep.HeadHash != m.HeadHash {
		t.Fatalf("verify: got %+v, %v", rep, err)
	}
	if _, err := VerifyBundle(dir, testKey(t, 8).Public().(ed25519.PublicKey)); err == nil {
		t.Error("verify with another key: got nil error")
	}
	if _, err := h.gate.Audit().ExportBundle(ctx, dir, key); err == nil {
		t.Error("export into a non-empty folder: got nil error")
	}

	// Any single changed byte, anywhere, fails verification.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 5 {
		t.Fatalf("bundle files: got %d, want 5", len(ents))
	}
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		n := len(orig)
		for _, off := range []int{0, 1, n / 3, n / 2, 2 * n / 3, n - 2, n - 1} {
			for _, flip := range []byte{0x01, 0x20, 0x80} {
				b := bytes.Clone(orig)
				b[off] ^= flip
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
				if _, err := VerifyBundle(dir, pub); err == nil {
					t.Errorf("%s: byte %d ^ %#x: verify passed", e.Name(), off, flip)
				}
			}
		}
		// Truncating or extending the file fails too.
		for _, b := range [][]byte{orig[:n-1], append(bytes.Clone(orig), '\n')} {
			os.WriteFile(path, b, 0o600)
			if _, err := VerifyBundle(dir, pub); err == nil {
				t.Errorf("%s: length %d: verify passed", e.Name(), len(b))
			}
		}
		if err := os.WriteFile(path, orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "extra.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyBundle(dir, pub); err == nil {
		t.Error("extra file: verify passed")
	}
	os.Remove(filepath.Join(dir, "extra.txt"))
	if _, err := VerifyBundle(dir, pub); err != nil {
		t.Errorf("restored bundle: %v", err)
	}
	if _, err := VerifyBundle(filepath.Join(dir, "missing"), pub); err == nil {
		t.Error("missing folder: verify passed")
	}
}
