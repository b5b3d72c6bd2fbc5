package keyfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "gateway.key")
	k1, err := LoadOrCreate(path)
	if err != nil {
		t.Fatalf("LoadOrCreate (new): %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode = %v, want 0600", got)
	}
	k2, err := LoadOrCreate(path)
	if err != nil {
		t.Fatalf("LoadOrCreate (existing): %v", err)
	}
	if !k1.Equal(k2) {
		t.Error("second LoadOrCreate returned a different key")
	}
	if _, err := os.Stat(path + ".new"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

func TestLoadRejects(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	if _, err := LoadOrCreate(good); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(good)
	for _, tc := range []struct {
		name    string
		content string
		mode    os.FileMode
		want    string
	}{
		{"world readable", string(data), 0o644, "chmod 600"},
		{"group readable", string(data), 0o640, "chmod 600"},
		{"not pem", "hello", 0o600, "not a PEM"},
		{"wrong pem type", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 0o600, "not a PEM PRIVATE KEY"},
		{"bad der", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0o600, "key file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(p, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreate(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadOrCreate = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestWriteSecretAndReadToken(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state", "device-token")
	if err := WriteSecret(p, []byte("  tok-1\n")); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("mode = %v, want 0600", got)
	}
	got, err := ReadToken(p)
	if err != nil || got != "tok-1" {
		t.Errorf("ReadToken = %q, %v; want tok-1", got, err)
	}
	if err := WriteSecret(p, []byte("tok-2")); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadToken(p); got != "tok-2" {
		t.Errorf("after overwrite ReadToken = %q, want tok-2", got)
	}
	if _, err := ReadToken(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("ReadToken(missing) = nil error")
	}
}
