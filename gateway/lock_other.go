//go:build !unix

package gateway

import "os"

// LockFile is the file in the data folder a running gateway holds locked (unix only).
const LockFile = "gateway.lock"

// lockDataDir does nothing where flock is not available.
func lockDataDir(dir string) (*os.File, error) { return nil, os.MkdirAll(dir, 0o700) }
