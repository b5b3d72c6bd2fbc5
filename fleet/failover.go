package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/gatewayforge/clawops"
)

// FailoverReport says what a failover did.
type FailoverReport struct {
	Pair                string             `json:"pair"`
	OldPrimary          clawops.InstanceID `json:"old_primary"` // now retired; its server is kept
	NewPrimary          clawops.InstanceID `json:"new_primary"` // the promoted standby
	NewStandby          clawops.InstanceID `json:"new_standby"` // recorded CREATING, server queued
	NewStandbyPlacement Placement          `json:"new_standby_placement"`
	Job                 uint               `json:"job"` // provisioning job of the new standby
	At                  time.Time          `json:"at"`
}

// Failover promotes the standby of pair to primary and queues a new standby:
//
//   - the standby must be ACTIVE (STANDBY_NOT_ACTIVE otherwise) and, when nodes are
//     reachable, answer healthy when asked (FAILOVER_FAILED otherwise; it is then recorded
//     DEGRADED);
//   - it passes through STANDBY_PROMOTING and becomes the ACTIVE primary;
//   - the old primary becomes "retired": its record and its server stay for a person to
//     tear down after looking (a failover never deletes anything);
//   - a new standby <pair>-r<N> is recorded CREATING on a provider other than the new
//     primary's (the routing policy's standby list for the region group, else the old
//     primary's placement) and its server is created by the provisioning queue, with
//     retries.
func (s *Service) Failover(ctx context.Context, pairID string) (FailoverReport, error) {
	release, err := s.hold("failover", pairID)
	if err != nil {
		return FailoverReport{}, err
	}
	defer release()
	return s.failoverLocked(ctx, pairID)
}

