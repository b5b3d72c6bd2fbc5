package daemon

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeProc(t *testing.T, dir, stat, meminfo, loadavg string) {
	t.Helper()
	for name, content := range map[string]string{"stat": stat, "meminfo": meminfo, "loadavg": loadavg} {
		if content == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	goodStat    = "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 100 0 100 800 0 0 0 0 0 0\nintr 1\n"
	goodMeminfo = "MemTotal:        2048 kB\nMemFree:          100 kB\nMemAvailable:     512 kB\n"
	goodLoadavg = "0.50 0.25 0.10 1/100 12345\n"
)

func TestSamplerFromFakeProc(t *testing.T) {
	dir := t.TempDir()
	writeProc(t, dir, goodStat, goodMeminfo, goodLoadavg)
	s := NewSampler(dir, t.TempDir())
	ctx := context.Background()
	m, err := s.Sample(ctx)
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	if m.CPUPercent != 0 {
		t.Errorf("first CPU = %v, want 0 (no change between the two samples)", m.CPUPercent)
	}
	if m.MemTotalBytes != 2048*1024 || m.MemUsedBytes != (2048-512)*1024 {
		t.Errorf("mem = %d/%d, want %d/%d", m.MemUsedBytes, m.MemTotalBytes, (2048-512)*1024, 2048*1024)
	}
	if m.Load1 != 0.5 || m.Load5 != 0.25 || m.Load15 != 0.1 {
		t.Errorf("load = %v %v %v, want 0.5 0.25 0.1", m.Load1, m.Load5, m.Load15)
	}
	if m.DiskTotalBytes == 0 || m.DiskUsedBytes > m.DiskTotalBytes {
		t.Errorf("disk = %d/%d, want used <= total, total > 0", m.DiskUsedBytes, m.DiskTotalBytes)
	}
	// 300 more busy jiffies (user+system+steal; guest is already in user) and 100 idle+iowait.
	writeProc(t, dir, "cpu  250 0 200 850 50 0 0 50 999 0\n", "", "")
	m, err = s.Sample(ctx)
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	if want := 75.0; math.Abs(m.CPUPercent-want) > 1e-9 {
		t.Errorf("CPU = %v, want %v", m.CPUPercent, want)
	}
}

func TestSamplerBadProc(t *testing.T) {
	for _, tc := range []struct {
		name, stat, meminfo, loadavg, want string
	}{
		{"missing stat", "", goodMeminfo, goodLoadavg, "stat"},
		{"no cpu line", "intr 1\n", goodMeminfo, goodLoadavg, "no aggregate cpu line"},
		{"bad cpu field", "cpu 1 x 3 4 5\n", goodMeminfo, goodLoadavg, "cpu field 2"},
		{"missing meminfo", goodStat, "", goodLoadavg, "meminfo"},
		{"no MemAvailable", goodStat, "MemTotal: 10 kB\n", goodLoadavg, "MemAvailable missing"},
		{"bad MemTotal", goodStat, "MemTotal: ten kB\nMemAvailable: 1 kB\n", goodLoadavg, "MemTotal"},
		{"short loadavg", goodStat, goodMeminfo, "0.1 0.2\n", "want 3 load averages"},
		{"bad loadavg", goodStat, goodMeminfo, "0.1 x 0.3 1/2 3\n", "bad load average"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeProc(t, dir, tc.stat, tc.meminfo, tc.loadavg)
			_, err := NewSampler(dir, "/").Sample(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Sample = %v, want error containing %q", err, tc.want)
			}
		})
	}
	if _, err := NewSampler(t.TempDir(), "/no/such/path").cpuPercent(context.Background()); err == nil {
		t.Error("cpuPercent without /proc/stat: got nil error")
	}
}

func TestSamplerRealProc(t *testing.T) {
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	m, err := NewSampler("", "/").Sample(context.Background())
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	if m.MemTotalBytes == 0 || m.DiskTotalBytes == 0 || m.CPUPercent < 0 || m.CPUPercent > 100 {
		t.Errorf("implausible sample %+v", m)
	}
}

func TestHealthChecker(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			w.Write([]byte(`{"ok":true}`))
			return
		}
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer ok.Close()
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	for _, tc := range []struct {
		name, url string
		ok        bool
		status    int
		errHas    string
	}{
		{"healthy", ok.URL + "/health", true, 200, ""},
		{"server error", ok.URL + "/other", false, 500, "HTTP 500"},
		{"refused", closedURL + "/health", false, 0, "refused"},
		{"timeout", hang.URL + "/health", false, 0, "timeout"},
		{"no url", "", false, 0, "no health URL"},
		{"bad url", "://x", false, 0, "bad health URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHealthChecker(tc.url, nil, 200*time.Millisecond, nil)
			got := h.Check(context.Background())
			if got.OK != tc.ok || got.Status != tc.status || !strings.Contains(got.Error, tc.errHas) {
				t.Errorf("Check = %+v, want ok=%v status=%d error containing %q", got, tc.ok, tc.status, tc.errHas)
			}
			if got.CheckedAt == 0 {
				t.Error("CheckedAt not set")
			}
		})
	}
}
