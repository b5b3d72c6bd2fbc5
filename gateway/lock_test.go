//go:build unix

package gateway_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops/config"
	"github.com/gatewayforge/clawops/gateway"
)

// TestDataFolderLocked refuses a second gateway on a data folder in use, and allows one
// once the first is closed.
func TestDataFolderLocked(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Load("", []string{"CLAWOPS_DATA_DIR=" + dir, "CLAWOPS_LISTEN=127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	open := func() (*gateway.Gateway, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gw, err := gateway.New(context.Background(), gateway.Options{Config: cfg, Listener: ln})
		if err != nil {
			ln.Close()
		}
		return gw, err
	}
	first, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open(); err == nil || !strings.Contains(err.Error(), "another gateway is running on the data folder") {
		t.Fatalf("second gateway on one data folder: got %v, want a clear refusal", err)
	}
	first.Close()
	again, err := open()
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	again.Close()
}
