package channels

import (
	"fmt"

	"github.com/gatewayforge/clawops"
)

// Allow is one allowFrom entry: the sender Sender on channel Channel is the ClawOps
// identity Identity with role Role.
type Allow struct {
	Channel  string            `json:"channel"`
	Sender   string            `json:"sender"`
	Identity string            `json:"identity"`
	Role     clawops.HumanRole `json:"role"`
}

// Resolver turns a platform sender into a ClawOps actor.
type Resolver interface {
	Resolve(channel, sender string) (clawops.Actor, error)
}

type senderKey struct{ channel, sender string }

// Directory is the allowFrom list: an immutable map from (channel, sender) to identity and
// role. Senders not in it are unknown, and their messages are ignored.
type Directory struct {
	entries map[senderKey]Allow
}

var _ Resolver = (*Directory)(nil)

// NewDirectory checks entries and builds a Directory. Every field is required, the role
// must be a known human role, and a (channel, sender) pair may appear once.
func NewDirectory(entries []Allow) (*Directory, error) {
	d := &Directory{entries: make(map[senderKey]Allow, len(entries))}
	for i, e := range entries {
		switch {
		case e.Channel == "":
			return nil, fmt.Errorf("allowFrom[%d]: channel is empty", i)
		case e.Sender == "":
			return nil, fmt.Errorf("allowFrom[%d]: sender is empty", i)
		case e.Identity == "":
			return nil, fmt.Errorf("allowFrom[%d]: identity is empty", i)
		case !e.Role.Valid():
			return nil, fmt.Errorf("allowFrom[%d]: role %q is not one of admin, approver, operator, viewer", i, e.Role)
		}
		k := senderKey{e.Channel, e.Sender}
		if _, dup := d.entries[k]; dup {
			return nil, fmt.Errorf("allowFrom[%d]: sender %q on %s is listed twice", i, e.Sender, e.Channel)
		}
		d.entries[k] = e
	}
	return d, nil
}

// Resolve returns the actor for sender on channel, or an error with reason UNKNOWN_SENDER.
func (d *Directory) Resolve(channel, sender string) (clawops.Actor, error) {
	e, ok := d.entries[senderKey{channel, sender}]
	if !ok {
		return clawops.Actor{}, clawops.E("resolve sender", clawops.KindUnauthorized, clawops.ReasonUnknownSender,
			fmt.Sprintf("sender %q on %s is not in allowFrom", sender, channel))
	}
	return clawops.Actor{Identity: e.Identity, Role: e.Role, Channel: channel}, nil
}
