package hetzner

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gatewayforge/clawops/fleet/providers/providertest"
)

// fakeAPI speaks the part of the Hetzner Cloud API (https://docs.hetzner.cloud) the driver
// uses, with the real paths, methods and JSON shapes, so the real hcloud-go client can be
// pointed at it.
type fakeAPI struct {
	*providertest.Fake

	mu      sync.Mutex
	servers map[int64]*fakeServer
	actions map[int64]*fakeAction
	nextID  int64
	// ignoreShutdown leaves a server running after a shutdown action, as an OS that does
	// not react to ACPI would.
	ignoreShutdown bool
	// maxPerPage caps per_page as the real API does (at 50); tests lower it to page.
	maxPerPage int
}

type fakeServer struct {
	ID       int64
	Name     string
	Status   string
	Type     string
	Location string
	Image    string
	Labels   map[string]string
}

type fakeAction struct {
	ID      int64
	Command string
	Server  int64
	polls   int
	apply   func() // runs when the action finishes
	errCode string
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{
		servers: map[int64]*fakeServer{},
		actions: map[int64]*fakeAction{},
		nextID:  4711,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/servers", f.createServer)
	mux.HandleFunc("GET /v1/servers", f.listServers)
	mux.HandleFunc("GET /v1/servers/{id}", f.getServer)
	mux.HandleFunc("DELETE /v1/servers/{id}", f.deleteServer)
	mux.HandleFunc("POST /v1/servers/{id}/actions/{action}", f.serverAction)
	mux.HandleFunc("GET /v1/actions", f.listActions)
	f.Fake = providertest.NewFake(t, providertest.FakeConfig{
		Token:       "test-token-0123456789",
		BasePath:    "/v1",
		FailureType: "application/json",
		Unauthorized: func(w http.ResponseWriter) {
			writeError(w, http.StatusUnauthorized, "unauthorized", "unable to authenticate")
		},
	}, mux)
	return f
}

func (f *fakeAPI) addServer(name, status, typ string, labels map[string]string) *fakeServer {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	s := &fakeServer{ID: f.nextID, Name: name, Status: status, Type: typ, Location: "nbg1", Image: "debian-12", Labels: labels}
	f.servers[s.ID] = s
	return s
}

func (f *fakeAPI) createServer(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name             string            `json:"name"`
		ServerType       any               `json:"server_type"`
		Image            any               `json:"image"`
		Location         string            `json:"location"`
		UserData         string            `json:"user_data"`
		Labels           map[string]string `json:"labels"`
		SSHKeys          []int64           `json:"ssh_keys"`
		StartAfterCreate *bool             `json:"start_after_create"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "json_error", err.Error())
		return
	}
	if req.Name == "" || req.ServerType == nil || req.Image == nil {
		writeError(w, http.StatusBadRequest, "invalid_input", "invalid input in fields 'name', 'server_type', 'image'")
		return
	}
	f.mu.Lock()
	f.nextID++
	s := &fakeServer{ID: f.nextID, Name: req.Name, Status: "initializing", Type: fmt.Sprint(req.ServerType),
		Location: req.Location, Image: fmt.Sprint(req.Image), Labels: req.Labels}
	f.servers[s.ID] = s
	a := f.newAction("create_server", s.ID, func() { s.Status = "running" })
	sj, aj := s.json(), a.json("running")
	f.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{
		"server":        sj,
		"action":        aj,
		"next_actions":  []any{},
		"root_password": nil,
	})
}

func (f *fakeAPI) getServer(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.lookup(w, r)
	if s == nil {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"server": s.json()})
}

func (f *fakeAPI) deleteServer(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.lookup(w, r)
	if s == nil {
		return
	}
	delete(f.servers, s.ID)
	a := f.newAction("delete_server", s.ID, nil)
	writeJSON(w, http.StatusOK, map[string]any{"action": a.json("running")})
}

func (f *fakeAPI) serverAction(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.lookup(w, r)
	if s == nil {
		return
	}
	var a *fakeAction
	switch r.PathValue("action") {
	case "shutdown":
		s.Status = "stopping"
		a = f.newAction("shutdown_server", s.ID, func() {
			if !f.ignoreShutdown {
				s.Status = "off"
			} else {
				s.Status = "running"
			}
		})
	case "poweroff":
		a = f.newAction("stop_server", s.ID, func() { s.Status = "off" })
	case "poweron":
		a = f.newAction("start_server", s.ID, func() { s.Status = "running" })
	case "change_type":
		var req struct {
			ServerType  string `json:"server_type"`
			UpgradeDisk *bool  `json:"upgrade_disk"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.ServerType == "" || req.UpgradeDisk == nil {
			writeError(w, http.StatusBadRequest, "invalid_input", "invalid input in fields 'server_type', 'upgrade_disk'")
			return
		}
		if s.Status != "off" {
			writeError(w, http.StatusConflict, "server_not_stopped", "server must be stopped before changing type")
			return
		}
		if req.ServerType == "cx-broken" {
			a = f.newAction("change_server_type", s.ID, nil)
			a.errCode = "action_failed"
			break
		}
		a = f.newAction("change_server_type", s.ID, func() { s.Type = req.ServerType })
	default:
		writeError(w, http.StatusNotFound, "not_found", "unknown action")
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"action": a.json("running")})
}

