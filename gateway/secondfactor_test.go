package gateway_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/pquerna/otp/totp"
)

// TestSecondFactorForHighRisk configures high-risk approvals to need a TOTP code: the admin's
// plain approval (what a chat button sends) is refused and executes nothing; the same
// approval with a valid code executes.
func TestSecondFactorForHighRisk(t *testing.T) {
	const secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	yaml := `
governance:
  second_factor_from: high
  totp:
    - {identity: alice-admin, secret_env: TOTP_ALICE}
`
	e := startGatewayWith(t, gatewaySetup{pairs: 1, yaml: yaml, lookupEnv: func(k string) (string, bool) {
		if k == "TOTP_ALICE" {
			return secret, true
		}
		return "", false
	}})
	e.chat(operatorToken, "/teardown acct1-sby")
	id := pendingApproval(t, e, "acct1-sby")

	status, env := e.call("POST", "/v1/approvals/"+id+"/decision", adminToken, `{"decision":"approve"}`)
	if status != http.StatusForbidden || env.Error == nil || env.Error.Code != "SECOND_FACTOR_REQUIRED" {
		t.Fatalf("approve without a code: got %d %+v, want 403 SECOND_FACTOR_REQUIRED", status, env.Error)
	}
	status, env = e.call("POST", "/v1/approvals/"+id+"/decision", adminToken, `{"decision":"approve","totp":"000000"}`)
	if status == http.StatusOK {
		t.Fatalf("approve with a wrong code: got 200 %+v", env)
	}
	assertState(t, e, "acct1-sby", "ACTIVE")

	code, err := totp.GenerateCode(secret, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	status, env = e.call("POST", "/v1/approvals/"+id+"/decision", adminToken, fmt.Sprintf(`{"decision":"approve","totp":%q}`, code))
	if status != http.StatusOK {
		t.Fatalf("approve with a valid code: got %d %+v", status, env.Error)
	}
	assertState(t, e, "acct1-sby", "TERMINATED")
}
