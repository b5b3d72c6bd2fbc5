package channels_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewayforge/clawops/channels"
)

func TestSecretRef(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	if err := os.WriteFile(good, []byte("s3cret-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) {
		if k == "TOKEN" {
			return "s3cret-from-env", true
		}
		return "", false
	}
	tests := []struct {
		json, want, wantErr string
	}{
		{`{"env":"TOKEN"}`, "s3cret-from-env", ""},
		{`{"file":"` + good + `"}`, "s3cret-from-file", ""},
		{`"s3cret-inline"`, "", "never written inline"},
		{`{"env":"MISSING"}`, "", "MISSING is not set"},
		{`{"file":"` + empty + `"}`, "", "is empty"},
		{`{"file":"` + filepath.Join(dir, "nope") + `"}`, "", "read secret file"},
		{`{"env":"TOKEN","file":"x"}`, "", "not both"},
		{`{}`, "", "secret reference is empty"},
		{`{"value":"s3cret-inline"}`, "", "unknown field"},
	}
	for _, tt := range tests {
		var ref channels.SecretRef
		err := json.Unmarshal([]byte(tt.json), &ref)
		var got string
		if err == nil {
			got, err = ref.Resolve(env)
		}
		if tt.wantErr == "" && (err != nil || got != tt.want) {
			t.Errorf("%s: got %q, %v; want %q", tt.json, got, err, tt.want)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: got %v, want an error containing %q", tt.json, err, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error repeats the secret: %v", tt.json, err)
		}
	}
}

func TestOutboxSettings(t *testing.T) {
	var s channels.OutboxSettings
	if err := channels.DecodeSettings(json.RawMessage(`{"per_chat_interval":"2s","max_attempts":3}`), &s); err != nil {
		t.Fatal(err)
	}
	o, err := s.Apply(channels.OutboxOptions{PerKey: time.Second, Global: time.Millisecond})
	if err != nil || o.PerKey != 2*time.Second || o.Global != time.Millisecond || o.MaxAttempts != 3 {
		t.Errorf("Apply: got %+v, %v", o, err)
	}
	for _, bad := range []string{`{"per_chat_interval":"-1s"}`, `{"per_chat_interval":5}`, `{"base_backoff":"later"}`} {
		var s channels.OutboxSettings
		if err := channels.DecodeSettings(json.RawMessage(bad), &s); err == nil {
			t.Errorf("%s: got nil, want an error", bad)
		}
	}
	if _, err := (channels.OutboxSettings{MaxAttempts: 50}).Apply(channels.OutboxOptions{}); err == nil {
		t.Error("max_attempts 50: got nil, want an error")
	}
}
