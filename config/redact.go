package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/goccy/go-yaml"
)

// redactedMark replaces a secret's value in printed configuration.
const redactedMark = "[redacted]"

// Redacted renders the configuration as YAML in the shape of the file, with every secret
// (`secret:"true"` keys such as database.dsn) replaced by [redacted]. It is safe to log and
// to show in `clawops config`.
func (c Config) Redacted() string {
	tree := redactValue(reflect.ValueOf(c), "")
	b, err := yaml.Marshal(tree)
	if err != nil {
		return fmt.Sprintf("config: cannot render: %v", err)
	}
	return string(b)
}

// String is Redacted, so printing a Config with %v or %s never shows a secret.
func (c Config) String() string { return c.Redacted() }

// GoString is Redacted, so %#v never shows a secret either.
func (c Config) GoString() string { return c.Redacted() }

// redactValue turns v into plain YAML values in field order, hiding secrets.
func redactValue(v reflect.Value, path string) any {
	switch {
	case v.Type() == durationType:
		return fmtDuration(time.Duration(v.Int()))
	case v.Type() == settingsType:
		// Settings hold secret references, never secrets (the adapters refuse inline ones).
		var m map[string]any
		if v.Len() == 0 || json.Unmarshal(v.Bytes(), &m) != nil {
			return nil
		}
		return m
	case v.Kind() == reflect.Slice && v.Len() == 0:
		return nil // an empty list reads back as "keep the default"
	case v.Kind() == reflect.Struct:
		var m yaml.MapSlice
		for i := range v.NumField() {
			sf := v.Type().Field(i)
			name := yamlName(sf)
			if name == "" {
				continue
			}
			val := redactValue(v.Field(i), join(path, name))
			if sf.Tag.Get("secret") == "true" && v.Field(i).String() != "" {
				val = redactedMark
			}
			m = append(m, yaml.MapItem{Key: name, Value: val})
		}
		return m
	case v.Kind() == reflect.Slice:
		out := make([]any, v.Len())
		for i := range v.Len() {
			out[i] = redactValue(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		return out
	}
	return v.Interface()
}
