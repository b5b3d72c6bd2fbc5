package config

import (
	"errors"
	"fmt"
	"strconv"
)

// Error is one problem with the configuration. Load and Validate return every problem they
// find, joined with errors.Join; each one is an *Error, so callers can use errors.As.
type Error struct {
	// Source is where the bad value came from: the config file's name, an environment
	// variable's name, or "" for a problem found by Validate on a value from the defaults.
	Source string
	// Line is the line in Source, or 0 when Source is not a file.
	Line int
	// Key is the dotted key path, e.g. nodes.tick_interval or auth.tokens[0].role.
	Key string
	// Msg says what is wrong and what to do; it names the key.
	Msg string
}

func (e *Error) Error() string {
	switch {
	case e.Source != "" && e.Line > 0:
		return e.Source + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
	case e.Source != "":
		return e.Source + ": " + e.Msg
	}
	return e.Msg
}

// keyError builds a problem about key whose message starts with the key.
func keyError(key, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if key != "" {
		msg = key + ": " + msg
	}
	return &Error{Key: key, Msg: msg}
}

// Problems returns the *Error values inside err (as joined by Load or Validate), so a
// caller can list them one per line or check a key.
func Problems(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var e *Error
		if errors.As(err, &e) {
			out = append(out, e)
		}
	}
	walk(err)
	return out
}
