package fleet

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
)

// HoursPerMonth is the month the price table's monthly prices are for (365 × 24 / 12).
const HoursPerMonth = 730.0

// Price is what one server of a tier costs at one provider in one region. Region "*"
// matches every region of the provider that has no price of its own.
type Price struct {
	Provider   string  `json:"provider"`
	Region     string  `json:"region"`
	Tier       string  `json:"tier"`
	MonthlyUSD float64 `json:"monthly_usd"`
}

// PriceTable is the price of every provider, region and tier the fleet uses, the order of
// the tiers, and which region belongs to which region group ("eu", "us"), so that the cost
// model can compare providers within a group.
type PriceTable struct {
	// Tiers lists the tiers from smallest to largest.
	Tiers  []string `json:"tiers"`
	Prices []Price  `json:"prices"`
	// Groups maps a region slug to its group. A region missing here is its own group.
	Groups map[string]string `json:"groups"`
}

// DefaultPriceTable is the built-in table: list prices rounded to the cent, in USD per
// month, for the tiers nano < small < standard < large. Operators replace it from config.
func DefaultPriceTable() PriceTable {
	type row struct {
		provider                string
		nano, small, std, large float64
	}
	rows := []row{
		{"hetzner", 3.79, 4.59, 5.99, 11.99},
		{"vultr", 3.50, 5.00, 6.00, 12.00},
		{"digitalocean", 4.00, 6.00, 7.00, 14.00},
		{"local", 0, 0, 0, 0},
	}
	t := PriceTable{Tiers: []string{"nano", "small", "standard", "large"}}
	for _, r := range rows {
		for i, p := range []float64{r.nano, r.small, r.std, r.large} {
			t.Prices = append(t.Prices, Price{Provider: r.provider, Region: "*", Tier: t.Tiers[i], MonthlyUSD: p})
		}
	}
	t.Groups = map[string]string{
		// Hetzner
		"fsn1": "eu", "nbg1": "eu", "hel1": "eu", "ash": "us", "hil": "us", "sin": "ap",
		// DigitalOcean
		"ams3": "eu", "fra1": "eu", "lon1": "eu", "nyc1": "us", "nyc3": "us", "sfo3": "us", "sgp1": "ap",
		// Vultr
		"ams": "eu", "fra": "eu", "lhr": "eu", "ewr": "us", "ord": "us", "lax": "us", "sgp": "ap",
		"local": "local",
	}
	return t
}

// Validate checks the table: slugs, no negative or duplicate prices, known tiers.
func (t PriceTable) Validate() error {
	if len(t.Tiers) == 0 {
		return errors.New("price table: no tiers: list them from smallest to largest")
	}
	seenTier := map[string]bool{}
	for _, tier := range t.Tiers {
		if !slugRE.MatchString(tier) || seenTier[tier] {
			return fmt.Errorf("price table: tier %q is not a slug or is listed twice", tier)
		}
		seenTier[tier] = true
	}
	seen := map[[3]string]bool{}
	for _, p := range t.Prices {
		k := [3]string{p.Provider, p.Region, p.Tier}
		switch {
		case !slugRE.MatchString(p.Provider):
			return fmt.Errorf("price table: provider %q is not a slug", p.Provider)
		case p.Region != "*" && !slugRE.MatchString(p.Region):
			return fmt.Errorf("price table: region %q of %s is not a slug or *", p.Region, p.Provider)
		case !seenTier[p.Tier]:
			return fmt.Errorf("price table: %s %s has tier %q, which is not in tiers", p.Provider, p.Region, p.Tier)
		case p.MonthlyUSD < 0 || math.IsNaN(p.MonthlyUSD) || math.IsInf(p.MonthlyUSD, 0):
			return fmt.Errorf("price table: %s %s %s: price %v is not a non-negative number", p.Provider, p.Region, p.Tier, p.MonthlyUSD)
		case seen[k]:
			return fmt.Errorf("price table: %s %s %s is priced twice", p.Provider, p.Region, p.Tier)
		}
		seen[k] = true
	}
	return nil
}

func (t PriceTable) clone() PriceTable {
	return PriceTable{Tiers: slices.Clone(t.Tiers), Prices: slices.Clone(t.Prices), Groups: maps.Clone(t.Groups)}
}

// Monthly returns the monthly price of tier at provider in region, and false when the
// table has none.
func (t PriceTable) Monthly(provider, region, tier string) (float64, bool) {
	wild, found := 0.0, false
	for _, p := range t.Prices {
		if p.Provider != provider || p.Tier != tier {
			continue
		}
		if p.Region == region {
			return p.MonthlyUSD, true
		}
		if p.Region == "*" {
			wild, found = p.MonthlyUSD, true
		}
	}
	return wild, found
}

// HasTier reports whether tier is one of the table's tiers.
func (t PriceTable) HasTier(tier string) bool { return slices.Contains(t.Tiers, tier) }

// TierBelow returns the next smaller tier, and false for the smallest or an unknown one.
func (t PriceTable) TierBelow(tier string) (string, bool) {
	i := slices.Index(t.Tiers, tier)
	if i <= 0 {
		return "", false
	}
	return t.Tiers[i-1], true
}

// Group returns the region group of region (the region itself when it has none).
func (t PriceTable) Group(region string) string {
	if g, ok := t.Groups[region]; ok {
		return g
	}
	return region
}

// cheapestIn returns the cheapest price of tier at provider for a region in group (or a
// "*" price), and false when there is none.
func (t PriceTable) cheapestIn(provider, group, tier string) (Price, bool) {
	var best Price
	found := false
	for _, p := range t.Prices {
		if p.Provider != provider || p.Tier != tier {
			continue
		}
		if p.Region != "*" && t.Group(p.Region) != group {
			continue
		}
		if !found || p.MonthlyUSD < best.MonthlyUSD {
			best, found = p, true
		}
	}
	return best, found
}

// providers lists the providers the table prices, sorted.
func (t PriceTable) providers() []string {
	var out []string
	for _, p := range t.Prices {
		if !slices.Contains(out, p.Provider) {
			out = append(out, p.Provider)
		}
	}
	slices.Sort(out)
	return out
}

// roundCents rounds a dollar amount to the cent.
func roundCents(v float64) float64 { return math.Round(v*100) / 100 }
