package manager

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/internal/munge"
	"github.com/baicommit/baicommit/internal/reqauth"
	"github.com/baicommit/baicommit/internal/slurm"
)

// Slurm is what the manager asks the cluster.
type Slurm interface {
	Job(ctx context.Context, id string) (*slurm.Job, error)
	// UserNodes are the nodes of user's running jobs.
	UserNodes(ctx context.Context, user string) ([]string, error)
	// RecentNodes are the nodes of every job of user that Slurm still
	// lists: running, and ended less than MinJobAge ago.
	RecentNodes(ctx context.Context, user string) ([]string, error)
	Nodes(ctx context.Context) ([]string, error)
}

// Manager serves the cluster-wide API.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	munge munge.Codec
	slurm Slurm
	// accounts finds users: the system's, remembered for a while.
	accounts identity.Accounts
	agents   *http.Client
	metrics  *metrics
	// sessions signs requests to agents with the session opened with each
	// (package reqauth): one MUNGE credential per agent and session, none
	// per request.
	sessions *reqauth.Client
	// static is the node list when the configuration names the nodes
	// (nodes, or the keys of [agents]); nil means Slurm's, cached in
	// slurmNodes.
	static     *nodeSet
	slurmNodes nodeCache
	// pageNodes caches where users' jobs run, for the web page's refreshes.
	pageNodes userNodesCache
	web       *webAuth
}

// nodeCache holds Slurm's node list for a while: with agent_url routing,
// every request names a node, and answering a status must not run sinfo.
type nodeCache struct {
	mu    sync.Mutex
	nodes *nodeSet
	at    time.Time
}

// nodeSet is a node list, sorted, and the same as a set: a request that
// names a node looks it up without walking 10,000 names.
type nodeSet struct {
	list []string
	has  map[string]struct{}
}

func newNodeSet(nodes []string) *nodeSet {
	ns := &nodeSet{list: slices.Compact(slices.Sorted(slices.Values(nodes))), has: make(map[string]struct{}, len(nodes))}
	for _, n := range ns.list {
		ns.has[n] = struct{}{}
	}
	return ns
}

func (ns *nodeSet) contains(node string) bool {
	_, ok := ns.has[node]
	return ok
}

// Ages of the cached Slurm node list: used as is while fresh; a node it
// does not know sends Slurm a new question once the list is a little old,
// so a node just added is found without asking Slurm on every typo.
const (
	nodeListFresh   = 5 * time.Minute
	nodeListRecheck = 10 * time.Second
)

