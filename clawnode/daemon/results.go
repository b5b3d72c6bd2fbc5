package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"sync"

	"github.com/gatewayforge/clawops/clawnode/proto"
)

// resultCache keeps the outcome of each accepted command under its idempotency key until
// the command expires. A retry — a new invoke (new id, new signature) carrying the same
// key, command and params — gets the first run's answer, waiting for it if the run is
// still going, so a command is never run twice however often the gateway retries. A
// replay of the very same invoke id, or the key with another command or other params, is
// refused as COMMAND_REPLAYED. Results are kept in memory only: after a daemon restart the
// replay journal still refuses the key, without the result.
type resultCache struct {
	mu       sync.Mutex
	runs     map[string]*cachedRun
	bytes    int // payload bytes kept
	maxBytes int
	adds     int
}

// maxCachedResult is the largest payload kept for retries; a larger one is answered once.
const maxCachedResult = 256 << 10

type cachedRun struct {
	fingerprint string
	expiresAtMs int64
	ids         []string
	done        chan struct{}
	// set before done is closed:
	res  proto.InvokeResult // ID and NodeID are filled per answer
	kept bool               // false when the payload was too large to keep
}

func newResultCache(maxBytes int) *resultCache {
	return &resultCache{runs: make(map[string]*cachedRun), maxBytes: maxBytes}
}

// fingerprint identifies what a command does: its name and the hash of its params.
func fingerprint(r proto.InvokeRequest) string {
	s := sha256.Sum256([]byte(r.ParamsJSON))
	return r.Command + "|" + hex.EncodeToString(s[:])
}

// lookup returns the live run kept under key, if any.
func (c *resultCache) lookup(key string, nowMs int64) *cachedRun {
	c.mu.Lock()
	defer c.mu.Unlock()
	run, ok := c.runs[key]
	if !ok || run.expiresAtMs <= nowMs {
		return nil
	}
	return run
}

// retry records id as a retry of run; false when id was seen before (a replay) or the
// request is not the same command with the same params.
func (c *resultCache) retry(run *cachedRun, r proto.InvokeRequest) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if run.fingerprint != fingerprint(r) || slices.Contains(run.ids, r.ID) || len(run.ids) >= 64 {
		return false
	}
	run.ids = append(run.ids, r.ID)
	return true
}

// start registers a run that was just accepted.
func (c *resultCache) start(key string, r proto.InvokeRequest, expiresAtMs, nowMs int64) *cachedRun {
	run := &cachedRun{fingerprint: fingerprint(r), expiresAtMs: expiresAtMs, ids: []string{r.ID}, done: make(chan struct{})}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.adds++; c.adds%256 == 0 {
		maps.DeleteFunc(c.runs, func(_ string, v *cachedRun) bool {
			if v.expiresAtMs > nowMs {
				return false
			}
			select {
			case <-v.done:
				if v.kept {
					c.bytes -= len(v.res.PayloadJSON)
				}
				return true
			default:
				return false // still running: its waiters need it
			}
		})
	}
	c.runs[key] = run
	return run
}

// finish stores a run's outcome and wakes its retries.
func (c *resultCache) finish(run *cachedRun, res proto.InvokeResult) {
	c.mu.Lock()
	run.res = res
	run.res.ID, run.res.NodeID = "", ""
	n := len(res.PayloadJSON)
	run.kept = n <= maxCachedResult && c.bytes+n <= c.maxBytes
	if run.kept {
		c.bytes += n
	} else {
		run.res.PayloadJSON = ""
	}
	c.mu.Unlock()
	close(run.done)
}
