package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/distribution/registry/api/errcode"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/types"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestParseRef(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "reg.example:5000/alice/box:v1", want: "reg.example:5000/alice/box:v1"},
		{in: "docker://reg.example/alice/box", want: "reg.example/alice/box:latest"},
		{in: "alice/box:v1", want: "docker.io/alice/box:v1"},
		{in: "127.0.0.1:5001/a/b:c", want: "127.0.0.1:5001/a/b:c"},
		{in: "", err: "no destination"},
		{in: "Reg/Upper:v1", err: "not a valid image reference"},
		{in: "reg.example/a/b@sha256:" + fmt.Sprintf("%064d", 0), err: "has a digest"},
	} {
		got, err := ParseRef(tc.in)
		if tc.err != "" {
			assert.Check(t, is.ErrorContains(err, tc.err), tc.in)
			continue
		}
		assert.NilError(t, err, tc.in)
		assert.Check(t, is.Equal(got.String(), tc.want))
	}
}

func TestParseCreds(t *testing.T) {
	a, err := ParseCreds("alice:pa:ss")
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(*a, types.DockerAuthConfig{Username: "alice", Password: "pa:ss"}))
	for _, bad := range []string{"alice", "alice:", ":pw", ""} {
		_, err := ParseCreds(bad)
		assert.Check(t, is.ErrorContains(err, "USER:PASSWORD"), bad)
	}
	// The message never repeats what was given.
	_, err = ParseCreds("s3cret-no-colon")
	assert.Check(t, !strings.Contains(err.Error(), "s3cret"))
}

func TestIsAuth(t *testing.T) {
	netErr := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"401 for credentials", docker.ErrUnauthorizedForCredentials{Err: errors.New("nope")}, true},
		{"wrapped 401", fmt.Errorf("writing blob: %w", docker.ErrUnauthorizedForCredentials{Err: errors.New("x")}), true},
		{"errcode unauthorized", fmt.Errorf("x: %w", errcode.ErrorCodeUnauthorized.WithMessage("authentication required")), true},
		{"errcode denied", errcode.ErrorCodeDenied.WithMessage("requested access to the resource is denied"), true},
		{"errcode list", errcode.Errors{errcode.ErrorCodeDenied.WithMessage("denied")}, true},
		{"403 status", docker.UnexpectedHTTPStatusError{StatusCode: 403}, true},
		{"500 status", docker.UnexpectedHTTPStatusError{StatusCode: 500}, false},
		{"connection refused", netErr, false},
		{"other", errors.New("manifest invalid"), false},
	} {
		assert.Check(t, is.Equal(isAuth(tc.err), tc.want), tc.name)
	}
}

func TestExplain(t *testing.T) {
	err := explain("reg.example/a/b:v1", "reg.example", docker.ErrUnauthorizedForCredentials{Err: errors.New("denied")})
	assert.Check(t, IsAuth(err))
	assert.Check(t, is.ErrorContains(err, "authentication required/denied by the registry reg.example"))
	assert.Check(t, is.ErrorContains(err, "check --creds USER:PASSWORD or run `podman login reg.example`"))

	err = explain("reg.example/a/b:v1", "reg.example", errors.New(`Get "https://reg.example/v2/": http: server gave HTTP response to HTTPS client`))
	assert.Check(t, is.ErrorContains(err, "--tls-verify=false"))
	assert.Check(t, !IsAuth(err))

	inner := errors.New("disk full")
	err = explain("r/a:b", "r", inner)
	assert.Check(t, errors.Is(err, inner))
	assert.Check(t, is.ErrorContains(err, "pushing to r/a:b: disk full"))
	assert.Check(t, explain("r", "r", nil) == nil)
}

