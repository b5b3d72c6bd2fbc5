package digitalocean

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

// fakeAPI speaks the part of the DigitalOcean API v2 (https://docs.digitalocean.com/reference/api/)
// the driver uses, with the real paths, methods and JSON shapes, so the real godo client can
// be pointed at it.
type fakeAPI struct {
	*providertest.Fake

	mu       sync.Mutex
	droplets map[int]*fakeDroplet
	actions  map[int]*fakeAction
	nextID   int
	// failShutdown makes shutdown actions error, as when the OS ignores the request.
	failShutdown bool
	// maxPerPage caps per_page as the real API does (at 200); tests lower it to page.
	maxPerPage int
}

type fakeDroplet struct {
	ID     int
	Name   string
	Status string
	Size   string
	Region string
	Image  string
	Tags   []string
}

type fakeAction struct {
	ID      int
	Type    string
	Droplet int
	polls   int
	apply   func()
	errored bool
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{
		droplets: map[int]*fakeDroplet{},
		actions:  map[int]*fakeAction{},
		nextID:   3164444,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/droplets", f.createDroplet)
	mux.HandleFunc("GET /v2/droplets", f.listDroplets)
	mux.HandleFunc("GET /v2/droplets/{id}", f.getDroplet)
	mux.HandleFunc("DELETE /v2/droplets/{id}", f.deleteDroplet)
	mux.HandleFunc("POST /v2/droplets/{id}/actions", f.dropletAction)
	mux.HandleFunc("GET /v2/droplets/{id}/actions/{aid}", f.getAction)
	f.Fake = providertest.NewFake(t, providertest.FakeConfig{
		Token:       "dop_v1_testtoken0123456789",
		FailureType: jsonType,
		Header:      map[string]string{"RateLimit-Limit": "5000", "RateLimit-Remaining": "4999", "RateLimit-Reset": "1795000000"},
		Unauthorized: func(w http.ResponseWriter) {
			writeError(w, http.StatusUnauthorized, "unauthorized", "Unable to authenticate you")
		},
	}, mux)
	return f
}

func (f *fakeAPI) addDroplet(name, status, size string, tags []string) *fakeDroplet {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	d := &fakeDroplet{ID: f.nextID, Name: name, Status: status, Size: size, Region: "fra1", Image: "debian-12-x64", Tags: tags}
	f.droplets[d.ID] = d
	return d
}

func (f *fakeAPI) createDroplet(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name     string   `json:"name"`
		Region   string   `json:"region"`
		Size     string   `json:"size"`
		Image    any      `json:"image"`
		UserData string   `json:"user_data"`
		Tags     []string `json:"tags"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if req.Name == "" || req.Region == "" || req.Size == "" || req.Image == nil {
		writeError(w, http.StatusUnprocessableEntity, "unprocessable_entity", "You must specify a name, region, size and image.")
		return
	}
	f.mu.Lock()
	f.nextID++
	d := &fakeDroplet{ID: f.nextID, Name: req.Name, Status: "new", Size: req.Size, Region: req.Region, Image: fmt.Sprint(req.Image), Tags: req.Tags}
	f.droplets[d.ID] = d
	a := f.newAction("create", d.ID, func() { d.Status = "active" })
	dj := d.json()
	f.mu.Unlock()
	writeJSON(w, http.StatusAccepted, map[string]any{
		"droplet": dj,
		"links": map[string]any{"actions": []any{map[string]any{
			"id": a.ID, "rel": "create", "href": fmt.Sprintf("%s/v2/actions/%d", f.Server.URL, a.ID),
		}}},
	})
}

func (f *fakeAPI) getDroplet(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.lookup(w, r)
	if d == nil {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"droplet": d.json()})
}

func (f *fakeAPI) deleteDroplet(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.lookup(w, r)
	if d == nil {
		return
	}
	delete(f.droplets, d.ID)
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeAPI) dropletAction(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.lookup(w, r)
	if d == nil {
		return
	}
	var req struct {
		Type string `json:"type"`
		Size string `json:"size"`
		Disk *bool  `json:"disk"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	var a *fakeAction
	switch req.Type {
	case "shutdown":
		a = f.newAction("shutdown", d.ID, func() { d.Status = "off" })
		a.errored = f.failShutdown
	case "power_off":
		a = f.newAction("power_off", d.ID, func() { d.Status = "off" })
	case "power_on":
		a = f.newAction("power_on", d.ID, func() { d.Status = "active" })
	case "resize":
		if req.Size == "" || req.Disk == nil {
			writeError(w, http.StatusUnprocessableEntity, "unprocessable_entity", "size and disk are required")
			return
		}
		if d.Status != "off" {
			writeError(w, http.StatusUnprocessableEntity, "unprocessable_entity", "Droplet must be powered off before resizing.")
			return
		}
		if req.Size == "s-broken" {
			a = f.newAction("resize", d.ID, nil)
			a.errored = true
			break
		}
		a = f.newAction("resize", d.ID, func() { d.Size = req.Size })
	default:
		writeError(w, http.StatusUnprocessableEntity, "unprocessable_entity", "unknown action type")
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"action": a.json("in-progress")})
}

// getAction finishes each action on its first poll.
func (f *fakeAPI) getAction(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	aid, _ := strconv.Atoi(r.PathValue("aid"))
	a, ok := f.actions[aid]
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "The resource you were accessing could not be found.")
		return
	}
	a.polls++
	status := "completed"
	if a.errored {
		status = "errored"
	} else if a.apply != nil && a.polls == 1 {
		a.apply()
	}
	writeJSON(w, http.StatusOK, map[string]any{"action": a.json(status)})
}

