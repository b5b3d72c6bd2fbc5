//go:build linux

package daemon

import "syscall"

// childSysProcAttr puts the child in its own process group (so a stop reaches everything it
// started) and has the kernel kill it if the daemon dies first.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
