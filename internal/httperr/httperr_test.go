package httperr

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
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

func TestFromStatusKeepsStatusAndMessage(t *testing.T) {
	for _, s := range []int{400, 401, 403, 404, 409, 502, 503, 504, 500, 418} {
		err := FromStatus(s, "as the agent said")
		want := s
		if s == 418 {
			want = http.StatusInternalServerError
		}
		assert.Check(t, is.Equal(Status(err), want))
		assert.Check(t, is.Equal(err.Error(), "as the agent said"))
	}
}

func TestDecodeAndWrite(t *testing.T) {
	var v struct{ Container string }
	err := DecodeJSON(strings.NewReader(`{"container":"box","extra":1}`), 1<<10, &v)
	assert.Check(t, is.Equal(Status(err), http.StatusBadRequest))
	assert.Check(t, is.ErrorContains(err, `unknown field "extra"`))

	rec := httptest.NewRecorder()
	Write(rec, &Error{Kind: Conflict, Msg: "busy", Task: "t1.n1"})
	assert.Check(t, is.Equal(rec.Code, http.StatusConflict))
	assert.Check(t, is.Equal(strings.TrimSpace(rec.Body.String()), `{"error":"busy","task":"t1.n1"}`))

	rec = httptest.NewRecorder()
	Write(rec, errors.New("disk on fire"))
	assert.Check(t, is.Equal(rec.Code, http.StatusInternalServerError))
	assert.Check(t, is.Contains(rec.Body.String(), "internal error: disk on fire"))
}
