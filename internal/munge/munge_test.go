package munge

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestParseDecoded(t *testing.T) {
	const meta = "STATUS:          0\nENCODE_HOST:     127.0.0.1\nENCODE_TIME:     1795889097\nDECODE_TIME:     1795889099\nTTL:             60\nCIPHER:          4\nMAC:             5\nZIP:             0\nUID:             1002\nGID:             1003\nLENGTH:          %d\n\n"
	for _, tc := range []struct {
		name, out string
		want      *Credential
		err       string
	}{
		{name: "payload", out: strings.Replace(meta, "%d", "5", 1) + "hello",
			want: &Credential{UID: 1002, GID: 1003, Encoded: time.Unix(1795889097, 0), TTL: time.Minute, Payload: []byte("hello")}},
		{name: "payload with blank lines", out: strings.Replace(meta, "%d", "6", 1) + "a\n\nb\n\n",
			want: &Credential{UID: 1002, GID: 1003, Encoded: time.Unix(1795889097, 0), TTL: time.Minute, Payload: []byte("a\n\nb\n\n")}},
		{name: "empty payload", out: strings.Replace(meta, "%d", "0", 1),
			want: &Credential{UID: 1002, GID: 1003, Encoded: time.Unix(1795889097, 0), TTL: time.Minute, Payload: []byte{}}},
		{name: "expired", out: strings.Replace(strings.Replace(meta, "STATUS:          0", "STATUS:          15", 1), "%d", "0", 1),
			err: "expired credential"},
		{name: "short payload", out: strings.Replace(meta, "%d", "9", 1) + "abc", err: "shorter than its LENGTH"},
		{name: "garbage", out: "what\n", err: "unexpected output"},
		{name: "bad uid", out: strings.Replace(strings.Replace(meta, "1002", "x", 1), "%d", "0", 1), err: "bad UID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDecoded([]byte(tc.out))
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			assert.NilError(t, err)
			assert.DeepEqual(t, got, tc.want)
		})
	}
}

func TestBindingRoundTrip(t *testing.T) {
	b := BindingFor("POST", "/v1/freezes?x=1", []byte(`{"container":"box"}`), "cn01")
	got, err := parseBinding(b.marshal())
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got, b))
	_, err = parseBinding([]byte("hello"))
	assert.ErrorContains(t, err, "not made for a baicommit request")
	_, err = parseBinding([]byte("baicommit-request/1\nGET\n/\nabc\n"))
	assert.ErrorContains(t, err, "upgrade the baicommit CLI")
	assert.Check(t, BindingFor("GET", "/a", nil, "") != BindingFor("GET", "/a", []byte("x"), ""), "the body must count")
	assert.Check(t, BindingFor("GET", "/a", nil, "cn01") != BindingFor("GET", "/a", nil, "cn02"), "the audience must count")
}

func TestErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		st          Status
		want        string
		unavailable bool
	}{
		{StatusReplayed, "replayed credential", false},
		{StatusExpired, "expired credential", false},
		{StatusInvalid, "invalid credential", false},
		{StatusSocket, "munged cannot be reached", true},
		{0, "MUNGE is not available", true},
		{99, "MUNGE error 99", false},
	} {
		err := error(&Error{Status: tc.st})
		assert.Check(t, is.Contains(err.Error(), tc.want))
		assert.Check(t, is.Equal(IsUnavailable(err), tc.unavailable), "status %d", tc.st)
	}
	assert.Check(t, !IsUnavailable(errors.New("other")))
}

