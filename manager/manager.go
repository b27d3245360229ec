package manager

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/internal/munge"
	"github.com/baicommit/baicommit/internal/slurm"
)

// Slurm is what the manager asks the cluster.
type Slurm interface {
	Job(ctx context.Context, id string) (*slurm.Job, error)
	UserNodes(ctx context.Context, user string) ([]string, error)
	Nodes(ctx context.Context) ([]string, error)
}

// Manager serves the cluster-wide API.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	munge   munge.Codec
	slurm   Slurm
	agents  *http.Client
	metrics *metrics
	// static is the node list when the configuration names the nodes
	// (nodes, or the keys of [agents]); nil means Slurm's, cached in
	// slurmNodes.
	static     []string
	slurmNodes nodeCache
	// pageNodes caches where users' jobs run, for the web page's refreshes.
	pageNodes userNodesCache
	web       *webAuth
}

// nodeCache holds Slurm's node list for a while: with agent_url routing,
// every request names a node, and answering a status must not run sinfo.
type nodeCache struct {
	mu    sync.Mutex
	nodes []string
	at    time.Time
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
	// Many users' requests go to few agents: keep connections to each.
	tr.MaxIdleConnsPerHost = 32
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
	static := cfg.Nodes
	if len(static) == 0 && len(cfg.Agents) > 0 {
		for n := range cfg.Agents {
			static = append(static, n)
		}
		slices.Sort(static)
	}
	web, err := newWebAuth(cfg, log)
	if err != nil {
		return nil, err
	}
	return &Manager{
		web:     web,
		static:  static,
		cfg:     cfg,
		log:     log,
		munge:   munge.Codec{Socket: cfg.MungeSocket},
		slurm:   s,
		agents:  &http.Client{Transport: tr, Timeout: cfg.AgentTimeout.Duration},
		metrics: newMetrics(),
	}, nil
}

// Identity is a user the manager has authenticated: always one with an
// account here.
type Identity = identity.Caller

// maxRequestBody bounds what the manager reads of a request body.
const maxRequestBody = 64 << 10

// authenticate proves who sent r from its MUNGE credential, which must have
// been made for exactly this request and is good only once.
func (m *Manager) authenticate(r *http.Request) (*Identity, error) {
	cred, b, err := identity.FromMUNGE(r.Context(), m.munge, r, maxRequestBody)
	switch {
	case errors.Is(err, identity.ErrNoCredential):
		return nil, &Error{Kind: KindUnauthorized, Err: err, Msg: "who are you? " + err.Error() + "; the baicommit CLI sends one for you"}
	case err != nil:
		return nil, err
	}
	if b.As != "" {
		// Only agents accept acting for someone else, and only from us.
		return nil, userErr(KindUnauthorized, "refused: a user's credential cannot act for another user")
	}
	return m.identityByUID(cred.UID)
}

// identityByUID is the account of uid, with its groups and whether it is
// an admin.
func (m *Manager) identityByUID(uid int) (*Identity, error) {
	u, err := identity.LookupUID(uid)
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
func (m *Manager) nodes(ctx context.Context) ([]string, error) {
	return m.nodesNewerThan(ctx, nodeListFresh)
}

// nodesNewerThan is nodes with Slurm's list at most maxAge old.
func (m *Manager) nodesNewerThan(ctx context.Context, maxAge time.Duration) ([]string, error) {
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
	if ns == nil {
		ns = []string{}
	}
	c.nodes, c.at = ns, time.Now()
	return ns, nil
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
	if err == nil && !slices.Contains(known, node) {
		known, err = m.nodesNewerThan(ctx, nodeListRecheck)
	}
	if err != nil {
		return "", err
	}
	if !slices.Contains(known, node) {
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

// callAgent sends one request to node's agent, acting for uid, signed with
// the manager's MUNGE credential bound to it.
func (m *Manager) callAgent(ctx context.Context, node, method, target string, body []byte, uid int) (*reply, error) {
	base, err := m.agentURL(ctx, node)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, base+target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building the request to node %s: %w", node, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := m.munge.Sign(ctx, req, body, strconv.Itoa(uid), munge.EncodeOptions{TTL: time.Minute}); err != nil {
		return nil, &Error{Kind: KindUnavailable, Err: err, Msg: "the manager cannot sign its request to node " + node + ": " + err.Error()}
	}
	t0 := time.Now()
	resp, err := m.agents.Do(req)
	if err != nil {
		m.metrics.agentUp.WithLabelValues(node).Set(0)
		return nil, m.agentError(ctx, node, err)
	}
	defer resp.Body.Close()
	b, err := readAll(resp.Body, maxAgentAnswer)
	if err != nil {
		m.metrics.agentUp.WithLabelValues(node).Set(0)
		return nil, m.agentError(ctx, node, err)
	}
	m.metrics.agentUp.WithLabelValues(node).Set(1)
	m.metrics.agentSeconds.WithLabelValues(node).Observe(time.Since(t0).Seconds())
	return &reply{status: resp.StatusCode, body: b}, nil
}

// agentError says whether an agent could not be reached (502) or did not
// answer in time (504), naming the node.
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
