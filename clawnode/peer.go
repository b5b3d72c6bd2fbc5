package clawnode

import (
	"context"
	"strings"
)

// PeerVerifier checks who is at the other end of a node connection before the hub
// accepts its WebSocket: for example that the peer is a tailnet node carrying the
// clawnode tag (clawnode/tailnet implements it with the local tailscaled). A non-nil error
// refuses the connection (HTTP 403) and is audited.
type PeerVerifier interface {
	VerifyPeer(ctx context.Context, remoteAddr string) (PeerIdentity, error)
}

// PeerIdentity is what a PeerVerifier learned about a peer. For a loopback peer that the
// verifier allows, Node is empty.
type PeerIdentity struct {
	Node string   `json:"node,omitempty"` // tailnet stable node id
	Name string   `json:"name,omitempty"` // MagicDNS name
	User string   `json:"user,omitempty"` // owner login (tagged-devices for tagged nodes)
	Tags []string `json:"tags,omitempty"`
	Addr string   `json:"addr,omitempty"` // the address it connected from
}

// String renders the identity for logs and audit entries.
func (p PeerIdentity) String() string {
	if p.Node == "" {
		return ""
	}
	return p.Name + " (" + p.Node + ") tags=" + strings.Join(p.Tags, ",")
}
