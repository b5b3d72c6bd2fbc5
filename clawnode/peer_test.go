package clawnode

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// switchPeers is a PeerVerifier whose answer the test changes.
type switchPeers struct {
	mu  sync.Mutex
	id  PeerIdentity
	err error
}

func (s *switchPeers) set(id PeerIdentity, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.id, s.err = id, err
}

func (s *switchPeers) VerifyPeer(_ context.Context, addr string) (PeerIdentity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.id
	id.Addr = addr
	return id, s.err
}

func TestPeerVerification(t *testing.T) {
	peers := &switchPeers{}
	e := newEnv(t, func(o *HubOptions) { o.Peers = peers })
	ctx := context.Background()

	peers.set(PeerIdentity{}, errors.New("peer 127.0.0.1 is not a tailnet node carrying tag:clawnode"))
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(dctx, e.url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("dial from a refused peer = %v (%v), want HTTP 403", err, resp)
	}
	if got := e.audits.find(EventTailnetRefused); len(got) != 1 || got[0].Reason != ReasonTailnetRefused {
		t.Errorf("tailnet audits = %+v, want one refusal", got)
	}

	vps1 := PeerIdentity{Node: "nA1CNTRL", Name: "vps-1.tail1234.ts.net.", User: "tagged-devices", Tags: []string{"tag:clawnode"}}
	peers.set(vps1, nil)
	key := newKey()
	tok := e.mint("demo1-pri")
	c := dialRaw(t, e.url)
	if f := c.connect(t, key, nodeParams(tok), nil); !*f.OK {
		t.Fatalf("connect: %+v", f.Error)
	}
	node := clawops.NodeID(proto.DeviceID(key.Public().(ed25519.PublicKey)))
	dev, err := e.hub.Device(ctx, node)
	if err != nil || dev.TailnetNode != vps1.Node || dev.TailnetName != vps1.Name || dev.TailnetTags != "tag:clawnode" ||
		dev.TailnetUser != "tagged-devices" {
		t.Errorf("device tailnet identity = %+v, %v; want %+v", dev, err, vps1)
	}
	e.waitConnected(node)
	if s := e.hub.Nodes(); len(s) != 1 || s[0].Tailnet.Node != vps1.Node {
		t.Errorf("NodeStatus tailnet = %+v", s)
	}
	c.ws.CloseNow()
	waitFor(t, "node gone", func() bool { return !e.hub.Connected(node) })

	// The same device key from another tailnet node: a copied key. Refused and audited.
	peers.set(PeerIdentity{Node: "nB2CNTRL", Name: "lookalike.tail1234.ts.net.", Tags: []string{"tag:clawnode"}}, nil)
	f := dialRaw(t, e.url).connect(t, key, nodeParams(tok), nil)
	wantRefused(t, f, proto.CodeForbidden, proto.DetailTailnetRefused)
	if got := e.audits.find(EventTailnetRefused); len(got) != 2 || got[1].Node != node {
		t.Errorf("tailnet audits = %+v, want a second one naming the device", got)
	}
}

func TestHubAcceptsStockNodePublications(t *testing.T) {
	e := newEnv(t)
	c := dialRaw(t, e.url)
	if f := c.connect(t, newKey(), nodeParams(e.mint("demo1-pri")), nil); !*f.OK {
		t.Fatalf("connect: %+v", f.Error)
	}
	for _, m := range []string{"node.skills.update", "node.pluginTools.update", "node.runnerInventory.update"} {
		req, _ := proto.NewRequest("p-"+m, m, map[string]any{"skills": []string{}})
		if f := c.roundTrip(t, req); !*f.OK {
			t.Errorf("%s answered %+v, want ok", m, f.Error)
		}
	}
}
