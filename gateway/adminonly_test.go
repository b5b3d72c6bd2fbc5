package gateway

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/api"
)

func TestAdminOnly(t *testing.T) {
	auth := api.NewTokenStore()
	if err := auth.Add("admin-secret-0123456789", "alice", clawops.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := auth.Add("operator-secret-0123456789", "omar", clawops.RoleOperator); err != nil {
		t.Fatal(err)
	}
	served := 0
	h := adminOnly(auth, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { served++ }))
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer nope-nope-nope-nope", http.StatusUnauthorized},
		{"Basic admin-secret-0123456789", http.StatusUnauthorized},
		{"Bearer operator-secret-0123456789", http.StatusForbidden},
		{"Bearer admin-secret-0123456789", http.StatusOK},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/v1/channels/whatsapp/pairing.png", nil)
		if tc.header != "" {
			req.Header.Set("Authorization", tc.header)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%q: got %d, want %d", tc.header, rec.Code, tc.want)
		}
	}
	if served != 1 {
		t.Fatalf("served %d times, want once (the admin)", served)
	}
}
