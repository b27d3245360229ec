package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/docker/distribution/registry/api/errcode"
	cretry "go.podman.io/common/pkg/retry"
	"go.podman.io/image/v5/docker"
)

// AuthError is a push the registry refused for want of (valid)
// credentials. Its message says what to do.
type AuthError struct {
	Ref, Registry string
	Err           error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("pushing to %s: authentication required/denied by the registry %s (%v): check --creds USER:PASSWORD or run `podman login %s`",
		e.Ref, e.Registry, e.Err, e.Registry)
}

func (e *AuthError) Unwrap() error { return e.Err }

// IsAuth reports whether err is a refusal of the credentials.
func IsAuth(err error) bool {
	var ae *AuthError
	return errors.As(err, &ae) || isAuth(err)
}

// isAuth recognizes the ways containers/image reports 401 and 403.
func isAuth(err error) bool {
	var unauth docker.ErrUnauthorizedForCredentials
	if errors.As(err, &unauth) {
		return true
	}
	var status docker.UnexpectedHTTPStatusError
	if errors.As(err, &status) && (status.StatusCode == http.StatusUnauthorized || status.StatusCode == http.StatusForbidden) {
		return true
	}
	var ec errcode.Error
	if errors.As(err, &ec) && (ec.Code == errcode.ErrorCodeUnauthorized || ec.Code == errcode.ErrorCodeDenied) {
		return true
	}
	var ecs errcode.Errors
	if errors.As(err, &ecs) {
		for _, e := range ecs {
			if isAuth(e) {
				return true
			}
		}
	}
	// Some paths flatten the error to text.
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "authentication required") || strings.Contains(msg, "unauthorized") ||
		strings.Contains(msg, "requested access to the resource is denied")
}

// explain wraps err with what the user can do about it.
func explain(ref, registry string, err error) error {
	if err == nil {
		return nil
	}
	if isAuth(err) {
		return &AuthError{Ref: ref, Registry: registry, Err: err}
	}
	if strings.Contains(err.Error(), "http: server gave HTTP response to HTTPS client") {
		return fmt.Errorf("pushing to %s: the registry %s speaks plain HTTP; push with --tls-verify=false if that is intended: %w", ref, registry, err)
	}
	return fmt.Errorf("pushing to %s: %w", ref, err)
}

// retryable reports whether another attempt may succeed: network trouble
// and registry 5xx, never refused credentials or a cancelled context.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || isAuth(err) {
		return false
	}
	return cretry.IsErrorRetryable(err)
}

// retry runs op until it succeeds, fails for good, or has been retried
// n times, waiting delay, then twice as long, and so on, in between.
func retry(ctx context.Context, n int, delay time.Duration, op func() error) error {
	err := op()
	for i := 0; i < n && retryable(err); i++ {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay *= 2
		err = op()
	}
	return err
}

// redactedError hides a secret that might have made its way into an
// error's text (a registry echoing a request, a URL with a password).
type redactedError struct {
	err    error
	secret string
}

func (e *redactedError) Error() string {
	return strings.ReplaceAll(e.err.Error(), e.secret, "***")
}

func (e *redactedError) Unwrap() error { return e.err }

// Redact returns err with secret masked out of its text. Every push error
// goes through it before it is reported, so a password a registry echoes
// never reaches a log, a task or a terminal.
func Redact(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &redactedError{err: err, secret: secret}
}