// listActions answers the waiter's GET /actions?id=..: each action finishes on its first poll.
func (f *fakeAPI) listActions(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []any
	for _, v := range r.URL.Query()["id"] {
		id, _ := strconv.ParseInt(v, 10, 64)
		a, ok := f.actions[id]
		if !ok {
			continue
		}
		a.polls++
		status := "success"
		if a.errCode != "" {
			status = "error"
		} else if a.apply != nil && a.polls == 1 {
			a.apply()
		}
		out = append(out, a.json(status))
	}
	writeJSON(w, http.StatusOK, map[string]any{"actions": out, "meta": paginationMeta(1, 25, len(out))})
}

// listServers filters by label_selector (key existence or key=value) and paginates.
func (f *fakeAPI) listServers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page, _ := strconv.Atoi(q.Get("page"))
	perPage, _ := strconv.Atoi(q.Get("per_page"))
	if page < 1 {
		page = 1
	}
	if perPage < 1 {
		perPage = 25
	}
	sel := q.Get("label_selector")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxPerPage > 0 && perPage > f.maxPerPage {
		perPage = f.maxPerPage
	}
	var matched []*fakeServer
	for _, s := range f.servers {
		if sel != "" {
			k, v, hasValue := strings.Cut(sel, "=")
			got, ok := s.Labels[k]
			if !ok || (hasValue && got != v) {
				continue
			}
		}
		matched = append(matched, s)
	}
	slices.SortFunc(matched, func(a, b *fakeServer) int { return int(a.ID - b.ID) })
	var out []any
	for i := (page - 1) * perPage; i < len(matched) && i < page*perPage; i++ {
		out = append(out, matched[i].json())
	}
	if out == nil {
		out = []any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"servers": out, "meta": paginationMeta(page, perPage, len(matched))})
}

func (f *fakeAPI) lookup(w http.ResponseWriter, r *http.Request) *fakeServer {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_input", "invalid server id")
		return nil
	}
	s, ok := f.servers[id]
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("server with ID '%d' not found", id))
		return nil
	}
	return s
}

func (f *fakeAPI) newAction(command string, server int64, apply func()) *fakeAction {
	f.nextID++
	a := &fakeAction{ID: f.nextID, Command: command, Server: server, apply: apply}
	f.actions[a.ID] = a
	return a
}

func (a *fakeAction) json(status string) map[string]any {
	out := map[string]any{
		"id":        a.ID,
		"command":   a.Command,
		"status":    status,
		"progress":  0,
		"started":   "2026-11-20T10:00:00+00:00",
		"finished":  nil,
		"resources": []any{map[string]any{"id": a.Server, "type": "server"}},
		"error":     nil,
	}
	if status != "running" {
		out["progress"] = 100
		out["finished"] = "2026-11-20T10:00:05+00:00"
	}
	if status == "error" {
		out["error"] = map[string]any{"code": a.errCode, "message": "Action failed"}
	}
	return out
}

func (s *fakeServer) json() map[string]any {
	return map[string]any{
		"id":      s.ID,
		"name":    s.Name,
		"status":  s.Status,
		"created": "2026-11-20T10:00:00+00:00",
		"public_net": map[string]any{
			"ipv4":         map[string]any{"id": 90001, "ip": "203.0.113.10", "blocked": false, "dns_ptr": "static.10.113.0.203.clients.your-server.de"},
			"ipv6":         map[string]any{"id": 90002, "ip": "2001:db8:4711::/64", "blocked": false, "dns_ptr": []any{}},
			"floating_ips": []any{},
			"firewalls":    []any{},
		},
		"private_net": []any{},
		"server_type": map[string]any{
			"id": 104, "name": s.Type, "description": strings.ToUpper(s.Type), "category": "cost_optimized",
			"cores": 2, "memory": 4.0, "disk": 40, "deprecated": false, "prices": []any{},
			"storage_type": "local", "cpu_type": "shared", "architecture": "x86", "locations": []any{},
		},
		"location": map[string]any{
			"id": 2, "name": s.Location, "description": "Nuremberg DC Park 1", "country": "DE", "city": "Nuremberg",
			"latitude": 49.452102, "longitude": 11.076665, "network_zone": "eu-central",
		},
		"image": map[string]any{
			"id": 114690387, "type": "system", "status": "available", "name": s.Image, "description": "Debian 12",
			"image_size": nil, "disk_size": 5, "created": "2023-06-13T06:00:02+00:00", "created_from": nil,
			"bound_to": nil, "os_flavor": "debian", "os_version": "12", "rapid_deploy": true,
			"protection": map[string]any{"delete": false}, "deprecated": nil, "deleted": nil,
			"labels": map[string]any{}, "architecture": "x86",
		},
		"iso":               nil,
		"rescue_enabled":    false,
		"locked":            false,
		"backup_window":     nil,
		"outgoing_traffic":  0,
		"ingoing_traffic":   0,
		"included_traffic":  21990232555520,
		"protection":        map[string]any{"delete": false, "rebuild": false},
		"labels":            s.Labels,
		"volumes":           []any{},
		"load_balancers":    []any{},
		"primary_disk_size": 40,
		"placement_group":   nil,
	}
}

func paginationMeta(page, perPage, total int) map[string]any {
	last := (total + perPage - 1) / perPage
	if last < 1 {
		last = 1
	}
	var prev, next any
	if page > 1 {
		prev = page - 1
	}
	if page < last {
		next = page + 1
	}
	return map[string]any{"pagination": map[string]any{
		"page": page, "per_page": perPage, "previous_page": prev, "next_page": next,
		"last_page": last, "total_entries": total,
	}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	providertest.WriteJSON(w, "application/json", status, v)
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": message, "details": map[string]any{}}})
}
