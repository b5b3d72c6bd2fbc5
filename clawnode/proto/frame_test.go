package proto

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFrameRoundTrip(t *testing.T) {
	req, err := NewRequest("r1", MethodNodeEvent, NodeEventParams{Event: NodeEventHeartbeat, PayloadJSON: `{"a":1}`})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := NewEvent(EventTick, Tick{Ts: 42})
	if err != nil {
		t.Fatal(err)
	}
	res, err := NewResult("r1", map[string]bool{"ok": true})
	if err != nil {
		t.Fatal(err)
	}
	seq := uint64(7)
	evSeq := ev
	evSeq.Seq = &seq
	for _, f := range []Frame{req, ev, evSeq, res, NewErrorResult("r2", CodeNotPaired, "no", DetailPairingRequired)} {
		t.Run(f.Type+f.Method+f.Event, func(t *testing.T) {
			b, err := Encode(f)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := DecodeFrame(b)
			if err != nil {
				t.Fatalf("DecodeFrame(%s): %v", b, err)
			}
			if diff := cmp.Diff(f, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeFrameStockShapes(t *testing.T) {
	// Frames as the stock gateway documents them, including its optional fields.
	for _, s := range []string{
		`{"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1737264000000}}`,
		`{"type":"req","id":"1","method":"connect","params":{},"traceparent":"00-abc"}`,
		`{"type":"res","id":"1","ok":true,"payload":{"type":"hello-ok"}}`,
		`{"type":"res","id":"1","ok":false,"error":{"code":"NOT_PAIRED","message":"m","details":{"code":"PAIRING_REQUIRED"},"retryable":false}}`,
		`{"type":"event","event":"tick","payload":{"ts":1},"seq":3,"stateVersion":{"presence":1,"health":2}}`,
		`{"type":"event","event":"tick"}`,
		`{"type":"req","id":"1","method":"m","params":null}`,
	} {
		if _, err := DecodeFrame([]byte(s)); err != nil {
			t.Errorf("DecodeFrame(%s): %v", s, err)
		}
	}
}

func TestDecodeFrameRejects(t *testing.T) {
	long := strings.Repeat("x", MaxIDLen+1)
	for _, tc := range []struct{ name, in, want string }{
		{"empty", ``, "EOF"},
		{"not json", `hello`, "invalid character"},
		{"array", `[]`, "bad frame"},
		{"trailing", `{"type":"event","event":"tick"} {}`, "after the JSON value"},
		{"no type", `{"event":"tick"}`, "missing type"},
		{"unknown type", `{"type":"ping"}`, "unknown type"},
		{"unknown field", `{"type":"event","event":"tick","extra":1}`, `unknown field "extra"`},
		{"case folded key", `{"type":"event","EVENT":"tick"}`, `unknown field "EVENT"`},
		{"duplicate key", `{"type":"event","event":"tick","event":"x"}`, "duplicate key"},
		{"req without id", `{"type":"req","method":"m"}`, "id is empty"},
		{"req without method", `{"type":"req","id":"1"}`, "method is empty"},
		{"req with ok", `{"type":"req","id":"1","method":"m","ok":true}`, "res or event fields"},
		{"req long id", `{"type":"req","id":"` + long + `","method":"m"}`, "longer than"},
		{"req control char", `{"type":"req","id":"a\nb","method":"m"}`, "control character"},
		{"res without ok", `{"type":"res","id":"1"}`, "without ok"},
		{"res ok with error", `{"type":"res","id":"1","ok":true,"error":{"code":"c","message":"m"}}`, "carries an error"},
		{"res failed without error", `{"type":"res","id":"1","ok":false}`, "has no error"},
		{"res error without code", `{"type":"res","id":"1","ok":false,"error":{"message":"m"}}`, "code and a message"},
		{"res error unknown field", `{"type":"res","id":"1","ok":false,"error":{"code":"c","message":"m","x":1}}`, `unknown field "x"`},
		{"res with method", `{"type":"res","id":"1","ok":true,"method":"m"}`, "req or event fields"},
		{"event without name", `{"type":"event"}`, "event is empty"},
		{"event with id", `{"type":"event","event":"tick","id":"1"}`, "req or res fields"},
		{"type not string", `{"type":1}`, "cannot unmarshal"},
		{"ok not bool", `{"type":"res","id":"1","ok":"yes"}`, "cannot unmarshal"},
		{"seq negative", `{"type":"event","event":"tick","seq":-1}`, "cannot unmarshal"},
		{"truncated", `{"type":"event","event":"ti`, "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeFrame([]byte(tc.in))
			if err == nil {
				t.Fatalf("DecodeFrame(%q) = nil error, want one containing %q", tc.in, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("DecodeFrame(%q) error = %q, want it to contain %q", tc.in, err, tc.want)
			}
			if !errors.Is(err, ErrBadFrame) && tc.name != "empty" {
				t.Errorf("error %v does not wrap ErrBadFrame", err)
			}
		})
	}
}

func TestUnmarshalStrictNested(t *testing.T) {
	good := `{"minProtocol":4,"maxProtocol":4,"client":{"id":"node-host","version":"1","platform":"linux","mode":"node"},` +
		`"role":"node","scopes":[],"device":{"id":"d","publicKey":"k","signature":"s","signedAt":1,"nonce":"n"},"auth":{"token":"t"}}`
	var p ConnectParams
	if err := UnmarshalStrict([]byte(good), &p); err != nil {
		t.Fatalf("UnmarshalStrict(good): %v", err)
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate(good): %v", err)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"unknown nested", strings.Replace(good, `"mode":"node"`, `"mode":"node","x":1`, 1), `$.client: unknown field "x"`},
		{"case folded nested", strings.Replace(good, `"nonce":"n"`, `"Nonce":"n"`, 1), `unknown field "Nonce"`},
		{"duplicate nested", strings.Replace(good, `"token":"t"`, `"token":"t","token":"u"`, 1), "duplicate key"},
		{"wrong type", strings.Replace(good, `"signedAt":1`, `"signedAt":"1"`, 1), "cannot unmarshal"},
		{"fraction", strings.Replace(good, `"signedAt":1`, `"signedAt":1.5`, 1), "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p ConnectParams
			err := UnmarshalStrict([]byte(tc.in), &p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("UnmarshalStrict = %v, want error containing %q", err, tc.want)
			}
		})
	}
	if err := UnmarshalStrict([]byte(`{}`), p); err == nil {
		t.Error("UnmarshalStrict into a non-pointer: got nil error")
	}
}

func TestConnectParamsValidate(t *testing.T) {
	base := ConnectParams{MinProtocol: 4, MaxProtocol: 4, Role: RoleNode, Scopes: []string{},
		Client: ClientInfo{ID: ClientIDNodeHost, Version: "1", Platform: "linux", Mode: ModeNode}}
	for _, tc := range []struct {
		name   string
		mutate func(*ConnectParams)
	}{
		{"zero protocol", func(p *ConnectParams) { p.MinProtocol = 0 }},
		{"empty client id", func(p *ConnectParams) { p.Client.ID = "" }},
		{"empty platform", func(p *ConnectParams) { p.Client.Platform = "" }},
		{"bad command", func(p *ConnectParams) { p.Commands = []string{""} }},
		{"device without nonce", func(p *ConnectParams) { p.Device = &DeviceAuth{ID: "a", PublicKey: "b", Signature: "c"} }},
		{"too many commands", func(p *ConnectParams) { p.Commands = make([]string, 300); fill(p.Commands) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base
			tc.mutate(&p)
			if err := p.Validate(); err == nil {
				t.Errorf("Validate = nil, want an error")
			}
		})
	}
	if err := base.Validate(); err != nil {
		t.Errorf("Validate(base) = %v", err)
	}
}

func fill(s []string) {
	for i := range s {
		s[i] = "c"
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1}}`,
		`{"type":"req","id":"1","method":"connect","params":{"a":[1,2,{"b":null}]}}`,
		`{"type":"res","id":"1","ok":false,"error":{"code":"X","message":"m","details":{"code":"Y"}}}`,
		`{"type":"res","id":"1","ok":true,"payload":"x"}`,
		`{"type":"event","event":"tick","seq":1}`,
		`{"type":"event","event":"tick","event":"tock"}`,
		`[[[[[[[[[[[[`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := DecodeFrame(data)
		if err != nil {
			return
		}
		// Whatever decodes must encode, and decode again to the same frame.
		b, err := Encode(fr)
		if err != nil {
			t.Fatalf("decoded frame does not encode: %v (input %q)", err, data)
		}
		again, err := DecodeFrame(b)
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v (%s)", err, b)
		}
		if !jsonEqual(fr.Params, again.Params) || !jsonEqual(fr.Payload, again.Payload) ||
			fr.Type != again.Type || fr.ID != again.ID || fr.Method != again.Method || fr.Event != again.Event {
			t.Fatalf("round trip changed the frame: %+v vs %+v", fr, again)
		}
	})
}

func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return cmp.Equal(x, y)
}

var benchFrame = []byte(`{"type":"event","event":"node.invoke.request","payload":{"id":"inv-1","nodeId":"` +
	strings.Repeat("a", 64) + `","command":"vps.metrics","paramsJSON":"{}","timeoutMs":30000,"idempotencyKey":"k-1",` +
	`"clawops":{"v":1,"expiresAtMs":1737264000000,"signature":"` + strings.Repeat("s", 86) + `"}}}`)

func BenchmarkDecodeFrame(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchFrame)))
	for b.Loop() {
		f, err := DecodeFrame(benchFrame)
		if err != nil {
			b.Fatal(err)
		}
		var r InvokeRequest
		if err := UnmarshalStrict(f.Payload, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeFrame(b *testing.B) {
	r := InvokeRequest{ID: "inv-1", NodeID: strings.Repeat("a", 64), Command: "vps.metrics", ParamsJSON: "{}",
		TimeoutMs: 30000, IdempotencyKey: "k-1", ClawOps: &CommandAuth{V: 1, ExpiresAtMs: 1, Signature: "s"}}
	b.ReportAllocs()
	for b.Loop() {
		f, err := NewEvent(EventInvokeRequest, r)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Encode(f); err != nil {
			b.Fatal(err)
		}
	}
}

func TestFastEncoders(t *testing.T) {
	ev := EncodeEvent(EventInvokeRequest, []byte(`{"id":"a\"b"}`))
	f, err := DecodeFrame(ev)
	if err != nil || f.Type != TypeEvent || f.Event != EventInvokeRequest || string(f.Payload) != `{"id":"a\"b"}` {
		t.Errorf("EncodeEvent = %s → %+v, %v", ev, f, err)
	}
	res := EncodeResult(`r"1`, []byte(`{"ok":true}`))
	f, err = DecodeFrame(res)
	if err != nil || f.Type != TypeRes || f.ID != `r"1` || !*f.OK || string(f.Payload) != `{"ok":true}` {
		t.Errorf("EncodeResult = %s → %+v, %v", res, f, err)
	}
}
