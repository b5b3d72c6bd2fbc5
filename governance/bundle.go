package governance

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// An evidence bundle is a folder that proves what the audit log held, checkable offline
// with only the gateway's public key:
//
//	entries.jsonl      every entry up to the sealed head, one JSON object a line
//	checkpoints.jsonl  every checkpoint up to it, the last one signing the head
//	public_key         the signing key, hex, one line
//	manifest.json      {format, created, entries, head_seq, head_hash, checkpoints,
//	                    files: [{path, sha256, size}]}
//	manifest.sig       the Ed25519 signature over manifest.json's bytes, hex, one line
//
// VerifyBundle checks the signature with a key the verifier trusts, every file's size and
// hash, the whole chain and every checkpoint; any changed byte fails it.

// Bundle file names.
const (
	BundleEntries      = "entries.jsonl"
	BundleCheckpoints  = "checkpoints.jsonl"
	BundlePublicKey    = "public_key"
	BundleManifestFile = "manifest.json"
	BundleSignature    = "manifest.sig"
	bundleFormat       = "clawops-audit-bundle/1"
)

// BundleFile is one file listed in a bundle's manifest.
type BundleFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// BundleManifest describes a bundle; its bytes are what the bundle signature covers.
type BundleManifest struct {
	Format      string       `json:"format"`
	Created     string       `json:"created"`
	Entries     int64        `json:"entries"`
	HeadSeq     int64        `json:"head_seq"`
	HeadHash    string       `json:"head_hash"`
	Checkpoints int          `json:"checkpoints"`
	Files       []BundleFile `json:"files"`
}

