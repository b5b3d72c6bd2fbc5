package gateway_test

import (
	"errors"
	"strconv"

	"github.com/gatewayforge/clawops"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func instanceID(s string) clawops.InstanceID { return clawops.InstanceID(s) }

func errorsAs(err error, target any) bool { return errors.As(err, target) }
