package channels

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

// PostedCard is where an approval's card was posted (Ref, platform-specific), what it showed
// last and the notice shown under it (a refused press), so an update edits it in place.
type PostedCard[R any] struct {
	Ref    R
	Card   governance.Card
	Notice string
}

// Defaults for PostedCardsOptions.
const (
	DefaultPostedCacheSize = 1000
	// DefaultPostedRetention is how long a posted card's row outlives its last change. An
	// approval waits at most a day (approvals.ttl), so a row this old belongs to a card that
	// was decided or expired weeks ago; a press on it then posts nothing new.
	DefaultPostedRetention = 30 * 24 * time.Hour
	// DefaultPostedMaxRows bounds one channel's rows whatever their age, oldest first.
	DefaultPostedMaxRows = 10000
	// postedPruneEvery is how often Put prunes (by the injected clock).
	postedPruneEvery = time.Hour
	// postedWriteTimeout bounds a row write, which runs after the card is on the platform
	// even if the caller's context has ended: the record is what lets the next update edit it.
	postedWriteTimeout = 10 * time.Second
)

// PostedCardsOptions configure a PostedCards.
type PostedCardsOptions[R any] struct {
	// Channel is the adapter instance's name; with the approval id it keys the rows.
	Channel string
	// Max bounds the in-memory cache (default DefaultPostedCacheSize).
	Max int
	// DB keeps the cards in channels_posted_cards (see Migrate), so they outlive the process
	// and a new leader finds them. Nil keeps them in memory only.
	DB *gorm.DB
	// Retention and MaxRows bound the rows kept per channel (defaults DefaultPostedRetention
	// and DefaultPostedMaxRows); Put prunes at most once an hour.
	Retention time.Duration
	MaxRows   int
	// Check rejects a stored Ref this adapter cannot use (a zero id, another chat than the
	// one configured now); such a row reads as "not posted". A zero Ref is always rejected.
	Check  func(R) error
	Clock  clawops.Clock
	Logger *slog.Logger
}

// PostedCards remembers the cards an adapter posted, by approval id. With a database it
// writes every card through to channels_posted_cards and reads a card it does not hold from
// there, so after a restart or a leader failover an update still edits the card already
// posted and a press on it still finds it; the in-memory set, which forgets the oldest
// beyond a bound, is then a cache. The cache cannot go stale across replicas: only the
// leader posts cards, and a replica that stops leading exits (docs/cluster.md).
//
// The database never stops a card: a failed write is logged (the card is posted; a later
// update may post a second one) and a failed or unreadable read counts as "not posted" (a
// fresh card is better than none).
type PostedCards[R any] struct {
	o     PostedCardsOptions[R]
	clock clawops.Clock
	log   *slog.Logger

	mu        sync.Mutex
	order     []string
	m         map[string]PostedCard[R]
	lastPrune time.Time
}

// NewPostedCards returns an empty set.
func NewPostedCards[R any](o PostedCardsOptions[R]) *PostedCards[R] {
	if o.Max <= 0 {
		o.Max = DefaultPostedCacheSize
	}
	if o.Retention <= 0 {
		o.Retention = DefaultPostedRetention
	}
	if o.MaxRows <= 0 {
		o.MaxRows = DefaultPostedMaxRows
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PostedCards[R]{o: o, clock: clawops.ClockOrSystem(o.Clock), log: log, m: map[string]PostedCard[R]{}}
}

// Get returns the card posted for approval id: from memory, else from the database.
func (p *PostedCards[R]) Get(ctx context.Context, id string) (PostedCard[R], bool) {
	p.mu.Lock()
	c, ok := p.m[id]
	p.mu.Unlock()
	if ok || p.o.DB == nil {
		return c, ok
	}
	var row postedCardRow
	err := p.o.DB.WithContext(ctx).Where("channel = ? AND approval_id = ?", p.o.Channel, id).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return PostedCard[R]{}, false
	}
	if err != nil {
		p.log.WarnContext(ctx, "channels: read posted card; a new card will be posted",
			"channel", p.o.Channel, "approval", id, "err", err)
		return PostedCard[R]{}, false
	}
	c, err = p.decode(row)
	if err != nil {
		p.log.WarnContext(ctx, "channels: stored posted card unusable; a new card will be posted",
			"channel", p.o.Channel, "approval", id, "err", err)
		return PostedCard[R]{}, false
	}
	p.mu.Lock()
	if _, raced := p.m[id]; !raced { // a Put since the read is newer
		p.remember(id, c)
	}
	c = p.m[id]
	p.mu.Unlock()
	return c, true
}

