package whatsapp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/gatewayforge/clawops"
	"github.com/gatewayforge/clawops/channels"
	"github.com/gatewayforge/clawops/channels/channelstest"
	"github.com/gatewayforge/clawops/channels/whatsapp"
	"github.com/gatewayforge/clawops/governance"
	"github.com/gatewayforge/clawops/store"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	alice    = "+4915100000001" // operator
	bob      = "+4915100000002" // approver
	carol    = "+4915100000003" // viewer
	stranger = "+4915199999999"
)

var people = channelstest.People{Operator: alice, Approver: bob, Viewer: carol}

// recClient stands in for *whatsmeow.Client's sending half, which cannot reach WhatsApp from
// here; it records what the adapter asked to send.
type recClient struct {
	mu      sync.Mutex
	sent    []sentMsg
	uploads [][]byte
	fail    []error
}

type sentMsg struct {
	To  types.JID
	Msg *waE2E.Message
}

func (c *recClient) SendMessage(_ context.Context, to types.JID, m *waE2E.Message, _ ...whatsmeow.SendRequestExtra) (whatsmeow.SendResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.fail) > 0 {
		err := c.fail[0]
		c.fail = c.fail[1:]
		return whatsmeow.SendResponse{}, err
	}
	c.sent = append(c.sent, sentMsg{To: to, Msg: m})
	return whatsmeow.SendResponse{ID: "3EB0TEST"}, nil
}

func (c *recClient) Upload(_ context.Context, b []byte, mt whatsmeow.MediaType) (whatsmeow.UploadResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if mt != whatsmeow.MediaAudio {
		return whatsmeow.UploadResponse{}, errors.New("unexpected media type")
	}
	c.uploads = append(c.uploads, b)
	return whatsmeow.UploadResponse{URL: "https://mmg.example/v", DirectPath: "/v/t62/x", MediaKey: []byte{1},
		FileEncSHA256: []byte{2}, FileSHA256: []byte{3}, FileLength: uint64(len(b))}, nil
}

// textsTo returns the texts sent to number, in order.
func (c *recClient) textsTo(number string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.sent {
		if "+"+s.To.User == number {
			out = append(out, s.Msg.GetConversation())
		}
	}
	return out
}

