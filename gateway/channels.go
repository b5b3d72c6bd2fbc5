package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/api"
	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/channels/discord"
	"github.com/gatewayforge/clawops/channels/slack"
	"github.com/gatewayforge/clawops/channels/telegram"
	"github.com/gatewayforge/clawops/channels/web"
	"github.com/gatewayforge/clawops/channels/whatsapp"
	"github.com/gatewayforge/clawops/config"
	"github.com/gatewayforge/clawops/governance"
)

// ChannelRegistry registers every chat adapter this binary links in. Config decides which
// are built.
func ChannelRegistry() *channels.Registry {
	reg := channels.NewRegistry()
	reg.Register(web.Type, web.Factory)
	reg.Register(telegram.Type, telegram.Factory)
	reg.Register(slack.Type, slack.Factory)
	reg.Register(discord.Type, discord.Factory)
	reg.Register(whatsapp.Type, whatsapp.Factory)
	return reg
}

// Directory builds the allowFrom list from the config.
func Directory(cfg *config.Config) (*channels.Directory, error) {
	allow := make([]channels.Allow, 0, len(cfg.Channels.AllowFrom))
	for _, a := range cfg.Channels.AllowFrom {
		allow = append(allow, channels.Allow{Channel: a.Channel, Sender: a.Sender,
			Identity: a.Identity, Role: clawops.HumanRole(a.Role)})
	}
	dir, err := channels.NewDirectory(allow)
	if err != nil {
		return nil, fmt.Errorf("channels.allow_from: %w", err)
	}
	return dir, nil
}

// BuildChannels builds the configured adapters with env. Their Deliver, Resolver, Decider
// and Auditor come from env; `clawops doctor` builds them with an env that decides nothing.
func BuildChannels(cfg *config.Config, env channels.Env) ([]channels.Channel, error) {
	specs := make([]channels.Spec, 0, len(cfg.Channels.Adapters))
	for _, a := range cfg.Channels.Adapters {
		specs = append(specs, channels.Spec{Type: a.Type, Settings: json.RawMessage(a.Settings)})
	}
	chans, err := ChannelRegistry().Build(env, specs)
	if err != nil {
		return nil, fmt.Errorf("channels.adapters: %w", err)
	}
	return chans, nil
}

// wireChannels builds the configured chat adapters around the Commander and the gate:
// inbound messages from allowed senders go to the Commander, button presses to the gate,
// and every approval change to every adapter that shows cards.
func (g *Gateway) wireChannels(mux *http.ServeMux, lookup func(string) (string, bool)) error {
	log := g.log.With("room", "channels")
	dir, err := Directory(g.cfg)
	if err != nil {
		return err
	}
	disp := channels.NewDispatcher(dir, g.commander, log)
	disp.SetAuditor(g.gate.Audit(), g.clk)
	sqlDB, err := g.db.DB()
	if err != nil {
		return fmt.Errorf("channels: %w", err)
	}
	env := channels.Env{
		Logger:     log,
		Clock:      g.clk,
		Deliver:    disp.Deliver,
		Resolver:   dir,
		Decider:    channels.WithScope(g.gate, channels.ScopePolicy{}),
		Auditor:    g.gate.Audit(),
		LookupEnv:  lookupEnv(lookup),
		SQL:        sqlDB,
		SQLDialect: g.db.Dialector.Name(),
		DB:         g.db,
	}
	chans, err := BuildChannels(g.cfg, env)
	if err != nil {
		return err
	}
	for _, ch := range chans {
		disp.Attach(ch)
		g.mountChannel(mux, ch)
	}
	g.chans = chans
	g.notifier = channels.NewNotifier(channels.NotifierOptions{
		Channels: append([]channels.Channel{g.console}, chans...),
		Logger:   g.log.With("room", "notifier"),
	})
	g.approvals.set(g.notifier, g.team)
	return nil
}

// mountChannel serves the HTTP endpoints an adapter needs: Telegram's webhook (webhook mode)
// and Slack's Events API and interactivity (http mode) under /v1/channels/<name>/. Both
// check the platform's own secret or signature on every request.
func (g *Gateway) mountChannel(mux *http.ServeMux, ch channels.Channel) {
	switch a := ch.(type) {
	case *telegram.Adapter:
		if p := a.WebhookPath(); p != "" {
			mux.Handle("POST "+p, a.Handler())
		}
	case *slack.Adapter:
		mux.Handle("POST /v1/channels/"+a.Name()+"/events", a.Handler())
	case *whatsapp.Adapter:
		// Whoever scans the code links their WhatsApp account to the gateway: admins only.
		mux.Handle("GET /v1/channels/"+a.Name()+"/pairing.png", adminOnly(g.auth, a.PairingHandler()))
	}
}

// adminOnly serves h only to a bearer token of an admin identity.
func adminOnly(auth *api.TokenStore, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		actor, known := auth.Authenticate(strings.TrimSpace(token))
		switch {
		case !ok || !known:
			w.Header().Set("WWW-Authenticate", `Bearer realm="clawops"`)
			http.Error(w, "a valid bearer token is required", http.StatusUnauthorized)
		case actor.Role != clawops.RoleAdmin:
			http.Error(w, "admins only", http.StatusForbidden)
		default:
			h.ServeHTTP(w, r)
		}
	})
}

// approvalRelay forwards approval changes to the channels' notifier and the agent team,
// both built after the gate (the adapters need the gate to decide presses, the gate needs
// somewhere to send its cards).
type approvalRelay struct {
	to atomic.Pointer[[]governance.Notifier]
}

var _ governance.Notifier = (*approvalRelay)(nil)

func (r *approvalRelay) set(ns ...governance.Notifier) { r.to.Store(&ns) }

// ApprovalChanged hands the change on, once the receivers exist.
func (r *approvalRelay) ApprovalChanged(ctx context.Context, a governance.Approval) {
	if ns := r.to.Load(); ns != nil {
		for _, n := range *ns {
			n.ApprovalChanged(ctx, a)
		}
	}
}
