// Package keyfile keeps the Ed25519 private keys and small secrets of the node plane on disk:
// the gateway's signing key in its data folder and a node's device key and device token in
// its state folder. Files are created 0600 and refused when group or others can read them.
package keyfile

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LoadOrCreate returns the Ed25519 private key stored (PKCS#8 PEM) at path, creating a new
// one when the file does not exist. The folder is created 0700 if needed.
func LoadOrCreate(path string) (ed25519.PrivateKey, error) {
	key, err := Load(path)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	_, key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	data, err := Encode(key)
	if err != nil {
		return nil, err
	}
	if err := create(path, data); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return Load(path) // another process created it first
		}
		return nil, err
	}
	return key, nil
}

// Encode renders key as PKCS#8 PEM, the format Load reads.
func Encode(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Save writes key to path (PKCS#8 PEM, 0600), replacing any file there atomically.
func Save(path string, key ed25519.PrivateKey) error {
	data, err := Encode(key)
	if err != nil {
		return err
	}
	return WriteSecret(path, data)
}

// Load reads an Ed25519 private key (PKCS#8 PEM) from path.
func Load(path string) (ed25519.PrivateKey, error) {
	data, err := ReadSecret(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("key file %s: not a PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key file %s: not an Ed25519 key", path)
	}
	return key, nil
}

// ReadSecret reads a secret file, refusing one that group or others may read.
func ReadSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("read secret: %s has mode %v: run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("read secret: %s is larger than 1 MiB", path)
	}
	return b, nil
}

// ReadToken reads a one-line secret (a token) and trims surrounding white space.
func ReadToken(path string) (string, error) {
	b, err := ReadSecret(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// WriteSecret replaces the file at path with data, atomically, mode 0600.
func WriteSecret(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write secret: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write secret: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write secret: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write secret: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write secret: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write secret: %w", err)
	}
	return nil
}

// create writes data to a new file at path (0600), failing with fs.ErrExist if it exists.
// The content is written to a temporary file first and linked into place, so a crash never
// leaves a half-written key behind.
func create(path string, data []byte) error {
	tmp := path + ".new"
	if err := WriteSecret(tmp, data); err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	return nil
}