func (f *fakeAPI) listDroplets(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page, _ := strconv.Atoi(q.Get("page"))
	perPage, _ := strconv.Atoi(q.Get("per_page"))
	if page < 1 {
		page = 1
	}
	if perPage < 1 {
		perPage = 20
	}
	tag := q.Get("tag_name")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxPerPage > 0 && perPage > f.maxPerPage {
		perPage = f.maxPerPage
	}
	var matched []*fakeDroplet
	for _, d := range f.droplets {
		if tag == "" || slices.Contains(d.Tags, tag) {
			matched = append(matched, d)
		}
	}
	slices.SortFunc(matched, func(a, b *fakeDroplet) int { return a.ID - b.ID })
	out := []any{}
	for i := (page - 1) * perPage; i < len(matched) && i < page*perPage; i++ {
		out = append(out, matched[i].json())
	}
	last := max(1, (len(matched)+perPage-1)/perPage)
	pageURL := func(n int) string {
		return fmt.Sprintf("%s/v2/droplets?page=%d&per_page=%d&tag_name=%s", f.Server.URL, n, perPage, tag)
	}
	pages := map[string]any{}
	if page > 1 {
		pages["first"] = pageURL(1)
		pages["prev"] = pageURL(page - 1)
	}
	if page < last {
		pages["next"] = pageURL(page + 1)
		pages["last"] = pageURL(last)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"droplets": out,
		"links":    map[string]any{"pages": pages},
		"meta":     map[string]any{"total": len(matched)},
	})
}

func (f *fakeAPI) lookup(w http.ResponseWriter, r *http.Request) *fakeDroplet {
	id, _ := strconv.Atoi(r.PathValue("id"))
	d, ok := f.droplets[id]
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "The resource you were accessing could not be found.")
		return nil
	}
	return d
}

func (f *fakeAPI) newAction(typ string, droplet int, apply func()) *fakeAction {
	f.nextID++
	a := &fakeAction{ID: f.nextID, Type: typ, Droplet: droplet, apply: apply}
	f.actions[a.ID] = a
	return a
}

func (a *fakeAction) json(status string) map[string]any {
	out := map[string]any{
		"id":            a.ID,
		"status":        status,
		"type":          a.Type,
		"started_at":    "2026-11-20T10:00:00Z",
		"completed_at":  nil,
		"resource_id":   a.Droplet,
		"resource_type": "droplet",
		"region":        regionJSON("fra1"),
		"region_slug":   "fra1",
	}
	if status != "in-progress" {
		out["completed_at"] = "2026-11-20T10:00:30Z"
	}
	return out
}

func (d *fakeDroplet) json() map[string]any {
	tags := d.Tags
	if tags == nil {
		tags = []string{}
	}
	return map[string]any{
		"id":                 d.ID,
		"name":               d.Name,
		"memory":             2048,
		"vcpus":              1,
		"disk":               50,
		"locked":             false,
		"status":             d.Status,
		"kernel":             nil,
		"created_at":         "2026-11-20T10:00:00Z",
		"features":           []string{"droplet_agent", "private_networking"},
		"backup_ids":         []int{},
		"next_backup_window": nil,
		"snapshot_ids":       []int{},
		"image": map[string]any{
			"id": 106569146, "name": "12 x64", "distribution": "Debian", "slug": d.Image, "public": true,
			"regions": []string{"fra1"}, "created_at": "2022-07-08T16:53:49Z", "min_disk_size": 15,
			"type": "base", "size_gigabytes": 0.56, "description": "Debian 12 x64", "tags": []string{},
			"status": "available",
		},
		"volume_ids": []string{},
		"size": map[string]any{
			"slug": d.Size, "memory": 2048, "vcpus": 1, "disk": 50, "transfer": 2.0,
			"price_monthly": 12.0, "price_hourly": 0.01786, "regions": []string{"fra1"},
			"available": true, "description": "Basic",
		},
		"size_slug": d.Size,
		"networks": map[string]any{
			"v4": []any{
				map[string]any{"ip_address": "10.110.0.2", "netmask": "255.255.240.0", "gateway": "10.110.0.1", "type": "private"},
				map[string]any{"ip_address": "198.51.100.20", "netmask": "255.255.240.0", "gateway": "198.51.100.1", "type": "public"},
			},
			"v6": []any{},
		},
		"region":   regionJSON(d.Region),
		"tags":     tags,
		"vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000",
	}
}

func regionJSON(slug string) map[string]any {
	return map[string]any{
		"name": "Frankfurt 1", "slug": slug, "features": []string{"backups", "ipv6", "metadata"},
		"available": true, "sizes": []string{"s-1vcpu-2gb", "s-2vcpu-4gb"},
	}
}

// jsonType is what DigitalOcean sends JSON as.
const jsonType = "application/json; charset=utf-8"

func writeJSON(w http.ResponseWriter, status int, v any) {
	providertest.WriteJSON(w, jsonType, status, v)
}

func writeError(w http.ResponseWriter, status int, id, message string) {
	writeJSON(w, status, map[string]any{"id": id, "message": message, "request_id": "4d9d8375-3c56-4925-a3e7-eb137fed17e9"})
}
