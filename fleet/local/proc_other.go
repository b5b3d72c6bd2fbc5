//go:build !unix

package local

import (
	"errors"
	"syscall"

	"github.com/gatewayforge/clawops"
)

const (
	sigTerm = syscall.Signal(15)
	sigKill = syscall.Signal(9)
)

type proc struct {
	name string
	done chan struct{}
}

func startProc(name, bin string, args, env []string, logPath string) (*proc, error) {
	return nil, clawops.E("local provider", clawops.ReasonNotImplemented, errors.New("process groups need a unix system"))
}

func (p *proc) pid() int                  { return 0 }
func (p *proc) signal(sig syscall.Signal) {}
func (p *proc) exited() bool              { return true }
