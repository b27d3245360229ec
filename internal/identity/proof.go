package identity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/baicommit/baicommit/internal/httperr"
	"github.com/baicommit/baicommit/internal/munge"
	"github.com/baicommit/baicommit/internal/reqauth"
)

// PeerCred returns the credentials of the process at the other end of a
// unix socket, as the kernel recorded them when it connected.
func PeerCred(conn *net.UnixConn) (*unix.Ucred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var serr error
	err = raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err == nil {
		err = serr
	}
	return cred, err
}

// ErrNoCredential means a request carried no MUNGE credential at all;
// FromMUNGE's error wraps it, so a daemon can say how to get one.
var ErrNoCredential = munge.ErrNoCredential

// FromMUNGE checks r's MUNGE credential, which must have been made for
// exactly this request (method, target, body) and for audience (this
// daemon: munge.AudienceManager, or an agent's node name) and is good
// once, and returns what it proves: the uid that made it. The credential
// is checked before r's body is read; then at most maxBody bytes of the
// body are read and put back for the handler.
//
// Its errors are *httperr.Error: Unavailable when munged cannot be asked,
// Unauthorized for a missing (ErrNoCredential), forged, expired, replayed
// or misbound credential.
func FromMUNGE(ctx context.Context, codec munge.Codec, r *http.Request, audience string, maxBody int64) (*munge.Credential, munge.Binding, error) {
	cred, b, err := codec.Verify(ctx, r, audience, maxBody)
	switch {
	case err == nil:
		return cred, b, nil
	case munge.IsUnavailable(err):
		return nil, b, &httperr.Error{Kind: httperr.Unavailable, Err: err, Msg: "cannot check the request's credential: " + err.Error()}
	case errors.Is(err, munge.ErrNoCredential):
		return nil, b, &httperr.Error{Kind: httperr.Unauthorized, Err: err, Msg: err.Error()}
	}
	return nil, b, &httperr.Error{Kind: httperr.Unauthorized, Err: err, Msg: "refused: " + err.Error()}
}

// ErrNoSignature means a request carried no manager session signature;
// FromSession's error wraps it.
var ErrNoSignature = reqauth.ErrNoSignature

// FromSession checks that r was signed by baicommit-manager with a session
// it opened with sessions (package reqauth), and returns the uid the
// manager acts for. The signature is checked from the headers alone,
// before any of r's body is read: nobody but the manager makes the server
// read a body. Then at most maxBody bytes of it are read, checked against
// the signed hash and put back for the handler.
//
// Its errors are *httperr.Error: Unauthorized, wrapping one of reqauth's
// errors (reqauth.ErrNoSession asks the manager for a new session:
// reqauth.Challenge), or Invalid for a body too large.
func FromSession(sessions *reqauth.Server, r *http.Request, maxBody int64) (int, error) {
	c, err := sessions.Verify(r)
	if err != nil {
		return -1, &httperr.Error{Kind: httperr.Unauthorized, Err: err, Msg: "refused: " + err.Error()}
	}
	var body []byte
	if r.Body != nil {
		body, err = io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			return -1, fmt.Errorf("reading the request body: %w", err)
		}
		if int64(len(body)) > maxBody {
			return -1, &httperr.Error{Kind: httperr.Invalid, Msg: fmt.Sprintf("request body larger than %d bytes", maxBody)}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if err := c.CheckBody(body); err != nil {
		return -1, &httperr.Error{Kind: httperr.Unauthorized, Err: err, Msg: "refused: " + err.Error()}
	}
	uid, err := strconv.Atoi(c.As)
	if err != nil {
		return -1, &httperr.Error{Kind: httperr.Unauthorized, Err: err, Msg: "the manager's signature names no user to act for"}
	}
	return uid, nil
}
