//go:build cgo && libmunge

package munge

import (
	"context"
	"errors"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// With libmunge linked in, the zero Codec talks to the real munged; the
// programs decode what the library encodes and the other way round.
func TestLibmungeAgainstMunged(t *testing.T) {
	ctx := context.Background()
	lib, prog := Codec{}, Codec{Munge: "/usr/bin/munge", Unmunge: "/usr/bin/unmunge"}
	cred, err := lib.Encode(ctx, []byte("payload\n\nwith blank lines"), EncodeOptions{TTL: 30 * time.Second})
	if IsUnavailable(err) {
		t.Fatalf("munged is not running (scripts/setup.sh cluster starts it): %v", err)
	}
	assert.NilError(t, err)
	got, err := prog.Decode(ctx, cred)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(got.Payload), "payload\n\nwith blank lines"))
	assert.Check(t, is.Equal(got.TTL, 30*time.Second))

	cred, err = prog.Encode(ctx, []byte("the other way"), EncodeOptions{})
	assert.NilError(t, err)
	got, err = lib.Decode(ctx, cred)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(got.Payload), "the other way"))
	assert.Check(t, time.Since(got.Encoded) < time.Minute)

	_, err = lib.Decode(ctx, cred)
	var me *Error
	assert.Assert(t, errors.As(err, &me), "%v", err)
	assert.Check(t, is.Equal(me.Status, StatusReplayed))
	assert.Check(t, is.Equal(err.Error(), "unmunge: replayed credential (each credential is good for one request)"))

	nobody := 65534
	cred, err = lib.Encode(ctx, nil, EncodeOptions{RestrictUID: &nobody})
	assert.NilError(t, err)
	_, err = lib.Decode(ctx, cred)
	assert.Assert(t, errors.As(err, &me), "%v", err)
	assert.Check(t, is.Equal(me.Status, StatusUnauthorized))

	cred, err = lib.Encode(ctx, nil, EncodeOptions{TTL: time.Second})
	assert.NilError(t, err)
	time.Sleep(2100 * time.Millisecond)
	_, err = lib.Decode(ctx, cred)
	assert.Assert(t, errors.As(err, &me), "%v", err)
	assert.Check(t, is.Equal(me.Status, StatusExpired))
}
