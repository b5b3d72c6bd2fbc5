package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestArchiveDefaultsAndEnv(t *testing.T) {
	// Nothing configured: a folder under data_dir, so a teardown keeps the workspace.
	c, err := Load("", []string{"CLAWOPS_DATA_DIR=/srv/gw"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Fleet.Archive.Dir, filepath.Join("/srv/gw", "archives"); got != want || c.Fleet.Archive.S3.IsSet() {
		t.Errorf("default archive: got dir %q s3 %+v, want dir %q", got, c.Fleet.Archive.S3, want)
	}
	// The environment sets the folder.
	c, err = Load("", []string{"CLAWOPS_FLEET_ARCHIVE_DIR=/mnt/archives"})
	if err != nil || c.Fleet.Archive.Dir != "/mnt/archives" {
		t.Fatalf("CLAWOPS_FLEET_ARCHIVE_DIR: got %+v, %v", c, err)
	}
	// A bucket configured: no folder is derived, and the variables its keys name are not
	// unknown CLAWOPS_* variables.
	c, err = Load("testdata/full.good.yaml", []string{"CLAWOPS_S3_ACCESS_KEY=AKIAEXAMPLE"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Fleet.Archive.Dir != "" || c.Fleet.Archive.S3.Bucket != "clawops-archives" {
		t.Errorf("bucket config: got %+v", c.Fleet.Archive)
	}
	// A folder from the environment on top of a bucket from the file is refused.
	_, err = Load("testdata/full.good.yaml", []string{"CLAWOPS_FLEET_ARCHIVE_DIR=/mnt/archives"})
	if err == nil || !strings.Contains(err.Error(), "fleet.archive: sets both dir and s3") {
		t.Errorf("dir from env with s3 in the file: got %v, want both-set error", err)
	}
	// S3 keys from the environment only through *_env: CLAWOPS_FLEET_ARCHIVE_S3_ACCESS_KEY
	// is no config key.
	_, err = Load("", []string{"CLAWOPS_FLEET_ARCHIVE_S3_ACCESS_KEY=AKIAEXAMPLE"})
	if err == nil || !strings.Contains(err.Error(), "unknown variable") {
		t.Errorf("inline access key from env: got %v, want unknown variable", err)
	}
}

func TestResolveArchiveKeys(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "s3-secret")
	if err := os.WriteFile(secretFile, []byte("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"S3_KEY": " AKIAIOSFODNN7EXAMPLE "}
	getenv := func(k string) string { return env[k] }
	bucket := S3Archive{Endpoint: "https://s3.example.com", Bucket: "archives", Region: "us-east-1"}
	for _, tc := range []struct {
		name    string
		keys    func(*S3Archive)
		want    ArchiveKeys
		wantErr string
	}{
		{"env and file", func(s *S3Archive) { s.AccessKeyEnv, s.SecretKeyFile = "S3_KEY", secretFile },
			ArchiveKeys{AccessKey: "AKIAIOSFODNN7EXAMPLE", SecretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", From: "env S3_KEY, file " + secretFile}, ""},
		{"variable unset", func(s *S3Archive) { s.AccessKeyEnv, s.SecretKeyEnv = "S3_KEY", "S3_SECRET" },
			ArchiveKeys{}, "fleet.archive.s3.secret_key_env: S3_SECRET is not set"},
		{"file missing", func(s *S3Archive) { s.AccessKeyEnv, s.SecretKeyFile = "S3_KEY", filepath.Join(dir, "nope") },
			ArchiveKeys{}, "fleet.archive.s3.secret_key_file: cannot read"},
		{"file empty", func(s *S3Archive) { s.AccessKeyFile, s.SecretKeyFile = empty, secretFile },
			ArchiveKeys{}, "fleet.archive.s3.access_key_file: " + empty + " is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Fleet.Archive.S3 = bucket
			tc.keys(&c.Fleet.Archive.S3)
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			got, err := c.ResolveArchiveKeys(getenv)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %+v, %v; want error containing %q", got, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "EXAMPLE") {
					t.Errorf("error shows a key: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	// No bucket: nothing to read.
	if k, err := Default().ResolveArchiveKeys(getenv); err != nil || k != (ArchiveKeys{}) {
		t.Errorf("without s3: got %+v, %v", k, err)
	}
}
