// Package channels is where operators' messages enter ClawOps and where replies and approval
// cards leave it. It defines the small Channel interface that every adapter (web, telegram,
// whatsapp, slack, discord) implements, optional abilities checked by type assertion
// (CardPoster), the Inbound message, the allowFrom directory that turns a platform sender
// into a ClawOps identity and role, a registry of adapter factories, the Dispatcher that
// hands inbound messages to the Commander, and the Notifier that fans approval changes out
// to every channel that can show a card.
package channels

import (
	"context"
	"time"

	"github.com/gatewayforge/clawops/governance"
)

// Channel is one chat surface ClawOps can talk through.
type Channel interface {
	// Name is the channel's stable key, e.g. "web", "telegram". It is the Channel of the
	// actors it produces and the first half of their session key.
	Name() string
	// Send delivers text to one recipient: a chat id on chat platforms, an identity on the
	// web console.
	Send(ctx context.Context, to string, text string) error
}

// CardPoster is a Channel that can show approval cards where approvers see them. PostCard
// posts the card, or updates the one already posted for card.ApprovalID when the approval
// changes state. Where the card goes (an approvers' room, every console) is the adapter's
// configuration, never only the requester.
type CardPoster interface {
	PostCard(ctx context.Context, card governance.Card) error
}

// Inbound is one message received from a channel.
type Inbound struct {
	Channel string    `json:"channel"` // Channel.Name() of the adapter that received it
	Chat    string    `json:"chat"`    // where to reply: chat/conversation id
	Sender  string    `json:"sender"`  // the platform's id of the person who wrote it
	Text    string    `json:"text"`
	Time    time.Time `json:"time"`
}

// Editor is a Channel that can post a message and later change it in place, for progress
// updates ("provisioning 3/20…"). Post returns a reference that Edit takes back.
type Editor interface {
	Post(ctx context.Context, to string, text string) (ref string, err error)
	Edit(ctx context.Context, to string, ref string, text string) error
}

// VoiceSender is a Channel that can send a voice note (a briefing read aloud). audio is
// OGG/Opus, the format chat apps play as a voice note.
type VoiceSender interface {
	SendVoice(ctx context.Context, to string, audio []byte) error
}

// Runner is a Channel with a receive loop (long polling, a socket); Run returns when ctx ends.
// Main runs every Runner in its errgroup.
type Runner interface {
	Run(ctx context.Context) error
}

// Checker is a Channel that can say whether it is configured well enough to connect: the
// token is accepted, the session is paired. clawops doctor calls it.
type Checker interface {
	Check(ctx context.Context) error
}
