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
// formed, addressed to this node, signed by the pinned gateway key, not expired,
// idempotency key not seen before (the key is then spent; a retry of the same command and
// params under the same key gets the first run's result), command in the allowlist, params
// valid. A refusal is answered as the invoke result's error and reported as a
// clawops.command.refused node event. The command runs on its own goroutine, so the reader
// keeps reading; it is bounded by MaxConcurrent, its timeoutMs and MaxExecTime.
//
// With AllowUnsignedReadOnly (a stock OpenClaw gateway, which signs nothing), an unsigned
// command runs only if the allowlist marks it read-only; any other is UNSIGNED_COMMAND.
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
	if r.NodeID != s.nodeID {
		d.refuse(ctx, s, r, clawops.E("invoke", clawops.KindDenied, clawops.ReasonForbidden, "command is addressed to another node"))
		return
	}
	if r.ClawOps == nil && d.cfg.AllowUnsignedReadOnly {
		d.handleUnsigned(ctx, s, r)
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
	if run := d.results.lookup(key, now.UnixMilli()); run != nil {
		if !d.results.retry(run, r) {
			d.refuse(ctx, s, r, clawops.E("invoke", clawops.KindDenied, clawops.ReasonCommandReplayed,
				"idempotency key already used by this invoke or by another command"))
			return
		}
		go d.answerRetry(ctx, s, r, run)
		return
	}
	if err := d.replay.check(key, r.ClawOps.ExpiresAtMs, now.UnixMilli()); err != nil {
		if errors.Is(err, errReplayed) {
			d.refuse(ctx, s, r, clawops.E("invoke", clawops.KindDenied, clawops.ReasonCommandReplayed,
				"idempotency key already used (before this node restarted; its result is not kept)"))
		} else {
			d.fail(ctx, s, r, proto.InvokeErrUnavailable, err.Error())
		}
		return
	}
	cmd, params, ok := d.admit(ctx, s, r)
	if !ok {
		return
	}
	run := d.results.start(key, r, r.ClawOps.ExpiresAtMs, now.UnixMilli())
	if !d.launch(ctx, s, r, cmd, params, run) {
		d.results.finish(run, proto.InvokeResult{OK: false,
			Error: &proto.InvokeError{Code: proto.InvokeErrUnavailable, Message: "node was busy"}})
	}
}

// handleUnsigned runs an unsigned read-only command (see handleInvoke).
func (d *Daemon) handleUnsigned(ctx context.Context, s *session, r proto.InvokeRequest) {
	cmd, ok := d.commands.Lookup(r.Command)
	if ok && !cmd.IsReadOnly() {
		d.refuse(ctx, s, r, clawops.E("invoke", clawops.KindDenied, clawops.ReasonUnsignedCommand,
			fmt.Sprintf("command %q changes the node: it needs a ClawOps-signed request; unsigned requests may only read", r.Command)))
		return
	}
	cmd, params, ok := d.admit(ctx, s, r)
	if !ok {
		return
	}
	d.launch(ctx, s, r, cmd, params, nil)
}

// admit looks the command up in the allowlist and checks its params, refusing on failure.
func (d *Daemon) admit(ctx context.Context, s *session, r proto.InvokeRequest) (Command, any, bool) {
	cmd, ok := d.commands.Lookup(r.Command)
	if !ok {
		d.refuse(ctx, s, r, clawops.E("invoke", clawops.KindDenied, clawops.ReasonNotAllowlisted,
			fmt.Sprintf("command %q is not in this node's allowlist", clipString(r.Command, 64))))
		return Command{}, nil, false
	}
	params, err := cmd.decode([]byte(r.ParamsJSON))
	if err != nil {
		d.refuse(ctx, s, r, err)
		return Command{}, nil, false
	}
	return cmd, params, true
}