// fakeCodec is a Codec whose munge and unmunge are shell scripts standing
// in for munged: munge prints the payload as the "credential", unmunge
// decodes it for uid 1002 or fails with the status in $UNMUNGE_STATUS.
func fakeCodec(t *testing.T) Codec {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		assert.NilError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755))
		return p
	}
	return Codec{
		Munge: write("munge", `printf 'MUNGE:%s:\n' "$(base64 -w0)"`),
		Unmunge: write("unmunge", `c=$(cat); c=${c#MUNGE:}; c=${c%:}
if [ -n "$UNMUNGE_STATUS" ]; then echo "unmunge: Error: Replayed credential" >&2; exit "$UNMUNGE_STATUS"; fi
p=$(printf %s "$c" | base64 -d; echo x); p=${p%x}
printf 'STATUS: 0\nENCODE_TIME: 1\nTTL: 60\nUID: 1002\nGID: 1002\nLENGTH: %d\n\n%s' "${#p}" "$p"`),
	}
}

func TestSignVerify(t *testing.T) {
	c := fakeCodec(t)
	ctx := context.Background()
	body := []byte(`{"container":"box"}`)
	req := httptest.NewRequest(http.MethodPost, "/v1/freezes", strings.NewReader(string(body)))
	assert.NilError(t, c.Sign(ctx, req, body, "cn01", EncodeOptions{TTL: time.Minute}))

	// Made for node cn01: no other audience takes it.
	elsewhere := httptest.NewRequest(http.MethodPost, "/v1/freezes", strings.NewReader(string(body)))
	elsewhere.Header = req.Header
	_, _, err := c.Verify(ctx, elsewhere, "cn02", 1<<10)
	assert.Check(t, errors.Is(err, ErrMismatch), "%v", err)
	assert.ErrorContains(t, err, `made for "cn01", this is "cn02"`)

	cred, b, err := c.Verify(ctx, req, "cn01", 1<<10)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(cred.UID, 1002))
	assert.Check(t, is.Equal(b.Audience, "cn01"))

	// The same credential on another body, or another target, is refused.
	other := httptest.NewRequest(http.MethodPost, "/v1/freezes", strings.NewReader(`{"container":"other"}`))
	other.Header = req.Header
	_, _, err = c.Verify(ctx, other, "cn01", 1<<10)
	assert.Check(t, errors.Is(err, ErrMismatch), "%v", err)
	moved := httptest.NewRequest(http.MethodPost, "/v1/freezes?user=bob", strings.NewReader(string(body)))
	moved.Header = req.Header
	_, _, err = c.Verify(ctx, moved, "cn01", 1<<10)
	assert.Check(t, errors.Is(err, ErrMismatch), "%v", err)

	_, _, err = c.Verify(ctx, httptest.NewRequest(http.MethodGet, "/", nil), "cn01", 1<<10)
	assert.Check(t, errors.Is(err, ErrNoCredential))

	big := httptest.NewRequest(http.MethodPost, "/v1/freezes", strings.NewReader(strings.Repeat("x", 2000)))
	big.Header = req.Header
	_, _, err = c.Verify(ctx, big, "cn01", 1<<10)
	assert.ErrorContains(t, err, "larger than")

	t.Setenv("UNMUNGE_STATUS", "17")
	body0 := &countingReader{r: strings.NewReader(string(body))}
	again := httptest.NewRequest(http.MethodPost, "/v1/freezes", body0)
	again.Header = req.Header
	_, _, err = c.Verify(ctx, again, "cn01", 1<<10)
	var me *Error
	assert.Assert(t, errors.As(err, &me), "%v", err)
	assert.Check(t, is.Equal(me.Status, StatusReplayed))
	assert.Check(t, is.Equal(body0.n, 0), "the body was read before the credential was checked")
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestMissingPrograms(t *testing.T) {
	c := Codec{Munge: "/nonexistent/munge", Unmunge: "/nonexistent/unmunge"}
	_, err := c.Encode(context.Background(), nil, EncodeOptions{})
	assert.Check(t, IsUnavailable(err), "%v", err)
	_, err = c.Decode(context.Background(), "MUNGE:abc:")
	assert.Check(t, IsUnavailable(err), "%v", err)
	_, err = c.Decode(context.Background(), "not a credential")
	assert.Check(t, !IsUnavailable(err))
	assert.ErrorContains(t, err, "not a MUNGE credential")
}
