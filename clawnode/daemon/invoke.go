package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// handleInvoke checks one node.invoke.request and runs it, in this order: envelope well
// formed, addressed to this node, signed by the pinned gateway key, not expired, idempotency
// key not seen before (the key is then spent), command in the allowlist, params valid. A
// refusal is answered as the invoke result's error and reported as a
// clawops.command.refused node event. The command runs on its own goroutine, so the reader
// keeps reading; it is bounded by MaxConcurrent, its timeoutMs and MaxExecTime.
func (d *Daemon) handleInvoke(ctx context.Context, s *session, payload json.RawMessage) {
	var r proto.InvokeRequest
	if err := proto.UnmarshalStrict(payload, &r); err != nil {
		d.refuse(ctx, s, r, clawops.E("invoke", clawops.KindInvalid, clawops.ReasonMalformedRequest, err))
		return
	}
	if err := r.Validate(); err != nil {
		d.refuse(ctx, s, r, clawops.E("invoke", clawops.KindInvalid, clawops.ReasonMalformedRequest, err))
		return
	}
	if r.NodeID != d.nodeID {
		d.refuse(ctx, s, r, clawops.E("invoke", clawops.KindDenied, clawops.ReasonForbidden, "command is addressed to another node"))
		return
	}
	now := d.clock.Now()
	if err := proto.VerifyInvoke(d.cfg.GatewayKey, r, now, d.cfg.MaxCommandTTL); err != nil {
		d.refuse(ctx, s, r, err)
		return
	}
	key := r.IdempotencyKey
	if key == "" {
		key = "id:" + r.ID
	}
	if err := d.replay.check(key, r.ClawOps.ExpiresAtMs, now.UnixMilli()); err != nil {
		if errors.Is(err, errReplayed) {
			d.refuse(ctx, s, r, clawops.E("invoke", clawops.KindDenied, clawops.ReasonCommandReplayed, err))
		} else {
			d.fail(ctx, s, r, proto.InvokeErrUnavailable, err.Error())
		}
		return
	}
	cmd, ok := d.commands.Lookup(r.Command)
	if !ok {
		d.refuse(ctx, s, r, clawops.E("invoke", clawops.KindDenied, clawops.ReasonNotAllowlisted,
			fmt.Sprintf("command %q is not in this node's allowlist", clipString(r.Command, 64))))
		return
	}
	params, err := cmd.decode([]byte(r.ParamsJSON))
	if err != nil {
		d.refuse(ctx, s, r, err)
		return
	}
	select {
	case d.slots <- struct{}{}:
	default:
		d.fail(ctx, s, r, proto.InvokeErrUnavailable, "node is busy: too many commands running")
		return
	}
	timeout := d.cfg.MaxExecTime
	if r.TimeoutMs > 0 {
		timeout = min(timeout, time.Duration(r.TimeoutMs)*time.Millisecond)
	}
	go func() {
		defer func() { <-d.slots }()
		// The run is bounded by its own timeout, not by the connection: a restart half done
		// because the socket dropped is worse than one that finishes.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		start := time.Now()
		out, err := cmd.run(rctx, params)
		log := d.log.With("command", r.Command, "id", r.ID, "took", time.Since(start).Round(time.Millisecond))
		if err != nil {
			code := string(clawops.ReasonExecutionFailed)
			if errors.Is(err, context.DeadlineExceeded) {
				code = string(clawops.ReasonNodeTimeout)
			}
			log.Warn("command failed", "err", err)
			d.fail(ctx, s, r, code, err.Error())
			return
		}
		b, err := json.Marshal(out)
		if err != nil {
			d.fail(ctx, s, r, string(clawops.ReasonExecutionFailed), "encode result: "+err.Error())
			return
		}
		log.Info("command done")
		d.answer(ctx, s, proto.InvokeResult{ID: r.ID, NodeID: d.nodeID, OK: true, PayloadJSON: string(b)})
	}()
}

// refuse answers a command the node will not run and reports the refusal.
func (d *Daemon) refuse(ctx context.Context, s *session, r proto.InvokeRequest, err error) {
	code := clawops.ReasonOf(err)
	if code == "" {
		code = clawops.ReasonMalformedRequest
	}
	var ce *clawops.Error
	msg := err.Error()
	if errors.As(err, &ce) && ce.Err != nil {
		msg = ce.Err.Error()
	}
	msg = clipString(msg, 500)
	d.log.Warn("command refused", "command", clipString(r.Command, 64), "id", clipString(r.ID, 64), "code", code, "reason", msg)
	if r.ID != "" && len(r.ID) <= proto.MaxIDLen {
		d.fail(ctx, s, r, string(code), msg)
	}
	ev, _ := json.Marshal(proto.CommandRefused{ID: clipString(r.ID, proto.MaxIDLen), Command: clipString(r.Command, proto.MaxIDLen),
		IdempotencyKey: clipString(r.IdempotencyKey, proto.MaxIDLen), Code: code, Message: msg})
	if err := s.request(ctx, proto.MethodNodeEvent, proto.NodeEventParams{
		Event: proto.NodeEventCommandRefused, PayloadJSON: string(ev)}); err != nil {
		d.log.Warn("report refusal", "err", err)
	}
}

func (d *Daemon) fail(ctx context.Context, s *session, r proto.InvokeRequest, code, msg string) {
	if msg == "" {
		msg = code
	}
	d.answer(ctx, s, proto.InvokeResult{ID: r.ID, NodeID: d.nodeID, OK: false,
		Error: &proto.InvokeError{Code: code, Message: clipString(msg, 1000)}})
}

func (d *Daemon) answer(ctx context.Context, s *session, res proto.InvokeResult) {
	if err := s.request(ctx, proto.MethodInvokeResult, res); err != nil {
		d.log.Warn("send command result", "id", res.ID, "err", err)
	}
}
