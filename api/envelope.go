package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/gatewayforge/clawops"
)

// MaxBodyBytes is the largest request body accepted.
const MaxBodyBytes = 1 << 20

// Reason codes of the HTTP layer itself.
const (
	ReasonNotFound         clawops.ReasonCode = "NOT_FOUND"
	ReasonMethodNotAllowed clawops.ReasonCode = "METHOD_NOT_ALLOWED"
	ReasonUnsupportedMedia clawops.ReasonCode = "UNSUPPORTED_MEDIA_TYPE"
	ReasonBodyTooLarge     clawops.ReasonCode = "BODY_TOO_LARGE"
)

// envelope is the shape of every JSON response.
type envelope struct {
	OK    bool       `json:"ok"`
	Data  any        `json:"data,omitempty"`
	Error *errorBody `json:"error,omitempty"`
}

type errorBody struct {
	Code    clawops.ReasonCode `json:"code"`
	Message string             `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v envelope) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v) // the client may have gone; nothing useful to do
}

func writeData(w http.ResponseWriter, status int, data any) {
	if data == nil {
		data = json.RawMessage("null")
	}
	writeJSON(w, status, envelope{OK: true, Data: data})
}

func writeError(w http.ResponseWriter, status int, code clawops.ReasonCode, msg string) {
	writeJSON(w, status, envelope{Error: &errorBody{Code: code, Message: msg}})
}

// statusOf maps an error to an HTTP status: a not-found kind is always 404; otherwise by
// reason first for the states that have a better-fitting status than their kind, then by
// kind.
func statusOf(err error) int {
	if clawops.KindOf(err) == clawops.KindNotFound {
		return http.StatusNotFound // whatever the reason (an unknown trace is BAD_ARGUMENTS)
	}
	switch clawops.ReasonOf(err) {
	case clawops.ReasonAlreadyDecided, clawops.ReasonApprovalExpired:
		return http.StatusConflict
	case clawops.ReasonApprovalNotFound:
		return http.StatusNotFound
	case clawops.ReasonMalformedRequest, clawops.ReasonBadArguments:
		return http.StatusBadRequest
	case clawops.ReasonUnauthenticated:
		return http.StatusUnauthorized
	case ReasonBodyTooLarge:
		return http.StatusRequestEntityTooLarge
	case ReasonUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case clawops.ReasonNotImplemented:
		return http.StatusNotImplemented
	}
	switch clawops.KindOf(err) {
	case clawops.KindInvalid:
		return http.StatusBadRequest
	case clawops.KindUnauthorized:
		return http.StatusUnauthorized
	case clawops.KindDenied:
		return http.StatusForbidden
	case clawops.KindNotFound:
		return http.StatusNotFound
	case clawops.KindExpired:
		return http.StatusConflict
	case clawops.KindNeedsApproval:
		return http.StatusAccepted
	case clawops.KindTransient:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// messageOf explains err to the client. Internal errors (no reason code, or INTERNAL) are
// explained only in the log: their text may name files, hosts or database errors.
func messageOf(err error, outcomeMessage string) (clawops.ReasonCode, string) {
	code := clawops.ReasonOf(err)
	if code == "" || code == clawops.ReasonInternal {
		return clawops.ReasonInternal, "internal error"
	}
	if outcomeMessage != "" {
		return code, outcomeMessage
	}
	var e *clawops.Error
	for errors.As(err, &e) {
		if e.Err == nil {
			return code, strings.ToLower(strings.ReplaceAll(string(code), "_", " "))
		}
		err = e.Err
	}
	return code, err.Error()
}

// decodeBody decodes a JSON request body into v strictly: at most MaxBodyBytes, no unknown
// fields, exactly one value. The Content-Type check is lenient: absent, JSON or text/plain
// (what a browser's fetch sends by default) are accepted; forms and other media are not.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	return decode(w, r, v, false)
}

// decodeOptionalBody is decodeBody for routes whose body may be left out: an empty body
// leaves v as it is; anything else must decode as strictly.
func decodeOptionalBody(w http.ResponseWriter, r *http.Request, v any) error {
	return decode(w, r, v, true)
}

func decode(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "text/plain") {
			return clawops.E("decode body", clawops.KindInvalid, ReasonUnsupportedMedia,
				fmt.Sprintf("Content-Type %q is not JSON", ct))
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return clawops.E("decode body", clawops.KindInvalid, ReasonBodyTooLarge,
				fmt.Sprintf("body is larger than %d bytes", MaxBodyBytes))
		}
		return clawops.E("decode body", clawops.KindInvalid, clawops.ReasonMalformedRequest, "could not read the body")
	}
	if optional && len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return clawops.E("decode body", clawops.KindInvalid, clawops.ReasonMalformedRequest, "invalid JSON: "+err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return clawops.E("decode body", clawops.KindInvalid, clawops.ReasonMalformedRequest, "invalid JSON: data after the object")
	}
	return nil
}

func badRequest(msg string) error {
	return clawops.E("request", clawops.KindInvalid, clawops.ReasonMalformedRequest, msg)
}
