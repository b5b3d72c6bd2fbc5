package gateway

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/config"
	"github.com/gatewayforge/clawops/fleet"
)

// ArchiveStore builds the store a teardown keeps workspace archives in, from
// fleet.archive: a folder (<data_dir>/archives when nothing is configured) or an
// S3-compatible bucket whose keys are read from the environment (through lookup; nil
// means the process environment) or from files. It also describes the store, without
// secrets, for the log and for doctor.
func ArchiveStore(cfg *config.Config, lookup func(string) (string, bool), clock clawops.Clock) (fleet.ArchiveStore, string, error) {
	a := cfg.Fleet.Archive
	if !a.S3.IsSet() {
		dir := a.Dir
		if dir == "" {
			if cfg.DataDir == "" {
				return nil, "", errors.New("fleet.archive: no dir, no s3 and no data_dir to put archives under")
			}
			dir = filepath.Join(cfg.DataDir, "archives")
		}
		return fleet.DirStore{Root: dir}, "folder " + dir, nil
	}
	keys, err := cfg.ResolveArchiveKeys(func(k string) string { v, _ := lookupEnv(lookup)(k); return v })
	if err != nil {
		return nil, "", err
	}
	prefix := a.S3.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	st := &fleet.S3Store{Endpoint: a.S3.Endpoint, Bucket: a.S3.Bucket, Region: a.S3.Region, Prefix: prefix,
		AccessKey: keys.AccessKey, SecretKey: keys.SecretKey, Clock: clock}
	return st, fmt.Sprintf("bucket s3://%s/%s at %s (region %s, keys from %s)", a.S3.Bucket, prefix, a.S3.Endpoint, a.S3.Region, keys.From), nil
}
