package manager

import "github.com/baicommit/baicommit/internal/httperr"

// Kind classifies errors that a caller can act on (see package httperr).
type Kind = httperr.Kind

// Kinds of caller-facing errors the manager answers with; answers an agent
// gives keep the agent's own status.
const (
	KindInternal     = httperr.Internal
	KindInvalid      = httperr.Invalid      // bad input
	KindUnauthorized = httperr.Unauthorized // no, bad, expired or replayed credential
	KindForbidden    = httperr.Forbidden    // not the caller's
	KindNotFound     = httperr.NotFound     // no such node, job or task
	KindBadGateway   = httperr.BadGateway   // an agent cannot be reached
	KindUnavailable  = httperr.Unavailable  // MUNGE or Slurm cannot answer
	KindTimeout      = httperr.Timeout      // an agent did not answer in time
)

// Error is an error whose message is written for the user.
type Error = httperr.Error

func userErr(k Kind, format string, args ...any) *Error { return httperr.New(k, format, args...) }

// Status maps an error to its HTTP status code (httperr.Status).
func Status(err error) int { return httperr.Status(err) }
