package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops/channels/telegram/telegramtest"
	"github.com/gatewayforge/clawops/clawnode/keyfile"
	"github.com/gatewayforge/clawops/cluster"
	"github.com/gatewayforge/clawops/config"
	"github.com/gatewayforge/clawops/gateway"
	"github.com/gatewayforge/clawops/store"
)

func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	t.Setenv("CLAWOPS_CONFIG", "")
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func exitCode(err error) int {
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return 1
	}
	return 0
}

func TestUsageErrors(t *testing.T) {
	data := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: clawops"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"node"}, 2, "unknown command"},
		{[]string{"node", "token", "--data", data}, 2, "--instance is required"},
		{[]string{"node", "token", "--data", data, "--instance", "x1-pri", "--ttl", "48h"}, 2, "--ttl"},
		{[]string{"demo", "--instances", "3"}, 2, "even number"},
		{[]string{"demo", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"audit", "verify", "--data", data, "extra"}, 2, "unexpected argument"},
	} {
		_, stderr, err := runCLI(t, tc.args...)
		if got := exitCode(err); got != tc.code {
			t.Errorf("%q: exit %d, want %d (err %v)", tc.args, got, tc.code, err)
		}
		if !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: stderr %q, want it to mention %q", tc.args, stderr, tc.want)
		}
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, cfg, "listen: 127.0.0.1:8080\nnodes:\n  tick_intervall: 5s\n")
	_, _, err := runCLI(t, "audit", "verify", "--config", cfg)
	if err == nil || !strings.Contains(err.Error(), "tick_intervall") {
		t.Fatalf("got %v, want an error naming nodes.tick_intervall", err)
	}
}

func TestNodeTokenAndAuditVerify(t *testing.T) {
	data := t.TempDir()
	out, stderr, err := runCLI(t, "node", "token", "--data", data, "--instance", "acct1-pri", "--ttl", "10m")
	if err != nil {
		t.Fatalf("node token: %v %s", err, stderr)
	}
	if tok := strings.TrimSpace(out); len(tok) < 32 || strings.ContainsAny(tok, " \n") {
		t.Fatalf("token %q: want one long opaque line", tok)
	}
	out, _, err = runCLI(t, "audit", "verify", "--data", data)
	if err != nil || !strings.Contains(out, "audit chain OK: 0 entries") {
		t.Fatalf("audit verify on a new store: %v %q", err, out)
	}
	if out, _, _ := runCLI(t, "version"); !strings.HasPrefix(out, "clawops ") {
		t.Fatalf("version: %q", out)
	}
}

func TestDoctorArchive(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "a-file")
	writeFile(t, blocker, "not a folder")
	for _, tc := range []struct {
		name, yaml, want string
		fail             bool
	}{
		{"folder", "fleet: {archive: {dir: " + filepath.Join(dir, "arch") + "}}\n", "folder " + filepath.Join(dir, "arch") + ", writable", false},
		{"folder under a file", "fleet: {archive: {dir: " + filepath.Join(blocker, "arch") + "}}\n", "cannot create it (fleet.archive.dir)", true},
		{"bucket", "fleet: {archive: {s3: {endpoint: \"http://127.0.0.1:1\", bucket: arch, region: us-east-1, access_key_env: DOCTOR_S3_KEY, secret_key_env: DOCTOR_S3_SECRET}}}\n",
			"bucket s3://arch/ at http://127.0.0.1:1 (region us-east-1, keys from env DOCTOR_S3_KEY, env DOCTOR_S3_SECRET); keys readable, bucket not contacted", false},
		{"bucket without its secret", "fleet: {archive: {s3: {endpoint: \"http://127.0.0.1:1\", bucket: arch, region: us-east-1, access_key_env: DOCTOR_S3_KEY, secret_key_env: DOCTOR_S3_NOPE}}}\n",
			"fleet.archive.s3.secret_key_env: DOCTOR_S3_NOPE is not set", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DOCTOR_S3_KEY", "AKIAIOSFODNN7EXAMPLE")
			t.Setenv("DOCTOR_S3_SECRET", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
			cfg := filepath.Join(t.TempDir(), "clawops.yaml")
			writeFile(t, cfg, "data_dir: "+filepath.Join(t.TempDir(), "data")+"\n"+tc.yaml)
			out, _, err := runCLI(t, "doctor", "--config", cfg)
			var line string
			for l := range strings.Lines(out) {
				if strings.HasPrefix(l, "archive ") {
					line = l
				}
			}
			if !strings.Contains(line, tc.want) || strings.Contains(line, "FAIL") != tc.fail || (exitCode(err) == 1) != tc.fail {
				t.Errorf("archive line %q (exit %d), want %q, FAIL %v\n%s", line, exitCode(err), tc.want, tc.fail, out)
			}
			if strings.Contains(out, "EXAMPLEKEY") {
				t.Errorf("doctor shows a secret:\n%s", out)
			}
		})
	}
}

