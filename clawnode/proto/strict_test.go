package proto

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// TestUnmarshalStrictConcurrentFirstUse decodes a type no one has decoded before from
// many goroutines at once: every one must accept the known keys. A field table published
// before it was filled in made the first commands to a fresh node fail as "unknown field".
// Each round makes a new struct type with many fields, so every round is a first use.
func TestUnmarshalStrictConcurrentFirstUse(t *testing.T) {
	const nFields, workers, rounds = 60, 32, 40
	var doc strings.Builder
	fields := make([]reflect.StructField, nFields)
	doc.WriteString("{")
	for i := range nFields {
		fields[i] = reflect.StructField{Name: fmt.Sprintf("F%d", i), Type: reflect.TypeFor[[]map[string]int](),
			Tag: reflect.StructTag(fmt.Sprintf(`json:"f%d"`, i))}
		if i > 0 {
			doc.WriteString(",")
		}
		fmt.Fprintf(&doc, `"f%d":[{"a":%d}]`, i, i)
	}
	doc.WriteString("}")
	data := []byte(doc.String())
	for round := range rounds {
		// A fresh type each round: StructOf returns the same type for the same fields, so
		// one field's name carries the round.
		fs := append([]reflect.StructField(nil), fields...)
		fs[0].Name = fmt.Sprintf("R%d", round)
		typ := reflect.StructOf(fs)
		start := make(chan struct{})
		errs := make(chan error, workers)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				<-start
				errs <- UnmarshalStrict(data, reflect.New(typ).Interface())
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: concurrent first decode: %v", round, err)
			}
		}
	}
}

// TestUnmarshalStrictRecursiveType still finds a recursive type's own shape.
func TestUnmarshalStrictRecursiveType(t *testing.T) {
	type node struct {
		Name     string  `json:"name"`
		Children []*node `json:"children"`
	}
	var n node
	if err := UnmarshalStrict([]byte(`{"name":"a","children":[{"name":"b","children":[]}]}`), &n); err != nil || n.Children[0].Name != "b" {
		t.Fatalf("recursive: %+v, %v", n, err)
	}
	if err := UnmarshalStrict([]byte(`{"name":"a","children":[{"name":"b","extra":1}]}`), &n); err == nil || !strings.Contains(err.Error(), "extra") {
		t.Fatalf("unknown key deep in a recursive type: got %v", err)
	}
}
