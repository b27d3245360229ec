package httperr

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{New(Invalid, "bad"), http.StatusBadRequest},
		{New(Unauthorized, "who"), http.StatusUnauthorized},
		{New(Forbidden, "not yours"), http.StatusForbidden},
		{New(NotFound, "none"), http.StatusNotFound},
		{New(Conflict, "busy"), http.StatusConflict},
		{New(BadGateway, "down"), http.StatusBadGateway},
		{New(Unavailable, "podman"), http.StatusServiceUnavailable},
		{New(Timeout, "slow"), http.StatusGatewayTimeout},
		{New(Internal, "oops"), http.StatusInternalServerError},
		{fmt.Errorf("wrapped: %w", New(Forbidden, "x")), http.StatusForbidden},
		{errors.New("plain"), http.StatusInternalServerError},
	} {
		assert.Check(t, is.Equal(Status(tc.err), tc.want), "%v", tc.err)
	}
}

func TestNewKeepsTheCause(t *testing.T) {
	err := New(NotFound, "no archive: %w", fs.ErrNotExist)
	assert.Check(t, is.Equal(err.Error(), "no archive: file does not exist"))
	assert.Check(t, errors.Is(err, fs.ErrNotExist))
}
