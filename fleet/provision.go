package fleet

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

// Placement says where one member of a pair runs.
type Placement struct {
	Provider string `json:"provider"` // a key of Options.Providers, e.g. "hetzner", "local"
	Region   string `json:"region"`   // the provider's region slug
}

// PairSpec asks for a new account pair: a primary and a standby instance.
type PairSpec struct {
	Account     string    `json:"account"`                // account ID, the instance-ID alphabet, at most 36 characters
	AccountName string    `json:"account_name,omitempty"` // display name; Account when empty
	Pair        string    `json:"pair,omitempty"`         // pair ID; Account when empty
	Tier        string    `json:"tier"`                   // e.g. "nano", "standard"
	Primary     Placement `json:"primary"`
	Standby     Placement `json:"standby"`
}

// Suffixes appended to a pair ID to name its instances.
const (
	PrimarySuffix = "-pri"
	StandbySuffix = "-sby"
)

// slugRE bounds tiers and regions: they reach provider APIs and labels.
var slugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

func (s *Service) checkPairSpec(spec *PairSpec) error {
	bad := func(format string, args ...any) error {
		return clawops.E("provision pair", clawops.KindInvalid, clawops.ReasonBadArguments, fmt.Errorf(format, args...))
	}
	if spec.Pair == "" {
		spec.Pair = spec.Account
	}
	if spec.AccountName == "" {
		spec.AccountName = spec.Account
	}
	maxID := 40 - len(PrimarySuffix)
	if !ValidInstanceID(spec.Account) || len(spec.Account) > maxID {
		return bad("account %q: want 2-%d of a-z, 0-9 and '-'", spec.Account, maxID)
	}
	if !ValidInstanceID(spec.Pair) || len(spec.Pair) > maxID {
		return bad("pair %q: want 2-%d of a-z, 0-9 and '-'", spec.Pair, maxID)
	}
	if len(spec.AccountName) > 200 {
		return bad("account name longer than 200 characters")
	}
	if !slugRE.MatchString(spec.Tier) {
		return bad("tier %q: want a slug such as standard", spec.Tier)
	}
	for _, p := range []struct {
		what string
		pl   Placement
	}{{"primary", spec.Primary}, {"standby", spec.Standby}} {
		if _, ok := s.opts.Providers[p.pl.Provider]; !ok {
			return clawops.E("provision pair", clawops.KindInvalid, ReasonUnknownProvider,
				fmt.Errorf("%s provider %q is not configured", p.what, p.pl.Provider))
		}
		if !slugRE.MatchString(p.pl.Region) {
			return bad("%s region %q: want a slug such as fsn1", p.what, p.pl.Region)
		}
	}
	return nil
}

