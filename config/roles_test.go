package config_test

import (
	"testing"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/config"
)

// TestRolesMatchVocabulary keeps config's list of roles (config imports only the standard
// library) in step with clawops.HumanRole.
func TestRolesMatchVocabulary(t *testing.T) {
	for _, role := range []string{"admin", "approver", "operator", "viewer", "root", ""} {
		c := config.Default()
		c.Auth.Tokens = []config.TokenRef{{Identity: "x", Role: role, TokenEnv: "X_TOKEN"}}
		err := c.Validate()
		if got, want := err == nil, clawops.HumanRole(role).Valid(); got != want {
			t.Errorf("role %q: config accepts it = %v, clawops.HumanRole.Valid = %v", role, got, want)
		}
	}
}