func TestDoctor(t *testing.T) {
	bot := telegramtest.NewServer(t, "123:good-token")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "clawops.yaml")
	writeFile(t, cfg, `data_dir: `+filepath.Join(dir, "data")+`
channels:
  adapters:
    - type: channels.telegram
      settings:
        token: {env: DOCTOR_TG_TOKEN}
        api_endpoint: "`+bot.Endpoint()+`"
  allow_from:
    - {channel: telegram, sender: "1", identity: omar, role: admin}
`)
	t.Setenv("DOCTOR_TG_TOKEN", "123:good-token")
	out, _, err := runCLI(t, "doctor", "--config", cfg)
	if err != nil || !strings.Contains(out, "telegram can connect") {
		t.Fatalf("doctor with a good token: %v\n%s", err, out)
	}
	if want := "folder " + filepath.Join(dir, "data", "archives") + ", writable"; !strings.Contains(out, want) {
		t.Errorf("doctor: want the default archive folder checked (%q)\n%s", want, out)
	}
	t.Setenv("DOCTOR_TG_TOKEN", "123:revoked-token")
	out, _, err = runCLI(t, "doctor", "--config", cfg)
	if exitCode(err) != 1 || !strings.Contains(out, "FAIL") || strings.Contains(out, "revoked-token") {
		t.Fatalf("doctor with a revoked token: exit %d, want 1 with FAIL and no secret\n%s", exitCode(err), out)
	}
	t.Setenv("DOCTOR_TG_TOKEN", "")
	out, _, err = runCLI(t, "doctor", "--config", cfg)
	if exitCode(err) != 1 || !strings.Contains(out, "DOCTOR_TG_TOKEN") {
		t.Fatalf("doctor with the secret missing: exit %d, want 1 naming the variable\n%s", exitCode(err), out)
	}
}

// TestDoctorCluster reports who leads, and fails when this replica's gateway key is not
// the one the fleet recorded.
func TestDoctorCluster(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "clawops.yaml")
	writeFile(t, cfg, "data_dir: "+filepath.Join(dir, "data")+"\ncluster: {replica_id: gw-test-a}\n")
	out, _, err := runCLI(t, "doctor", "--config", cfg)
	if err != nil || !strings.Contains(out, "replica gw-test-a; no replica leads now") {
		t.Fatalf("doctor on a fresh store: %v\n%s", err, out)
	}
	// The fleet recorded another gateway's key; this data folder holds its own.
	c, err := config.Load(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	db, err := gateway.OpenStore(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	if err := cluster.CheckGatewayKey(context.Background(), db, other); err != nil {
		t.Fatal(err)
	}
	store.Close(db)
	if _, err := keyfile.LoadOrCreate(filepath.Join(dir, "data", gateway.KeyFile)); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCLI(t, "doctor", "--config", cfg)
	if exitCode(err) != 1 || !strings.Contains(out, "gateway key differs from the fleet's") {
		t.Fatalf("doctor with another key: exit %d, want 1 naming the key mismatch\n%s", exitCode(err), out)
	}
}
