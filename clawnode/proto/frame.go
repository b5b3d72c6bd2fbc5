package proto

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Frame is one protocol frame. Type says which fields apply:
//   - "req":   ID, Method, Params (and the stock gateway's optional Traceparent, ExpectedProfileID)
//   - "res":   ID, OK, Payload when OK, Error when not OK
//   - "event": Event, Payload, optional Seq (and the stock gateway's StateVersion, RecipientProfileID)
//
// DecodeFrame and Encode enforce that only those fields are present.
type Frame struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	OK      *bool           `json:"ok,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
	Error   *ErrorShape     `json:"error,omitempty"`
	Event   string          `json:"event,omitempty"`
	Seq     *uint64         `json:"seq,omitempty"`

	Traceparent        string          `json:"traceparent,omitempty"`
	ExpectedProfileID  string          `json:"expectedProfileId,omitempty"`
	StateVersion       json.RawMessage `json:"stateVersion,omitempty"`
	RecipientProfileID string          `json:"recipientProfileId,omitempty"`
}

// ErrorShape is the error object of a failed response.
type ErrorShape struct {
	Code         string          `json:"code"`
	Message      string          `json:"message"`
	Details      json.RawMessage `json:"details,omitempty"`
	Retryable    bool            `json:"retryable,omitempty"`
	RetryAfterMs int64           `json:"retryAfterMs,omitempty"`
}

// ErrorDetails is the details object ClawOps puts in an ErrorShape.
type ErrorDetails struct {
	Code   string `json:"code"`
	Reason string `json:"reason,omitempty"`
}

// Error implements error so a failed response can be returned as one.
func (e *ErrorShape) Error() string { return e.Code + ": " + e.Message }

// DetailCode returns details.code, or "" when details is absent or has none.
func (e *ErrorShape) DetailCode() string {
	if e == nil || len(e.Details) == 0 {
		return ""
	}
	var d struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(e.Details, &d) != nil {
		return ""
	}
	return d.Code
}

// ErrBadFrame is wrapped by every error DecodeFrame and Encode return for a malformed frame.
var ErrBadFrame = errors.New("bad frame")

// DecodeFrame parses one frame strictly: exact keys, no duplicates, no fields that do not
// belong to the frame's type, required fields present and non-empty.
func DecodeFrame(data []byte) (Frame, error) {
	var f Frame
	if err := UnmarshalStrict(data, &f); err != nil {
		return Frame{}, fmt.Errorf("%w: %w", ErrBadFrame, err)
	}
	normalizeNull(&f.Params)
	normalizeNull(&f.Payload)
	normalizeNull(&f.StateVersion)
	if err := f.Validate(); err != nil {
		return Frame{}, err
	}
	return f, nil
}

// Encode validates f and returns its JSON.
func Encode(f Frame) ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(f)
}

func normalizeNull(m *json.RawMessage) {
	if string(*m) == "null" {
		*m = nil
	}
}

// Validate checks that f is a well-formed frame of its type.
func (f *Frame) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadFrame, fmt.Sprintf(format, args...))
	}
	switch f.Type {
	case TypeReq:
		if err := checkName("id", f.ID); err != nil {
			return bad("%v", err)
		}
		if err := checkName("method", f.Method); err != nil {
			return bad("%v", err)
		}
		if f.OK != nil || f.Payload != nil || f.Error != nil || f.Event != "" || f.Seq != nil ||
			f.StateVersion != nil || f.RecipientProfileID != "" {
			return bad("req frame carries res or event fields")
		}
		if len(f.Traceparent) > 128 {
			return bad("traceparent longer than 128 characters")
		}
	case TypeRes:
		if err := checkName("id", f.ID); err != nil {
			return bad("%v", err)
		}
		if f.OK == nil {
			return bad("res frame without ok")
		}
		if f.Method != "" || f.Params != nil || f.Event != "" || f.Seq != nil || f.Traceparent != "" ||
			f.ExpectedProfileID != "" || f.StateVersion != nil || f.RecipientProfileID != "" {
			return bad("res frame carries req or event fields")
		}
		if *f.OK && f.Error != nil {
			return bad("res frame with ok=true carries an error")
		}
		if !*f.OK {
			if f.Error == nil {
				return bad("res frame with ok=false has no error")
			}
			if f.Error.Code == "" || f.Error.Message == "" {
				return bad("res error needs a code and a message")
			}
			if f.Error.RetryAfterMs < 0 {
				return bad("res error retryAfterMs is negative")
			}
		}
	case TypeEvent:
		if err := checkName("event", f.Event); err != nil {
			return bad("%v", err)
		}
		if f.ID != "" || f.Method != "" || f.Params != nil || f.OK != nil || f.Error != nil ||
			f.Traceparent != "" || f.ExpectedProfileID != "" {
			return bad("event frame carries req or res fields")
		}
	case "":
		return bad("missing type")
	default:
		return bad("unknown type %q", f.Type)
	}
	return nil
}

// checkName accepts a non-empty, printable identifier of at most MaxIDLen bytes.
func checkName(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", field)
	}
	if len(s) > MaxIDLen {
		return fmt.Errorf("%s longer than %d bytes", field, MaxIDLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", field)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s contains a control character", field)
		}
	}
	return nil
}

func marshalRaw(v any) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	if raw, ok := v.(json.RawMessage); ok {
		return raw, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return b, nil
}

// NewRequest builds a req frame; params is marshalled to JSON (nil means no params).
func NewRequest(id, method string, params any) (Frame, error) {
	raw, err := marshalRaw(params)
	if err != nil {
		return Frame{}, err
	}
	return Frame{Type: TypeReq, ID: id, Method: method, Params: raw}, nil
}

// NewEvent builds an event frame; payload is marshalled to JSON (nil means no payload).
func NewEvent(event string, payload any) (Frame, error) {
	raw, err := marshalRaw(payload)
	if err != nil {
		return Frame{}, err
	}
	return Frame{Type: TypeEvent, Event: event, Payload: raw}, nil
}

// NewResult builds a successful res frame answering the request id.
func NewResult(id string, payload any) (Frame, error) {
	raw, err := marshalRaw(payload)
	if err != nil {
		return Frame{}, err
	}
	ok := true
	return Frame{Type: TypeRes, ID: id, OK: &ok, Payload: raw}, nil
}

// NewErrorResult builds a failed res frame answering the request id. detail, when not
// empty, becomes error.details.code.
func NewErrorResult(id, code, message, detail string) Frame {
	ok := false
	e := &ErrorShape{Code: code, Message: message}
	if detail != "" {
		e.Details, _ = json.Marshal(ErrorDetails{Code: detail})
	}
	if code == CodeUnavailable {
		e.Retryable = true
	}
	return Frame{Type: TypeRes, ID: id, OK: &ok, Error: e}
}

// EncodeEvent is NewEvent and Encode in one step for a payload that is already JSON (the
// hot path of a fan-out): the payload is framed, not re-encoded. event must be a valid
// name and payload valid JSON; the caller guarantees both.
func EncodeEvent(event string, payload []byte) []byte {
	name, _ := json.Marshal(event)
	b := make([]byte, 0, len(payload)+len(name)+36)
	b = append(b, `{"type":"event","event":`...)
	b = append(b, name...)
	b = append(b, `,"payload":`...)
	b = append(b, payload...)
	return append(b, '}')
}

// EncodeResult frames an ok response to request id around payload (valid JSON).
func EncodeResult(id string, payload []byte) []byte {
	q, _ := json.Marshal(id)
	b := make([]byte, 0, len(payload)+len(q)+40)
	b = append(b, `{"type":"res","id":`...)
	b = append(b, q...)
	b = append(b, `,"ok":true,"payload":`...)
	b = append(b, payload...)
	return append(b, '}')
}
