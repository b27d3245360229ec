// Package httperr holds the errors baicommit's servers (agent and manager)
// write for users, and the one mapping of those errors to HTTP status codes.
package httperr

import (
	"errors"
	"fmt"
	"net/http"
)

// Kind classifies errors that a caller can act on.
type Kind int

// Kinds of caller-facing errors, by the status they answer with.
const (
	Internal     Kind = iota // 500
	Invalid                  // 400: bad input
	Unauthorized             // 401: no identity, or a bad credential
	Forbidden                // 403: not the caller's
	NotFound                 // 404: no such container, task, node or job
	Conflict                 // 409: a freeze of it is already running
	BadGateway               // 502: an agent cannot be reached
	Unavailable              // 503: Podman, MUNGE or Slurm cannot answer
	Timeout                  // 504: an agent did not answer in time
	TooMany                  // 429: the caller has too much waiting already
)

// Error is an error whose message is written for the user.
type Error struct {
	Kind Kind
	Msg  string
	// Task is the running task's id for Conflict.
	Task string
	Err  error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// New returns an Error of kind k whose message is the formatted text; a
// %w verb in format is kept as the cause.
func New(k Kind, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: k, Msg: err.Error(), Err: errors.Unwrap(err)}
}

var statuses = map[Kind]int{
	Invalid:      http.StatusBadRequest,
	Unauthorized: http.StatusUnauthorized,
	Forbidden:    http.StatusForbidden,
	NotFound:     http.StatusNotFound,
	Conflict:     http.StatusConflict,
	BadGateway:   http.StatusBadGateway,
	Unavailable:  http.StatusServiceUnavailable,
	Timeout:      http.StatusGatewayTimeout,
	TooMany:      http.StatusTooManyRequests,
}

// Status maps an error to its HTTP status code; this is the only place
// that does. Errors that are not an *Error are internal (500).
func Status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		if s, ok := statuses[e.Kind]; ok {
			return s
		}
	}
	return http.StatusInternalServerError
}
