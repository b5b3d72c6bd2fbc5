package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/gatewayforge/clawops"
)

func TestRoutingVersions(t *testing.T) {
	bus := NewBus(nil)
	h := newHarness(t, func(o *Options) { o.Bus = bus })
	events := collect(t, bus, EventRoutingChanged)
	ctx := context.Background()
	_, err := h.svc.RoutingPolicy(ctx)
	wantReason(t, err, ReasonNoPlacement)

	p1 := RoutingPolicy{Groups: map[string]GroupRoute{
		"us": {Primary: []Placement{{"hetzner", "ash"}, {"vultr", "ewr"}}, Standby: []Placement{{"vultr", "ewr"}, {"hetzner", "ash"}}},
	}}
	v1, err := h.svc.SetRoutingPolicy(ctx, RoutingChange{Policy: p1, Author: "alice via commander", Reason: "initial"})
	if err != nil || v1.Version != 1 {
		t.Fatalf("v1: got %+v, %v", v1, err)
	}
	place, err := h.svc.PlacePair(ctx, "us")
	if err != nil || place.Primary != (Placement{"hetzner", "ash"}) || place.Standby != (Placement{"vultr", "ewr"}) || place.RoutingVersion != 1 {
		t.Fatalf("placement v1: got %+v, %v", place, err)
	}
	// Hetzner is removed from the primary pool, planned against v1.
	p2 := RoutingPolicy{Groups: map[string]GroupRoute{
		"us": {Primary: []Placement{{"vultr", "ewr"}}, Standby: []Placement{{"vultr", "ewr"}, {"hetzner", "ash"}}},
	}}
	v2, err := h.svc.SetRoutingPolicy(ctx, RoutingChange{Policy: p2, Author: "alice via commander", Reason: "hetzner slow", BaseVersion: 1})
	if err != nil || v2.Version != 2 || v2.Author != "alice via commander" || v2.Reason != "hetzner slow" {
		t.Fatalf("v2: got %+v, %v", v2, err)
	}
	place, _ = h.svc.PlacePair(ctx, "us")
	if place.Primary != (Placement{"vultr", "ewr"}) || place.Standby != (Placement{"hetzner", "ash"}) {
		t.Errorf("placement v2: got %+v, want vultr primary, hetzner standby (another provider)", place)
	}
	// A change planned against v1 is stale now.
	_, err = h.svc.SetRoutingPolicy(ctx, RoutingChange{Policy: p1, Author: "bob", Reason: "x", BaseVersion: 1})
	wantReason(t, err, clawops.ReasonPlanMismatch)
	hist, err := h.svc.RoutingHistory(ctx, 10)
	if err != nil || len(hist) != 2 || hist[0].Version != 2 || hist[1].Version != 1 {
		t.Errorf("history: got %+v, %v", hist, err)
	}
	if evs := events(); len(evs) != 2 || evs[1].Subject != "v2" {
		t.Errorf("events: got %+v", evs)
	}
}

func TestRoutingAvoidsDegradedProvider(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	pol := RoutingPolicy{AvoidBelowScore: 75, Groups: map[string]GroupRoute{
		"eu": {Primary: []Placement{{"hetzner", "fsn1"}, {"vultr", "ams"}}, Standby: []Placement{{"vultr", "ams"}, {"hetzner", "nbg1"}}},
	}}
	if _, err := h.svc.SetRoutingPolicy(ctx, RoutingChange{Policy: pol, Author: "a", Reason: "b"}); err != nil {
		t.Fatal(err)
	}
	// Hetzner failed twice out of three: score 60.
	h.svc.recordProviderSample(ctx, "hetzner", false, 0, "quota")
	h.svc.recordProviderSample(ctx, "hetzner", false, 0, "quota")
	h.svc.recordProviderSample(ctx, "hetzner", true, time.Minute, "")
	place, err := h.svc.PlacePair(ctx, "eu")
	if err != nil {
		t.Fatal(err)
	}
	if place.Primary != (Placement{"vultr", "ams"}) || place.Standby != (Placement{"hetzner", "nbg1"}) {
		t.Errorf("placement: got %+v, want vultr primary and hetzner standby (degraded, but the only other provider)", place)
	}
}

