package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEnvNamesFromTags(t *testing.T) {
	names := EnvVars()
	// The names the rest of ClawOps and the docs rely on.
	for _, want := range []string{
		"CLAWOPS_LISTEN", "CLAWOPS_DATA_DIR", "CLAWOPS_PUBLIC_URL", "CLAWOPS_LOG_LEVEL",
		"CLAWOPS_LOG_FORMAT", "CLAWOPS_DATABASE_DRIVER", "CLAWOPS_DATABASE_DSN",
		"CLAWOPS_DATABASE_DSN_FILE", "CLAWOPS_APPROVALS_TTL", "CLAWOPS_NODES_TICK_INTERVAL",
		"CLAWOPS_NODES_HEARTBEAT_INTERVAL", "CLAWOPS_NODES_HEARTBEAT_TIMEOUT",
		"CLAWOPS_NODES_JOIN_TOKEN_TTL", "CLAWOPS_NODES_INVOKE_TIMEOUT",
		"CLAWOPS_NODES_ALLOW_PUBLIC_NODE_LISTENER", "CLAWOPS_FLEET_LOCAL_NODE_BINARY",
		"CLAWOPS_FLEET_LOCAL_RUNTIME", "CLAWOPS_FLEET_LOCAL_COMPOSE_DIR", "CLAWOPS_DEMO_PAIRS",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("EnvVars(): missing %s", want)
		}
	}
	seen := map[string]bool{}
	for _, n := range append(names, ReservedEnv()...) {
		if seen[n] {
			t.Errorf("environment name %s is used twice", n)
		}
		seen[n] = true
	}
	for _, n := range names {
		if strings.Contains(n, "TOKENS") {
			t.Errorf("EnvVars(): %s: auth.tokens cannot come from the environment", n)
		}
	}
}

// TestEveryFieldDecodable guards the reflection: every exported field has a YAML key, and
// every key the environment may set can be parsed from text.
func TestEveryFieldDecodable(t *testing.T) {
	var walk func(rt reflect.Type)
	walk = func(rt reflect.Type) {
		for i := range rt.NumField() {
			sf := rt.Field(i)
			if yamlName(sf) == "" {
				t.Errorf("%s.%s has no yaml tag", rt.Name(), sf.Name)
			}
			switch {
			case sf.Type.Kind() == reflect.Struct:
				walk(sf.Type)
			case sf.Type.Kind() == reflect.Slice && sf.Type.Elem().Kind() == reflect.Struct:
				walk(sf.Type.Elem())
			}
		}
	}
	walk(reflect.TypeFor[Config]())
	for _, f := range fields() {
		if f.env == "" {
			continue
		}
		v := reflect.New(f.typ).Elem()
		if err := parseScalar(sampleValue(f.typ), v); err != nil {
			t.Errorf("%s (%s): cannot be set from the environment: %v", f.env, f.typ, err)
		}
	}
}

func sampleValue(t reflect.Type) string {
	switch {
	case t == durationType:
		return "5s"
	case t.Kind() == reflect.Bool:
		return "true"
	case t.Kind() == reflect.Int:
		return "7"
	}
	return "x"
}

func TestEnvOverrides(t *testing.T) {
	env := []string{
		"PATH=/usr/bin",
		"CLAWOPS_LISTEN=127.0.0.1:9999",
		"CLAWOPS_LOG_LEVEL=debug",
		"CLAWOPS_NODES_TICK_INTERVAL=1m30s",
		"CLAWOPS_NODES_ALLOW_PUBLIC_NODE_LISTENER=true",
		"CLAWOPS_DEMO_PAIRS=7",
		"CLAWOPS_DATABASE_DRIVER=postgres",
		"CLAWOPS_DATABASE_DSN=postgres://clawops:s3cr3t-pw@127.0.0.1/clawops",
		"CLAWOPS_DATA_DIR=", // empty leaves the default
		"CLAWOPS_ADMIN_TOKEN=reserved-and-ignored-0123456789",
		"CLAWOPS_SLACK_TOKEN=named-by-token-env-0123456789",
	}
	dir := t.TempDir()
	path := dir + "/c.yaml"
	writeFile(t, path, "log:\n  level: warn\ndemo:\n  pairs: 2\nauth:\n  tokens:\n    - identity: bot\n      role: operator\n      token_env: CLAWOPS_SLACK_TOKEN\n")
	c, err := Load(path, env)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, "127.0.0.1:9999"},
		{"public_url follows the env listen", c.PublicURL, "ws://127.0.0.1:9999/v1/nodes/ws"},
		{"log.level (env beats file)", c.Log.Level, "debug"},
		{"nodes.tick_interval", c.Nodes.TickInterval, 90 * time.Second},
		{"allow_public_node_listener", c.Nodes.AllowPublicNodeListener, true},
		{"demo.pairs", c.Demo.Pairs, 7},
		{"database.dsn", c.Database.DSN, "postgres://clawops:s3cr3t-pw@127.0.0.1/clawops"},
		{"data_dir keeps default", c.DataDir, "./.data"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if strings.Contains(c.Redacted(), "s3cr3t") {
		t.Errorf("Redacted() shows the DSN password:\n%s", c.Redacted())
	}
}

func TestEnvErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  string
		want string
	}{
		{"bad duration", "CLAWOPS_NODES_TICK_INTERVAL=15", `CLAWOPS_NODES_TICK_INTERVAL: "15" is not a duration`},
		{"bad bool", "CLAWOPS_NODES_ALLOW_PUBLIC_NODE_LISTENER=yes please", `CLAWOPS_NODES_ALLOW_PUBLIC_NODE_LISTENER: "yes please" is not a boolean`},
		{"bad int", "CLAWOPS_DEMO_PAIRS=three", `CLAWOPS_DEMO_PAIRS: "three" is not a whole number (it sets demo.pairs)`},
		{"typo", "CLAWOPS_NODES_TICK_INTERVALL=15s", `CLAWOPS_NODES_TICK_INTERVALL: unknown variable: did you mean CLAWOPS_NODES_TICK_INTERVAL?`},
		{"typo reserved", "CLAWOPS_ADMIN_TOKNE=x", `did you mean CLAWOPS_ADMIN_TOKEN?`},
		{"unknown", "CLAWOPS_FROBNICATE=1", `CLAWOPS_FROBNICATE: unknown variable: it sets no config key`},
		{"tokens", "CLAWOPS_AUTH_TOKENS=x", `CLAWOPS_AUTH_TOKENS: unknown variable`},
		{"validated", "CLAWOPS_APPROVALS_TTL=48h", `CLAWOPS_APPROVALS_TTL: approvals.ttl: 48h is out of range`},
		{"bad driver", "CLAWOPS_DATABASE_DRIVER=oracle", `CLAWOPS_DATABASE_DRIVER: database.driver: "oracle" is not allowed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load("", []string{tc.env})
			if err == nil {
				t.Fatalf("got config %v, want error containing %q", c, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error\n%v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestEnvSecretValueNeverEchoed(t *testing.T) {
	// A DSN cannot fail to parse, but a postgres DSN given with sqlite-only settings is
	// still validated without printing it.
	_, err := Load("", []string{"CLAWOPS_DATABASE_DSN=postgres://u:topsecret@h/db", "CLAWOPS_DATABASE_DSN_FILE=/x"})
	if err == nil {
		t.Fatal("got nil error, want dsn and dsn_file conflict")
	}
	if strings.Contains(err.Error(), "topsecret") {
		t.Errorf("error shows the secret: %v", err)
	}
}
