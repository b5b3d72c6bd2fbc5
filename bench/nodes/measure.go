//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It is 100 on
// every Linux architecture Go supports (the kernel's ABI fixes it; sysconf would need cgo).
const clockTicks = 100

// procSample is one reading of a process's CPU time and memory.
type procSample struct {
	At       time.Time
	CPUTicks int64 // utime + stime, in clock ticks
	RSS      int64 // VmRSS, bytes
	HWM      int64 // VmHWM (peak RSS), bytes
	Threads  int
}

// sampleProc reads /proc/<pid>/stat and /proc/<pid>/status.
func sampleProc(pid int) (procSample, error) {
	s := procSample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("sample pid %d: %w", pid, err)
	}
	ticks, err := parseStatCPU(stat)
	if err != nil {
		return s, fmt.Errorf("sample pid %d: %w", pid, err)
	}
	s.CPUTicks = ticks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("sample pid %d: %w", pid, err)
	}
	s.RSS, s.HWM, s.Threads = parseStatus(status)
	return s, nil
}

// parseStatCPU returns utime+stime from a /proc/<pid>/stat line. The command name (field
// 2) may hold spaces and parentheses, so fields are counted after the last ')'.
func parseStatCPU(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no ')' in %q", clipBytes(stat, 80))
	}
	f := strings.Fields(string(stat[i+1:]))
	// After ')' come field 3 (state) onwards; utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the name, want at least 13", len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || u < 0 || s < 0 {
		return 0, fmt.Errorf("stat: utime %q stime %q are not counts", f[11], f[12])
	}
	return u + s, nil
}

// parseStatus returns VmRSS and VmHWM in bytes and the thread count from
// /proc/<pid>/status; missing lines read as 0.
func parseStatus(status []byte) (rss, hwm int64, threads int) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = n * 1024
		case "VmHWM":
			hwm = n * 1024
		case "Threads":
			threads = int(n)
		}
	}
	return rss, hwm, threads
}

// cpuPercent is the share of one core used between two samples.
func cpuPercent(a, b procSample) float64 {
	d := b.At.Sub(a.At).Seconds()
	if d <= 0 {
		return 0
	}
	return 100 * float64(b.CPUTicks-a.CPUTicks) / clockTicks / d
}

// cpuSeconds is the CPU time used between two samples.
func cpuSeconds(a, b procSample) float64 { return float64(b.CPUTicks-a.CPUTicks) / clockTicks }

// sumCPU samples several processes and adds their CPU ticks (those that are gone count 0).
func sumCPU(pids []int) int64 {
	var t int64
	for _, p := range pids {
		if s, err := sampleProc(p); err == nil {
			t += s.CPUTicks
		}
	}
	return t
}

// latencyStats summarises latencies in microseconds.
type latencyStats struct {
	Count int     `json:"count"`
	P50Ms float64 `json:"p50Ms"`
	P90Ms float64 `json:"p90Ms"`
	P99Ms float64 `json:"p99Ms"`
	MaxMs float64 `json:"maxMs"`
}

// summarise sorts lat (in place) and returns its percentiles (nearest rank).
func summarise(lat []int64) latencyStats {
	if len(lat) == 0 {
		return latencyStats{}
	}
	slices.Sort(lat)
	at := func(p float64) float64 {
		i := int(p*float64(len(lat))+0.999999) - 1
		i = max(0, min(i, len(lat)-1))
		return float64(lat[i]) / 1000
	}
	return latencyStats{Count: len(lat), P50Ms: at(0.50), P90Ms: at(0.90), P99Ms: at(0.99),
		MaxMs: float64(lat[len(lat)-1]) / 1000}
}

func clipBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// mb renders bytes as MiB with one decimal.
func mb(b int64) float64 { return float64(b*10/(1<<20)) / 10 }

// machineBusyTicks reads the first line of /proc/stat: the clock ticks every CPU spent
// busy (user, nice, system, irq, softirq, steal) since boot.
func machineBusyTicks() (int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	return parseMachineBusy(b)
}

func parseMachineBusy(stat []byte) (int64, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: first line %q is not the cpu total", clipBytes(line, 80))
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: field %d %q: %w", i, f[i], err)
		}
		busy += n
	}
	return busy, nil
}
