package agent

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/internal/munge"
)

// maxRequestBody bounds what the agent reads of a request body; every
// request it accepts is a small JSON object.
const maxRequestBody = 64 << 10

// managerAuth decides who a request on the TCP listener comes from. Only
// baicommit-manager may use that listener: it proves a user to itself, then
// signs each request it relays with its own MUNGE credential, bound to the
// method, target, body and the uid it acts for.
type managerAuth struct {
	uid   int // the manager's uid; -1 when none is configured
	codec munge.Codec
}

func newManagerAuth(cfg Config, accounts identity.Accounts) (*managerAuth, error) {
	m := &managerAuth{uid: -1, codec: munge.Codec{Socket: cfg.MungeSocket}}
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

// authManager checks r's MUNGE credential and returns the user the
// manager acts for.
func (a *Agent) authManager(r *http.Request) (Caller, error) {
	m := a.manager
	if m.uid < 0 {
		return Caller{}, userErr(KindUnauthorized, "%s (this agent has no manager_user configured)", notForYou)
	}
	cred, b, err := identity.FromMUNGE(r.Context(), m.codec, r, maxRequestBody)
	if errors.Is(err, identity.ErrNoCredential) {
		return Caller{}, userErr(KindUnauthorized, "%s", notForYou)
	}
	if err != nil {
		return Caller{}, err
	}
	if cred.UID != m.uid {
		a.log.Warn("refused a TCP request not signed by the manager", "credential_uid", cred.UID, "method", r.Method, "path", r.URL.Path)
		return Caller{}, userErr(KindUnauthorized, "%s (the credential is uid %d's)", notForYou, cred.UID)
	}
	uid, err := strconv.Atoi(b.As)
	if err != nil || uid < 0 {
		return Caller{}, userErr(KindUnauthorized, "the manager's credential names no user to act for")
	}
	c := identity.NewCaller(a.accounts, a.cfg.Admins, uid)
	c.Relayed = true
	return c, nil
}
