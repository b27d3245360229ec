package identity

import (
	"context"
	"errors"
	"net"
	"net/http"

	"golang.org/x/sys/unix"

	"github.com/baicommit/baicommit/internal/httperr"
	"github.com/baicommit/baicommit/internal/munge"
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
// exactly this request (method, target, body) and is good once, and
// returns what it proves: the uid that made it, and the uid that uid acts
// for (Binding.As, "" when acting for itself). It reads at most maxBody
// bytes of r's body and puts them back for the handler.
//
// Its errors are *httperr.Error: Unavailable when munged cannot be asked,
// Unauthorized for a missing (ErrNoCredential), forged, expired, replayed
// or misbound credential.
func FromMUNGE(ctx context.Context, codec munge.Codec, r *http.Request, maxBody int64) (*munge.Credential, munge.Binding, error) {
	cred, b, err := codec.Verify(ctx, r, maxBody)
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
