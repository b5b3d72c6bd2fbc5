package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gatewayforge/clawops/clawnode/keyfile"
	"github.com/gatewayforge/clawops/clawnode/proto"
)

// Key rotation, on the node's side. The node makes a new key, stores it as device.key.next,
// and asks the gateway over its authenticated connection (clawops.device.rotate, signed by
// the new key). The gateway registers the new key beside the old one and answers with the
// new key's device token, which the node stores as device-token.next. The node then
// reconnects with the new pair; once the gateway accepts it, the gateway revokes the old
// key and the node promotes the .next files (key first, then token). A crash anywhere
// leaves a state the next start resolves:
//
//	key.next only            the answer never arrived: drop key.next, keep the old pair
//	key.next + token.next    try the new pair; if refused, drop both and keep the old pair
//	token.next only          the key was promoted, the token not yet: use token.next
const nextSuffix = ".next"

// errRotated ends a session after a successful rotation request, so the node reconnects
// at once with its new key.
var errRotated = errors.New("device key rotated; reconnecting with the new key")

// creds is what a session presents: a device key and the token that goes with it.
type creds struct {
	key   ed25519.PrivateKey
	id    string
	token string
	next  bool // key.next from a rotation the gateway has not yet accepted
}

func (d *Daemon) keyPath() string { return filepath.Join(d.cfg.StateDir, DeviceKeyFile) }

// loadCreds picks the key and token for the next connect (see the table above).
func (d *Daemon) loadCreds() (creds, error) {
	nextKey, nextTok := d.keyPath()+nextSuffix, d.deviceTokenPath()+nextSuffix
	if k, err := keyfile.Load(nextKey); err == nil {
		if tok, err := keyfile.ReadToken(nextTok); err == nil && tok != "" {
			return creds{key: k, id: proto.DeviceID(k.Public().(ed25519.PublicKey)), token: tok, next: true}, nil
		}
		d.log.Warn("a key rotation got no answer; keeping the current key")
		os.Remove(nextKey)
	}
	d.mu.Lock()
	c := creds{key: d.key, id: d.nodeID}
	d.mu.Unlock()
	tok, err := keyfile.ReadToken(nextTok)
	if err != nil || tok == "" {
		tok, err = d.credential()
	}
	c.token = tok
	return c, err
}

// promote makes a rotated pair the node's identity after the gateway accepted it.
func (d *Daemon) promote(c creds) error {
	if c.next {
		if err := os.Rename(d.keyPath()+nextSuffix, d.keyPath()); err != nil {
			return fmt.Errorf("promote rotated key: %w", err)
		}
	}
	if _, err := os.Stat(d.deviceTokenPath() + nextSuffix); err == nil {
		if err := os.Rename(d.deviceTokenPath()+nextSuffix, d.deviceTokenPath()); err != nil {
			return fmt.Errorf("promote rotated token: %w", err)
		}
	}
	d.mu.Lock()
	changed := d.nodeID != c.id
	d.key, d.nodeID = c.key, c.id
	d.mu.Unlock()
	if changed {
		d.log.Info("device key rotated", "new", c.id[:12])
	}
	return nil
}

// dropNext forgets a rotation the gateway refused.
func (d *Daemon) dropNext() {
	os.Remove(d.keyPath() + nextSuffix)
	os.Remove(d.deviceTokenPath() + nextSuffix)
}

// keyDue reports whether the device key is older than RotateKeyEvery.
func (d *Daemon) keyDue() bool {
	if d.cfg.RotateKeyEvery <= 0 {
		return false
	}
	st, err := os.Stat(d.keyPath())
	return err == nil && d.clock.Now().Sub(st.ModTime()) > d.cfg.RotateKeyEvery
}

// rotate asks the gateway to replace this session's key (see the package comment above).
func (d *Daemon) rotate(ctx context.Context, s *session) error {
	_, next, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	if err := keyfile.Save(d.keyPath()+nextSuffix, next); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	f, err := s.call(cctx, proto.MethodRotateKey, proto.SignRotate(next, s.nodeID, s.connID))
	if err == nil && !*f.OK {
		err = f.Error
	}
	var res proto.RotateResult
	if err == nil {
		if err = json.Unmarshal(f.Payload, &res); err == nil && (res.DeviceToken == "" ||
			res.DeviceID != proto.DeviceID(next.Public().(ed25519.PublicKey))) {
			err = errors.New("gateway answered for another key")
		}
	}
	if err != nil {
		os.Remove(d.keyPath() + nextSuffix)
		return fmt.Errorf("rotate: %w", err)
	}
	if err := keyfile.WriteSecret(d.deviceTokenPath()+nextSuffix, []byte(res.DeviceToken+"\n")); err != nil {
		return fmt.Errorf("rotate: store the new device token: %w", err)
	}
	return errRotated
}
