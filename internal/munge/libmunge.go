//go:build cgo && libmunge

package munge

/*
#cgo LDFLAGS: -lmunge
#include <stdlib.h>
#include <time.h>
#include <munge.h>

// munge_ctx_set and munge_ctx_get are variadic, which cgo cannot call.
static munge_err_t bc_set_int(munge_ctx_t ctx, int opt, int v) { return munge_ctx_set(ctx, opt, v); }
static munge_err_t bc_set_str(munge_ctx_t ctx, int opt, char *v) { return munge_ctx_set(ctx, opt, v); }
static munge_err_t bc_get_int(munge_ctx_t ctx, int opt, int *v) { return munge_ctx_get(ctx, opt, v); }
static munge_err_t bc_get_time(munge_ctx_t ctx, int opt, long long *v) {
	time_t t = 0;
	munge_err_t e = munge_ctx_get(ctx, opt, &t);
	*v = (long long)t;
	return e;
}
*/
import "C"

import (
	"context"
	"time"
	"unsafe"
)

// haveLib says libmunge is linked in: the Codec then talks to munged over
// its socket instead of running munge and unmunge, which saves two process
// starts per request on the manager and one on the agent.
const haveLib = true

func newCtx(socket string) (C.munge_ctx_t, error) {
	ctx := C.munge_ctx_create()
	if ctx == nil {
		return nil, &Error{Status: 0, Msg: "munge_ctx_create failed"}
	}
	if socket != "" {
		cs := C.CString(socket)
		defer C.free(unsafe.Pointer(cs))
		if e := C.bc_set_str(ctx, C.MUNGE_OPT_SOCKET, cs); e != C.EMUNGE_SUCCESS {
			C.munge_ctx_destroy(ctx)
			return nil, &Error{Status: Status(e), Msg: C.GoString(C.munge_strerror(e))}
		}
	}
	return ctx, nil
}

func ctxError(ctx C.munge_ctx_t, e C.munge_err_t) error {
	return &Error{Status: Status(e), Msg: C.GoString(C.munge_ctx_strerror(ctx))}
}

func (c Codec) encodeLib(_ context.Context, payload []byte, o EncodeOptions) (string, error) {
	ctx, err := newCtx(c.Socket)
	if err != nil {
		return "", err
	}
	defer C.munge_ctx_destroy(ctx)
	if o.TTL > 0 {
		if e := C.bc_set_int(ctx, C.MUNGE_OPT_TTL, C.int(o.TTL/time.Second)); e != C.EMUNGE_SUCCESS {
			return "", ctxError(ctx, e)
		}
	}
	if o.RestrictUID != nil {
		if e := C.bc_set_int(ctx, C.MUNGE_OPT_UID_RESTRICTION, C.int(*o.RestrictUID)); e != C.EMUNGE_SUCCESS {
			return "", ctxError(ctx, e)
		}
	}
	var buf unsafe.Pointer
	if len(payload) > 0 {
		buf = C.CBytes(payload)
		defer C.free(buf)
	}
	var cred *C.char
	if e := C.munge_encode(&cred, ctx, buf, C.int(len(payload))); e != C.EMUNGE_SUCCESS {
		return "", ctxError(ctx, e)
	}
	defer C.free(unsafe.Pointer(cred))
	return C.GoString(cred), nil
}

func (c Codec) decodeLib(_ context.Context, cred string) (*Credential, error) {
	ctx, err := newCtx(c.Socket)
	if err != nil {
		return nil, err
	}
	defer C.munge_ctx_destroy(ctx)
	cs := C.CString(cred)
	defer C.free(unsafe.Pointer(cs))
	var (
		buf unsafe.Pointer
		n   C.int
		uid C.uid_t
		gid C.gid_t
	)
	e := C.munge_decode(cs, ctx, &buf, &n, &uid, &gid)
	if buf != nil {
		defer C.free(buf)
	}
	if e != C.EMUNGE_SUCCESS {
		return nil, ctxError(ctx, e)
	}
	var ttl C.int
	var enc C.longlong
	C.bc_get_int(ctx, C.MUNGE_OPT_TTL, &ttl)
	C.bc_get_time(ctx, C.MUNGE_OPT_ENCODE_TIME, &enc)
	return &Credential{
		UID:     int(uid),
		GID:     int(gid),
		Encoded: time.Unix(int64(enc), 0),
		TTL:     time.Duration(ttl) * time.Second,
		Payload: C.GoBytes(buf, n),
	}, nil
}