func TestRoutingBad(t *testing.T) {
	h := newHarness(t, nil)
	ok := GroupRoute{Primary: []Placement{{"hetzner", "fsn1"}}, Standby: []Placement{{"vultr", "ams"}}}
	many := make([]Placement, 11)
	for i := range many {
		many[i] = Placement{"vultr", "ams"}
	}
	for _, tc := range []struct {
		name   string
		change RoutingChange
		reason clawops.ReasonCode
	}{
		{"no groups", RoutingChange{Policy: RoutingPolicy{}, Author: "a", Reason: "b"}, clawops.ReasonBadArguments},
		{"bad group", RoutingChange{Policy: RoutingPolicy{Groups: map[string]GroupRoute{"E U": ok}}, Author: "a", Reason: "b"}, clawops.ReasonBadArguments},
		{"no standby", RoutingChange{Policy: RoutingPolicy{Groups: map[string]GroupRoute{"eu": {Primary: ok.Primary}}}, Author: "a", Reason: "b"}, clawops.ReasonBadArguments},
		{"too many", RoutingChange{Policy: RoutingPolicy{Groups: map[string]GroupRoute{"eu": {Primary: many, Standby: ok.Standby}}}, Author: "a", Reason: "b"}, clawops.ReasonBadArguments},
		{"unknown provider", RoutingChange{Policy: RoutingPolicy{Groups: map[string]GroupRoute{"eu": {Primary: []Placement{{"hostinger", "us1"}}, Standby: ok.Standby}}}, Author: "a", Reason: "b"}, ReasonUnknownProvider},
		{"bad region", RoutingChange{Policy: RoutingPolicy{Groups: map[string]GroupRoute{"eu": {Primary: []Placement{{"hetzner", "fsn1; rm"}}, Standby: ok.Standby}}}, Author: "a", Reason: "b"}, clawops.ReasonBadArguments},
		{"bad score", RoutingChange{Policy: RoutingPolicy{AvoidBelowScore: 101, Groups: map[string]GroupRoute{"eu": ok}}, Author: "a", Reason: "b"}, clawops.ReasonBadArguments},
		{"no author", RoutingChange{Policy: RoutingPolicy{Groups: map[string]GroupRoute{"eu": ok}}, Reason: "b"}, clawops.ReasonBadArguments},
		{"no reason", RoutingChange{Policy: RoutingPolicy{Groups: map[string]GroupRoute{"eu": ok}}, Author: "a", Reason: " "}, clawops.ReasonBadArguments},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.svc.SetRoutingPolicy(context.Background(), tc.change)
			wantReason(t, err, tc.reason)
		})
	}
	var n int64
	h.db.Model(&RoutingRecord{}).Count(&n)
	if n != 0 {
		t.Errorf("versions stored: got %d, want 0", n)
	}
	if _, err := NewService(Options{DB: h.db, DefaultRouting: &RoutingPolicy{}}); err == nil {
		t.Error("NewService with an empty default routing: got nil error")
	}
}

func TestProviderScoreFormula(t *testing.T) {
	for _, tc := range []struct {
		ok, failed int
		mean       time.Duration
		want       int
	}{
		{0, 0, 0, 100},
		{10, 0, 4 * time.Minute, 100},
		{10, 0, 15 * time.Minute, 60},
		{10, 0, 60 * time.Minute, 60},
		{0, 3, 0, 40},
		// Seed 003's slow provider: mean 9m42s, 2 failed of 14.
		{12, 2, 9*time.Minute + 42*time.Second, 73},
	} {
		if got, _ := score(tc.ok, tc.failed, tc.mean, DefaultProvisionTarget); got != tc.want {
			t.Errorf("score(%d ok, %d failed, %s): got %d, want %d", tc.ok, tc.failed, tc.mean, got, tc.want)
		}
	}
}