// bundleEntry is an audit row as a bundle stores it: exactly the hashed fields and the hash.
type bundleEntry struct {
	Seq      int64  `json:"seq"`
	Time     string `json:"time"`
	Actor    string `json:"actor"`
	Tool     string `json:"tool"`
	Target   string `json:"target"`
	Event    string `json:"event"`
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
	PlanHash string `json:"plan_hash"`
	Detail   string `json:"detail"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// ExportBundle writes an evidence bundle into dir (created if needed; it must be empty).
// It first signs a checkpoint of the current head with key, then exports every entry up
// to that head, every checkpoint, the public key, and a signed manifest.
func (l *AuditLog) ExportBundle(ctx context.Context, dir string, key ed25519.PrivateKey) (BundleManifest, error) {
	cp, err := l.Checkpoint(ctx, key)
	if err != nil {
		return BundleManifest{}, fmt.Errorf("export bundle: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return BundleManifest{}, fmt.Errorf("export bundle: %w", err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) > 0 {
		return BundleManifest{}, fmt.Errorf("export bundle: %s must be an empty folder", dir)
	}
	m := BundleManifest{Format: bundleFormat, Created: l.clock.Now().UTC().Format(auditTimeLayout),
		HeadSeq: cp.Seq, HeadHash: cp.HeadHash}
	f, err := l.writeBundleEntries(ctx, dir, cp.Seq, &m)
	if err != nil {
		return BundleManifest{}, fmt.Errorf("export bundle: %w", err)
	}
	m.Files = append(m.Files, f)
	cps, err := l.checkpointRows(ctx, cp.Seq)
	if err != nil {
		return BundleManifest{}, fmt.Errorf("export bundle: %w", err)
	}
	var buf bytes.Buffer
	for _, c := range cps {
		buf.Write(mustJSONBytes(c.checkpoint()))
		buf.WriteByte('\n')
	}
	m.Checkpoints = len(cps)
	pub := key.Public().(ed25519.PublicKey)
	for _, x := range []struct {
		name string
		data []byte
	}{{BundleCheckpoints, buf.Bytes()}, {BundlePublicKey, []byte(hex.EncodeToString(pub) + "\n")}} {
		if err := os.WriteFile(filepath.Join(dir, x.name), x.data, 0o600); err != nil {
			return BundleManifest{}, fmt.Errorf("export bundle: %w", err)
		}
		sum := sha256.Sum256(x.data)
		m.Files = append(m.Files, BundleFile{Path: x.name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(x.data))})
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return BundleManifest{}, fmt.Errorf("export bundle: %w", err)
	}
	mb = append(mb, '\n')
	sig := hex.EncodeToString(ed25519.Sign(key, mb)) + "\n"
	if err := os.WriteFile(filepath.Join(dir, BundleManifestFile), mb, 0o600); err != nil {
		return BundleManifest{}, fmt.Errorf("export bundle: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, BundleSignature), []byte(sig), 0o600); err != nil {
		return BundleManifest{}, fmt.Errorf("export bundle: %w", err)
	}
	return m, nil
}

// writeBundleEntries streams entries 1..head to entries.jsonl, hashing as it writes.
func (l *AuditLog) writeBundleEntries(ctx context.Context, dir string, head int64, m *BundleManifest) (BundleFile, error) {
	f, err := os.OpenFile(filepath.Join(dir, BundleEntries), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return BundleFile{}, err
	}
	defer f.Close()
	h := sha256.New()
	w := bufio.NewWriter(io.MultiWriter(f, h))
	var size int64
	for after := int64(0); after < head; {
		var rows []auditRow
		if err := l.db.WithContext(ctx).Where("seq > ? AND seq <= ?", after, head).Order("seq ASC").Limit(l.batch).Find(&rows).Error; err != nil {
			return BundleFile{}, fmt.Errorf("read entries after %d: %w", after, err)
		}
		if len(rows) == 0 {
			break
		}
		for _, r := range rows {
			line := append(mustJSONBytes(bundleEntry(r)), '\n')
			n, err := w.Write(line)
			if err != nil {
				return BundleFile{}, err
			}
			size += int64(n)
			m.Entries++
			after = r.Seq
		}
	}
	if err := w.Flush(); err != nil {
		return BundleFile{}, err
	}
	if err := f.Sync(); err != nil {
		return BundleFile{}, err
	}
	return BundleFile{Path: BundleEntries, SHA256: hex.EncodeToString(h.Sum(nil)), Size: size}, f.Close()
}

func mustJSONBytes(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("governance: encode %T: %v", v, err))
	}
	return b
}

// BundleReport is what VerifyBundle found in a sound bundle.
type BundleReport struct {
	Entries     int64     `json:"entries"`
	HeadSeq     int64     `json:"head_seq"`
	HeadHash    string    `json:"head_hash"`
	Checkpoints int       `json:"checkpoints"`
	Created     time.Time `json:"created"`
}

// VerifyBundle checks the bundle in dir offline against trusted, the gateway public key the
// verifier holds: the key file names that key, the manifest signature verifies under it,
// the folder holds exactly the listed files with the listed sizes and SHA-256s, the entries
// form one unbroken chain from genesis to the manifest's head, and every checkpoint is
// signed by trusted and matches the entry it names, the last one signing the head.
func VerifyBundle(dir string, trusted ed25519.PublicKey) (BundleReport, error) {
	fail := func(format string, args ...any) (BundleReport, error) {
		return BundleReport{}, fmt.Errorf("verify bundle: "+format, args...)
	}
	if len(trusted) != ed25519.PublicKeySize {
		return fail("the trusted key is not an Ed25519 public key")
	}
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
	keyFile, err := read(BundlePublicKey)
	if err != nil {
		return fail("%w", err)
	}
	if string(keyFile) != hex.EncodeToString(trusted)+"\n" {
		return fail("%s does not name the trusted key", BundlePublicKey)
	}
	mb, err := read(BundleManifestFile)
	if err != nil {
		return fail("%w", err)
	}
	sigFile, err := read(BundleSignature)
	if err != nil {
		return fail("%w", err)
	}
	sig, err := hex.DecodeString(string(bytes.TrimSuffix(sigFile, []byte("\n"))))
	if err != nil || len(sig) != ed25519.SignatureSize || string(sigFile) != hex.EncodeToString(sig)+"\n" {
		return fail("%s is malformed", BundleSignature)
	}
	if !ed25519.Verify(trusted, mb, sig) {
		return fail("the manifest signature does not verify under the trusted key")
	}
	var m BundleManifest
	dec := json.NewDecoder(bytes.NewReader(mb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil || m.Format != bundleFormat {
		return fail("manifest is not a %s manifest", bundleFormat)
	}
	data, err := checkBundleFiles(dir, m)
	if err != nil {
		return fail("%w", err)
	}
	hashes, err := checkBundleChain(data[BundleEntries], m)
	if err != nil {
		return fail("%w", err)
	}
	n, err := checkBundleCheckpoints(data[BundleCheckpoints], trusted, m, hashes)
	if err != nil {
		return fail("%w", err)
	}
	created, _ := parseTime(m.Created)
	return BundleReport{Entries: m.Entries, HeadSeq: m.HeadSeq, HeadHash: m.HeadHash, Checkpoints: n, Created: created}, nil
}

// checkBundleFiles checks that dir holds exactly the manifest's files and the signature
// files, with matching sizes and hashes, and returns the listed files' contents.
func checkBundleFiles(dir string, m BundleManifest) (map[string][]byte, error) {
	want := []string{BundleCheckpoints, BundleEntries, BundlePublicKey}
	var listed []string
	for _, f := range m.Files {
		listed = append(listed, f.Path)
	}
	slices.Sort(listed)
	if !slices.Equal(listed, want) {
		return nil, fmt.Errorf("manifest lists %v, want %v", listed, want)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !slices.Contains(want, e.Name()) && e.Name() != BundleManifestFile && e.Name() != BundleSignature {
			return nil, fmt.Errorf("unexpected file %q in the bundle", e.Name())
		}
	}
	out := make(map[string][]byte, len(m.Files))
	for _, f := range m.Files {
		b, err := os.ReadFile(filepath.Join(dir, f.Path))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		if int64(len(b)) != f.Size || hex.EncodeToString(sum[:]) != f.SHA256 {
			return nil, fmt.Errorf("%s does not match its size and SHA-256 in the manifest", f.Path)
		}
		out[f.Path] = b
	}
	return out, nil
}

// checkBundleChain verifies the entries and returns each seq's hash.
func checkBundleChain(data []byte, m BundleManifest) (map[int64]string, error) {
	hashes := make(map[int64]string)
	expected, prev := int64(1), GenesisHash
	for line := range bytes.Lines(data) {
		var e bundleEntry
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("entry %d: %w", expected, err)
		}
		if problem, _ := checkRow(auditRow(e), expected, prev); problem != "" {
			return nil, errors.New(problem)
		}
		hashes[e.Seq], prev, expected = e.Hash, e.Hash, expected+1
	}
	n := expected - 1
	if n != m.Entries || n != m.HeadSeq || prev != m.HeadHash {
		return nil, fmt.Errorf("entries end at seq %d (%.12s), the manifest says %d (%.12s)", n, prev, m.HeadSeq, m.HeadHash)
	}
	return hashes, nil
}

// checkBundleCheckpoints verifies the checkpoints against the chain; the last must sign the
// head.
func checkBundleCheckpoints(data []byte, trusted ed25519.PublicKey, m BundleManifest, hashes map[int64]string) (int, error) {
	var cps []checkpointRow
	for line := range bytes.Lines(data) {
		var c Checkpoint
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return 0, fmt.Errorf("checkpoint %d: %w", len(cps)+1, err)
		}
		row := checkpointRow{Seq: c.Seq, HeadHash: c.HeadHash, Time: c.Time.UTC().Format(auditTimeLayout),
			PublicKey: c.PublicKey, Signature: c.Signature}
		if !bytes.Equal(append(mustJSONBytes(row.checkpoint()), '\n'), line) {
			return 0, fmt.Errorf("checkpoint %d is not in canonical form", len(cps)+1)
		}
		cps = append(cps, row)
	}
	if len(cps) != m.Checkpoints || len(cps) == 0 || cps[len(cps)-1].Seq != m.HeadSeq {
		return 0, errors.New("the checkpoints do not end with one sealing the head")
	}
	hashAt := func(seq int64) (string, bool) { h, ok := hashes[seq]; return h, ok }
	if problem, _ := checkCheckpoints(cps, []ed25519.PublicKey{trusted}, m.HeadSeq, hashAt); problem != "" {
		return 0, errors.New(problem)
	}
	return len(cps), nil
}
