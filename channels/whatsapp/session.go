package whatsapp

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/store/sqlstore"
	waLog "go.mau.fi/whatsmeow/util/log"
)

// Session is the linked device: its keys in the project database (whatsmeow's tables, next
// to ClawOps's own) and the whatsmeow client that uses them.
type Session struct {
	container *sqlstore.Container
	client    *whatsmeow.Client
	log       *slog.Logger
}

// OpenSession creates or upgrades whatsmeow's tables in db and loads the linked device (or a
// fresh, unpaired one). dialect is "sqlite" (foreign keys must be on, as store.Open does) or
// "postgres".
func OpenSession(ctx context.Context, db *sql.DB, dialect string, logger *slog.Logger) (*Session, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	switch strings.ToLower(dialect) {
	case "", "sqlite", "sqlite3":
		dialect = "sqlite"
	case "postgres", "postgresql", "pgx":
		dialect = "postgres"
	default:
		return nil, fmt.Errorf("whatsapp: database dialect %q is not sqlite or postgres", dialect)
	}
	wl := slogLogger{logger.With("lib", "whatsmeow")}
	container := sqlstore.NewWithDB(db, dialect, wl)
	if err := container.Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("whatsapp: session store: %w", err)
	}
	device, err := container.GetFirstDevice(ctx)
	if err != nil {
		return nil, fmt.Errorf("whatsapp: load device: %w", err)
	}
	return &Session{container: container, client: whatsmeow.NewClient(device, wl), log: logger}, nil
}

// Client returns the whatsmeow client.
func (s *Session) Client() *whatsmeow.Client { return s.client }

// Paired reports whether the loaded device is linked to a phone.
func (s *Session) Paired() bool { return s.client.Store.ID != nil }

// Check says whether the store holds a paired device, without connecting.
func (s *Session) Check(ctx context.Context) error {
	devices, err := s.container.GetAllDevices(ctx)
	if err != nil {
		return fmt.Errorf("whatsapp: session store: %w", err)
	}
	for _, d := range devices {
		if d.ID != nil {
			return nil
		}
	}
	return errors.New("whatsapp: no paired device: start the gateway and scan the QR code (terminal or web console) with WhatsApp → Linked devices")
}

// Connect connects to WhatsApp. An unpaired device first pairs: onQR is called with each
// QR code to show (they expire every 20 to 60 seconds) until the phone scans one, pairing
// fails, or ctx ends. The QR channel is set up before connecting, as whatsmeow requires.
func (s *Session) Connect(ctx context.Context, onQR func(code string)) error {
	if s.Paired() {
		return s.client.ConnectContext(ctx)
	}
	qr, err := s.client.GetQRChannel(ctx)
	if err != nil {
		return fmt.Errorf("whatsapp: pairing: %w", err)
	}
	if err := s.client.ConnectContext(ctx); err != nil {
		return fmt.Errorf("whatsapp: connect for pairing: %w", err)
	}
	for item := range qr {
		switch {
		case item.Event == whatsmeow.QRChannelEventCode:
			onQR(item.Code)
		case item == whatsmeow.QRChannelSuccess:
			onQR("")
			s.log.Info("whatsapp: paired")
			return nil
		case item.Event == whatsmeow.QRChannelEventError:
			onQR("")
			return fmt.Errorf("whatsapp: pairing failed: %w", item.Error)
		default:
			onQR("")
			return fmt.Errorf("whatsapp: pairing ended: %s", item.Event)
		}
	}
	onQR("")
	return ctx.Err()
}

// Disconnect closes the connection.
func (s *Session) Disconnect() { s.client.Disconnect() }

// slogLogger is whatsmeow's logger interface over slog.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Warnf(msg string, args ...any)  { s.l.Warn(fmt.Sprintf(msg, args...)) }
func (s slogLogger) Errorf(msg string, args ...any) { s.l.Error(fmt.Sprintf(msg, args...)) }
func (s slogLogger) Infof(msg string, args ...any)  { s.l.Debug(fmt.Sprintf(msg, args...)) }
func (s slogLogger) Debugf(msg string, args ...any) { s.l.Debug(fmt.Sprintf(msg, args...)) }
func (s slogLogger) Sub(module string) waLog.Logger { return slogLogger{s.l.With("module", module)} }
