package llm

import (
	"fmt"
	"math"
)

// Price is what one model costs, in US dollars per million tokens.
type Price struct {
	InputPerMTok  float64 `json:"input_per_mtok" yaml:"input_per_mtok"`
	OutputPerMTok float64 `json:"output_per_mtok" yaml:"output_per_mtok"`
}

// Cost is the price of u in US dollars.
func (p Price) Cost(u Usage) float64 {
	return (float64(u.Prompt)*p.InputPerMTok + float64(u.Completion)*p.OutputPerMTok) / 1e6
}

// PriceTable maps a model name (as written in Options.Models, or as the endpoint reports
// it) to its price.
type PriceTable map[string]Price

// lookup finds the configured name first, then the served one.
func (t PriceTable) lookup(model, served string) (Price, bool) {
	if p, ok := t[model]; ok {
		return p, true
	}
	p, ok := t[served]
	return p, ok
}

func (t PriceTable) validate() error {
	for m, p := range t {
		for _, v := range []float64{p.InputPerMTok, p.OutputPerMTok} {
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("PriceTable[%q]: prices must be finite and >= 0", m)
			}
		}
	}
	return nil
}
