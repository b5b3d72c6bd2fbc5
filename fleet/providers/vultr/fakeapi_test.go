package vultr

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/gatewayforge/clawops/fleet/providers/providertest"
)

// fakeAPI speaks the part of the Vultr API v2 (https://www.vultr.com/api/) the driver uses,
// with the real paths, methods and JSON shapes, so the real govultr client can be pointed
// at it.
type fakeAPI struct {
	*providertest.Fake

	mu        sync.Mutex
	instances map[string]*fakeInstance
	order     []string // creation order, for stable pages
	nextID    int
	// maxPerPage caps per_page as the real API does (at 500); tests lower it to page.
	maxPerPage int
}

type fakeInstance struct {
	ID     string
	Label  string
	Status string
	Power  string
	Plan   string
	Region string
	MainIP string
	OsID   int
	Tags   []string
}

// planOrder ranks plans so the fake can refuse a downgrade as Vultr does.
var planOrder = map[string]int{"vc2-1c-1gb": 1, "vc2-1c-2gb": 2, "vc2-2c-4gb": 3, "vc2-4c-8gb": 4}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{instances: map[string]*fakeInstance{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/instances", f.createInstance)
	mux.HandleFunc("GET /v2/instances", f.listInstances)
	mux.HandleFunc("GET /v2/instances/{id}", f.getInstance)
	mux.HandleFunc("PATCH /v2/instances/{id}", f.updateInstance)
	mux.HandleFunc("DELETE /v2/instances/{id}", f.deleteInstance)
	f.Fake = providertest.NewFake(t, providertest.FakeConfig{
		Token:        "VULTRTESTKEY0123456789ABCDEFGHIJ",
		FailureType:  "application/json",
		Unauthorized: func(w http.ResponseWriter) { writeError(w, http.StatusUnauthorized, "Invalid API token.") },
	}, mux)
	return f
}

func (f *fakeAPI) add(label, status, power, plan string, tags []string) *fakeInstance {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addLocked(label, status, power, plan, "fra", 2136, tags)
}

func (f *fakeAPI) addLocked(label, status, power, plan, region string, osID int, tags []string) *fakeInstance {
	f.nextID++
	id := fmt.Sprintf("cb676a46-66fd-4dfb-b839-%012d", f.nextID)
	in := &fakeInstance{ID: id, Label: label, Status: status, Power: power, Plan: plan, Region: region, MainIP: "0.0.0.0", OsID: osID, Tags: tags}
	if status == "active" {
		in.MainIP = "192.0.2.7"
	}
	f.instances[id] = in
	f.order = append(f.order, id)
	return in
}

func (f *fakeAPI) createInstance(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Region   string   `json:"region"`
		Plan     string   `json:"plan"`
		Label    string   `json:"label"`
		OsID     int      `json:"os_id"`
		UserData string   `json:"user_data"`
		Tags     []string `json:"tags"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "Invalid JSON body.")
		return
	}
	if req.Region == "" || req.Plan == "" {
		writeError(w, http.StatusBadRequest, "Invalid region or plan.")
		return
	}
	f.mu.Lock()
	in := f.addLocked(req.Label, "pending", "running", req.Plan, req.Region, req.OsID, req.Tags)
	j := in.json()
	f.mu.Unlock()
	j["default_password"] = "v8!Zq2#pL5"
	writeJSON(w, http.StatusAccepted, map[string]any{"instance": j})
}

func (f *fakeAPI) getInstance(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := f.lookup(w, r)
	if in == nil {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"instance": in.json()})
}

func (f *fakeAPI) updateInstance(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := f.lookup(w, r)
	if in == nil {
		return
	}
	var req struct {
		Plan string    `json:"plan"`
		Tags *[]string `json:"tags"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "Invalid JSON body.")
		return
	}
	if req.Plan != "" {
		if planOrder[req.Plan] <= planOrder[in.Plan] {
			writeError(w, http.StatusBadRequest, "Unable to change plan: the new plan must be larger than the current plan.")
			return
		}
		in.Plan = req.Plan
	}
	if req.Tags != nil {
		in.Tags = *req.Tags
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"instance": in.json()})
}

func (f *fakeAPI) deleteInstance(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := f.lookup(w, r)
	if in == nil {
		return
	}
	delete(f.instances, in.ID)
	w.WriteHeader(http.StatusNoContent)
}

// listInstances filters on tag and pages with an opaque cursor, as Vultr does.
func (f *fakeAPI) listInstances(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	perPage, _ := strconv.Atoi(q.Get("per_page"))
	if perPage < 1 {
		perPage = 100
	}
	start := 0
	if c := q.Get("cursor"); c != "" {
		n, err := strconv.Atoi(c[len("bmV4dF9f"):])
		if err != nil {
			writeError(w, http.StatusBadRequest, "Invalid cursor.")
			return
		}
		start = n
	}
	tag := q.Get("tag")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxPerPage > 0 && perPage > f.maxPerPage {
		perPage = f.maxPerPage
	}
	var matched []*fakeInstance
	for _, id := range f.order {
		in, ok := f.instances[id]
		if ok && (tag == "" || slices.Contains(in.Tags, tag)) {
			matched = append(matched, in)
		}
	}
	out := []any{}
	for i := start; i < len(matched) && i < start+perPage; i++ {
		out = append(out, matched[i].json())
	}
	next := ""
	if start+perPage < len(matched) {
		next = "bmV4dF9f" + strconv.Itoa(start+perPage)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"instances": out,
		"meta":      map[string]any{"total": len(matched), "links": map[string]any{"next": next, "prev": ""}},
	})
}

func (f *fakeAPI) lookup(w http.ResponseWriter, r *http.Request) *fakeInstance {
	in, ok := f.instances[r.PathValue("id")]
	if !ok {
		writeError(w, http.StatusNotFound, "Invalid instance-id.")
		return nil
	}
	return in
}

func (in *fakeInstance) json() map[string]any {
	tags := in.Tags
	if tags == nil {
		tags = []string{}
	}
	return map[string]any{
		"id":                in.ID,
		"os":                "Debian 12 x64 (bookworm)",
		"ram":               2048,
		"disk":              55,
		"main_ip":           in.MainIP,
		"vcpu_count":        1,
		"region":            in.Region,
		"plan":              in.Plan,
		"date_created":      "2026-11-20T10:00:00+00:00",
		"status":            in.Status,
		"allowed_bandwidth": 2000,
		"netmask_v4":        "255.255.254.0",
		"gateway_v4":        "192.0.2.1",
		"power_status":      in.Power,
		"server_status":     "ok",
		"v6_network":        "",
		"v6_main_ip":        "",
		"v6_network_size":   0,
		"label":             in.Label,
		"internal_ip":       "",
		"kvm":               "https://my.vultr.com/subs/vps/novnc/api.php?data=abc",
		"hostname":          in.Label,
		"tag":               "",
		"tags":              tags,
		"os_id":             in.OsID,
		"app_id":            0,
		"image_id":          "",
		"firewall_group_id": "",
		"features":          []string{},
		"user_scheme":       "root",
	}
}

// writeJSON uses exactly "application/json": govultr decodes nothing else.
func writeJSON(w http.ResponseWriter, status int, v any) {
	providertest.WriteJSON(w, "application/json", status, v)
}

func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]any{"error": message, "status": status})
}
