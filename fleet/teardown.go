package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// TeardownOptions tune one teardown.
type TeardownOptions struct {
	// SkipArchive deletes the server without archiving its workspace first: for a server
	// whose node is gone for good, or whose workspace is known to be worthless.
	SkipArchive bool
}

// TeardownResult says what a teardown did.
type TeardownResult struct {
	Instance clawops.InstanceID `json:"instance"`
	Archive  *Archive           `json:"archive,omitempty"` // the stored workspace archive
	Note     string             `json:"note,omitempty"`    // why nothing was archived, or nothing done
}

// Teardown is TeardownWith with the default options: archive first.
func (s *Service) Teardown(ctx context.Context, id clawops.InstanceID) error {
	_, err := s.TeardownWith(ctx, id, TeardownOptions{})
	return err
}

// TeardownWith destroys id's server at its provider, then records the instance TERMINATED
// and forgets its node. The gate has written its audit entry before this runs.
//
//   - An ACTIVE primary whose standby is not ACTIVE is refused (STANDBY_NOT_ACTIVE),
//     whoever asks: the invariant holds here too, not only at the gate.
//   - Unless SkipArchive, an instance that has a node first has its workspace archived:
//     backup.create on the node, the file pulled over the node plane (backup.read; the
//     provider's BackupFetcher only for a node without it), stored in Options.Archive with
//     its size and SHA-256 checked. If that fails (ARCHIVE_FAILED), nothing is
//     deleted. Without an archive store nothing is archived, and the result says so.
//   - Tearing down a terminated instance does nothing; one still being created must wait
//     for its provider ID.
func (s *Service) TeardownWith(ctx context.Context, id clawops.InstanceID, opts TeardownOptions) (TeardownResult, error) {
	const op = "teardown instance"
	res := TeardownResult{Instance: id}
	in, err := s.load(ctx, op, id)
	if err != nil {
		return res, err
	}
	if in.State == StateTerminated {
		res.Note = "already terminated"
		return res, nil
	}
	if in.ProviderID == "" && in.State == StateCreating {
		return res, clawops.E(op, clawops.KindTransient, clawops.ReasonExecutionFailed,
			fmt.Errorf("instance %s is still being created; try again when it is BOOTSTRAPPING or FAILED", id))
	}
	if in.Role == RolePrimary && in.State == StateActive {
		peer, err := s.peerOf(ctx, in)
		if err != nil {
			return res, clawops.E(op, clawops.ReasonInternal, err)
		}
		if peer == nil || peer.State != StateActive {
			st := "missing"
			if peer != nil {
				st = string(peer.State)
			}
			return res, clawops.E(op, clawops.KindDenied, clawops.ReasonStandbyNotActive,
				fmt.Errorf("%s is the ACTIVE primary and its standby is %s", id, st))
		}
	}
	if in.PairID != "" {
		release, err := s.hold(op, in.PairID)
		if err != nil {
			return res, err
		}
		defer release()
	}

	switch {
	case opts.SkipArchive:
		res.Note = "archive skipped on request"
	case in.NodeID == "":
		res.Note = "no node ever enrolled: no workspace to archive"
	case s.opts.Archive == nil:
		res.Note = "no archive store configured: workspace not archived"
		s.log.Warn("teardown without archive store", "instance", id)
	default:
		a, err := s.archiveWorkspace(ctx, in)
		if err != nil {
			return res, err
		}
		res.Archive = a
	}

	if in.ProviderID != "" {
		prov, ok := s.opts.Providers[in.Provider]
		if !ok {
			return res, clawops.E(op, clawops.KindInvalid, ReasonUnknownProvider,
				fmt.Errorf("instance %s lives at provider %q, which is not configured", id, in.Provider))
		}
		if err := prov.Delete(ctx, in.ProviderID); err != nil {
			err = clawops.E(op, fmt.Errorf("provider %s delete %s: %w", in.Provider, in.ProviderID, err))
			rec := context.WithoutCancel(ctx)
			if uerr := s.db.WithContext(rec).Model(&Instance{}).Where("id = ?", id).
				Updates(map[string]any{"error": truncate(err.Error(), 2000), "updated_at": s.now()}).Error; uerr != nil {
				s.log.Error("record teardown failure", "instance", id, "err", uerr)
			}
			return res, err
		}
	}
	// The server is gone: record it even if ctx has ended meanwhile.
	rec := context.WithoutCancel(ctx)
	now := s.now()
	upd := s.db.WithContext(rec).Model(&Instance{}).Where("id = ? AND state <> ?", id, StateTerminated).
		Updates(map[string]any{"state": StateTerminated, "node_id": "", "health_ok": false,
			"error": "", "updated_at": now, "terminated_at": now})
	if upd.Error != nil {
		return res, clawops.E(op, clawops.ReasonInternal, fmt.Errorf("server deleted but state not recorded: %w", upd.Error))
	}
	if upd.RowsAffected == 1 {
		s.emit(rec, in, in.State, StateTerminated, "teardown")
	}
	s.log.Info("instance torn down", "instance", id, "provider", in.Provider, "provider_id", in.ProviderID, "archived", res.Archive != nil)
	return res, nil
}