// launch runs an admitted command on its own goroutine; false when the node is busy (the
// busy answer has been sent).
func (d *Daemon) launch(ctx context.Context, s *session, r proto.InvokeRequest, cmd Command, params any, run *cachedRun) bool {
	select {
	case d.slots <- struct{}{}:
	default:
		d.fail(ctx, s, r, proto.InvokeErrUnavailable, "node is busy: too many commands running")
		return false
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
		res := d.execute(rctx, r, cmd, params)
		log := d.log.With("command", r.Command, "id", r.ID, "took", time.Since(start).Round(time.Millisecond))
		if res.OK {
			log.Info("command done")
		} else {
			log.Warn("command failed", "code", res.Error.Code, "err", res.Error.Message)
		}
		if run != nil {
			d.results.finish(run, res)
		}
		d.answer(ctx, s, res)
	}()
	return true
}

// execute runs the command and builds its result.
func (d *Daemon) execute(ctx context.Context, r proto.InvokeRequest, cmd Command, params any) proto.InvokeResult {
	out, err := cmd.run(ctx, params)
	if err == nil {
		b, merr := json.Marshal(out)
		if merr == nil {
			return proto.InvokeResult{ID: r.ID, NodeID: r.NodeID, OK: true, PayloadJSON: string(b)}
		}
		err = fmt.Errorf("encode result: %w", merr)
	}
	code := string(clawops.ReasonExecutionFailed)
	switch rc := clawops.ReasonOf(err); {
	case proto.IsExecutionCode(rc):
		code = string(rc)
	case errors.Is(err, context.DeadlineExceeded):
		code = string(clawops.ReasonNodeTimeout)
	}
	return proto.InvokeResult{ID: r.ID, NodeID: r.NodeID, OK: false,
		Error: &proto.InvokeError{Code: code, Message: clipString(innerMessage(err), 1000)}}
}

// answerRetry answers a retried invoke with the first run's outcome, once it is known.
func (d *Daemon) answerRetry(ctx context.Context, s *session, r proto.InvokeRequest, run *cachedRun) {
	wait := d.cfg.MaxExecTime
	if r.TimeoutMs > 0 {
		wait = min(wait, time.Duration(r.TimeoutMs)*time.Millisecond)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-run.done:
	case <-t.C:
		d.fail(ctx, s, r, string(clawops.ReasonNodeTimeout), "the first run of this idempotency key is still going")
		return
	case <-ctx.Done():
		return
	}
	if run.res.OK && !run.kept {
		d.refuse(ctx, s, r, clawops.E("invoke", clawops.KindDenied, clawops.ReasonCommandReplayed,
			"the command already ran; its result was too large to keep for retries"))
		return
	}
	res := run.res
	res.ID, res.NodeID = r.ID, r.NodeID
	d.log.Info("answered a retry from the first run", "command", r.Command, "id", r.ID)
	d.answer(ctx, s, res)
}

// innerMessage is err's message without the op and code prefixes of a *clawops.Error.
func innerMessage(err error) string {
	var ce *clawops.Error
	if errors.As(err, &ce) && ce.Err != nil {
		return ce.Err.Error()
	}
	return err.Error()
}

// refuse answers a command the node will not run and reports the refusal.
func (d *Daemon) refuse(ctx context.Context, s *session, r proto.InvokeRequest, err error) {
	code := clawops.ReasonOf(err)
	if code == "" {
		code = clawops.ReasonMalformedRequest
	}
	msg := clipString(innerMessage(err), 500)
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
	d.answer(ctx, s, proto.InvokeResult{ID: r.ID, NodeID: s.nodeID, OK: false,
		Error: &proto.InvokeError{Code: code, Message: clipString(msg, 1000)}})
}

func (d *Daemon) answer(ctx context.Context, s *session, res proto.InvokeResult) {
	if err := s.request(ctx, proto.MethodInvokeResult, res); err != nil {
		d.log.Warn("send command result", "id", res.ID, "err", err)
	}
}