// ProvisionPair records a new pair for spec.Account (creating the account if needed) and
// asks the providers for both servers. Each instance is recorded CREATING before its
// provider is called, so no server exists without a record; it moves to BOOTSTRAPPING when
// the provider accepts, or to FAILED with the error when the token or provider call fails.
// The returned PairView is valid whenever the rows were recorded, even with an error.
func (s *Service) ProvisionPair(ctx context.Context, spec PairSpec) (PairView, error) {
	const op = "provision pair"
	if err := s.checkPairSpec(&spec); err != nil {
		return PairView{}, err
	}
	if s.opts.Tokens == nil {
		return PairView{}, clawops.E(op, clawops.ReasonNotImplemented, "no join token minter configured")
	}
	now := s.now()
	pair := Pair{ID: spec.Pair, AccountID: spec.Account, CreatedAt: now,
		PrimaryID: clawops.InstanceID(spec.Pair + PrimarySuffix),
		StandbyID: clawops.InstanceID(spec.Pair + StandbySuffix)}
	rows := []Instance{
		s.newInstance(pair, pair.PrimaryID, RolePrimary, spec.Tier, spec.Primary, now),
		s.newInstance(pair, pair.StandbyID, RoleStandby, spec.Tier, spec.Standby, now),
	}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		acct := Account{ID: spec.Account, Name: spec.AccountName, CreatedAt: now}
		if err := tx.Where("id = ?", acct.ID).FirstOrCreate(&acct).Error; err != nil {
			return err
		}
		var n int64
		if err := tx.Model(&Pair{}).Where("id = ?", pair.ID).Count(&n).Error; err != nil {
			return err
		}
		if n == 0 {
			err := tx.Model(&Instance{}).Where("id IN ?", []clawops.InstanceID{pair.PrimaryID, pair.StandbyID}).Count(&n).Error
			if err != nil {
				return err
			}
		}
		if n > 0 {
			return clawops.E(op, clawops.KindInvalid, ReasonPairExists, fmt.Errorf("pair %q or its instances already exist", pair.ID))
		}
		if err := tx.Create(&pair).Error; err != nil {
			return err
		}
		return tx.Create(&rows).Error
	})
	if err != nil {
		if clawops.ReasonOf(err) != "" {
			return PairView{}, err
		}
		return PairView{}, clawops.E(op, clawops.ReasonInternal, err)
	}
	s.log.Info("pair recorded", "pair", pair.ID, "account", spec.Account, "tier", spec.Tier)

	var errs []error
	for i, pl := range []Placement{spec.Primary, spec.Standby} {
		if err := s.createServer(ctx, rows[i], pl, spec.Tier); err != nil {
			errs = append(errs, err)
		}
	}
	// The rows must be readable even if ctx ended during the provider calls.
	pv, perr := s.Pair(context.WithoutCancel(ctx), pair.ID)
	if perr != nil {
		errs = append(errs, perr)
	}
	if len(errs) > 0 {
		return pv, clawops.E(op, errors.Join(errs...))
	}
	return pv, nil
}

func (s *Service) newInstance(p Pair, id clawops.InstanceID, role Role, tier string, pl Placement, now time.Time) Instance {
	return Instance{ID: id, AccountID: p.AccountID, PairID: p.ID, Provider: pl.Provider,
		Region: pl.Region, Tier: tier, Role: role, State: StateCreating, CreatedAt: now, UpdatedAt: now}
}

// createServer mints a join token for in and asks its provider for the server, recording
// the outcome on the row whatever ctx does meanwhile.
func (s *Service) createServer(ctx context.Context, in Instance, pl Placement, tier string) error {
	op := fmt.Sprintf("create server %s", in.ID)
	record := context.WithoutCancel(ctx)
	fail := func(err error) error {
		err = clawops.E(op, err)
		if _, uerr := s.setState(record, in.ID, StateCreating, StateFailed, map[string]any{"error": truncate(err.Error(), 2000)}); uerr != nil {
			s.log.Error("record failed instance", "instance", in.ID, "err", uerr)
		}
		s.emit(record, in, StateCreating, StateFailed, err.Error())
		return err
	}
	token, err := s.opts.Tokens.MintJoinToken(ctx, in.ID, s.opts.JoinTokenTTL)
	if err != nil {
		return fail(fmt.Errorf("mint join token: %w", err))
	}
	prov := s.opts.Providers[pl.Provider]
	size := tier
	if m, ok := s.opts.Sizes[pl.Provider]; ok && m[tier] != "" {
		size = m[tier]
	}
	spec := ServerSpec{
		Name: string(in.ID), Region: pl.Region, Size: size, Image: s.opts.Image,
		Labels: map[string]string{
			"clawops.instance": string(in.ID), "clawops.account": in.AccountID,
			"clawops.pair": in.PairID, "clawops.role": string(in.Role), "clawops.tier": tier,
		},
		Bootstrap: Bootstrap{Instance: in.ID, GatewayURL: s.opts.GatewayURL, GatewayKey: s.opts.GatewayKey,
			JoinToken: token, TailscaleKey: s.opts.TailscaleKey, OpenClawImage: s.opts.OpenClawImage},
	}
	srv, err := prov.Create(ctx, spec)
	if err != nil {
		if ctx.Err() == nil {
			s.recordProviderSample(ctx, pl.Provider, false, 0, err.Error())
		}
		return fail(fmt.Errorf("provider %s: %w", pl.Provider, err))
	}
	// A heartbeat may already have moved the row on; the provider ID is recorded anyway.
	extra := map[string]any{"provider_id": srv.ProviderID, "error": ""}
	moved, err := s.setState(record, in.ID, StateCreating, StateBootstrapping, extra)
	if err == nil && !moved {
		err = s.db.WithContext(record).Model(&Instance{}).Where("id = ?", in.ID).
			Updates(map[string]any{"provider_id": srv.ProviderID, "updated_at": s.now()}).Error
	}
	if err != nil {
		// The server exists but its ID could not be written: say so loudly, the operator
		// reconciles with the provider's List.
		s.log.Error("record provider id", "instance", in.ID, "provider", pl.Provider, "provider_id", srv.ProviderID, "err", err)
		return clawops.E(op, clawops.ReasonInternal, fmt.Errorf("server %s created but not recorded: %w", srv.ProviderID, err))
	}
	if moved {
		s.emit(record, in, StateCreating, StateBootstrapping, "provider accepted")
	}
	s.log.Info("server created", "instance", in.ID, "provider", pl.Provider, "provider_id", srv.ProviderID)
	return nil
}