// archiveWorkspace has the node pack the workspace, brings the file over and stores it,
// recording where. The file comes over the node plane (backup.read), whatever the
// provider; only a node too old to know backup.read (COMMAND_NOT_ALLOWLISTED) has its
// backup fetched through the provider, when the provider can (BackupFetcher).
func (s *Service) archiveWorkspace(ctx context.Context, in Instance) (*Archive, error) {
	const op = "archive workspace"
	failed := func(err error) (*Archive, error) {
		return nil, clawops.E(op, clawops.KindOther, ReasonArchiveFailed,
			fmt.Errorf("%s: %w; nothing was deleted (tear down with skip_archive only if the workspace may be lost)", in.ID, err))
	}
	// backup.create and every backup.read are separate commands: none may inherit a
	// caller's idempotency key, or the node would refuse all but the first as replays.
	ctx = proto.WithIdempotencyKey(ctx, "")
	raw, err := s.invoke(ctx, op, in.ID, CmdBackup, noParams{})
	if err != nil {
		return failed(fmt.Errorf("%s: %w", CmdBackup, err))
	}
	var b Backup
	if err := json.Unmarshal(raw, &b); err != nil {
		return failed(fmt.Errorf("decode %s result: %w", CmdBackup, err))
	}
	if err := checkBackup(b); err != nil {
		return failed(err)
	}
	src, via, err := s.openBackup(ctx, in, b)
	if err != nil {
		return failed(err)
	}
	defer src.Close()
	now := s.now()
	key := archiveKey(in.AccountID, in.ID, now, b.Path)
	loc, err := s.opts.Archive.Put(ctx, key, src, b.Size, b.SHA256)
	if err != nil {
		return failed(err)
	}
	a := &Archive{Instance: in.ID, Account: in.AccountID, Key: key, Location: loc, SHA256: b.SHA256, Size: b.Size, CreatedAt: now}
	if err := s.db.WithContext(context.WithoutCancel(ctx)).Create(a).Error; err != nil {
		return failed(fmt.Errorf("stored at %s but not recorded: %w", loc, err))
	}
	s.log.Info("workspace archived", "instance", in.ID, "via", via, "location", loc, "bytes", b.Size)
	s.publish(Event{Type: EventInstanceArchived, Subject: string(in.ID),
		Summary: fmt.Sprintf("workspace of %s archived to %s (%d bytes)", in.ID, loc, b.Size), Payload: payload(a)})
	return a, nil
}

// openBackup opens the backup b of in's node for reading, and says how: "node" (the first
// chunk is already in hand, so a node that cannot serve it is known before the store is
// touched) or "provider" for an older node whose provider can fetch files.
func (s *Service) openBackup(ctx context.Context, in Instance, b Backup) (io.ReadCloser, string, error) {
	r := s.newNodeBackupReader(ctx, in.ID, b)
	err := r.fetch()
	if err == nil {
		return io.NopCloser(r), "node", nil
	}
	if clawops.ReasonOf(err) != clawops.ReasonNotAllowlisted {
		return nil, "", err
	}
	fetcher, ok := s.opts.Providers[in.Provider].(BackupFetcher)
	if !ok {
		return nil, "", fmt.Errorf("the node has no %s (upgrade gf-clawnode) and provider %q cannot fetch files from its servers: %w",
			CmdBackupRead, in.Provider, err)
	}
	s.log.Warn("node has no backup.read: fetching the backup through the provider", "instance", in.ID, "provider", in.Provider)
	rc, err := fetcher.FetchBackup(ctx, in.ProviderID, b.Path)
	if err != nil {
		return nil, "", fmt.Errorf("fetch %s through provider %s: %w", b.Path, in.Provider, err)
	}
	return rc, "provider", nil
}

