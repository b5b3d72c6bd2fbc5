package whatsapp

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/boombuler/barcode"
	"github.com/boombuler/barcode/qr"
)

// Run connects the session (pairing first when the device is not linked yet, with the QR
// code printed to PairOutput and served by PairingHandler), keeps it until ctx ends, then
// disconnects; whatsmeow reconnects by itself once connected. Without a session Run only
// waits. It returns nil when ctx ends.
func (a *Adapter) Run(ctx context.Context) error {
	defer a.running.Wait()
	defer a.stopped.Do(func() { close(a.stop) })
	s := a.opts.Session
	if s == nil {
		<-ctx.Done()
		return nil
	}
	s.client.AddEventHandler(a.HandleEvent)
	for failures := 0; ctx.Err() == nil; failures++ {
		err := s.Connect(ctx, a.showQR)
		if err == nil {
			break
		}
		wait := min(time.Duration(failures+1)*2*time.Second, time.Minute)
		a.log.WarnContext(ctx, "whatsapp: connect", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	<-ctx.Done()
	s.Disconnect()
	return nil
}

// showQR publishes the current pairing code ("" when pairing is over).
func (a *Adapter) showQR(code string) {
	a.qrMu.Lock()
	a.qr = code
	a.qrMu.Unlock()
	if code == "" || a.opts.PairOutput == nil {
		return
	}
	fmt.Fprintln(a.opts.PairOutput, "WhatsApp pairing: on the phone open WhatsApp → Settings → Linked devices → Link a device, and scan:")
	if err := WriteTerminalQR(a.opts.PairOutput, code); err != nil {
		a.log.Warn("whatsapp: print QR code", "err", err)
	}
}

// PairingCode returns the QR code on offer now, if the device is pairing.
func (a *Adapter) PairingCode() (string, bool) {
	a.qrMu.Lock()
	defer a.qrMu.Unlock()
	return a.qr, a.qr != ""
}

// PairingHandler serves the current pairing QR code as a PNG image, or 404 when no pairing is
// in progress. Whoever scans it links their WhatsApp account to this gateway, so mount it
// only behind the console's authentication.
func (a *Adapter) PairingHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		code, ok := a.PairingCode()
		if !ok {
			http.Error(w, "no pairing in progress", http.StatusNotFound)
			return
		}
		img, err := QRPNG(code, 320)
		if err != nil {
			http.Error(w, "render QR code", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(img)
	})
}

// QRPNG renders code as a size×size PNG QR code.
func QRPNG(code string, size int) ([]byte, error) {
	bc, err := qr.Encode(code, qr.M, qr.Auto)
	if err != nil {
		return nil, fmt.Errorf("encode QR: %w", err)
	}
	scaled, err := barcode.Scale(bc, size, size)
	if err != nil {
		return nil, fmt.Errorf("scale QR: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, scaled); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteTerminalQR prints code as a QR code with half-block characters, two modules a line,
// light on dark, with a quiet zone.
func WriteTerminalQR(w io.Writer, code string) error {
	bc, err := qr.Encode(code, qr.L, qr.Auto)
	if err != nil {
		return fmt.Errorf("encode QR: %w", err)
	}
	const quiet = 2
	n := bc.Bounds().Dx()
	light := func(x, y int) bool {
		x, y = x-quiet, y-quiet
		if x < 0 || y < 0 || x >= n || y >= n {
			return true
		}
		r, _, _, _ := bc.At(x, y).RGBA()
		return r > 0x7fff
	}
	var b strings.Builder
	for y := 0; y < n+2*quiet; y += 2 {
		for x := 0; x < n+2*quiet; x++ {
			top, bottom := light(x, y), light(x, y+1)
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteString(" ")
			}
		}
		b.WriteString("\n")
	}
	_, err = io.WriteString(w, b.String())
	return err
}
