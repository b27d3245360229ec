package agent

import (
	"errors"
	"fmt"
	"net/http"
)

// Kind classifies errors that a caller can act on.
type Kind int

// Kinds of caller-facing errors.
const (
	KindInternal     Kind = iota
	KindInvalid           // bad input
	KindForbidden         // not the caller's
	KindNotFound          // no such container or task
	KindConflict          // a freeze of it is already running
	KindUnavailable       // the owner's Podman cannot be reached
	KindUnauthorized      // no identity
)

// Error is an error whose message is written for the user.
type Error struct {
	Kind Kind
	Msg  string
	// Task is the running task's id for KindConflict.
	Task string
	Err  error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

func userErr(k Kind, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: k, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// Status maps an error to its HTTP status code; this is the only place
// that does.
func Status(err error) int {
	var e *Error
	if !errors.As(err, &e) {
		return http.StatusInternalServerError
	}
	switch e.Kind {
	case KindInvalid:
		return http.StatusBadRequest
	case KindForbidden:
		return http.StatusForbidden
	case KindNotFound:
		return http.StatusNotFound
	case KindConflict:
		return http.StatusConflict
	case KindUnavailable:
		return http.StatusServiceUnavailable
	case KindUnauthorized:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}
