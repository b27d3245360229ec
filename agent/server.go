package agent

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/httperr"
	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/internal/reqauth"
	"github.com/baicommit/baicommit/internal/version"
)

type (
	callerKey struct{}
	// tcpKey marks requests that came over TCP, where only the manager,
	// proving itself with MUNGE once and then with a session key, is
	// answered.
	tcpKey struct{}
)

// NewServer returns the HTTP server of the agent API. Callers on a unix
// socket are identified by its peer credentials; on TCP, every request must
// be signed by the manager, naming the user it acts for, with a session
// the manager opened with its MUNGE credential (reqauth.Route).
func NewServer(a *Agent) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.RouteFreezes, a.handleFreeze)
	mux.HandleFunc("GET "+api.RouteTasks, a.handleTasks)
	mux.HandleFunc("GET "+api.RouteTask+"{id}", a.handleTask)
	mux.HandleFunc("GET "+api.RouteSessions, a.handleSessions)
	mux.HandleFunc("GET "+api.RouteVersion, a.handleVersion)
	mux.HandleFunc("GET "+api.RouteArchives, a.handleArchives)
	mux.HandleFunc("GET "+api.RouteUsage, a.handleUsage)
	mux.HandleFunc("POST "+api.RouteArchivesPrune, a.handlePrune)
	mux.HandleFunc("POST "+api.RouteArchivesRemove, a.handleRemove)
	mux.HandleFunc("POST "+api.RouteJobs+"{job}/freezes", a.handleJobFreeze)
	// Every connection is bounded in time: a request must arrive whole
	// within request_timeout, a kept-alive connection nobody uses closes
	// after idle_connection_timeout, and an answer must be taken within
	// writeTimeout (the slowest handler, an archive listing, takes at
	// most a minute). Serve bounds how many each caller holds open.
	return &http.Server{
		Handler:           a.track(mux),
		ReadHeaderTimeout: min(10*time.Second, a.cfg.RequestTimeout.Duration),
		ReadTimeout:       a.cfg.RequestTimeout.Duration,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       a.cfg.IdleConnectionTimeout.Duration,
		ConnContext:       a.connContext,
	}
}

// writeTimeout bounds a request's handling and answer: longer than the
// slowest handler (a freeze's start reaches the owner's Podman within
// podman_timeout twice; a listing takes at most listTimeout).
const writeTimeout = 5 * time.Minute

// connContext records who is at the other end of a unix connection.
func (a *Agent) connContext(ctx context.Context, c net.Conn) context.Context {
	c = underlying(c)
	if _, ok := c.(*net.TCPConn); ok {
		return context.WithValue(ctx, tcpKey{}, true)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	cred, err := identity.PeerCred(uc)
	if err != nil {
		return ctx
	}
	return context.WithValue(ctx, callerKey{}, identity.NewCaller(a.accounts, a.cfg.Admins, int(cred.Uid)))
}

// track counts requests as activity and refuses callers without identity.
func (a *Agent) track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.Activity.Begin()
		defer a.Activity.End()
		if _, ok := r.Context().Value(callerKey{}).(Caller); ok {
			next.ServeHTTP(w, r)
			return
		}
		if r.Context().Value(tcpKey{}) == nil {
			writeError(w, userErr(KindUnauthorized, "the agent only answers local callers on its unix socket and the manager on TCP"))
			return
		}
		if r.URL.Path == reqauth.Route {
			a.openManagerSession(w, r)
			return
		}
		c, err := a.authManager(w, r)
		if err != nil {
			refuse(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

func caller(r *http.Request) Caller { return r.Context().Value(callerKey{}).(Caller) }

func (a *Agent) handleFreeze(w http.ResponseWriter, r *http.Request) {
	var req api.FreezeRequest
	if err := httperr.DecodeJSON(r.Body, maxRequestBody, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Push != nil && req.Push.Creds != "" && r.Context().Value(tcpKey{}) != nil && r.TLS == nil {
		// The password already crossed the network in clear; refusing
		// keeps it from being used, and says what to set up.
		writeError(w, userErr(KindInvalid, "--creds reached node %s's agent over plain TCP: credentials travel only over TLS (tls_cert and tls_key in agent.toml, https:// agent URLs in manager.toml); push without --creds, with the registry login of your account on the node, or push the archive with `baicommit push`", a.cfg.NodeName))
		return
	}
	t, err := a.Freeze(r.Context(), caller(r), req)
	if err != nil {
		a.log.Info("freeze refused", "caller", caller(r).UID, "container", req.Container, "status", Status(err), "err", err)
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, t)
}

func (a *Agent) handleTask(w http.ResponseWriter, r *http.Request) {
	t, err := a.Task(caller(r), r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (a *Agent) handleTasks(w http.ResponseWriter, r *http.Request) {
	ts, err := a.Tasks(caller(r))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ts)
}

func (a *Agent) handleSessions(w http.ResponseWriter, r *http.Request) {
	ss, err := a.Sessions(r.Context(), caller(r), r.URL.Query().Get("user"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ss)
}

func (a *Agent) handleVersion(w http.ResponseWriter, r *http.Request) {
	c := caller(r)
	v := api.VersionInfo{Version: version.Version, API: api.Version, Node: a.cfg.NodeName,
		Running: a.Running(), CallerUID: c.UID, CallerName: c.Name()}
	if c.User != nil && c.UID != 0 {
		v.SaveDir = a.cfg.UserDir(c.User.Name, strconv.Itoa(c.UID))
		if dir, _, err := a.storeFor(c, &a.cfg.Policy, c.User, ""); err == nil {
			v.StoreDir = dir
		}
	}
	v.Format, v.Formats = a.cfg.Format, a.cfg.Formats
	writeJSON(w, http.StatusOK, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) { httperr.WriteJSON(w, status, v) }

func writeError(w http.ResponseWriter, err error) { httperr.Write(w, err) }
