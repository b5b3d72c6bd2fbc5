package channels

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// SecretRef says where a secret (a bot token, a signing secret) lives: in an environment
// variable or in a file. Adapter settings never hold a secret inline, so a config file can be
// shared and logged; a string where a SecretRef is expected is an error that says so.
type SecretRef struct {
	Env  string `json:"env,omitempty"`
	File string `json:"file,omitempty"`
}

// UnmarshalJSON decodes {"env": NAME} or {"file": PATH} strictly and refuses inline strings.
func (s *SecretRef) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		return errors.New(`secrets are never written inline: use {"env": "NAME"} or {"file": "/path"}`)
	}
	type plain SecretRef
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("secret reference: %w", err)
	}
	*s = SecretRef(p)
	return nil
}

// IsZero reports whether the reference names nothing.
func (s SecretRef) IsZero() bool { return s.Env == "" && s.File == "" }

// Resolve reads the secret. lookup reads the environment (nil means os.LookupEnv). Errors name
// the variable or file, never the value.
func (s SecretRef) Resolve(lookup func(string) (string, bool)) (string, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	switch {
	case s.Env != "" && s.File != "":
		return "", errors.New("secret reference: set env or file, not both")
	case s.Env != "":
		v, ok := lookup(s.Env)
		if !ok || strings.TrimSpace(v) == "" {
			return "", fmt.Errorf("environment variable %s is not set", s.Env)
		}
		return strings.TrimSpace(v), nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("read secret file: %w", err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("secret file %s is empty", s.File)
		}
		return v, nil
	}
	return "", errors.New("secret reference is empty: set env or file")
}

// Secret resolves ref with the environment of e. name is the settings key, for the error.
func (e Env) Secret(name string, ref SecretRef) (string, error) {
	v, err := ref.Resolve(e.LookupEnv)
	if err != nil {
		return "", fmt.Errorf("settings.%s: %w", name, err)
	}
	return v, nil
}

// Duration is a time.Duration written as a Go duration string ("1s", "250ms") in settings.
type Duration time.Duration

// UnmarshalJSON parses a duration string; a negative duration is an error.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"1s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("duration %s is negative", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// OutboxSettings are the optional outbox knobs every adapter accepts under "outbox". Zero
// fields keep the platform's defaults.
type OutboxSettings struct {
	PerChatInterval Duration `json:"per_chat_interval,omitempty"`
	GlobalInterval  Duration `json:"global_interval,omitempty"`
	MaxAttempts     int      `json:"max_attempts,omitempty"`
	BaseBackoff     Duration `json:"base_backoff,omitempty"`
	MaxBackoff      Duration `json:"max_backoff,omitempty"`
}

// Apply returns def with the fields set in s replacing its own.
func (s OutboxSettings) Apply(def OutboxOptions) (OutboxOptions, error) {
	if s.MaxAttempts < 0 || s.MaxAttempts > 20 {
		return def, fmt.Errorf("settings.outbox.max_attempts %d must be between 1 and 20", s.MaxAttempts)
	}
	if s.PerChatInterval > 0 {
		def.PerKey = time.Duration(s.PerChatInterval)
	}
	if s.GlobalInterval > 0 {
		def.Global = time.Duration(s.GlobalInterval)
	}
	if s.MaxAttempts > 0 {
		def.MaxAttempts = s.MaxAttempts
	}
	if s.BaseBackoff > 0 {
		def.BaseBackoff = time.Duration(s.BaseBackoff)
	}
	if s.MaxBackoff > 0 {
		def.MaxBackoff = time.Duration(s.MaxBackoff)
	}
	return def, nil
}
