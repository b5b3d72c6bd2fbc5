package governance

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/gatewayforge/clawops"
)

// A checkpoint is the gateway's Ed25519 signature over {seq, head hash, time} of the audit
// log. The chain alone shows any change, insertion or removal inside the log, but not the
// removal of its last entries; a checkpoint does, since the entry it signed must still be
// there with the same hash. Checkpoints kept outside the database (an exported bundle) also
// survive someone deleting the checkpoint rows.

// Checkpoint is one signed statement about the head of the audit log.
type Checkpoint struct {
	Seq       int64     `json:"seq"`
	HeadHash  string    `json:"head_hash"`
	Time      time.Time `json:"time"`
	PublicKey string    `json:"public_key"` // hex Ed25519 public key
	Signature string    `json:"signature"`  // hex Ed25519 signature over CheckpointPayload
}

type checkpointRow struct {
	Seq       int64  `gorm:"column:seq;primaryKey;autoIncrement:false"`
	HeadHash  string `gorm:"column:head_hash;size:64;not null"`
	Time      string `gorm:"column:time;size:32;not null"`
	PublicKey string `gorm:"column:public_key;size:64;not null"`
	Signature string `gorm:"column:signature;size:128;not null"`
}

// TableName names the checkpoints table.
func (checkpointRow) TableName() string { return "governance_audit_checkpoints" }

func (r checkpointRow) checkpoint() Checkpoint {
	t, _ := parseTime(r.Time)
	return Checkpoint{Seq: r.Seq, HeadHash: r.HeadHash, Time: t, PublicKey: r.PublicKey, Signature: r.Signature}
}

// checkpointPayload is the exact byte string a checkpoint signs.
func checkpointPayload(seq int64, head, at string) []byte {
	b, err := json.Marshal(struct {
		Kind     string `json:"kind"`
		V        int    `json:"v"`
		Seq      int64  `json:"seq"`
		HeadHash string `json:"head_hash"`
		Time     string `json:"time"`
	}{"clawops.audit.checkpoint", 1, seq, head, at})
	if err != nil {
		panic(fmt.Sprintf("governance: encode checkpoint: %v", err))
	}
	return b
}

// verifyCheckpoint checks c's signature, under one of trusted when given.
func verifyCheckpoint(c checkpointRow, trusted []ed25519.PublicKey) error {
	pub, err := hex.DecodeString(c.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize || hex.EncodeToString(pub) != c.PublicKey {
		return errors.New("malformed public key")
	}
	sig, err := hex.DecodeString(c.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize || hex.EncodeToString(sig) != c.Signature {
		return errors.New("malformed signature")
	}
	if len(trusted) > 0 && !slices.ContainsFunc(trusted, func(k ed25519.PublicKey) bool { return bytes.Equal(k, pub) }) {
		return errors.New("signed by an untrusted key")
	}
	if !ed25519.Verify(pub, checkpointPayload(c.Seq, c.HeadHash, c.Time), sig) {
		return errors.New("bad signature")
	}
	return nil
}

// Head returns the seq and hash of the last entry (0 and GenesisHash when empty).
func (l *AuditLog) Head(ctx context.Context) (int64, string, error) {
	var tail []auditRow
	if err := l.db.WithContext(ctx).Order("seq DESC").Limit(1).Find(&tail).Error; err != nil {
		return 0, "", fmt.Errorf("audit head: %w", err)
	}
	if len(tail) == 0 {
		return 0, GenesisHash, nil
	}
	return tail[0].Seq, tail[0].Hash, nil
}

// Checkpoint signs the current head of the log with key and stores the checkpoint. If the
// head is already checkpointed it returns that checkpoint. An empty log cannot be
// checkpointed.
func (l *AuditLog) Checkpoint(ctx context.Context, key ed25519.PrivateKey) (Checkpoint, error) {
	if len(key) != ed25519.PrivateKeySize {
		return Checkpoint{}, clawops.E("audit checkpoint", clawops.KindInvalid, clawops.ReasonBadArguments, "not an Ed25519 private key")
	}
	seq, head, err := l.Head(ctx)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit checkpoint: %w", err)
	}
	if seq == 0 {
		return Checkpoint{}, clawops.E("audit checkpoint", clawops.KindInvalid, clawops.ReasonBadArguments, "the audit log is empty")
	}
	var have []checkpointRow
	if err := l.db.WithContext(ctx).Where("seq = ?", seq).Limit(1).Find(&have).Error; err != nil {
		return Checkpoint{}, fmt.Errorf("audit checkpoint: %w", err)
	}
	if len(have) == 1 && have[0].HeadHash == head {
		return have[0].checkpoint(), nil
	}
	at := l.clock.Now().UTC().Format(auditTimeLayout)
	row := checkpointRow{Seq: seq, HeadHash: head, Time: at,
		PublicKey: hex.EncodeToString(key.Public().(ed25519.PublicKey)),
		Signature: hex.EncodeToString(ed25519.Sign(key, checkpointPayload(seq, head, at)))}
	if err := l.db.WithContext(ctx).Create(&row).Error; err != nil {
		return Checkpoint{}, fmt.Errorf("audit checkpoint: store seq %d: %w", seq, err)
	}
	return row.checkpoint(), nil
}

// Checkpoints returns every stored checkpoint in seq order.
func (l *AuditLog) Checkpoints(ctx context.Context) ([]Checkpoint, error) {
	rows, err := l.checkpointRows(ctx, -1)
	if err != nil {
		return nil, err
	}
	out := make([]Checkpoint, len(rows))
	for i, r := range rows {
		out[i] = r.checkpoint()
	}
	return out, nil
}

// checkpointRows reads checkpoints in seq order, those at or below upTo (all when upTo < 0).
func (l *AuditLog) checkpointRows(ctx context.Context, upTo int64) ([]checkpointRow, error) {
	q := l.db.WithContext(ctx).Order("seq ASC")
	if upTo >= 0 {
		q = q.Where("seq <= ?", upTo)
	}
	var rows []checkpointRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("audit checkpoints: %w", err)
	}
	return rows, nil
}

// RunCheckpoints signs a checkpoint every interval while the log grows, until ctx ends.
// Failures are logged to log (nil: discarded) and retried at the next tick.
func (l *AuditLog) RunCheckpoints(ctx context.Context, key ed25519.PrivateKey, every time.Duration, log *slog.Logger) error {
	if every <= 0 {
		return fmt.Errorf("run checkpoints: interval %s must be positive", every)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if _, err := l.Checkpoint(ctx, key); err != nil && ctx.Err() == nil && clawops.KindOf(err) != clawops.KindInvalid && log != nil {
				log.ErrorContext(ctx, "audit checkpoint", "err", err)
			}
		}
	}
}

// checkCheckpoints verifies stored checkpoints against a chain whose hash at each seq is
// given by hashAt, and whose last seq is last. It returns a problem and the seq to report.
func checkCheckpoints(cps []checkpointRow, trusted []ed25519.PublicKey, last int64, hashAt func(int64) (string, bool)) (string, int64) {
	for _, c := range cps {
		if err := verifyCheckpoint(c, trusted); err != nil {
			return fmt.Sprintf("checkpoint at seq %d: %v", c.Seq, err), c.Seq
		}
		if c.Seq > last {
			return fmt.Sprintf("log truncated: a checkpoint signed seq %d but the log ends at seq %d", c.Seq, last), last + 1
		}
		if h, ok := hashAt(c.Seq); !ok || h != c.HeadHash {
			return fmt.Sprintf("row changed: seq %d does not have the hash its checkpoint signed", c.Seq), c.Seq
		}
	}
	return "", 0
}