// New returns a manager for cfg. slurm may be nil for the Slurm commands
// in cfg.SlurmBinDir.
func New(cfg Config, s Slurm, log *slog.Logger) (*Manager, error) {
	if s == nil {
		s = slurm.Commands{BinDir: cfg.SlurmBinDir}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Many users' requests go to few agents: keep connections to each;
	// but a fan-out to thousands of nodes keeps no more than the pool
	// idle, and an idle connection goes after IdleConnTimeout (90 s).
	tr.MaxIdleConnsPerHost = 64
	tr.MaxIdleConns = 256
	if cfg.AgentCAFile != "" {
		pem, err := os.ReadFile(cfg.AgentCAFile)
		if err != nil {
			return nil, fmt.Errorf("agent_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("agent_ca_file %s holds no PEM certificate", cfg.AgentCAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var static *nodeSet
	switch {
	case len(cfg.Nodes) > 0:
		static = newNodeSet(cfg.Nodes)
	case len(cfg.Agents) > 0:
		static = newNodeSet(slices.Collect(maps.Keys(cfg.Agents)))
	}
	web, err := newWebAuth(cfg, log)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		web:      web,
		static:   static,
		cfg:      cfg,
		log:      log,
		munge:    munge.Codec{Socket: cfg.MungeSocket},
		slurm:    s,
		accounts: identity.NewCache(identity.System{}, 0, 0),
		agents:   &http.Client{Transport: tr},
		metrics:  newMetrics(),
	}
	m.sessions = reqauth.NewClient(m.openSession, reqauth.ClientOptions{OpenTimeout: cfg.AgentTimeout.Duration})
	return m, nil
}

// Identity is a user the manager has authenticated: always one with an
// account here.
type Identity = identity.Caller

// maxRequestBody bounds what the manager reads of a request body.
const maxRequestBody = 64 << 10

// authenticate proves who sent r from its MUNGE credential, which must have
// been made for exactly this request, for the manager, and is good only
// once.
func (m *Manager) authenticate(r *http.Request) (*Identity, error) {
	cred, _, err := identity.FromMUNGE(r.Context(), m.munge, r, munge.AudienceManager, maxRequestBody)
	switch {
	case errors.Is(err, identity.ErrNoCredential):
		return nil, &Error{Kind: KindUnauthorized, Err: err, Msg: "who are you? " + err.Error() + "; the baicommit CLI sends one for you"}
	case err != nil:
		return nil, err
	}
	return m.identityByUID(cred.UID)
}

// identityByUID is the account of uid, with its groups and whether it is
// an admin.
func (m *Manager) identityByUID(uid int) (*Identity, error) {
	u, err := m.accounts.Lookup(strconv.Itoa(uid))
	if err != nil {
		return nil, userErr(KindForbidden, "uid %d has no account here", uid)
	}
	return m.identityOf(u), nil
}

// identityByName is identityByUID for a user name (a trusted proxy's).
func (m *Manager) identityByName(name string) (*Identity, error) {
	u, err := identity.LookupName(name)
	if err != nil {
		return nil, userErr(KindForbidden, "user %q has no account here", name)
	}
	return m.identityOf(u), nil
}

func (m *Manager) identityOf(u *identity.User) *Identity {
	return &Identity{UID: u.UID, User: u, Admin: m.cfg.Admins.Admin(u)}
}

// mayActFor checks that id may act on owner's sessions.
func mayActFor(id *Identity, owner string) error {
	if id.MayActFor(owner) {
		return nil
	}
	return userErr(KindForbidden, "the sessions of %s are not yours: only %s or a baicommit admin may act on them", owner, owner)
}

// nodes returns the nodes with agents.
func (m *Manager) nodes(ctx context.Context) (*nodeSet, error) {
	return m.nodesNewerThan(ctx, nodeListFresh)
}

// nodesNewerThan is nodes with Slurm's list at most maxAge old.
func (m *Manager) nodesNewerThan(ctx context.Context, maxAge time.Duration) (*nodeSet, error) {
	if m.static != nil {
		return m.static, nil
	}
	c := &m.slurmNodes
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes != nil && time.Since(c.at) < maxAge {
		return c.nodes, nil
	}
	ns, err := m.slurm.Nodes(ctx)
	if err != nil {
		return nil, &Error{Kind: KindUnavailable, Err: err, Msg: "cannot list the cluster's nodes: " + err.Error()}
	}
	c.nodes, c.at = newNodeSet(ns), time.Now()
	return c.nodes, nil
}

// agentURL returns the URL of node's agent, or a 404 for a node the
// manager does not serve.
func (m *Manager) agentURL(ctx context.Context, node string) (string, error) {
	if !nodeRE.MatchString(node) {
		return "", userErr(KindInvalid, "%q is not a node name", node)
	}
	if u, ok := m.cfg.Agents[node]; ok {
		return strings.TrimRight(u, "/"), nil
	}
	known, err := m.nodes(ctx)
	if err == nil && !known.contains(node) {
		known, err = m.nodesNewerThan(ctx, nodeListRecheck)
	}
	if err != nil {
		return "", err
	}
	if !known.contains(node) {
		return "", userErr(KindNotFound, "no node %q here (see `baicommit nodes`)", node)
	}
	return strings.TrimRight(strings.ReplaceAll(m.cfg.AgentURL, "{node}", node), "/"), nil
}

// reply is an agent's answer, relayed as is.
type reply struct {
	status int
	body   []byte
}

// maxAgentAnswer bounds what the manager reads of one agent answer.
const maxAgentAnswer = 8 << 20

// callAgent sends one request to node's agent, acting for uid, signed
// with the session opened with that agent. agent_timeout bounds it all,
// opening a session included. An agent that no longer knows the session
// (it restarted) challenges: the request then goes once more, signed with
// a new session, so that a restart fails no request.
func (m *Manager) callAgent(ctx context.Context, node, method, target string, body []byte, uid int) (*reply, error) {
	base, err := m.agentURL(ctx, node)
	if err != nil {
		return nil, err
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, m.cfg.AgentTimeout.Duration)
	defer cancel()
	for again := true; ; again = false {
		s, err := m.sessions.Session(ctx, node)
		if err != nil {
			return nil, m.sessionError(parent, node, err)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+target, bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("building the request to node %s: %w", node, err)
		}
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		s.Sign(req, body, strconv.Itoa(uid))
		t0 := time.Now()
		resp, err := m.agents.Do(req)
		if err != nil {
			m.metrics.agentUp.WithLabelValues(node).Set(0)
			return nil, m.agentError(parent, node, err)
		}
		if again && reqauth.Challenged(resp) {
			resp.Body.Close()
			m.sessions.Forget(s)
			m.log.Info("agent asks for a new session", "node", node)
			continue
		}
		b, err := readAll(resp.Body, maxAgentAnswer)
		resp.Body.Close()
		if err != nil {
			m.metrics.agentUp.WithLabelValues(node).Set(0)
			return nil, m.agentError(parent, node, err)
		}
		m.metrics.agentUp.WithLabelValues(node).Set(1)
		m.metrics.agentSeconds.Observe(time.Since(t0).Seconds())
		if resp.StatusCode == http.StatusUnauthorized {
			// The user was proved already; this is the agent refusing
			// the manager.
			return nil, &Error{Kind: KindBadGateway, Msg: fmt.Sprintf("node %s refused the manager's request: %s", node, agentMessage(b))}
		}
		return &reply{status: resp.StatusCode, body: b}, nil
	}
}

// openSession is the reqauth.Opener of the manager: it sends the hello to
// node's agent with a MUNGE credential bound to it and to the node's name.
func (m *Manager) openSession(ctx context.Context, node string, hello []byte) ([]byte, error) {
	base, err := m.agentURL(ctx, node)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+reqauth.Route, bytes.NewReader(hello))
	if err != nil {
		return nil, fmt.Errorf("building the session request to node %s: %w", node, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if err := m.munge.Sign(ctx, req, hello, node, munge.EncodeOptions{TTL: time.Minute}); err != nil {
		return nil, &Error{Kind: KindUnavailable, Err: err, Msg: "the manager cannot sign its request to node " + node + ": " + err.Error()}
	}
	// The opening runs on its own deadline, for every request waiting
	// for it: its end is a timeout, not a caller giving up.
	resp, err := m.agents.Do(req)
	if err != nil {
		m.metrics.agentUp.WithLabelValues(node).Set(0)
		return nil, m.agentError(context.Background(), node, err)
	}
	defer resp.Body.Close()
	b, err := readAll(resp.Body, maxAgentAnswer)
	if err != nil {
		return nil, m.agentError(context.Background(), node, err)
	}
	if resp.StatusCode != http.StatusOK {
		m.log.Warn("agent refused a session", "node", node, "status", resp.StatusCode, "err", agentMessage(b))
		return nil, &Error{Kind: KindBadGateway, Msg: fmt.Sprintf("node %s refused the manager's session: %s", node, agentMessage(b))}
	}
	m.metrics.sessions.Inc()
	return b, nil
}

// sessionError is the error of a request that got no session: the
// opening's own (already a 502, 503 or 504 naming the node), or the
// deadline that ran out while it was opened.
func (m *Manager) sessionError(parent context.Context, node string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return m.agentError(parent, node, err)
}

// agentMessage is the message of an agent's error answer.
func agentMessage(b []byte) string {
	var e api.Error
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		return e.Message
	}
	return strings.TrimSpace(string(b[:min(len(b), 200)]))
}

// agentError says whether an agent could not be reached (502) or did not
// answer in time (504), naming the node. ctx is the caller's: when it
// ended, the caller stopped waiting.
func (m *Manager) agentError(ctx context.Context, node string, err error) error {
	m.log.Warn("agent request failed", "node", node, "err", err)
	if ctx.Err() != nil {
		return fmt.Errorf("request to node %s abandoned: %w", node, ctx.Err())
	}
	var to interface{ Timeout() bool }
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &to) && to.Timeout()) {
		return &Error{Kind: KindTimeout, Err: err, Msg: fmt.Sprintf("the agent of node %s did not answer within %s", node, m.cfg.AgentTimeout.Duration)}
	}
	return &Error{Kind: KindBadGateway, Err: err, Msg: fmt.Sprintf("cannot reach the agent of node %s: %v", node, unwrapURL(err))}
}