// openSession opens a session store in a fresh SQLite file, as the gateway does.
func openSession(t *testing.T, path string) *whatsapp.Session {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{DSN: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	s, err := whatsapp.OpenSession(context.Background(), sqlDB, "sqlite", channelstest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type rig struct {
	fx     *channelstest.Fixture
	client *recClient
	wa     *whatsmeow.Client // the real client events come through
	a      *whatsapp.Adapter
	stop   func() // stops the adapter launched last
}

func start(t *testing.T) *rig {
	t.Helper()
	r := &rig{fx: channelstest.New(t, "whatsapp", people), client: &recClient{}}
	r.wa = openSession(t, filepath.Join(t.TempDir(), "wa.db")).Client()
	r.launch(t)
	return r
}

// launch builds and runs a new adapter over r's gate, database and client, as a gateway
// (re)starting does; r.stop stops it and takes it off the event stream.
func (r *rig) launch(t *testing.T) {
	t.Helper()
	d := channels.NewDispatcher(r.fx.Directory, channelstest.Echo{}, r.fx.Logger)
	d.SetAuditor(r.fx.Audit, nil)
	a, err := whatsapp.New(whatsapp.Options{Client: r.client, Approvers: []string{bob}, Deliver: d.Deliver,
		Approvals: r.fx.Approvals(), Auditor: r.fx.Audit, Logger: r.fx.Logger,
		Outbox: channels.OutboxOptions{Sleep: (&channelstest.FakeSleep{}).Sleep}, DB: r.fx.DB})
	if err != nil {
		t.Fatal(err)
	}
	r.a = a
	d.Attach(a)
	handler := r.wa.AddEventHandler(a.HandleEvent)
	n := channels.NewNotifier(channels.NotifierOptions{Channels: []channels.Channel{a}, Logger: r.fx.Logger})
	r.fx.NotifyTo(n)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = n.Run(ctx) }()
	go func() { defer wg.Done(); _ = a.Run(ctx) }()
	r.stop = func() { r.wa.RemoveEventHandler(handler); cancel(); wg.Wait() }
	t.Cleanup(r.stop)
}

var nextID int

// incoming feeds a text message from number through whatsmeow's event dispatch.
func (r *rig) incoming(sender types.JID, senderAlt types.JID, text string) {
	nextID++
	//lint:ignore SA1019 the documented way to feed whatsmeow events offline: its network end cannot run here
	r.wa.DangerousInternals().DispatchEvent(&events.Message{
		Info: types.MessageInfo{
			MessageSource: types.MessageSource{Chat: sender, Sender: sender, SenderAlt: senderAlt},
			ID:            types.MessageID("MSG" + string(rune('A'+nextID%26))), Timestamp: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC),
		},
		Message: &waE2E.Message{Conversation: proto.String(text)},
	})
}

func pn(number string) types.JID { return types.NewJID(number[1:], types.DefaultUserServer) }

func TestMessageInReplyOut(t *testing.T) {
	r := start(t)
	r.incoming(pn(alice), types.EmptyJID, "what broke tonight?")
	channelstest.Eventually(t, "the reply", func() bool { return len(r.client.textsTo(alice)) == 1 })
	if got := r.client.textsTo(alice)[0]; got != "echo alice: what broke tonight?" {
		t.Errorf("reply: got %q", got)
	}
	// A hidden-number (LID) sender with the phone number alongside is recognised too.
	r.incoming(types.NewJID("81234567890123", types.HiddenUserServer), pn(alice), "and now?")
	channelstest.Eventually(t, "the second reply", func() bool { return len(r.client.textsTo(alice)) == 2 })
}

func TestUnknownSendersIgnoredAndAudited(t *testing.T) {
	r := start(t)
	r.incoming(pn(stranger), types.EmptyJID, "hello")
	r.incoming(types.NewJID("77777777777777", types.HiddenUserServer), types.EmptyJID, "who am I")
	channelstest.Eventually(t, "both audit rows", func() bool {
		return r.fx.AuditHas(t, governance.EventViolation, clawops.ReasonUnknownSender, "whatsapp:"+stranger) &&
			r.fx.AuditHas(t, governance.EventViolation, clawops.ReasonUnknownSender, "whatsapp:77777777777777@lid")
	})
	r.client.mu.Lock()
	n := len(r.client.sent)
	r.client.mu.Unlock()
	if n != 0 {
		t.Errorf("sent %d messages to unknown senders, want none", n)
	}
}

var codeRE = regexp.MustCompile(`APPROVE ([0-9a-f]{8})\*`)

// cardCode waits for the card of approval id at bob's and returns its reply code.
func (r *rig) cardCode(t *testing.T, id string) string {
	t.Helper()
	var code string
	channelstest.Eventually(t, "card "+id, func() bool {
		for _, m := range r.client.textsTo(bob) {
			if c := codeRE.FindStringSubmatch(m); c != nil && c[1] == channels.ShortCode(id) {
				code = c[1]
				return true
			}
		}
		return false
	})
	return code
}

func TestApproveByReplyExactlyThatPlan(t *testing.T) {
	r := start(t)
	first := r.fx.Request(t, "i-001", "large")
	second := r.fx.Request(t, "i-002", "xlarge")
	r.cardCode(t, first)
	code := r.cardCode(t, second)
	r.incoming(pn(bob), types.EmptyJID, "approve "+strings.ToUpper(code)+" go ahead")
	channelstest.Eventually(t, "the run", func() bool { return r.fx.State(t, second) == governance.ApprovalExecuted })
	if got := r.fx.Tool.Applied(); len(got) != 1 || got[0] != (channelstest.ResizeArgs{Instance: "i-002", Tier: "xlarge"}) {
		t.Errorf("applied: got %+v, want exactly i-002 → xlarge", got)
	}
	if got := r.fx.State(t, first); got != governance.ApprovalPending {
		t.Errorf("other approval: got %s, want pending", got)
	}
	channelstest.Eventually(t, "the answer and the status", func() bool {
		var answer, status bool
		for _, m := range r.client.textsTo(bob) {
			answer = answer || strings.HasPrefix(m, "Approved by bob")
			status = status || (strings.HasPrefix(m, "Approval "+code) && strings.Contains(m, "done"))
		}
		return answer && status
	})
	a, _ := r.fx.Gate.Approval(context.Background(), second)
	if a.Reason != "go ahead" {
		t.Errorf("decision reason: got %q, want the words after the code", a.Reason)
	}
}

func TestReplyRefusals(t *testing.T) {
	r := start(t)
	id := r.fx.Request(t, "i-001", "large")
	code := r.cardCode(t, id)
	tests := []struct {
		name, from, text, want string
	}{
		{"viewer", carol, "APPROVE " + code, "carol may not decide approvals (NOT_APPROVER)"},
		{"the requester, an operator", alice, "DENY " + code, "alice may not decide approvals (NOT_APPROVER)"},
		{"unknown code", bob, "APPROVE ffffffff", "(APPROVAL_NOT_FOUND)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(r.client.textsTo(tt.from))
			r.incoming(pn(tt.from), types.EmptyJID, tt.text)
			channelstest.Eventually(t, "the answer", func() bool { return len(r.client.textsTo(tt.from)) == before+1 })
			if got := r.client.textsTo(tt.from)[before]; !strings.Contains(got, tt.want) {
				t.Errorf("answer: got %q, want %q", got, tt.want)
			}
		})
	}
	r.incoming(pn(stranger), types.EmptyJID, "APPROVE "+code)
	channelstest.Eventually(t, "the audit row", func() bool {
		return r.fx.AuditHas(t, governance.EventViolation, clawops.ReasonUnknownSender, "whatsapp:"+stranger)
	})
	if got := r.client.textsTo(stranger); len(got) != 0 {
		t.Errorf("answered a stranger: %q", got)
	}
	if got := r.fx.State(t, id); got != governance.ApprovalPending {
		t.Errorf("approval: got %s, want pending", got)
	}
	if !r.fx.AuditHas(t, governance.EventViolation, clawops.ReasonNotApprover, "carol") {
		t.Error("no NOT_APPROVER audit row for carol")
	}
}