// Archives returns the archives stored for an account, newest first.
func (s *Service) Archives(ctx context.Context, account string) ([]Archive, error) {
	var out []Archive
	if err := s.db.WithContext(ctx).Where("account = ?", account).Order("id DESC").Find(&out).Error; err != nil {
		return nil, clawops.E("list archives", clawops.ReasonInternal, err)
	}
	return out, nil
}

// ResizeResult says what a tier resize did.
type ResizeResult struct {
	Instance        clawops.InstanceID `json:"instance"`
	From            string             `json:"from"`
	To              string             `json:"to"`
	Size            string             `json:"size"` // the provider's size slug
	MonthlyDeltaUSD float64            `json:"monthly_delta_usd"`
}

// Resize moves id to another tier: the provider resizes the server, then the record
// follows. An unknown tier is UNKNOWN_TIER; the same tier does nothing.
func (s *Service) Resize(ctx context.Context, id clawops.InstanceID, tier string) (ResizeResult, error) {
	const op = "resize instance"
	in, err := s.load(ctx, op, id)
	if err != nil {
		return ResizeResult{}, err
	}
	if !s.prices.HasTier(tier) {
		return ResizeResult{}, clawops.E(op, clawops.KindInvalid, ReasonUnknownTier, fmt.Errorf("tier %q is not in the price table", tier))
	}
	res := ResizeResult{Instance: id, From: in.Tier, To: tier, Size: s.sizeFor(in.Provider, tier)}
	if in.State == StateTerminated {
		return res, clawops.E(op, clawops.KindDenied, clawops.ReasonInstanceNotActive, fmt.Errorf("instance %s is terminated", id))
	}
	if in.Tier == tier {
		return res, nil
	}
	if in.ProviderID == "" {
		return res, clawops.E(op, clawops.KindTransient, clawops.ReasonExecutionFailed, fmt.Errorf("instance %s has no server yet", id))
	}
	prov, ok := s.opts.Providers[in.Provider]
	if !ok {
		return res, clawops.E(op, clawops.KindInvalid, ReasonUnknownProvider, fmt.Errorf("provider %q is not configured", in.Provider))
	}
	release, err := s.hold(op, in.PairID)
	if err != nil {
		return res, err
	}
	defer release()
	if err := prov.Resize(ctx, in.ProviderID, res.Size); err != nil {
		return res, clawops.E(op, fmt.Errorf("provider %s resize %s to %s: %w", in.Provider, in.ProviderID, res.Size, err))
	}
	if err := s.db.WithContext(context.WithoutCancel(ctx)).Model(&Instance{}).Where("id = ?", id).
		Updates(map[string]any{"tier": tier, "updated_at": s.now()}).Error; err != nil {
		return res, clawops.E(op, clawops.ReasonInternal, fmt.Errorf("resized at the provider but not recorded: %w", err))
	}
	oldP, ok1 := s.prices.Monthly(in.Provider, in.Region, in.Tier)
	newP, ok2 := s.prices.Monthly(in.Provider, in.Region, tier)
	if ok1 && ok2 {
		res.MonthlyDeltaUSD = roundCents(newP - oldP)
	}
	s.publish(Event{Type: EventInstanceResized, Subject: string(id),
		Summary: fmt.Sprintf("%s resized %s → %s (%+.2f USD/month)", id, in.Tier, tier, res.MonthlyDeltaUSD), Payload: payload(res)})
	return res, nil
}

// sizeFor maps a tier to the provider's size slug (Options.Sizes), or the tier itself.
func (s *Service) sizeFor(provider, tier string) string {
	if m, ok := s.opts.Sizes[provider]; ok && m[tier] != "" {
		return m[tier]
	}
	return tier
}
