package channels

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/gatewayforge/clawops/governance"
)

// CardFact is one labelled line of an approval card.
type CardFact struct {
	Label string
	Value string
}

// CardFacts lists the facts every platform shows on a card, in a fixed order, so an approver
// reads the same card in Slack, Telegram, Discord and WhatsApp.
func CardFacts(c governance.Card) []CardFact {
	facts := []CardFact{
		{"Risk", string(c.Risk)},
		{"Users affected", fmt.Sprint(c.UsersAffected)},
		{"Cost", CostText(c.CostDeltaMonthlyUSD)},
		{"Expected duration", DurationText(c.ExpectedDuration)},
		{"Requested by", c.Requester},
	}
	if len(c.PlanHash) > 0 {
		facts = append(facts, CardFact{"Plan", shortHash(c.PlanHash)})
	}
	return facts
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// CardStatus is the one line saying where the approval stands and who decided when.
func CardStatus(c governance.Card) string {
	by, at := c.DecidedBy, ""
	if c.DecidedAt != nil {
		at = " at " + TimeText(*c.DecidedAt)
	}
	switch c.State {
	case governance.ApprovalPending:
		if c.ExpiresAt.IsZero() {
			return "Waiting for a decision"
		}
		return "Waiting for a decision until " + TimeText(c.ExpiresAt)
	case governance.ApprovalApproved:
		return "Approved by " + by + at + "; running"
	case governance.ApprovalExecuted:
		return "Approved by " + by + at + "; done"
	case governance.ApprovalFailed:
		if by == "" {
			return "Failed"
		}
		return "Approved by " + by + at + "; failed"
	case governance.ApprovalDenied:
		return "Denied by " + by + at
	case governance.ApprovalExpired:
		return "Expired" + at + " without a decision"
	}
	return "State: " + string(c.State)
}

// CardPending reports whether the card still takes decisions (shows buttons).
func CardPending(c governance.Card) bool { return c.State == governance.ApprovalPending }

// TimeText formats t in UTC to the minute, the way cards show times.
func TimeText(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// CostText formats a monthly cost change: "+$12.50/month", "-$3.00/month" or "none".
func CostText(usd float64) string {
	if math.Abs(usd) < 0.005 {
		return "none"
	}
	sign := "+"
	if usd < 0 {
		sign = "-"
	}
	return fmt.Sprintf("%s$%.2f/month", sign, math.Abs(usd))
}

// DurationText formats a duration the way people say it: "2 min", "1 h 30 min", "45 s".
func DurationText(d time.Duration) string {
	if d <= 0 {
		return "unknown"
	}
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	var parts []string
	if h > 0 {
		parts = append(parts, fmt.Sprintf("%d h", h))
	}
	if m > 0 {
		parts = append(parts, fmt.Sprintf("%d min", m))
	}
	if s > 0 && h == 0 {
		parts = append(parts, fmt.Sprintf("%d s", s))
	}
	return strings.Join(parts, " ")
}

// ShortCode is the code an approver types to decide by reply ("APPROVE 3f9a2c1b"): the first
// eight characters of the id after its "apr_" prefix, lower-cased.
func ShortCode(approvalID string) string {
	s := strings.ToLower(strings.TrimPrefix(approvalID, "apr_"))
	if len(s) > 8 {
		s = s[:8]
	}
	return s
}

// Truncate cuts s to at most max UTF-16 code units, ending in "…" when cut.
func Truncate(s string, max int) string {
	if TextLen(s) <= max {
		return s
	}
	cut := fitPrefix(s, maxInt(max-1, 1))
	return s[:cut] + "…"
}

// TruncateList keeps at most maxItems items, each cut to maxLen, and says how many were left
// out in a last item.
func TruncateList(items []string, maxItems, maxLen int) []string {
	out := make([]string, 0, min(len(items), maxItems+1))
	for i, it := range items {
		if i == maxItems {
			out = append(out, fmt.Sprintf("… and %d more", len(items)-maxItems))
			break
		}
		out = append(out, Truncate(it, maxLen))
	}
	return out
}

// CardExtras are the card's optional lines: the risk score, how many approvers it needs and
// who has decided so far (four-eyes), and whether a second factor is required. Cards without
// those fields have none.
func CardExtras(c governance.Card) []string {
	var out []string
	if c.RiskScore > 0 {
		out = append(out, fmt.Sprintf("Risk score: %d/100", c.RiskScore))
	}
	if c.ApprovalsRequired > 1 {
		var names []string
		for _, d := range c.Deciders {
			if d.Approve {
				names = append(names, d.By)
			}
		}
		line := fmt.Sprintf("Needs %d approvers", c.ApprovalsRequired)
		if len(names) > 0 {
			line += "; approved so far by " + strings.Join(names, ", ")
		}
		out = append(out, line)
	}
	if c.SecondFactorRequired {
		out = append(out, "Approving needs a second factor: decide in the web console")
	}
	return out
}
