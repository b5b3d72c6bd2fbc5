package daemon

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Tailnet address ranges: Tailscale's CGNAT IPv4 range and its IPv6 ULA prefix.
var (
	TailnetV4 = netip.MustParsePrefix("100.64.0.0/10")
	TailnetV6 = netip.MustParsePrefix("fd7a:115c:a1e0::/48")
)

// InfoReader answers vps.info from /proc, /etc/os-release, statfs and the interfaces.
type InfoReader struct {
	ProcRoot    string // default /proc
	OSRelease   string // default /etc/os-release
	DiskPath    string // default /
	NodeVersion string
	Runtime     string // docker or process
	Interfaces  func() ([]net.Addr, error)
}

// Info collects what the machine is. Parts that cannot be read are left empty.
func (r *InfoReader) Info(ctx context.Context, rt Runtime) proto.VPSInfo {
	procRoot := cmpOr(r.ProcRoot, "/proc")
	out := proto.VPSInfo{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(),
		NodeVersion: r.NodeVersion, Runtime: r.Runtime, TailnetAddrs: []string{}}
	out.Hostname, _ = os.Hostname()
	if b, err := readSmall(filepath.Join(procRoot, "sys/kernel/osrelease")); err == nil {
		out.Kernel = strings.TrimSpace(string(b))
	}
	out.Distro = prettyName(cmpOr(r.OSRelease, "/etc/os-release"))
	if total, _, err := readMeminfo(filepath.Join(procRoot, "meminfo")); err == nil {
		out.MemTotalBytes = total
	}
	var st syscall.Statfs_t
	if syscall.Statfs(cmpOr(r.DiskPath, "/"), &st) == nil {
		out.DiskTotalBytes = st.Blocks * uint64(st.Bsize)
	}
	if b, err := readSmall(filepath.Join(procRoot, "stat")); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "btime "); ok {
				if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
					out.BootTimeMs = s * 1000
				}
			}
		}
	}
	if b, err := readSmall(filepath.Join(procRoot, "uptime")); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				out.UptimeSec = int64(v)
			}
		}
	}
	if ir, ok := rt.(ImageRuntime); ok {
		if d, isDocker := rt.(*DockerRuntime); !isDocker || d.CanUpgrade() {
			out.Image, _ = ir.CurrentImage(ctx)
		}
	}
	ifaces := r.Interfaces
	if ifaces == nil {
		ifaces = net.InterfaceAddrs
	}
	if addrs, err := ifaces(); err == nil {
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			if ip := p.Addr().Unmap(); TailnetV4.Contains(ip) || TailnetV6.Contains(ip) {
				out.TailnetAddrs = append(out.TailnetAddrs, ip.String())
			}
		}
	}
	return out
}

// prettyName returns PRETTY_NAME from an os-release file.
func prettyName(path string) string {
	b, err := readSmall(path)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	return ""
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
