package manager

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
	KindUnauthorized      // no, bad, expired or replayed credential
	KindForbidden         // not the caller's
	KindNotFound          // no such node, job or task
	KindBadGateway        // an agent cannot be reached
	KindUnavailable       // MUNGE or Slurm cannot answer
	KindTimeout           // an agent did not answer in time
)

// Error is an error whose message is written for the user.
type Error struct {
	Kind Kind
	Msg  string
	Err  error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

func userErr(k Kind, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: k, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// Status maps an error to its HTTP status code; this is the only place
// that does. Answers an agent gives keep the agent's own status.
func Status(err error) int {
	var e *Error
	if !errors.As(err, &e) {
		return http.StatusInternalServerError
	}
	switch e.Kind {
	case KindInvalid:
		return http.StatusBadRequest
	case KindUnauthorized:
		return http.StatusUnauthorized
	case KindForbidden:
		return http.StatusForbidden
	case KindNotFound:
		return http.StatusNotFound
	case KindBadGateway:
		return http.StatusBadGateway
	case KindUnavailable:
		return http.StatusServiceUnavailable
	case KindTimeout:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}
