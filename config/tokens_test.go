package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

const (
	adminSecret = "adm-0123456789abcdef"
	fileSecret  = "file-0123456789abcdef"
)

func tokenConfig(refs ...TokenRef) *Config {
	c := Default()
	c.Auth.Tokens = refs
	return c
}

func TestResolveTokens(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	writeFile(t, good, "  "+fileSecret+"\n")
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, "\n")
	env := map[string]string{
		"ADMIN":  adminSecret,
		"SHORT":  "short-secret",
		"SPACED": "two words 0123456789",
		"SAME":   adminSecret,
	}
	getenv := func(k string) string { return env[k] }

	got, err := tokenConfig(
		TokenRef{Identity: "omar", Role: "admin", TokenEnv: "ADMIN"},
		TokenRef{Identity: "night", Role: "approver", TokenFile: good},
	).ResolveTokens(getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := []Token{
		{Identity: "omar", Role: "admin", Secret: adminSecret, From: "env ADMIN"},
		{Identity: "night", Role: "approver", Secret: fileSecret, From: "file " + good},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ResolveTokens (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name string
		refs []TokenRef
		want string
	}{
		{"env missing", []TokenRef{{Identity: "o", Role: "admin", TokenEnv: "NOPE"}},
			"auth.tokens[0].token_env: NOPE is not set or empty"},
		{"file missing", []TokenRef{{Identity: "o", Role: "admin", TokenFile: filepath.Join(dir, "nope")}},
			"auth.tokens[0].token_file: cannot read the token for o"},
		{"file empty", []TokenRef{{Identity: "o", Role: "admin", TokenFile: empty}},
			"auth.tokens[0].token_file: " + empty + " is empty"},
		{"short", []TokenRef{{Identity: "o", Role: "admin", TokenEnv: "SHORT"}},
			"auth.tokens[0]: the token from env SHORT has 12 characters: use at least 16"},
		{"whitespace", []TokenRef{{Identity: "o", Role: "admin", TokenEnv: "SPACED"}},
			"contains whitespace"},
		{"duplicate", []TokenRef{{Identity: "o", Role: "admin", TokenEnv: "ADMIN"}, {Identity: "p", Role: "viewer", TokenEnv: "SAME"}},
			"auth.tokens[1]: has the same token as auth.tokens[0]"},
		{"neither", []TokenRef{{Identity: "o", Role: "admin"}}, "auth.tokens[0]: has no secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			toks, err := tokenConfig(tc.refs...).ResolveTokens(getenv)
			if err == nil {
				t.Fatalf("got %v, want error containing %q", toks, tc.want)
			}
			if toks != nil {
				t.Errorf("got tokens %v with the error, want nil", toks)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %q, want it to contain %q", err, tc.want)
			}
			for _, s := range []string{adminSecret, "short-secret", "two words"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error shows a secret: %v", err)
				}
			}
		})
	}
}

func TestTokenNeverPrintsSecret(t *testing.T) {
	tok := Token{Identity: "omar", Role: "admin", Secret: adminSecret, From: "env ADMIN"}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("token", "tok", tok, "list", []Token{tok})
	slog.New(slog.NewTextHandler(&logs, nil)).Info("token", "tok", tok)
	js, _ := json.Marshal(tok)
	for name, out := range map[string]string{
		"%v":   fmt.Sprintf("%v", tok),
		"%+v":  fmt.Sprintf("%+v", tok),
		"%#v":  fmt.Sprintf("%#v", tok),
		"%s":   fmt.Sprintf("%s", []Token{tok}),
		"slog": logs.String(),
		"json": string(js),
	} {
		if strings.Contains(out, adminSecret) {
			t.Errorf("%s shows the secret: %s", name, out)
		}
		if !strings.Contains(out, "omar") {
			t.Errorf("%s: got %q, want the identity", name, out)
		}
	}
}