func TestCardGolden(t *testing.T) {
	c := governance.Card{
		ApprovalID: "apr_0123456789abcdef0123456789abcdef", Title: "alice via commander asks to run gf_teardown",
		Summary: "Tear down inst-2 of acct_9 *now*", Actions: []string{"provider.delete hetzner/123", "db.update inst-2: state TERMINATED"},
		Risk: clawops.RiskHigh, RiskFlags: []string{"risk:high", "provider_delete", "irreversible"}, UsersAffected: 1,
		CostDeltaMonthlyUSD: 12, ExpectedDuration: 3 * time.Minute, PlanHash: "9f2c0a7be41d5c33", Requester: "alice via commander",
		ExpiresAt: time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC), State: governance.ApprovalPending,
	}
	at := time.Date(2026, 11, 23, 9, 5, 0, 0, time.UTC)
	decided := c
	decided.State, decided.DecidedBy, decided.DecidedAt = governance.ApprovalExpired, "", &at
	channelstest.Golden(t, "testdata/card.golden.json", map[string]string{
		"pending": whatsapp.RenderCard(c), "status_expired": whatsapp.RenderStatus(decided)}, *update)
}

func TestLongMessageVoiceAndRecipients(t *testing.T) {
	c := &recClient{fail: []error{whatsmeow.ErrNotConnected}}
	a, err := whatsapp.New(whatsapp.Options{Client: c, Outbox: channels.OutboxOptions{Sleep: (&channelstest.FakeSleep{}).Sleep}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	text := strings.Repeat("Briefing line with ümlauts and 🦀 crabs.\n", 4000)
	if err := a.Send(ctx, alice, text); err != nil {
		t.Fatal(err)
	}
	var joined strings.Builder
	for _, part := range c.textsTo(alice) {
		if n := channels.TextLen(part); n > channels.LimitWhatsApp {
			t.Errorf("a part has %d units, over %d", n, channels.LimitWhatsApp)
		}
		joined.WriteString(part)
	}
	if n := len(c.textsTo(alice)); n < 3 || joined.String() != text {
		t.Errorf("got %d parts joining to %d bytes, want the %d-byte text whole (after a retry)", n, joined.Len(), len(text))
	}
	if err := a.SendVoice(ctx, "4915100000002@s.whatsapp.net", []byte("OggS-opus")); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	last := c.sent[len(c.sent)-1]
	c.mu.Unlock()
	am := last.Msg.GetAudioMessage()
	if last.To.User != "4915100000002" || !am.GetPTT() || am.GetMimetype() != "audio/ogg; codecs=opus" || am.GetFileLength() != 9 {
		t.Errorf("voice note: got %v to %s", am, last.To)
	}
	for _, bad := range []string{"", "4915100000001", "+49 151", "+0123456789", "+12", "group@g.us", "12345@broadcast"} {
		if err := a.Send(ctx, bad, "x"); clawops.ReasonOf(err) != clawops.ReasonMalformedRequest {
			t.Errorf("Send to %q: got %v, want MALFORMED_REQUEST", bad, err)
		}
	}
}

func TestSessionStoreAndCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clawops.db")
	s := openSession(t, path)
	if s.Paired() {
		t.Fatal("a fresh store has a paired device")
	}
	a, _ := whatsapp.New(whatsapp.Options{Client: s.Client(), Session: s})
	if err := a.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "scan the QR code") {
		t.Errorf("Check unpaired: got %v, want advice to pair", err)
	}
	// Pairing ends with whatsmeow saving the device under its JID; do what it does.
	dev := s.Client().Store
	jid := types.NewADJID("4915100000009", 0, 7)
	dev.ID = &jid
	dev.Account = &waAdv.ADVSignedDeviceIdentity{Details: []byte("details"), AccountSignature: make([]byte, 64),
		AccountSignatureKey: make([]byte, 32), DeviceSignature: make([]byte, 64)}
	if err := dev.Save(context.Background()); err != nil {
		t.Fatal(err)
	}
	again := openSession(t, path)
	if !again.Paired() {
		t.Error("a reopened store lost the paired device")
	}
	b, _ := whatsapp.New(whatsapp.Options{Client: again.Client(), Session: again})
	if err := b.Check(context.Background()); err != nil {
		t.Errorf("Check paired: %v", err)
	}
}

