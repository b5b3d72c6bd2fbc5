package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Identity records, once per database, facts every replica must share. Today that is
// the gateway's public key: nodes pin it and verify every command with it, so a replica
// holding another key would have every command it signs refused once it leads.
type Identity struct {
	Name  string `gorm:"primaryKey;size:64"`
	Value string `gorm:"size:500"`
}

// TableName is cluster_identity.
func (Identity) TableName() string { return "cluster_identity" }

// CheckGatewayKey records pub as the fleet's gateway key when none is recorded, and
// otherwise fails unless pub is the recorded key.
func CheckGatewayKey(ctx context.Context, db *gorm.DB, pub ed25519.PublicKey) error {
	want := hex.EncodeToString(pub)
	if err := db.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).
		Create(&Identity{Name: "gateway_key", Value: want}).Error; err != nil {
		return fmt.Errorf("record gateway key: %w", err)
	}
	var got Identity
	if err := db.WithContext(ctx).Where("name = ?", "gateway_key").Take(&got).Error; err != nil {
		return fmt.Errorf("read gateway key: %w", err)
	}
	if got.Value != want {
		return fmt.Errorf("this replica's gateway.key (fingerprint %s) is not the key the fleet's nodes pin (fingerprint %s): "+
			"copy the first replica's gateway.key into this replica's data folder", fingerprint(want), fingerprint(got.Value))
	}
	return nil
}

func fingerprint(hexKey string) string {
	sum := sha256.Sum256([]byte(hexKey))
	return hex.EncodeToString(sum[:6])
}

// ErrKeyMismatch is what VerifyGatewayKey returns when the recorded key differs.
var ErrKeyMismatch = errors.New("gateway key differs from the fleet's")

// VerifyGatewayKey compares pub with the recorded gateway key without recording
// anything: it reports whether a key is recorded, and ErrKeyMismatch (wrapped, naming both
// fingerprints) when it is another.
func VerifyGatewayKey(ctx context.Context, db *gorm.DB, pub ed25519.PublicKey) (bool, error) {
	var got Identity
	err := db.WithContext(ctx).Where("name = ?", "gateway_key").Take(&got).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read gateway key: %w", err)
	}
	if want := hex.EncodeToString(pub); got.Value != want {
		return true, fmt.Errorf("%w: this key %s, the fleet's %s", ErrKeyMismatch, fingerprint(want), fingerprint(got.Value))
	}
	return true, nil
}
