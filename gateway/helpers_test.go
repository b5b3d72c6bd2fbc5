package gateway_test

import (
	"errors"
	"os"
	"strconv"

	"github.com/gatewayforge/clawops"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func instanceID(s string) clawops.InstanceID { return clawops.InstanceID(s) }

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func writeTestFile(t interface {
	Helper()
	Fatal(...any)
}, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