func TestConfigNeverPrintsSecret(t *testing.T) {
	c := Default()
	c.Database.DSN = "postgres://clawops:hunter2-pw@db/clawops"
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "cfg", c, "val", *c)
	for name, out := range map[string]string{
		"%v ptr": fmt.Sprintf("%v", c),
		"%+v":    fmt.Sprintf("%+v", *c),
		"%#v":    fmt.Sprintf("%#v", c),
		//lint:ignore S1025 the test checks fmt's %s verb itself, not String
		"%s":       fmt.Sprintf("%s", *c),
		"Redacted": c.Redacted(),
		"slog":     logs.String(),
	} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("%s shows the DSN: %s", name, out)
		}
	}
	if !strings.Contains(c.Redacted(), "dsn: '[redacted]'") && !strings.Contains(c.Redacted(), `dsn: "[redacted]"`) {
		t.Errorf("Redacted(): got\n%s\nwant dsn: [redacted]", c.Redacted())
	}
}

func TestRedactedRoundTrip(t *testing.T) {
	c, err := Load("testdata/full.good.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "again.yaml")
	writeFile(t, path, c.Redacted())
	again, err := Load(path, nil)
	if err != nil {
		t.Fatalf("loading Redacted() output: %v\n%s", err, c.Redacted())
	}
	if diff := cmp.Diff(c, again); diff != "" {
		t.Errorf("round trip through Redacted (-want +got):\n%s", diff)
	}
}

func TestResolveDSN(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "dsn")
	writeFile(t, f, "postgres://u:p@h/db\n")
	emptyF := filepath.Join(dir, "empty")
	writeFile(t, emptyF, "")
	for _, tc := range []struct {
		name    string
		db      Database
		want    string
		wantErr string
	}{
		{"inline", Database{DSN: "/srv/x.db"}, "/srv/x.db", ""},
		{"none", Database{}, "", ""},
		{"file", Database{DSNFile: f}, "postgres://u:p@h/db", ""},
		{"missing file", Database{DSNFile: filepath.Join(dir, "nope")}, "", "database.dsn_file: cannot read the DSN"},
		{"empty file", Database{DSNFile: emptyF}, "", "is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Database = tc.db
			got, err := c.ResolveDSN()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q, nil", got, err, tc.want)
			}
		})
	}
}

func TestResolveTOTP(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ada.totp")
	if err := os.WriteFile(file, []byte("JBSWY3DPEHPK3PXP\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Default()
	c.Governance.TOTP = []TOTPRef{{Identity: "omar", SecretEnv: "TOTP_OMAR"}, {Identity: "ada", SecretFile: file}}
	env := map[string]string{"TOTP_OMAR": " KRSXG5CTMVRXEZLU "}
	got, err := c.ResolveTOTP(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if got["omar"] != "KRSXG5CTMVRXEZLU" || got["ada"] != "JBSWY3DPEHPK3PXP" {
		t.Fatalf("got %v", got)
	}
	delete(env, "TOTP_OMAR")
	_, err = c.ResolveTOTP(func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "governance.totp[0].secret_env") {
		t.Fatalf("missing secret: got %v, want an error naming governance.totp[0].secret_env", err)
	}
}

func TestTOTPSecretEnvIsNotAnUnknownVariable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("governance:\n  totp:\n    - {identity: omar, secret_env: CLAWOPS_TOTP_OMAR}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(file, []string{"CLAWOPS_TOTP_OMAR=KRSXG5CTMVRXEZLU"}); err != nil {
		t.Fatalf("Load: %v", err)
	}
}

func TestLLMKeyAndModelsFromEnv(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("llm:\n  base_url: http://127.0.0.1:11434/v1\n  api_key_env: CLAWOPS_LLM_KEY\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(file, []string{"CLAWOPS_LLM_KEY=sk-test-123", "CLAWOPS_LLM_MODELS=llama3, qwen2 ,"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(c.LLM.Models) != 2 || c.LLM.Models[0] != "llama3" || c.LLM.Models[1] != "qwen2" {
		t.Fatalf("models from CLAWOPS_LLM_MODELS: got %q", c.LLM.Models)
	}
	key, err := c.ResolveLLMKey(func(k string) string { return map[string]string{"CLAWOPS_LLM_KEY": "sk-test-123"}[k] })
	if err != nil || key != "sk-test-123" {
		t.Fatalf("ResolveLLMKey: %q, %v", key, err)
	}
	if _, err := c.ResolveLLMKey(func(string) string { return "" }); err == nil || strings.Contains(err.Error(), "sk-") {
		t.Fatalf("missing key: got %v, want an error naming the variable only", err)
	}
}
