//go:build unix && !linux

package daemon

import "syscall"

// childSysProcAttr puts the child in its own process group so a stop reaches everything it
// started.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
