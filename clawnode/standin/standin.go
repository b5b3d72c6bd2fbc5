// Package standin is the stand-in for an OpenClaw container that the local provider and the
// tests run: an HTTP server whose GET /health answers 200 {"ok":true}, logging one line per
// request to its output so that `openclaw.logs` has something real to show.
package standin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gatewayforge/clawops/clawnode/keyfile"
)

// Handler serves /health and logs each request to out.
func Handler(out io.Writer) http.Handler {
	var mu sync.Mutex
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, time.Now().UTC().Format(time.RFC3339)+" "+format+"\n", args...)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		logf("%s %s 200", r.Method, r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`+"\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		logf("%s %s 404", r.Method, r.URL.Path)
		http.NotFound(w, r)
	})
	return mux
}

// Run listens on addr (e.g. 127.0.0.1:0), writes the bound port to portFile when it is
// not empty, and serves until ctx ends.
func Run(ctx context.Context, addr, portFile string, out io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("standin: listen: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if portFile != "" {
		if err := keyfile.WriteSecret(portFile, []byte(strconv.Itoa(port)+"\n")); err != nil {
			ln.Close()
			return fmt.Errorf("standin: port file: %w", err)
		}
	}
	fmt.Fprintf(out, "standin listening on %s\n", ln.Addr())
	srv := &http.Server{Handler: Handler(out), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("standin: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("standin: shutdown: %w", err)
	}
	return nil
}
