package sshfallback

import (
	"context"
	"encoding/json"
	"errors"
	"io"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/daemon"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Dispatch is the node's side: it checks the SSH command line (proto.ParseSSHCommandLine),
// runs the command from cmds — the daemon's own allowlist, with the daemon's params
// checks — and writes one proto.SSHResult as JSON to w. It returns the process exit code:
// 0 when the command succeeded, 1 when it failed or was refused. Nothing reaches a shell.
func Dispatch(ctx context.Context, cmds *daemon.Allowlist, line string, w io.Writer) int {
	res := run(ctx, cmds, line)
	b, _ := json.Marshal(res)
	w.Write(append(b, '\n'))
	if res.OK {
		return 0
	}
	return 1
}

func run(ctx context.Context, cmds *daemon.Allowlist, line string) proto.SSHResult {
	command, params, err := proto.ParseSSHCommandLine(line)
	if err != nil {
		return failure(err)
	}
	cmd, ok := cmds.Lookup(command)
	if !ok {
		return failure(clawops.E(clawops.KindDenied, clawops.ReasonNotAllowlisted, errors.New("command is not in this node's allowlist")))
	}
	out, err := cmd.Execute(ctx, params)
	if err != nil {
		return failure(err)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return failure(err)
	}
	return proto.SSHResult{OK: true, Result: b}
}

func failure(err error) proto.SSHResult {
	code := clawops.ReasonOf(err)
	switch {
	case proto.IsRefusal(code), proto.IsExecutionCode(code):
	case errors.Is(err, context.DeadlineExceeded):
		code = clawops.ReasonNodeTimeout
	default:
		code = clawops.ReasonExecutionFailed
	}
	msg := err.Error()
	var ce *clawops.Error
	if errors.As(err, &ce) && ce.Err != nil {
		msg = ce.Err.Error()
	}
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	return proto.SSHResult{Error: &proto.InvokeError{Code: string(code), Message: msg}}
}
