package gateway_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/config"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/gateway"
)

const cloudsYAML = `
fleet:
  clouds:
    - {name: hetzner, token_env: HCLOUD_TEST_TOKEN, endpoint: "http://127.0.0.1:1/v1", image: debian-12}
  bootstrap:
    clawnode_url: https://downloads.example.com/gf-clawnode
    clawnode_sha256: 0f343b0931126a20f133d67c2b018a3b5e6f8c0d8a7f2c4d1e0b9a8c7d6e5f40
    openclaw_image: ghcr.io/openclaw/openclaw:2026.9.6
    tailscale_key_env: TS_TEST_KEY
`

// TestCloudProvidersFromConfig shows the cloud drivers built from the config: a missing API
// token stops the gateway with the key named, and with it a pair placed on Hetzner reaches
// the Hetzner driver, which refuses to bootstrap a server toward a gateway URL without TLS
// and leaves a FAILED row, not a half-created server.
func TestCloudProvidersFromConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "clawops.yaml")
	writeTestFile(t, file, cloudsYAML)
	cfg, err := config.Load(file, []string{"CLAWOPS_DATA_DIR=" + filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, err = gateway.New(context.Background(), gateway.Options{Config: cfg, Listener: ln,
		LookupEnv: func(string) (string, bool) { return "", false }})
	if err == nil || !strings.Contains(err.Error(), "fleet.clouds[0].token_env") {
		t.Fatalf("without the token: got %v, want an error naming fleet.clouds[0].token_env", err)
	}

	e := startGatewayWith(t, gatewaySetup{yaml: cloudsYAML, lookupEnv: func(k string) (string, bool) {
		switch k {
		case "HCLOUD_TEST_TOKEN":
			return "hcloud-secret-token-value", true
		case "TS_TEST_KEY":
			return "tskey-auth-secret", true
		}
		return "", false
	}})
	_, err = e.gw.Fleet().ProvisionPair(context.Background(), fleet.PairSpec{Account: "cloud1", Tier: "cx22",
		Primary: fleet.Placement{Provider: "hetzner", Region: "nbg1"},
		Standby: fleet.Placement{Provider: "local", Region: "local-b"}})
	if err == nil {
		t.Fatal("provision toward a ws:// gateway: got nil error")
	}
	if strings.Contains(err.Error(), "hcloud-secret") || strings.Contains(err.Error(), "tskey-auth") {
		t.Fatalf("error leaks a secret: %v", err)
	}
	if got := clawops.ReasonOf(err); got != "INVALID_BOOTSTRAP" {
		t.Fatalf("reason %q (%v), want INVALID_BOOTSTRAP from the Hetzner driver's cloud-init", got, err)
	}
	v, err := e.gw.Fleet().Instance(context.Background(), "cloud1-pri")
	if err != nil {
		t.Fatal(err)
	}
	if v.State != fleet.StateFailed || v.Provider != "hetzner" {
		t.Fatalf("cloud1-pri: %s at %s, want FAILED at hetzner", v.State, v.Provider)
	}
}