// Put records the card posted for approval id.
func (p *PostedCards[R]) Put(ctx context.Context, id string, c PostedCard[R]) {
	p.mu.Lock()
	p.remember(id, c)
	now := p.clock.Now()
	prune := p.o.DB != nil && (p.lastPrune.IsZero() || now.Sub(p.lastPrune) >= postedPruneEvery)
	if prune {
		p.lastPrune = now
	}
	p.mu.Unlock()
	if p.o.DB == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), postedWriteTimeout)
	defer cancel()
	if err := p.write(ctx, id, c, now); err != nil {
		p.log.WarnContext(ctx, "channels: record posted card; a later update may post a second card",
			"channel", p.o.Channel, "approval", id, "err", err)
	}
	if prune {
		if err := p.Prune(ctx); err != nil {
			p.log.WarnContext(ctx, "channels: prune posted cards", "channel", p.o.Channel, "err", err)
		}
	}
}

// Find returns the approval id of the one card of this channel whose Ref is ref (WhatsApp's
// short codes). None, or more than one, is not found.
func (p *PostedCards[R]) Find(ctx context.Context, ref R) (string, bool) {
	want, err := json.Marshal(ref)
	if err != nil {
		return "", false
	}
	found := map[string]bool{}
	p.mu.Lock()
	for id, c := range p.m {
		if got, err := json.Marshal(c.Ref); err == nil && bytes.Equal(got, want) {
			found[id] = true
		}
	}
	p.mu.Unlock()
	if p.o.DB != nil {
		var ids []string
		err := p.o.DB.WithContext(ctx).Model(&postedCardRow{}).Where("channel = ? AND ref = ?", p.o.Channel, string(want)).
			Limit(2).Pluck("approval_id", &ids).Error
		if err != nil {
			p.log.WarnContext(ctx, "channels: find posted card", "channel", p.o.Channel, "err", err)
		}
		for _, id := range ids {
			found[id] = true
		}
	}
	if len(found) != 1 {
		return "", false
	}
	for id := range found {
		return id, true
	}
	return "", false
}

// Prune deletes this channel's rows not changed for Retention, then the oldest beyond
// MaxRows. Put calls it at most once an hour.
func (p *PostedCards[R]) Prune(ctx context.Context) error {
	if p.o.DB == nil {
		return nil
	}
	db := p.o.DB.WithContext(ctx)
	cutoff := formatPostedTime(p.clock.Now().Add(-p.o.Retention))
	if err := db.Where("channel = ? AND updated_at < ?", p.o.Channel, cutoff).Delete(&postedCardRow{}).Error; err != nil {
		return fmt.Errorf("prune posted cards of %s by age: %w", p.o.Channel, err)
	}
	// The newest row past the bound and every older one go; rows changed in the same
	// microsecond as it go too, so the bound holds exactly.
	var edge []string
	if err := db.Model(&postedCardRow{}).Where("channel = ?", p.o.Channel).Order("updated_at DESC").
		Offset(p.o.MaxRows).Limit(1).Pluck("updated_at", &edge).Error; err != nil {
		return fmt.Errorf("prune posted cards of %s by count: %w", p.o.Channel, err)
	}
	if len(edge) == 0 {
		return nil
	}
	if err := db.Where("channel = ? AND updated_at <= ?", p.o.Channel, edge[0]).Delete(&postedCardRow{}).Error; err != nil {
		return fmt.Errorf("prune posted cards of %s by count: %w", p.o.Channel, err)
	}
	return nil
}

