package clawnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Selector picks the nodes of a fan-out. Nodes and Instances name nodes explicitly (an
// offline one reports NODE_OFFLINE); when both are empty, every connected node is picked.
// Match, when set, keeps only the connected nodes it accepts.
type Selector struct {
	Nodes     []clawops.NodeID
	Instances []clawops.InstanceID
	Match     func(NodeStatus) bool
}

// Outcome classifies one node's part of a fan-out.
type Outcome string

// Fan-out outcomes.
const (
	OutcomeOK      Outcome = "ok"
	OutcomeError   Outcome = "error"   // refused, failed, offline or dropped
	OutcomeTimeout Outcome = "timeout" // no answer within the per-node timeout
)

// NodeResult is one node's outcome in a fan-out.
type NodeResult struct {
	Node     clawops.NodeID     `json:"node"`
	Instance clawops.InstanceID `json:"instance,omitempty"`
	Outcome  Outcome            `json:"outcome"`
	Result   json.RawMessage    `json:"result,omitempty"`
	Code     clawops.ReasonCode `json:"code,omitempty"`
	Error    string             `json:"error,omitempty"`
	Duration time.Duration      `json:"durationNs"`
	Err      error              `json:"-"`
}

// MultiResult aggregates a fan-out: one NodeResult per selected node, sorted by node id,
// and the count of each outcome.
type MultiResult struct {
	Command  string        `json:"command"`
	Results  []NodeResult  `json:"results"`
	OK       int           `json:"ok"`
	Errors   int           `json:"errors"`
	Timeouts int           `json:"timeouts"`
	Duration time.Duration `json:"durationNs"`
}

// Failed returns the results that are not OK.
func (m MultiResult) Failed() []NodeResult {
	var out []NodeResult
	for _, r := range m.Results {
		if r.Outcome != OutcomeOK {
			out = append(out, r)
		}
	}
	return out
}

// DefaultFanOut is the concurrency MultiInvoke uses when given none.
const DefaultFanOut = 512

// MultiInvoke runs command with params on every node sel picks, at most concurrency at a
// time (default DefaultFanOut), each bounded by perNodeTimeout (default InvokeTimeout) and
// by ctx, and returns every node's outcome: ok with its result, error with its reason code
// (a refusal, an execution failure, NODE_OFFLINE), or timeout. It is the primitive behind
// rolling pushes and health sweeps. Each node gets its own signed command; when ctx carries
// an idempotency key (proto.WithIdempotencyKey), node n's key is "<key>.<first 16 of n>".
// The error is for bad input only (params that do not encode, a malformed command name).
func (h *Hub) MultiInvoke(ctx context.Context, command string, params any, sel Selector, concurrency int,
	perNodeTimeout time.Duration) (MultiResult, error) {
	op := "multi-invoke " + command
	if err := (proto.InvokeRequest{ID: "x", NodeID: "x", Command: command}).Validate(); err != nil {
		return MultiResult{}, clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, err)
	}
	paramsJSON, err := encodeParams(params)
	if err != nil {
		return MultiResult{}, clawops.E(op, clawops.KindInvalid, clawops.ReasonBadArguments, err)
	}
	if concurrency <= 0 {
		concurrency = DefaultFanOut
	}
	if perNodeTimeout <= 0 {
		perNodeTimeout = h.opts.InvokeTimeout
	}
	start := time.Now()
	results := h.selectNodes(ctx, sel)
	baseKey := proto.IdempotencyKeyFrom(ctx)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(concurrency, len(results)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(results) {
					return
				}
				r := &results[i]
				if r.Outcome != "" { // decided while selecting (unknown instance)
					continue
				}
				key := ""
				if baseKey != "" {
					key = baseKey + "." + string(r.Node[:min(16, len(r.Node))])
				}
				nctx, cancel := context.WithTimeout(ctx, perNodeTimeout)
				t0 := time.Now()
				res, err := h.invokeJSON(nctx, r.Node, command, paramsJSON, key)
				cancel()
				r.Duration = time.Since(t0)
				r.classify(res, err)
			}
		}()
	}
	wg.Wait()
	out := MultiResult{Command: command, Results: results, Duration: time.Since(start)}
	for _, r := range results {
		switch r.Outcome {
		case OutcomeOK:
			out.OK++
		case OutcomeTimeout:
			out.Timeouts++
		default:
			out.Errors++
		}
	}
	return out, nil
}

func (r *NodeResult) classify(res json.RawMessage, err error) {
	if err == nil {
		r.Outcome, r.Result = OutcomeOK, res
		return
	}
	r.Err, r.Code = err, clawops.ReasonOf(err)
	r.Error = err.Error()
	if r.Code == clawops.ReasonNodeTimeout || errors.Is(err, context.DeadlineExceeded) {
		r.Outcome = OutcomeTimeout
		return
	}
	r.Outcome = OutcomeError
}

// selectNodes resolves sel into one result slot per node, sorted by node id.
func (h *Hub) selectNodes(ctx context.Context, sel Selector) []NodeResult {
	var out []NodeResult
	if len(sel.Nodes) == 0 && len(sel.Instances) == 0 {
		h.mu.RLock()
		out = make([]NodeResult, 0, len(h.conns))
		for _, c := range h.conns {
			if sel.Match == nil || sel.Match(c.status(true)) {
				out = append(out, NodeResult{Node: c.node, Instance: c.instance})
			}
		}
		h.mu.RUnlock()
	} else {
		seen := make(map[clawops.NodeID]bool)
		for _, n := range sel.Nodes {
			if !seen[n] {
				seen[n] = true
				out = append(out, NodeResult{Node: n, Instance: h.instanceOf(n)})
			}
		}
		for _, inst := range sel.Instances {
			n, ok := h.NodeForInstance(ctx, inst)
			switch {
			case !ok:
				out = append(out, NodeResult{Instance: inst, Outcome: OutcomeError, Code: clawops.ReasonUnknownInstance,
					Error: fmt.Sprintf("no node is paired with instance %s", inst),
					Err:   clawops.E("multi-invoke", clawops.KindNotFound, clawops.ReasonUnknownInstance, "no node for instance")})
			case !seen[n]:
				seen[n] = true
				out = append(out, NodeResult{Node: n, Instance: inst})
			}
		}
		if sel.Match != nil {
			out = slices.DeleteFunc(out, func(r NodeResult) bool {
				c := h.conn(r.Node)
				return c != nil && !sel.Match(c.status(true))
			})
		}
	}
	slices.SortFunc(out, func(a, b NodeResult) int {
		if c := strings.Compare(string(a.Node), string(b.Node)); c != 0 {
			return c
		}
		return strings.Compare(string(a.Instance), string(b.Instance))
	})
	return out
}

// instanceOf is the instance a connected node serves, or "".
func (h *Hub) instanceOf(n clawops.NodeID) clawops.InstanceID {
	if c := h.conn(n); c != nil {
		return c.instance
	}
	return ""
}
