package agents

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/governance"
)

const timeLayout = "2006-01-02 15:04 UTC"

// maxListed bounds how many approvals one /approvals reply lists.
const maxListed = 20

func renderResult(tool string, out governance.Outcome) string {
	if out.Result != nil && out.Result.Summary != "" {
		return out.Result.Summary
	}
	return tool + ": done"
}

func renderApprovals(list []governance.Approval) string {
	if len(list) == 0 {
		return "No pending approvals."
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d pending approval(s):", len(list))
	for i, a := range list {
		if i == maxListed {
			fmt.Fprintf(&b, "\n… and %d more", len(list)-maxListed)
			break
		}
		fmt.Fprintf(&b, "\n- %s %s: %s (risk %s, requested by %s, expires %s)",
			a.ID, a.Tool, a.Plan.Summary, a.Risk, a.Requester.String(), a.ExpiresAt.UTC().Format(timeLayout))
	}
	return b.String()
}

func kindLabel(k clawops.Kind) string {
	switch k {
	case clawops.KindDenied, clawops.KindUnauthorized:
		return "Denied"
	case clawops.KindInvalid:
		return "Invalid"
	case clawops.KindNotFound:
		return "Not found"
	case clawops.KindExpired:
		return "Expired"
	case clawops.KindTransient:
		return "Unavailable, try again later"
	case clawops.KindNeedsApproval:
		return "Needs approval"
	}
	return "Failed"
}

// unwrapMessage returns the innermost explanation of err without the op and reason
// prefixes the reply already shows.
func unwrapMessage(err error) string {
	var e *clawops.Error
	for errors.As(err, &e) {
		if e.Err == nil {
			return ""
		}
		err = e.Err
	}
	return err.Error()
}
