package agent

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/internal/munge"
	"github.com/baicommit/baicommit/internal/reqauth"
)

// maxRequestBody bounds what the agent reads of a request body; every
// request it accepts is a small JSON object.
const maxRequestBody = 64 << 10

// maxHelloBody bounds the body of a session's opening: a public key.
const maxHelloBody = 4 << 10

// managerAuth decides who a request on the TCP listener comes from. Only
// baicommit-manager may use that listener. It proves itself once with a
// MUNGE credential, bound to this node's name, that opens a session
// (package reqauth); every request it relays is then signed with that
// session's key, naming the uid it acts for.
type managerAuth struct {
	uid      int // the manager's uid; -1 when none is configured
	codec    munge.Codec
	sessions *reqauth.Server
}

func newManagerAuth(cfg Config, accounts identity.Accounts) (*managerAuth, error) {
	m := &managerAuth{uid: -1, codec: munge.Codec{Socket: cfg.MungeSocket},
		sessions: reqauth.NewServer(cfg.NodeName, reqauth.ServerOptions{})}
	if cfg.ManagerUser == "" {
		return m, nil
	}
	u, err := accounts.Lookup(cfg.ManagerUser)
	if err != nil {
		return nil, fmt.Errorf("manager_user %q: %w", cfg.ManagerUser, err)
	}
	m.uid = u.UID
	return m, nil
}

// notForYou is what anyone but the manager hears on the TCP listener.
const notForYou = "this port answers only baicommit-manager; use `baicommit --manager URL`, or the agent's unix socket on the node"

// noManager is notForYou on an agent without manager_user.
func noManager() error {
	return userErr(KindUnauthorized, "%s (this agent has no manager_user configured)", notForYou)
}

// refuse answers a request on the TCP listener that failed
// authentication, and closes the connection: the body it announced is
// never read, not even to keep the connection (net/http would read up to
// 256 KiB of it before answering).
func refuse(w http.ResponseWriter, err error) {
	w.Header().Set("Connection", "close")
	writeError(w, err)
}

// openManagerSession answers a manager's Hello (reqauth.Route): its MUNGE
// credential, made by manager_user for this node and this body, is checked
// before the body is read; the answer carries the new session.
func (a *Agent) openManagerSession(w http.ResponseWriter, r *http.Request) {
	m := a.manager
	if r.Method != http.MethodPost {
		refuse(w, userErr(KindInvalid, "%s takes POST", reqauth.Route))
		return
	}
	if m.uid < 0 {
		refuse(w, noManager())
		return
	}
	cred, _, err := identity.FromMUNGE(r.Context(), m.codec, r, a.cfg.NodeName, maxHelloBody)
	switch {
	case errors.Is(err, identity.ErrNoCredential):
		refuse(w, userErr(KindUnauthorized, "%s", notForYou))
		return
	case err != nil:
		a.log.Warn("refused a manager session", "remote", r.RemoteAddr, "err", err)
		refuse(w, err)
		return
	case cred.UID != m.uid:
		a.log.Warn("refused a manager session not opened by the manager", "credential_uid", cred.UID, "remote", r.RemoteAddr)
		refuse(w, userErr(KindUnauthorized, "%s (the credential is uid %d's)", notForYou, cred.UID))
		return
	}
	// FromMUNGE read the body, bounded, and put it back.
	hello, err := io.ReadAll(r.Body)
	if err != nil {
		refuse(w, err)
		return
	}
	welcome, err := m.sessions.Accept(hello)
	if err != nil {
		refuse(w, userErr(KindInvalid, "%v", err))
		return
	}
	a.log.Info("manager session opened", "remote", r.RemoteAddr, "sessions", m.sessions.Sessions())
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(welcome)
}

// authManager checks that r is signed with a session the manager opened
// (before any of its body is read) and returns the user the manager acts
// for. A session this agent does not know (it restarted) is answered with
// a challenge, on which the manager opens a new one and sends the request
// again.
func (a *Agent) authManager(w http.ResponseWriter, r *http.Request) (Caller, error) {
	m := a.manager
	if m.uid < 0 {
		return Caller{}, noManager()
	}
	uid, err := identity.FromSession(m.sessions, r, maxRequestBody)
	switch {
	case errors.Is(err, identity.ErrNoSignature):
		a.log.Warn("refused a TCP request not signed by the manager", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		return Caller{}, userErr(KindUnauthorized, "%s", notForYou)
	case errors.Is(err, reqauth.ErrNoSession):
		reqauth.Challenge(w.Header())
		return Caller{}, err
	case err != nil:
		a.log.Warn("refused a signed TCP request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		return Caller{}, err
	}
	c := identity.NewCaller(a.accounts, a.cfg.Admins, uid)
	c.Relayed = true
	return c, nil
}