func TestRetry(t *testing.T) {
	transient := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	auth := docker.ErrUnauthorizedForCredentials{Err: errors.New("no")}
	for _, tc := range []struct {
		name     string
		errs     []error // what each attempt returns; nil ends
		n        int
		attempts int
		ok       bool
	}{
		{"first try", []error{nil}, 3, 1, true},
		{"transient then ok", []error{transient, transient, nil}, 3, 3, true},
		{"transient until out of retries", []error{transient, transient, transient, transient, transient}, 2, 3, false},
		{"auth is not retried", []error{auth, nil}, 3, 1, false},
		{"no retries", []error{transient, nil}, 0, 1, false},
		{"5xx retried", []error{docker.UnexpectedHTTPStatusError{StatusCode: 503}, nil}, 3, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attempts := 0
			err := retry(context.Background(), tc.n, time.Millisecond, func() error {
				e := tc.errs[min(attempts, len(tc.errs)-1)]
				attempts++
				return e
			})
			assert.Check(t, is.Equal(attempts, tc.attempts))
			assert.Check(t, is.Equal(err == nil, tc.ok))
		})
	}
	// A cancelled context stops the waiting.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	attempts := 0
	err := retry(ctx, 5, time.Hour, func() error { attempts++; return transient })
	assert.Check(t, err != nil)
	assert.Check(t, is.Equal(attempts, 1))
}

func TestRedact(t *testing.T) {
	base := errors.New(`Post "https://alice:hunter2@reg/v2/": failed`)
	err := Redact(base, "hunter2")
	assert.Check(t, is.Error(err, `Post "https://alice:***@reg/v2/": failed`))
	assert.Check(t, errors.Is(err, base))
	assert.Check(t, Redact(base, "") == base)
	assert.Check(t, Redact(base, "absent") == base)
	assert.Check(t, Redact(nil, "x") == nil)
}

func TestDefaultAuth(t *testing.T) {
	dest, err := ParseRef("reg.example:5000/alice/box:v1")
	assert.NilError(t, err)
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("DOCKER_CONFIG", "")
	writeAuth := func(path, host, user, pass string) {
		assert.NilError(t, os.MkdirAll(filepath.Dir(path), 0o700))
		auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
		assert.NilError(t, os.WriteFile(path, []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600))
	}

	// Nothing anywhere: anonymous, and containers/image is told so.
	sys := &types.SystemContext{}
	assert.NilError(t, defaultAuth(sys, dest))
	assert.Check(t, is.DeepEqual(sys.DockerAuthConfig, &types.DockerAuthConfig{}))

	// ~/.docker/config.json has them.
	writeAuth(filepath.Join(home, ".docker", "config.json"), "reg.example:5000", "alice", "fromdocker")
	sys = &types.SystemContext{}
	assert.NilError(t, defaultAuth(sys, dest))
	assert.Check(t, is.DeepEqual(sys.DockerAuthConfig, &types.DockerAuthConfig{Username: "alice", Password: "fromdocker"}))

	// ~/.config/containers/auth.json comes first; other registries' entries do not count.
	writeAuth(filepath.Join(home, ".config", "containers", "auth.json"), "other.example", "x", "y")
	sys = &types.SystemContext{}
	assert.NilError(t, defaultAuth(sys, dest))
	assert.Check(t, is.Equal(sys.DockerAuthConfig.Password, "fromdocker"))
	writeAuth(filepath.Join(home, ".config", "containers", "auth.json"), "reg.example:5000", "alice", "frompodman")
	sys = &types.SystemContext{}
	assert.NilError(t, defaultAuth(sys, dest))
	assert.Check(t, is.Equal(sys.DockerAuthConfig.Password, "frompodman"))

	// Explicit choices and XDG_RUNTIME_DIR are left to containers/image.
	for _, sys := range []*types.SystemContext{
		{AuthFilePath: "/some/file"},
		{DockerAuthConfig: &types.DockerAuthConfig{Username: "u", Password: "p"}},
	} {
		before := *sys
		assert.NilError(t, defaultAuth(sys, dest))
		assert.Check(t, is.DeepEqual(*sys, before))
	}
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	sys = &types.SystemContext{}
	assert.NilError(t, defaultAuth(sys, dest))
	assert.Check(t, sys.DockerAuthConfig == nil)
}

func TestPushRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	_, err := Push(ctx, Options{Archive: "/nonexistent.tar.gz", Ref: "Bad Ref"})
	assert.Check(t, is.ErrorContains(err, "not a valid image reference"))
	_, err = Push(ctx, Options{Archive: "/nonexistent.tar.gz", Ref: "reg/a:b", Creds: "nocolon"})
	assert.Check(t, is.ErrorContains(err, "USER:PASSWORD"))
	_, err = Push(ctx, Options{Archive: "/nonexistent.tar.gz", Ref: "reg/a:b", Creds: "u:p"})
	assert.Check(t, is.ErrorContains(err, "read archive /nonexistent.tar.gz"))
}