// remember puts c in the cache, forgetting the oldest beyond the bound; p.mu is held.
func (p *PostedCards[R]) remember(id string, c PostedCard[R]) {
	if _, ok := p.m[id]; !ok {
		p.order = append(p.order, id)
		for len(p.order) > p.o.Max {
			delete(p.m, p.order[0])
			p.order = p.order[1:]
		}
	}
	p.m[id] = c
}

func (p *PostedCards[R]) write(ctx context.Context, id string, c PostedCard[R], now time.Time) error {
	ref, err := json.Marshal(c.Ref)
	if err != nil {
		return fmt.Errorf("encode ref: %w", err)
	}
	card, err := json.Marshal(c.Card)
	if err != nil {
		return fmt.Errorf("encode card: %w", err)
	}
	row := postedCardRow{Channel: p.o.Channel, ApprovalID: id, Ref: string(ref), Card: string(card),
		Notice: c.Notice, State: string(c.Card.State), Updated: formatPostedTime(now)}
	return p.o.DB.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "channel"}, {Name: "approval_id"}},
		DoUpdates: clause.AssignmentColumns([]string{"ref", "card", "notice", "state", "updated_at"}),
	}).Create(&row).Error
}

// decode turns a row into a card this adapter can use, or says why it cannot: a row may
// have been written by another version, or by hand.
func (p *PostedCards[R]) decode(row postedCardRow) (PostedCard[R], error) {
	var c PostedCard[R]
	dec := json.NewDecoder(bytes.NewReader([]byte(row.Ref)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c.Ref); err != nil {
		return c, fmt.Errorf("ref %.64q: %w", row.Ref, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("ref %.64q: data after the value", row.Ref)
	}
	if reflect.ValueOf(&c.Ref).Elem().IsZero() {
		return c, fmt.Errorf("ref %.64q is empty", row.Ref)
	}
	if p.o.Check != nil {
		if err := p.o.Check(c.Ref); err != nil {
			return c, fmt.Errorf("ref %.64q: %w", row.Ref, err)
		}
	}
	if err := json.Unmarshal([]byte(row.Card), &c.Card); err != nil {
		return c, fmt.Errorf("card: %w", err)
	}
	if c.Card.ApprovalID != row.ApprovalID {
		return c, fmt.Errorf("card is for approval %.64q", c.Card.ApprovalID)
	}
	c.Notice = row.Notice
	return c, nil
}

// postedCardRow is one posted approval card (table channels_posted_cards).
type postedCardRow struct {
	Channel    string `gorm:"column:channel;primaryKey;size:128;index:idx_channels_posted_cards_updated,priority:1"`
	ApprovalID string `gorm:"column:approval_id;primaryKey;size:64"`
	Ref        string `gorm:"column:ref;type:text;not null"`  // R as JSON
	Card       string `gorm:"column:card;type:text;not null"` // governance.Card as JSON, as last shown
	Notice     string `gorm:"column:notice;type:text;not null;default:''"`
	State      string `gorm:"column:state;size:16;not null;default:''"` // the card's approval state, for reading by hand
	Updated    string `gorm:"column:updated_at;size:32;not null;index:idx_channels_posted_cards_updated,priority:2"`
}

func (postedCardRow) TableName() string { return "channels_posted_cards" }

// postedTimeLayout sorts as text, so pruning can compare it in SQL on every database.
const postedTimeLayout = "2006-01-02T15:04:05.000000Z"

func formatPostedTime(t time.Time) string { return t.UTC().Format(postedTimeLayout) }

// Migrate creates or updates the channels room's tables in db: the posted approval cards.
func Migrate(db *gorm.DB) error {
	if err := db.AutoMigrate(&postedCardRow{}); err != nil {
		return fmt.Errorf("migrate channels: %w", err)
	}
	return nil
}
