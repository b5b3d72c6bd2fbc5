package config

import (
	"reflect"
	"strings"
	"time"
)

// envPrefix starts every environment variable that maps to a config key.
const envPrefix = "CLAWOPS_"

var durationType = reflect.TypeFor[time.Duration]()

// field is one settable key of Config found from its struct tags: a scalar, a list of
// scalars, or a list of structs (which the environment cannot set).
type field struct {
	path   string // dotted YAML key path, e.g. nodes.tick_interval
	env    string // environment variable, or "" when the key is `env:"-"`
	index  []int  // reflect field index path from Config
	typ    reflect.Type
	secret bool
}

// fields lists every key of Config in declaration order. It is computed from the struct
// tags each time, so the YAML keys, the environment names and the secrets cannot drift.
func fields() []field {
	var out []field
	var walk func(t reflect.Type, prefix string, index []int, noEnv bool)
	walk = func(t reflect.Type, prefix string, index []int, noEnv bool) {
		for i := range t.NumField() {
			sf := t.Field(i)
			name := yamlName(sf)
			if name == "" {
				continue
			}
			path := name
			if prefix != "" {
				path = prefix + "." + name
			}
			idx := append(append([]int(nil), index...), i)
			skipEnv := noEnv || sf.Tag.Get("env") == "-"
			if sf.Type.Kind() == reflect.Struct && sf.Type != durationType {
				walk(sf.Type, path, idx, skipEnv)
				continue
			}
			f := field{path: path, index: idx, typ: sf.Type, secret: sf.Tag.Get("secret") == "true"}
			if !skipEnv {
				f.env = envName(path)
			}
			out = append(out, f)
		}
	}
	walk(reflect.TypeFor[Config](), "", nil, false)
	return out
}

// envName is the environment variable for a key path: nodes.tick_interval →
// CLAWOPS_NODES_TICK_INTERVAL.
func envName(path string) string {
	return envPrefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(path))
}

// yamlName is the YAML key of a struct field, or "" for fields without one.
func yamlName(sf reflect.StructField) string {
	if !sf.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// structKeys lists the YAML keys of a struct type, for suggestions.
func structKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if k := yamlName(t.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// EnvVars lists the environment variables that set config keys, in key order. It is
// generated from the struct tags of Config.
func EnvVars() []string {
	var out []string
	for _, f := range fields() {
		if f.env != "" {
			out = append(out, f.env)
		}
	}
	return out
}

// ReservedEnv lists the CLAWOPS_* variables that are not config keys and that Load
// therefore ignores: the demo's API token secrets, read by `clawops demo` directly, and
// CLAWOPS_CONFIG, which a main may use to name the config file. Variables named by an
// auth.tokens[].token_env are ignored too. Any other unknown CLAWOPS_* variable is an
// error, so a typo cannot go unnoticed.
func ReservedEnv() []string {
	return []string{
		"CLAWOPS_ADMIN_TOKEN",
		"CLAWOPS_APPROVER_TOKEN",
		"CLAWOPS_OPERATOR_TOKEN",
		"CLAWOPS_VIEWER_TOKEN",
		"CLAWOPS_CONFIG",
	}
}
