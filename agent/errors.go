package agent

import "github.com/baicommit/baicommit/internal/httperr"

// Kind classifies errors that a caller can act on (see package httperr).
type Kind = httperr.Kind

// Kinds of caller-facing errors the agent answers with.
const (
	KindInternal     = httperr.Internal
	KindInvalid      = httperr.Invalid      // bad input
	KindForbidden    = httperr.Forbidden    // not the caller's
	KindNotFound     = httperr.NotFound     // no such container or task
	KindConflict     = httperr.Conflict     // a freeze of it is already running
	KindUnavailable  = httperr.Unavailable  // the owner's Podman cannot be reached
	KindUnauthorized = httperr.Unauthorized // no identity
)

// Error is an error whose message is written for the user.
type Error = httperr.Error

func userErr(k Kind, format string, args ...any) *Error { return httperr.New(k, format, args...) }

// Status maps an error to its HTTP status code (httperr.Status).
func Status(err error) int { return httperr.Status(err) }
