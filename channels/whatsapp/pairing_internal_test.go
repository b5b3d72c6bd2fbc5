package whatsapp

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
)

type nopClient struct{}

func (nopClient) SendMessage(context.Context, types.JID, *waE2E.Message, ...whatsmeow.SendRequestExtra) (whatsmeow.SendResponse, error) {
	return whatsmeow.SendResponse{}, nil
}
func (nopClient) Upload(context.Context, []byte, whatsmeow.MediaType) (whatsmeow.UploadResponse, error) {
	return whatsmeow.UploadResponse{}, nil
}

// The pairing QR code is printed while pairing runs and served to the console; neither
// once pairing is over. (Pairing itself needs WhatsApp's servers: see docs/channels.md for
// the manual check.)
func TestPairingQRFlow(t *testing.T) {
	var term bytes.Buffer
	a, err := New(Options{Client: nopClient{}, PairOutput: &term})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.PairingHandler())
	t.Cleanup(srv.Close)
	get := func() (int, string) {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Content-Type")
	}
	if code, _ := get(); code != http.StatusNotFound {
		t.Errorf("before pairing: got %d, want 404", code)
	}
	a.showQR("2@first-code,key,key,key")
	if code, ct := get(); code != http.StatusOK || ct != "image/png" {
		t.Errorf("while pairing: got %d %s, want a PNG", code, ct)
	}
	if !strings.Contains(term.String(), "Linked devices") || !strings.Contains(term.String(), "█") {
		t.Errorf("terminal: got %q, want instructions and a QR code", term.String()[:min(80, term.Len())])
	}
	a.showQR("")
	if code, _ := get(); code != http.StatusNotFound {
		t.Errorf("after pairing: got %d, want 404", code)
	}
	resp, err := http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: got %d, want 405", resp.StatusCode)
	}
}