// failoverLocked is Failover for a caller that holds the pair.
func (s *Service) failoverLocked(ctx context.Context, pairID string) (FailoverReport, error) {
	const op = "failover"
	pv, err := s.Pair(ctx, pairID)
	if err != nil {
		return FailoverReport{}, err
	}
	pri, sby := pv.Primary, pv.Standby
	if sby.ID == "" || sby.State != StateActive {
		return FailoverReport{}, clawops.E(op, clawops.KindDenied, clawops.ReasonStandbyNotActive,
			fmt.Errorf("standby %s of pair %s is %s, not ACTIVE", sby.ID, pairID, orUnknown(string(sby.State))))
	}
	fail := func(err error) (FailoverReport, error) {
		err = clawops.E(op, clawops.KindOther, ReasonFailoverFailed, err)
		s.publish(Event{Type: EventFailoverFailed, Subject: pairID, Severity: SeverityCritical,
			Summary: fmt.Sprintf("failover of %s failed: %v", pairID, err),
			Payload: payload(map[string]any{"pair": pairID, "primary": pri.ID, "standby": sby.ID, "error": err.Error()})})
		return FailoverReport{}, err
	}
	s.publish(Event{Type: EventFailoverStarted, Subject: pairID, Severity: SeverityWarning,
		Summary: fmt.Sprintf("failover of %s: promoting %s (primary %s is %s)", pairID, sby.ID, pri.ID, pri.State)})

	sbyRow, err := s.load(ctx, op, sby.ID)
	if err != nil {
		return fail(err)
	}
	moved, err := s.setState(ctx, sby.ID, StateActive, StateStandbyPromoting, nil)
	if err != nil || !moved {
		return fail(fmt.Errorf("standby %s changed state meanwhile (%v)", sby.ID, err))
	}
	s.emit(ctx, sbyRow, StateActive, StateStandbyPromoting, "failover")
	rec := context.WithoutCancel(ctx)
	if s.opts.Nodes != nil {
		if ok, detail := s.healthy(ctx, sby.ID); !ok {
			s.setState(rec, sby.ID, StateStandbyPromoting, StateDegraded, map[string]any{"health_ok": false, "health_error": truncate(detail, 1000)})
			s.emit(rec, sbyRow, StateStandbyPromoting, StateDegraded, "failover health check: "+detail)
			return fail(fmt.Errorf("standby %s does not answer healthy: %s", sby.ID, detail))
		}
	}

	priRow, err := s.load(rec, op, pri.ID)
	if err != nil {
		s.setState(rec, sby.ID, StateStandbyPromoting, StateActive, nil)
		return fail(err)
	}
	place := s.standbyPlacement(rec, sbyRow.Provider, Placement{Provider: priRow.Provider, Region: priRow.Region})
	now := s.now()
	var report FailoverReport
	err = s.db.WithContext(rec).Transaction(func(tx *gorm.DB) error {
		var p Pair
		if err := tx.Where("id = ?", pairID).Take(&p).Error; err != nil {
			return err
		}
		n := p.Replacements
		var newID clawops.InstanceID
		for range 100 {
			n++
			newID = clawops.InstanceID(fmt.Sprintf("%s-r%d", pairID, n))
			var c int64
			if err := tx.Model(&Instance{}).Where("id = ?", newID).Count(&c).Error; err != nil {
				return err
			}
			if c == 0 {
				break
			}
		}
		if !ValidInstanceID(string(newID)) {
			return fmt.Errorf("no free name for the new standby of %s", pairID)
		}
		res := tx.Model(&Pair{}).Where("id = ? AND primary_id = ? AND standby_id = ?", pairID, pri.ID, sby.ID).
			Updates(map[string]any{"primary_id": sby.ID, "standby_id": newID, "replacements": n})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 {
			return errors.New("the pair changed meanwhile")
		}
		if err := tx.Model(&Instance{}).Where("id = ? AND state = ?", sby.ID, StateStandbyPromoting).
			Updates(map[string]any{"role": RolePrimary, "state": StateActive, "updated_at": now}).Error; err != nil {
			return err
		}
		if err := tx.Model(&Instance{}).Where("id = ?", pri.ID).
			Updates(map[string]any{"role": RoleRetired, "updated_at": now,
				"error": truncate(fmt.Sprintf("replaced by failover to %s; server kept for review", sby.ID), 2000)}).Error; err != nil {
			return err
		}
		nin := Instance{ID: newID, AccountID: p.AccountID, PairID: p.ID, Provider: place.Provider, Region: place.Region,
			Tier: sbyRow.Tier, Role: RoleStandby, State: StateCreating, CreatedAt: now, UpdatedAt: now}
		if err := tx.Create(&nin).Error; err != nil {
			return err
		}
		job := ProvisionJob{Kind: JobInstance, PairID: p.ID, Instance: newID, State: JobQueued, NextAt: now, CreatedAt: now, UpdatedAt: now}
		if err := tx.Create(&job).Error; err != nil {
			return err
		}
		report = FailoverReport{Pair: pairID, OldPrimary: pri.ID, NewPrimary: sby.ID, NewStandby: newID,
			NewStandbyPlacement: place, Job: job.ID, At: now}
		return nil
	})
	if err != nil {
		s.setState(rec, sby.ID, StateStandbyPromoting, StateActive, nil)
		s.emit(rec, sbyRow, StateStandbyPromoting, StateActive, "failover rolled back")
		return fail(err)
	}
	sbyRow.Role = RolePrimary
	s.emit(rec, sbyRow, StateStandbyPromoting, StateActive, "promoted to primary")
	s.kickProvisioner()
	s.log.Warn("pair failed over", "pair", pairID, "old_primary", pri.ID, "new_primary", sby.ID, "new_standby", report.NewStandby)
	s.publish(Event{Type: EventFailoverCompleted, Subject: pairID, Severity: SeverityWarning,
		Summary: fmt.Sprintf("pair %s failed over: %s is primary; new standby %s queued at %s/%s; %s retired (server kept for review)",
			pairID, sby.ID, report.NewStandby, place.Provider, place.Region, pri.ID),
		Payload: payload(report)})
	return report, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
