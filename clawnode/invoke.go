package clawnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Invoke runs command on node and returns its JSON result. The command is signed with the
// gateway key, carries an idempotency key (a fresh one, or the one set on ctx with
// proto.WithIdempotencyKey) and an expiry (CommandTTL), and is bounded by ctx (or
// InvokeTimeout when ctx has no deadline). Errors are *clawops.Error:
//   - node not connected, or gone while the command was in flight: NODE_OFFLINE, KindTransient
//   - no answer before the deadline: NODE_TIMEOUT, KindTransient
//   - the node refused the command: the node's reason code, KindDenied
//   - the command ran and ended in a known way (CONFIG_ROLLED_BACK, UPGRADE_ROLLED_BACK,
//     ROLLBACK_FAILED, CONFIG_INVALID, NOT_CONFIGURED, NOT_IMPLEMENTED): that code
//   - the command ran and failed otherwise: EXECUTION_FAILED with the node's message
//
// Retrying with the same idempotency key (within CommandTTL) never runs the command
// twice: the node answers with the first run's result.
func (h *Hub) Invoke(ctx context.Context, node clawops.NodeID, command string, params any) (json.RawMessage, error) {
	paramsJSON, err := encodeParams(params)
	if err != nil {
		return nil, clawops.E(fmt.Sprintf("invoke %s on node %s", command, short(node)), clawops.KindInvalid, clawops.ReasonBadArguments, err)
	}
	return h.invokeJSON(ctx, node, command, paramsJSON, proto.IdempotencyKeyFrom(ctx))
}

func encodeParams(params any) (string, error) {
	if params == nil {
		return "{}", nil
	}
	if raw, ok := params.(json.RawMessage); ok {
		if !json.Valid(raw) {
			return "", errors.New("encode params: invalid JSON")
		}
		return string(raw), nil
	}
	b, err := json.Marshal(params)
	if err != nil {
		return "", fmt.Errorf("encode params: %w", err)
	}
	return string(b), nil
}

// invokeJSON signs and sends one command whose params are already encoded.
func (h *Hub) invokeJSON(ctx context.Context, node clawops.NodeID, command, paramsJSON, idemKey string) (json.RawMessage, error) {
	op := "invoke " + command + " on node " + short(node)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.opts.InvokeTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	if idemKey == "" {
		idemKey = "ik_" + randomToken()[:32]
	}
	now := h.clock.Now()
	req := proto.InvokeRequest{
		ID: "inv_" + randomToken()[:22], NodeID: string(node), Command: command, ParamsJSON: paramsJSON,
		TimeoutMs: max(time.Until(deadline).Milliseconds(), 1), IdempotencyKey: idemKey,
	}
	if err := req.Validate(); err != nil {
		return nil, clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, err)
	}
	proto.SignInvoke(h.key, &req, now.Add(h.opts.CommandTTL))
	return h.send(ctx, node, req, op)
}

// send delivers a prepared invoke request and waits for its result.
func (h *Hub) send(ctx context.Context, node clawops.NodeID, req proto.InvokeRequest, op string) (json.RawMessage, error) {
	c := h.conn(node)
	if c == nil {
		return nil, clawops.E(op, clawops.KindTransient, clawops.ReasonNodeOffline, "node is not connected")
	}
	ch := make(chan proto.InvokeResult, 1)
	if !c.addPending(req.ID, ch) {
		return nil, clawops.E(op, clawops.KindTransient, clawops.ReasonNodeOffline, "node disconnected")
	}
	defer c.removePending(req.ID)
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, err)
	}
	if err := c.writeRaw(ctx, proto.EncodeEvent(proto.EventInvokeRequest, payload)); err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(op, ctx)
		}
		return nil, clawops.E(op, clawops.KindTransient, clawops.ReasonNodeOffline, fmt.Errorf("send command: %w", err))
	}
	select {
	case r := <-ch:
		return resultOf(op, r)
	case <-c.done:
		return nil, clawops.E(op, clawops.KindTransient, clawops.ReasonNodeOffline, "node disconnected while the command was in flight")
	case <-ctx.Done():
		return nil, ctxError(op, ctx)
	}
}

func ctxError(op string, ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return clawops.E(op, clawops.KindTransient, clawops.ReasonNodeTimeout, "no result before the deadline")
	}
	return clawops.E(op, clawops.KindTransient, ctx.Err())
}

func resultOf(op string, r proto.InvokeResult) (json.RawMessage, error) {
	if r.OK {
		res := r.Result()
		if !json.Valid(res) {
			return nil, clawops.E(op, clawops.KindOther, clawops.ReasonExecutionFailed, "node returned invalid JSON")
		}
		return res, nil
	}
	code := clawops.ReasonCode(r.Error.Code)
	msg := r.Error.Message
	if msg == "" {
		msg = string(code)
	}
	switch {
	case proto.IsRefusal(code):
		return nil, clawops.E(op, clawops.KindDenied, code, msg)
	case code == proto.CodeConfigInvalid:
		return nil, clawops.E(op, clawops.KindInvalid, code, msg)
	case proto.IsExecutionCode(code):
		return nil, clawops.E(op, clawops.KindOther, code, msg)
	case code == clawops.ReasonNodeTimeout:
		return nil, clawops.E(op, clawops.KindTransient, clawops.ReasonNodeTimeout, msg)
	case r.Error.Code == proto.InvokeErrUnavailable:
		return nil, clawops.E(op, clawops.KindTransient, ReasonNodeBusy, msg)
	}
	return nil, clawops.E(op, clawops.KindOther, clawops.ReasonExecutionFailed, msg)
}
