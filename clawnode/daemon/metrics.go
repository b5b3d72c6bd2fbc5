package daemon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Sampler reads VPS resource usage: CPU from /proc/stat (the delta since the previous
// sample; the first call takes two samples 200 ms apart), memory from /proc/meminfo, load
// from /proc/loadavg and disk from statfs of DiskPath.
type Sampler struct {
	procRoot string
	diskPath string

	mu      sync.Mutex
	last    cpuTimes
	hasLast bool
}

// NewSampler returns a sampler reading procRoot (default /proc) and diskPath (default /).
func NewSampler(procRoot, diskPath string) *Sampler {
	if procRoot == "" {
		procRoot = "/proc"
	}
	if diskPath == "" {
		diskPath = "/"
	}
	return &Sampler{procRoot: procRoot, diskPath: diskPath}
}

type cpuTimes struct{ busy, total uint64 }

// Sample takes one metrics sample.
func (s *Sampler) Sample(ctx context.Context) (proto.Metrics, error) {
	var m proto.Metrics
	cpu, err := s.cpuPercent(ctx)
	if err != nil {
		return m, err
	}
	m.CPUPercent = cpu
	if m.MemTotalBytes, m.MemUsedBytes, err = readMeminfo(filepath.Join(s.procRoot, "meminfo")); err != nil {
		return m, err
	}
	if m.Load1, m.Load5, m.Load15, err = readLoadavg(filepath.Join(s.procRoot, "loadavg")); err != nil {
		return m, err
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.diskPath, &st); err != nil {
		return m, fmt.Errorf("statfs %s: %w", s.diskPath, err)
	}
	bs := uint64(st.Bsize)
	m.DiskTotalBytes = st.Blocks * bs
	m.DiskUsedBytes = (st.Blocks - st.Bfree) * bs
	return m, nil
}

func (s *Sampler) cpuPercent(ctx context.Context) (float64, error) {
	path := filepath.Join(s.procRoot, "stat")
	s.mu.Lock()
	prev, has := s.last, s.hasLast
	s.mu.Unlock()
	if !has {
		first, err := readCPUTimes(path)
		if err != nil {
			return 0, err
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C:
		}
		prev = first
	}
	cur, err := readCPUTimes(path)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.last, s.hasLast = cur, true
	s.mu.Unlock()
	if cur.total <= prev.total || cur.busy < prev.busy {
		return 0, nil
	}
	return 100 * float64(cur.busy-prev.busy) / float64(cur.total-prev.total), nil
}

// readCPUTimes parses the aggregate "cpu" line of /proc/stat.
func readCPUTimes(path string) (cpuTimes, error) {
	data, err := readSmall(path)
	if err != nil {
		return cpuTimes{}, err
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 5 || fields[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("%s: no aggregate cpu line", path)
	}
	var t cpuTimes
	for i, f := range fields[1:] {
		if i >= 8 { // guest and guest_nice are already counted in user and nice
			break
		}
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("%s: cpu field %d: %w", path, i+1, err)
		}
		t.total += v
		if i != 3 && i != 4 { // idle, iowait
			t.busy += v
		}
	}
	return t, nil
}

// readMeminfo returns MemTotal and MemTotal-MemAvailable in bytes.
func readMeminfo(path string) (total, used uint64, err error) {
	data, err := readSmall(path)
	if err != nil {
		return 0, 0, err
	}
	var avail uint64
	var haveTotal, haveAvail bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "MemTotal" && name != "MemAvailable") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, 0, fmt.Errorf("%s: %s has no value", path, name)
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %s: %w", path, name, err)
		}
		if name == "MemTotal" {
			total, haveTotal = kb*1024, true
		} else {
			avail, haveAvail = kb*1024, true
		}
	}
	if !haveTotal || !haveAvail {
		return 0, 0, fmt.Errorf("%s: MemTotal or MemAvailable missing", path)
	}
	if avail > total {
		avail = total
	}
	return total, total - avail, nil
}

func readLoadavg(path string) (l1, l5, l15 float64, err error) {
	data, err := readSmall(path)
	if err != nil {
		return 0, 0, 0, err
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return 0, 0, 0, fmt.Errorf("%s: want 3 load averages", path)
	}
	var v [3]float64
	for i := range v {
		if v[i], err = strconv.ParseFloat(f[i], 64); err != nil || v[i] < 0 {
			return 0, 0, 0, fmt.Errorf("%s: bad load average %q", path, f[i])
		}
	}
	return v[0], v[1], v[2], nil
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// HealthChecker GETs the instance's OpenClaw health URL.
type HealthChecker struct {
	url     string
	client  *http.Client
	timeout time.Duration
	clock   clawops.Clock
}

// NewHealthChecker checks url with client (nil means a plain client) within timeout
// (default 5s).
func NewHealthChecker(url string, client *http.Client, timeout time.Duration, clock clawops.Clock) *HealthChecker {
	if client == nil {
		client = &http.Client{}
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &HealthChecker{url: url, client: client, timeout: timeout, clock: clawops.ClockOrSystem(clock)}
}

// Check does one GET. Any 2xx answer is healthy; everything else is reported, not returned
// as an error, because "unhealthy" is a normal answer.
func (h *HealthChecker) Check(ctx context.Context) proto.Health {
	out := proto.Health{CheckedAt: h.clock.Now().UnixMilli()}
	if h.url == "" {
		out.Error = "no health URL configured"
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		out.Error = "bad health URL"
		return out
	}
	start := time.Now()
	resp, err := h.client.Do(req)
	out.LatencyMs = time.Since(start).Milliseconds()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			out.Error = "timeout after " + h.timeout.String()
		} else {
			out.Error = clipString(err.Error(), 200)
		}
		return out
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	out.Status = resp.StatusCode
	out.OK = resp.StatusCode >= 200 && resp.StatusCode < 300
	if !out.OK {
		out.Error = "HTTP " + resp.Status
	}
	return out
}
