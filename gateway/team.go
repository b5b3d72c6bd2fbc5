package gateway

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/gatewayforge/clawops/agents"
	"github.com/gatewayforge/clawops/agents/llm"
	"github.com/gatewayforge/clawops/agents/memory"
	"github.com/gatewayforge/clawops/fleet"
	"github.com/gatewayforge/clawops/skills"
	"github.com/gatewayforge/clawops/souls"
)

// buildTeam builds the six-agent team on the configured model (none: slash commands,
// code-driven healing and template briefings), registers gf_send_message on the gate, and
// makes the team's Commander the one chat reaches.
func (g *Gateway) buildTeam(lookup func(string) (string, bool)) error {
	cfg := g.cfg
	ws := func(sub string) string {
		if cfg.Agents.Workspace == "" {
			return ""
		}
		return filepath.Join(cfg.Agents.Workspace, sub)
	}
	log := g.log.With("room", "agents")
	soulSet, err := souls.Load(souls.Options{Workspace: ws("souls"), Logger: log})
	if err != nil {
		return err
	}
	skillSet, err := skills.Load(skills.Options{Workspace: ws("skills"), Logger: log})
	if err != nil {
		return err
	}
	mem, err := memory.New(cfg.Agents.MemoryDir, g.clk)
	if err != nil {
		return fmt.Errorf("agents.memory_dir: %w", err)
	}
	var model agents.Model
	if cfg.LLM.BaseURL != "" {
		key, err := cfg.ResolveLLMKey(func(k string) string { v, _ := lookupEnv(lookup)(k); return v })
		if err != nil {
			return err
		}
		prices := llm.PriceTable{}
		for _, p := range cfg.LLM.Prices {
			prices[p.Model] = llm.Price{InputPerMTok: p.InputPerMTok, OutputPerMTok: p.OutputPerMTok}
		}
		client, err := llm.New(llm.Options{BaseURL: cfg.LLM.BaseURL, APIKey: key, Models: cfg.LLM.Models,
			PriceTable: prices, Clock: g.clk, Logger: log.With("part", "llm")})
		if err != nil {
			return fmt.Errorf("llm: %w", err)
		}
		model = client
	}
	var schedules []agents.Schedule // nil: the defaults
	if !cfg.Agents.Schedules {
		schedules = []agents.Schedule{}
	}
	d := &noticeDeliverer{g: g}
	g.gate.Register(agents.MessageTool(d))
	g.team, err = agents.NewTeam(agents.TeamOptions{
		Gate: g.gate, DB: g.db, Model: model, Souls: soulSet, Skills: skillSet, Memory: mem,
		Deliverer: d, Schedules: schedules, Redactor: g.redactor, Clock: g.clk, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("agents: %w", err)
	}
	g.commander = g.team.Commander()
	return nil
}

// pumpEvents hands the fleet's events to the agent team, which routes them to the agent
// that owns them (INSTANCE_DEGRADED and PAIR_FAILED to the Guardian, and so on).
func (g *Gateway) pumpEvents(ctx context.Context, sub *fleet.Subscription) error {
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-sub.C():
			err := g.team.Event(ctx, agents.Event{Type: string(ev.Type), Subject: ev.Subject,
				Severity: agents.Severity(ev.Severity), Summary: ev.Summary, Payload: ev.Payload, Time: ev.Time})
			if err != nil && ctx.Err() == nil {
				g.log.Warn("fleet event not handled", "type", ev.Type, "subject", ev.Subject, "err", err)
			}
		}
	}
}

// noticeDeliverer carries the agents' late replies, briefings and alerts to people: to the
// console outbox of the identity, and to every chat channel where allow_from names that
// identity. A notice to the operators goes to every admin and operator.
type noticeDeliverer struct{ g *Gateway }

var _ agents.Deliverer = (*noticeDeliverer)(nil)

// Deliver sends n; it fails only when nobody could be reached.
func (d *noticeDeliverer) Deliver(ctx context.Context, n agents.Notice) error {
	targets := []string{n.To}
	if n.To == agents.ToOperators {
		targets = d.operators()
	}
	sent := 0
	var lastErr error
	for _, identity := range targets {
		if n.Channel == "" || n.Channel == d.g.console.Name() {
			if err := d.g.console.Send(ctx, identity, n.Text); err == nil {
				sent++
			}
		}
		for _, a := range d.g.cfg.Channels.AllowFrom {
			if a.Identity != identity || (n.Channel != "" && n.Channel != a.Channel) {
				continue
			}
			for _, ch := range d.g.chans {
				if ch.Name() != a.Channel {
					continue
				}
				if err := ch.Send(ctx, a.Sender, n.Text); err != nil {
					lastErr = err
					continue
				}
				sent++
			}
		}
	}
	if sent == 0 {
		if lastErr != nil {
			return fmt.Errorf("deliver %s notice to %s: %w", n.Kind, n.To, lastErr)
		}
		return fmt.Errorf("deliver %s notice: no channel reaches %s", n.Kind, n.To)
	}
	return nil
}

// operators are the identities with the admin or operator role, from the API tokens and
// allow_from.
func (d *noticeDeliverer) operators() []string {
	seen := map[string]bool{}
	var out []string
	add := func(id, role string) {
		if (role == "admin" || role == "operator") && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	for _, t := range d.g.tokens {
		add(t.Identity, t.Role)
	}
	for _, a := range d.g.cfg.Channels.AllowFrom {
		add(a.Identity, a.Role)
	}
	return out
}