// ensureServer gives a recorded instance the server it lacks: one that FAILED before its
// provider accepted it, or one left CREATING by a gateway that stopped mid-call. The
// provider is asked first (List, by the clawops.instance label) whether the earlier
// attempt created a server after all; only if not is a new one created. An instance that
// already has a provider ID is left alone.
func (s *Service) ensureServer(ctx context.Context, in Instance) error {
	op := fmt.Sprintf("ensure server %s", in.ID)
	if in.ProviderID != "" || (in.State != StateFailed && in.State != StateCreating) {
		return nil
	}
	if in.Role == RoleRetired {
		return nil
	}
	if in.State == StateFailed {
		moved, err := s.setState(ctx, in.ID, StateFailed, StateCreating, map[string]any{"error": ""})
		if err != nil {
			return clawops.E(op, clawops.ReasonInternal, err)
		}
		if !moved {
			return nil // someone else moved it meanwhile
		}
		s.emit(ctx, in, StateFailed, StateCreating, "retry")
		in.State = StateCreating
	}
	prov, ok := s.opts.Providers[in.Provider]
	if !ok {
		err := clawops.E(op, clawops.KindInvalid, ReasonUnknownProvider, fmt.Errorf("provider %q is not configured", in.Provider))
		s.setState(context.WithoutCancel(ctx), in.ID, StateCreating, StateFailed, map[string]any{"error": truncate(err.Error(), 2000)})
		return err
	}
	servers, err := prov.List(ctx)
	if err != nil {
		err = clawops.E(op, fmt.Errorf("provider %s list: %w", in.Provider, err))
		s.setState(context.WithoutCancel(ctx), in.ID, StateCreating, StateFailed, map[string]any{"error": truncate(err.Error(), 2000)})
		s.emit(ctx, in, StateCreating, StateFailed, err.Error())
		return err
	}
	for _, srv := range servers {
		if srv.Labels["clawops.instance"] == string(in.ID) && srv.ProviderID != "" {
			moved, err := s.setState(ctx, in.ID, StateCreating, StateBootstrapping, map[string]any{"provider_id": srv.ProviderID, "error": ""})
			if err != nil {
				return clawops.E(op, clawops.ReasonInternal, err)
			}
			if moved {
				s.emit(ctx, in, StateCreating, StateBootstrapping, "found the server an earlier attempt created")
			}
			s.log.Info("adopted server from an earlier attempt", "instance", in.ID, "provider_id", srv.ProviderID)
			return nil
		}
	}
	return s.createServer(ctx, in, Placement{Provider: in.Provider, Region: in.Region}, in.Tier)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
