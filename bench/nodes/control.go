//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// control is the driver's client of a server child's control endpoint (loopback only).
type control struct {
	base string
	hc   *http.Client
}

func newControl(base string) (*control, error) {
	if err := checkLoopbackURL("control URL", base); err != nil {
		return nil, err
	}
	// Keep the connection: near its file limit the gateway cannot accept a new one.
	tr := &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 10 * time.Minute}
	return &control{base: base, hc: &http.Client{Transport: tr}}, nil
}

func (c *control) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, jsonMaxBytes))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(clipBytes(data, 300)))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

func (c *control) stats(ctx context.Context) (statsResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var s statsResponse
	return s, c.do(ctx, http.MethodGet, apiStats, nil, &s)
}

func (c *control) fanout(ctx context.Context, req fanoutRequest, budget time.Duration) (fanoutResult, error) {
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	var r fanoutResult
	return r, c.do(ctx, http.MethodPost, apiFanout, req, &r)
}

// mint asks the gateway for join tokens for nodes [start, start+count), in batches.
func (c *control) mint(ctx context.Context, start, count int) ([]simNodeConfig, error) {
	const batch = 2000
	out := make([]simNodeConfig, 0, count)
	for off := 0; off < count; off += batch {
		n := min(batch, count-off)
		var resp tokensResponse
		rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		err := c.do(rctx, http.MethodPost, apiTokens, tokensRequest{Prefix: "bench-", Start: start + off, Count: n, TTLSeconds: 3600}, &resp)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("mint join tokens: %w", err)
		}
		if len(resp.Tokens) != n || len(resp.Instances) != n {
			return nil, fmt.Errorf("mint join tokens: got %d tokens, want %d", len(resp.Tokens), n)
		}
		for i := range n {
			out = append(out, simNodeConfig{Index: start + off + i, Instance: resp.Instances[i], Token: resp.Tokens[i]})
		}
	}
	return out, nil
}

// saveProfile fetches a pprof profile (e.g. "heap") into path.
func (c *control) saveProfile(ctx context.Context, name, path string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/debug/pprof/"+name, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("fetch %s profile: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch %s profile: %s", name, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("fetch %s profile: %w", name, err)
	}
	return writeFile(path, data)
}

func (c *control) profile(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return c.do(ctx, http.MethodPost, apiProfile, profileRequest{Path: path}, nil)
}
