package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	"github.com/baicommit/baicommit/api"
)

// APIError is a non-2xx answer of the agent. The agent writes Message for
// users (what went wrong and what to do), so Error returns it unchanged.
type APIError struct {
	// Status is the HTTP status code, e.g. 403, 404 or 409.
	Status int
	// Message is the agent's explanation, meant to be shown as is.
	Message string
	// Task is the id of the freeze already running for the same container,
	// set on 409 Conflict answers.
	Task string
}

// Error returns the agent's message.
func (e *APIError) Error() string { return e.Message }

// decodeAPIError turns a non-2xx response into an *APIError. Bodies that are
// not an api.Error (a proxy's HTML page, a panic trace) still give a message
// that names the status, so the user sees something useful.
func decodeAPIError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &APIError{Status: resp.StatusCode}
	var wire api.Error
	if json.Unmarshal(body, &wire) == nil && wire.Message != "" {
		e.Message, e.Task = wire.Message, wire.Task
		return e
	}
	e.Message = "the baicommit agent answered " + resp.Status
	if line := firstLine(string(body)); line != "" {
		e.Message += ": " + line
	}
	e.Task = wire.Task
	return e
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	const max = 200
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// UnreachableError means the client could not connect to the agent at all
// (missing socket, nothing listening, no permission). Its message says what
// to check; Unwrap gives the dial error, so errors.Is(err, syscall.ENOENT)
// and friends work.
type UnreachableError struct {
	// Server is "agent" or "manager".
	Server string
	// Addr is the address that was dialled.
	Addr string
	// Hint says what the user should check.
	Hint string
	// Err is the underlying dial error.
	Err error
}

// Error says the agent cannot be reached, what to check, and why.
func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the baicommit %s at %s: %s (%v)", or(e.Server, "agent"), e.Addr, e.Hint, e.Err)
}

// Unwrap returns the dial error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// transportError explains an error of http.Client.Do, which failed before
// any answer arrived.
func (c *Client) transportError(ctx context.Context, err error) error {
	// A cancelled or expired context is the caller's doing, not the agent's:
	// report it plainly so callers can test for it with errors.Is.
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("talking to the baicommit %s at %s: %w", c.server, c.addr, ctxErr)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return &UnreachableError{Server: c.server, Addr: c.addr, Hint: c.dialHint(opErr.Err), Err: opErr.Err}
	}
	// Drop url.Error's `Get "http://baicommit-agent/v1/…":` prefix: the
	// made-up host of unix-socket requests would only confuse.
	var uErr *url.Error
	if errors.As(err, &uErr) {
		err = uErr.Err
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("the baicommit %s at %s closed the connection without answering; it may have crashed or restarted (see journalctl -u baicommit-%s): %w", c.server, c.addr, c.server, err)
	}
	return fmt.Errorf("talking to the baicommit %s at %s: %w", c.server, c.addr, err)
}

// dialHint picks the advice that fits a dial error.
func (c *Client) dialHint(err error) string {
	switch {
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return "you are not allowed to use its socket; ask your administrator"
	case c.unix:
		// Missing socket or nothing listening: with socket activation the
		// socket exists as long as the unit is enabled and started.
		return "is baicommit-agent.socket enabled on this node?"
	case c.server == "manager":
		return "is baicommit-manager running, and is the --manager URL (or BAICOMMIT_MANAGER) right?"
	default:
		return "is the agent running, and is the address right?"
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
