package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Node commands the fleet sends; gf-clawnode's allowlist holds the same names.
const (
	CmdHealth      = proto.CmdHealth
	CmdRestart     = proto.CmdRestart
	CmdLogs        = proto.CmdLogs
	CmdMetrics     = proto.CmdMetrics
	CmdConfigGet   = proto.CmdConfigGet
	CmdConfigApply = proto.CmdConfigApply
	CmdBackup      = proto.CmdBackup
	CmdBackupRead  = proto.CmdBackupRead
	CmdUpgrade     = proto.CmdUpgrade
	CmdInfo        = proto.CmdInfo
)

// Bounds of Logs' line count; gf-clawnode enforces the same.
const (
	MinLogLines     = 1
	MaxLogLines     = 5000
	DefaultLogLines = 100
)

// LogsParams are the parameters of openclaw.logs.
type LogsParams struct {
	Tail int `json:"tail"`
}

// LogsResult is the result of openclaw.logs. Nodes answer with Lines; Text is accepted
// for nodes that return the log as one block.
type LogsResult struct {
	Lines []string `json:"lines,omitempty"`
	Text  string   `json:"text,omitempty"`
}

// noParams marshals as {} for commands without parameters.
type noParams struct{}

// boundNode returns the instance and the node serving it, or NODE_OFFLINE when no node
// has reported for it (INSTANCE_NOT_ACTIVE once it is terminated).
func (s *Service) boundNode(ctx context.Context, op string, id clawops.InstanceID) (Instance, error) {
	in, err := s.load(ctx, op, id)
	if err != nil {
		return Instance{}, err
	}
	if in.State == StateTerminated {
		return Instance{}, clawops.E(op, clawops.KindDenied, clawops.ReasonInstanceNotActive, fmt.Errorf("instance %s is terminated", id))
	}
	if in.NodeID == "" {
		return Instance{}, clawops.E(op, clawops.KindTransient, clawops.ReasonNodeOffline,
			fmt.Errorf("instance %s has no enrolled node yet (state %s)", id, in.State))
	}
	if s.opts.Nodes == nil {
		return Instance{}, clawops.E(op, clawops.ReasonNotImplemented, "no node invoker configured")
	}
	return in, nil
}

// invoke runs command on id's node and returns the raw result.
func (s *Service) invoke(ctx context.Context, op string, id clawops.InstanceID, command string, params any) (json.RawMessage, error) {
	in, err := s.boundNode(ctx, op, id)
	if err != nil {
		return nil, err
	}
	raw, err := s.opts.Nodes.Invoke(ctx, in.NodeID, command, params)
	if err != nil {
		switch {
		case clawops.ReasonOf(err) != "":
			return nil, clawops.E(op, err)
		case errors.Is(err, context.DeadlineExceeded):
			return nil, clawops.E(op, clawops.KindTransient, clawops.ReasonNodeTimeout, err)
		default:
			return nil, clawops.E(op, clawops.ReasonExecutionFailed, err)
		}
	}
	return raw, nil
}

// invokeDecode runs a command without parameters on id's node and decodes its result.
func invokeDecode[T any](ctx context.Context, s *Service, op string, id clawops.InstanceID, command string) (T, error) {
	var out T
	raw, err := s.invoke(ctx, op, id, command, noParams{})
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, clawops.E(op, clawops.ReasonExecutionFailed, fmt.Errorf("decode %s result: %w", command, err))
	}
	return out, nil
}

// Health asks id's node for OpenClaw's health now (openclaw.health).
func (s *Service) Health(ctx context.Context, id clawops.InstanceID) (proto.Health, error) {
	return invokeDecode[proto.Health](ctx, s, "instance health", id, CmdHealth)
}

// Metrics asks id's node for a VPS resource sample (vps.metrics).
func (s *Service) Metrics(ctx context.Context, id clawops.InstanceID) (proto.Metrics, error) {
	return invokeDecode[proto.Metrics](ctx, s, "instance metrics", id, CmdMetrics)
}

// VPSInfo asks id's node what its machine is and which OpenClaw image it runs (vps.info).
func (s *Service) VPSInfo(ctx context.Context, id clawops.InstanceID) (proto.VPSInfo, error) {
	return invokeDecode[proto.VPSInfo](ctx, s, "instance info", id, CmdInfo)
}

// Restart restarts OpenClaw on id (openclaw.restart).
func (s *Service) Restart(ctx context.Context, id clawops.InstanceID) error {
	_, err := s.invoke(ctx, "restart instance", id, CmdRestart, noParams{})
	if err == nil {
		s.log.Info("openclaw restarted", "instance", id)
	}
	return err
}

// Logs returns the last lines of OpenClaw's log on id (openclaw.logs), newline-joined.
// lines must be within MinLogLines..MaxLogLines.
func (s *Service) Logs(ctx context.Context, id clawops.InstanceID, lines int) (string, error) {
	const op = "instance logs"
	if lines < MinLogLines || lines > MaxLogLines {
		return "", clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments,
			fmt.Errorf("lines %d: want %d..%d", lines, MinLogLines, MaxLogLines))
	}
	raw, err := s.invoke(ctx, op, id, CmdLogs, LogsParams{Tail: lines})
	if err != nil {
		return "", err
	}
	text, err := DecodeLogs(raw)
	if err != nil {
		return "", clawops.E(op, clawops.ReasonExecutionFailed, err)
	}
	return text, nil
}

// DecodeLogs reads an openclaw.logs result, {"lines":[...]} or {"text":"..."}, as text.
func DecodeLogs(raw json.RawMessage) (string, error) {
	var r LogsResult
	if err := json.Unmarshal(raw, &r); err != nil {
		return "", fmt.Errorf("decode %s result: %w", CmdLogs, err)
	}
	if len(r.Lines) > 0 {
		return strings.Join(r.Lines, "\n"), nil
	}
	return r.Text, nil
}
