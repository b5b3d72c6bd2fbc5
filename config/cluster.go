package config

import (
	"net/url"
	"regexp"
	"time"
)

// Cluster configures how gateway replicas that share one PostgreSQL database elect the
// leader that runs the fleet's loops (see package cluster and docs/cluster.md). A single
// gateway needs none of it: it leads at once.
type Cluster struct {
	// ReplicaID names this replica among those sharing the database. Default:
	// <hostname>-<8 hex digits of the data folder's absolute path>, which stays the same
	// across restarts, so a restarted leader takes its lease back at once.
	ReplicaID string `yaml:"replica_id"`
	// AdvertiseURL is the http(s) base URL the other replicas forward API and node
	// connections to while this replica leads. Default: http://<listen address>.
	AdvertiseURL string `yaml:"advertise_url"`
	// LeaseTTL is how long the leader lease lasts unrenewed (2s..5m): the longest the
	// fleet goes without a leader when one dies without releasing it.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
}

var replicaIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

func (c *Cluster) validate(path string) []*Error {
	var errs []*Error
	if c.ReplicaID != "" && !replicaIDRE.MatchString(c.ReplicaID) {
		errs = append(errs, keyError(path+".replica_id", "%.60q: use 1-128 of A-Z a-z 0-9 . _ : - starting with a letter or digit, e.g. gw-fsn1-a", c.ReplicaID))
	}
	if c.AdvertiseURL != "" {
		u, err := url.Parse(c.AdvertiseURL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
			errs = append(errs, keyError(path+".advertise_url", "%.80q is not an http(s) base URL: write e.g. http://10.0.0.5:8080", c.AdvertiseURL))
		case u.User != nil:
			errs = append(errs, keyError(path+".advertise_url", "must not hold credentials: replicas forward the caller's own"))
		case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
			errs = append(errs, keyError(path+".advertise_url", "%.80q: give the base URL only, without a path, query or fragment", c.AdvertiseURL))
		}
	}
	return append(errs, between(path+".lease_ttl", c.LeaseTTL, 2*time.Second, 5*time.Minute)...)
}
