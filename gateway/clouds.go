package gateway

import (
	"fmt"
	"log/slog"

	"github.com/gatewayforge/clawops/config"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/fleet/cloudinit"
	"github.com/gatewayforge/clawops/fleet/providers/digitalocean"
	"github.com/gatewayforge/clawops/fleet/providers/hetzner"
	"github.com/gatewayforge/clawops/fleet/providers/vultr"
)

// cloudProviders builds the configured cloud drivers. New servers install gf-clawnode from
// fleet.bootstrap and join the tailnet with its key; the returned key goes to the fleet.
func cloudProviders(cfg *config.Config, lookup func(string) (string, bool), log *slog.Logger) (map[string]fleet.Provider, string, error) {
	out := map[string]fleet.Provider{}
	if len(cfg.Fleet.Clouds) == 0 {
		return out, "", nil
	}
	secrets, err := cfg.ResolveCloudSecrets(func(k string) string { v, _ := lookupEnv(lookup)(k); return v })
	if err != nil {
		return nil, "", err
	}
	ci := cloudinit.Options{ClawnodeURL: cfg.Fleet.Bootstrap.ClawnodeURL, ClawnodeSHA256: cfg.Fleet.Bootstrap.ClawnodeSHA256,
		HeartbeatInterval: cfg.Nodes.HeartbeatInterval}
	for i, c := range cfg.Fleet.Clouds {
		var p fleet.Provider
		l := log.With("provider", c.Name)
		tok := secrets.Tokens[c.Name]
		switch c.Name {
		case "hetzner":
			p, err = hetzner.New(hetzner.Options{Token: tok, Endpoint: c.Endpoint, Image: c.Image, SSHKeys: c.SSHKeys, CloudInit: ci, Logger: l})
		case "digitalocean":
			p, err = digitalocean.New(digitalocean.Options{Token: tok, Endpoint: c.Endpoint, Image: c.Image, SSHKeys: c.SSHKeys, CloudInit: ci, Logger: l})
		case "vultr":
			p, err = vultr.New(vultr.Options{Token: tok, Endpoint: c.Endpoint, Image: c.Image, SSHKeys: c.SSHKeys, CloudInit: ci, Logger: l})
		default:
			err = fmt.Errorf("unknown provider %q", c.Name)
		}
		if err != nil {
			return nil, "", fmt.Errorf("fleet.clouds[%d] (%s): %w", i, c.Name, err)
		}
		out[p.Name()] = p
	}
	return out, secrets.TailscaleKey, nil
}