func TestFactory(t *testing.T) {
	db, err := store.Open(context.Background(), store.Options{DSN: filepath.Join(t.TempDir(), "f.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	sqlDB, _ := db.DB()
	env := channels.Env{SQL: sqlDB, SQLDialect: "sqlite"}
	ch, err := whatsapp.Factory(env, json.RawMessage(`{"approvers":["+4915100000002"],"pair_output":"none"}`))
	if err != nil || ch.Name() != "whatsapp" {
		t.Fatalf("good settings: %v, %v", ch, err)
	}
	for _, tt := range []struct {
		name     string
		env      channels.Env
		settings string
		want     string
	}{
		{"no database", channels.Env{}, `{}`, "database is not available"},
		{"bad number", env, `{"approvers":["015100000002"]}`, "E.164"},
		{"bad output", env, `{"pair_output":"printer"}`, "pair_output"},
		{"bad dialect", channels.Env{SQL: sqlDB, SQLDialect: "oracle"}, `{}`, "not sqlite or postgres"},
		{"unknown key", env, `{"approver":[]}`, "unknown field"},
	} {
		_, err := whatsapp.Factory(tt.env, json.RawMessage(tt.settings))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestQRRendering(t *testing.T) {
	const code = "2@abcDEF123+/=,xyzXYZ,7bH0X6s1l2m3n4o5p6q7r8s9t0u,1a2b3c4d5e6f7g8h9i0j"
	img, err := whatsapp.QRPNG(code, 256)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(img, []byte("\x89PNG\r\n")) {
		t.Error("QRPNG is not a PNG")
	}
	var b bytes.Buffer
	if err := whatsapp.WriteTerminalQR(&b, code); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	width := len([]rune(lines[0]))
	if width < 25 || len(lines) != (width+1)/2 {
		t.Errorf("terminal QR: %d lines of %d columns, want a square of half-block lines", len(lines), width)
	}
}
