package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gatewayforge/clawops/config"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/gateway"
)

func loadConfig(t *testing.T, yaml string, env ...string) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clawops.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, env)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestArchiveStoreFolder(t *testing.T) {
	data := t.TempDir()
	body := []byte("a workspace")
	for _, tc := range []struct {
		name, yaml, root string
	}{
		{"default under data_dir", "data_dir: " + data + "\n", filepath.Join(data, "archives")},
		{"configured folder", "data_dir: " + data + "\nfleet: {archive: {dir: " + filepath.Join(data, "elsewhere") + "}}\n", filepath.Join(data, "elsewhere")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, where, err := gateway.ArchiveStore(loadConfig(t, tc.yaml), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if ds, ok := st.(fleet.DirStore); !ok || ds.Root != tc.root || !strings.Contains(where, tc.root) {
				t.Fatalf("store: got %#v (%s), want a folder at %s", st, where, tc.root)
			}
			loc, err := st.Put(context.Background(), "acct/x.tar.gz", bytes.NewReader(body), int64(len(body)), hexSHA(body))
			if err != nil || loc != "file://"+filepath.Join(tc.root, "acct", "x.tar.gz") {
				t.Errorf("put: got %s, %v", loc, err)
			}
		})
	}
}

// s3Recorder is the far side of an S3 PUT: it keeps the request's path, signature header and
// body, and answers 200.
type s3Recorder struct {
	mu                  sync.Mutex
	path, auth, payload string
	body                []byte
}

func (s *s3Recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.path, s.auth, s.payload, s.body = r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("X-Amz-Content-Sha256"), b
	s.mu.Unlock()
}

func TestArchiveStoreBucket(t *testing.T) {
	rec := &s3Recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	secretFile := filepath.Join(t.TempDir(), "s3-secret")
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := `
fleet:
  archive:
    s3:
      endpoint: ` + srv.URL + `
      bucket: clawops-archives
      region: eu-central
      prefix: workspaces
      access_key_env: TEST_S3_ACCESS
      secret_key_file: ` + secretFile + `
`
	cfg := loadConfig(t, yaml)
	lookup := func(k string) (string, bool) {
		if k == "TEST_S3_ACCESS" {
			return "AKIAIOSFODNN7EXAMPLE", true
		}
		return "", false
	}
	st, where, err := gateway.ArchiveStore(cfg, lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(where, secret) || !strings.Contains(where, "s3://clawops-archives/workspaces/") {
		t.Errorf("description: got %q", where)
	}
	body := []byte("a workspace in a bucket")
	loc, err := st.Put(context.Background(), "acct/x.tar.gz", bytes.NewReader(body), int64(len(body)), hexSHA(body))
	if err != nil || loc != "s3://clawops-archives/workspaces/acct/x.tar.gz" {
		t.Fatalf("put: got %s, %v", loc, err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.path != "/clawops-archives/workspaces/acct/x.tar.gz" || !bytes.Equal(rec.body, body) || rec.payload != hexSHA(body) {
		t.Errorf("request: path %s, body %q, payload hash %s", rec.path, rec.body, rec.payload)
	}
	if !strings.Contains(rec.auth, "Credential=AKIAIOSFODNN7EXAMPLE/") || !strings.Contains(rec.auth, "/eu-central/s3/aws4_request") {
		t.Errorf("authorization: got %q, want the configured key and region", rec.auth)
	}

	// A key that cannot be read stops the gateway from starting, naming the key, not the secret.
	_, _, err = gateway.ArchiveStore(cfg, func(string) (string, bool) { return "", false }, nil)
	if err == nil || !strings.Contains(err.Error(), "fleet.archive.s3.access_key_env: TEST_S3_ACCESS is not set") {
		t.Errorf("missing access key: got %v", err)
	}
}
