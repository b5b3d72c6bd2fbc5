// Package tailnet keeps the node plane on the tailnet. CheckListen refuses to serve the
// node endpoint on a public or wildcard address (unless the configuration explicitly
// allows it), and Verifier checks every node connection with the local tailscaled through
// its LocalAPI (WhoIs, via tailscale.com/client/local): the peer must be a tailnet node
// carrying the configured tag, and its tailnet identity is handed to the hub, which
// records it beside the device key. gf-clawnode pins the gateway's key, so a look-alike
// gateway on the tailnet learns nothing from a node either.
//
// tsnet (an embedded tailscaled) is deliberately not used: it would dial out to the
// coordination server from tests. The gateway host runs the ordinary tailscaled.
package tailnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"tailscale.com/client/local"
	"tailscale.com/client/tailscale/apitype"

	"github.com/gatewayforge/clawops/clawnode"
)

// Tailnet address ranges: the CGNAT IPv4 range Tailscale assigns from and its IPv6 ULA
// prefix.
var (
	RangeV4 = netip.MustParsePrefix("100.64.0.0/10")
	RangeV6 = netip.MustParsePrefix("fd7a:115c:a1e0::/48")
)

// IsTailnet reports whether ip is in a tailnet range.
func IsTailnet(ip netip.Addr) bool {
	ip = ip.Unmap()
	return RangeV4.Contains(ip) || RangeV6.Contains(ip)
}

// ErrPublicListener is returned by CheckListen for an address off the tailnet and off
// loopback.
var ErrPublicListener = errors.New("node endpoint would listen beyond the tailnet")

// CheckListen checks the host:port the node endpoint listens on: a loopback address or a
// tailnet address (100.64.0.0/10, fd7a:115c:a1e0::/48) is accepted; a wildcard ("",
// 0.0.0.0, ::), a public or private LAN address, or a host name other than localhost is
// refused unless allowPublic (the config key allow_public_node_listener) is set.
func CheckListen(addr string, allowPublic bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("node listener %q: %w", addr, err)
	}
	if allowPublic {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address; bind to the host's tailnet IP (tailscale ip -4) or set allow_public_node_listener: true",
			ErrPublicListener, addr)
	}
	ip = ip.WithZone("").Unmap()
	switch {
	case ip.IsLoopback(), IsTailnet(ip):
		return nil
	case ip.IsUnspecified():
		return fmt.Errorf("%w: %q binds every interface; bind to the host's tailnet IP or set allow_public_node_listener: true",
			ErrPublicListener, addr)
	}
	return fmt.Errorf("%w: %s is neither loopback nor a tailnet address; bind to the host's tailnet IP or set allow_public_node_listener: true",
		ErrPublicListener, ip)
}

// Listen checks addr with CheckListen and listens on it.
func Listen(addr string, allowPublic bool) (net.Listener, error) {
	if err := CheckListen(addr, allowPublic); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("node listener: %w", err)
	}
	return ln, nil
}

// WhoIser asks tailscaled who is behind an address. *local.Client is one.
type WhoIser interface {
	WhoIs(ctx context.Context, remoteAddr string) (*apitype.WhoIsResponse, error)
}

// Options configure a Verifier.
type Options struct {
	// Socket is tailscaled's LocalAPI socket (default: the platform's, e.g.
	// /var/run/tailscale/tailscaled.sock). Ignored when Client is set.
	Socket string
	// Client overrides the LocalAPI client.
	Client WhoIser
	// Tag is the ACL tag a node must carry, e.g. "tag:clawnode". Required.
	Tag string
	// AllowLoopback accepts peers on 127.0.0.0/8 and ::1 without asking tailscaled: the
	// local provider's nodes run on the gateway host itself.
	AllowLoopback bool
}

// Verifier is a clawnode.PeerVerifier backed by tailscaled.
type Verifier struct {
	client        WhoIser
	tag           string
	allowLoopback bool
}

var _ clawnode.PeerVerifier = (*Verifier)(nil)

// NewVerifier builds a Verifier.
func NewVerifier(opts Options) (*Verifier, error) {
	if !strings.HasPrefix(opts.Tag, "tag:") || len(opts.Tag) < 5 {
		return nil, fmt.Errorf("tailnet verifier: tag %q must look like tag:clawnode", opts.Tag)
	}
	c := opts.Client
	if c == nil {
		c = &local.Client{Socket: opts.Socket, UseSocketOnly: opts.Socket != ""}
	}
	return &Verifier{client: c, tag: opts.Tag, allowLoopback: opts.AllowLoopback}, nil
}

// VerifyPeer implements clawnode.PeerVerifier.
func (v *Verifier) VerifyPeer(ctx context.Context, remoteAddr string) (clawnode.PeerIdentity, error) {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return clawnode.PeerIdentity{}, fmt.Errorf("peer address %q: %w", remoteAddr, err)
	}
	ip := ap.Addr().Unmap()
	if ip.IsLoopback() {
		if v.allowLoopback {
			return clawnode.PeerIdentity{Addr: remoteAddr}, nil
		}
		return clawnode.PeerIdentity{}, fmt.Errorf("peer %s is on loopback and loopback nodes are not allowed", ip)
	}
	if !IsTailnet(ip) {
		return clawnode.PeerIdentity{}, fmt.Errorf("peer %s is not a tailnet address", ip)
	}
	who, err := v.client.WhoIs(ctx, remoteAddr)
	if err != nil {
		if errors.Is(err, local.ErrPeerNotFound) {
			return clawnode.PeerIdentity{}, fmt.Errorf("tailscaled does not know peer %s", ip)
		}
		return clawnode.PeerIdentity{}, fmt.Errorf("ask tailscaled about %s: %w", ip, err)
	}
	if who == nil || who.Node == nil {
		return clawnode.PeerIdentity{}, fmt.Errorf("tailscaled returned no node for %s", ip)
	}
	n := who.Node
	if n.Expired {
		return clawnode.PeerIdentity{}, fmt.Errorf("peer %s (%s) has an expired node key", ip, n.Name)
	}
	if !slices.Contains(n.Tags, v.tag) {
		return clawnode.PeerIdentity{}, fmt.Errorf("peer %s (%s) does not carry %s (tags: %s)", ip, n.Name, v.tag, strings.Join(n.Tags, ","))
	}
	id := clawnode.PeerIdentity{Node: string(n.StableID), Name: n.Name, Tags: slices.Clone(n.Tags), Addr: remoteAddr}
	if who.UserProfile != nil {
		id.User = who.UserProfile.LoginName
	}
	return id, nil
}
