// Package client talks to the baicommit node agent over its HTTP/JSON API
// (see package api). The agent normally listens on a unix socket, which is
// also how it learns who the caller is (SO_PEERCRED), so the client sends no
// credentials of its own.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/baicommit/baicommit/api"
)

// DefaultAddr is where the agent's systemd socket unit listens.
const DefaultAddr = "unix:///run/baicommit/agent.sock"

// unixBaseURL is the URL the HTTP layer sees for unix-socket requests; the
// host part is never resolved because the transport always dials the socket.
const unixBaseURL = "http://baicommit-agent"

// responseHeaderTimeout bounds how long one request waits for the agent to
// start answering. Every route answers quickly (a freeze runs in the
// background), so a silent agent is a hung agent; a caller's context still
// cancels sooner.
const responseHeaderTimeout = time.Minute

// maxErrorBody caps how much of a non-2xx body is read, so a misbehaving
// server cannot make the client buffer without limit.
const maxErrorBody = 1 << 20

// Client is a client of one agent, or of baicommit-manager, which serves
// the same API for the whole cluster. It is safe for concurrent use.
type Client struct {
	addr   string // canonical address, for messages
	server string // "agent" or "manager", for messages
	base   *url.URL
	unix   bool
	http   *http.Client
	sign   Signer
	warn   func(string)
}

// Signer adds proof of the caller's identity to a request whose body is
// body, e.g. a MUNGE credential bound to it. An agent on its unix socket
// needs none: it asks the kernel who is calling.
type Signer func(ctx context.Context, req *http.Request, body []byte) error

// Option configures a Client.
type Option func(*Client)

// WithSigner signs every request with s.
func WithSigner(s Signer) Option { return func(c *Client) { c.sign = s } }

// WithRootCAs makes HTTPS connections trust the certificates in pool
// instead of the system's, e.g. a site CA for the manager.
func WithRootCAs(pool *x509.CertPool) Option {
	return func(c *Client) {
		if tr, ok := c.http.Transport.(*http.Transport); ok {
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
	}
}

// WithManager says the address is baicommit-manager's, for messages.
func WithManager() Option { return func(c *Client) { c.server = "manager" } }

// WithWarnings passes each Warning header of an answer to f; the manager
// uses them to say a list is missing nodes that did not answer.
func WithWarnings(f func(string)) Option { return func(c *Client) { c.warn = f } }

// New returns a client of the agent at addr, which is one of
//
//	unix:///path/to/agent.sock
//	/path/to/agent.sock          (a bare absolute path means the same)
//	http://host:port             (or https://, e.g. for a forwarded socket)
//
// New does not connect; the first request does.
func New(addr string, opts ...Option) (*Client, error) {
	c, err := newClient(addr)
	if err != nil {
		return nil, err
	}
	c.server = "agent"
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

func newClient(addr string) (*Client, error) {
	addr = strings.TrimSpace(addr)
	switch {
	case addr == "":
		return nil, errors.New("no agent address given")
	case strings.HasPrefix(addr, "unix://"):
		return newUnix(strings.TrimPrefix(addr, "unix://"))
	case strings.HasPrefix(addr, "/"):
		return newUnix(addr)
	case strings.HasPrefix(addr, "http://"), strings.HasPrefix(addr, "https://"):
		return newHTTP(addr)
	default:
		return nil, fmt.Errorf("invalid agent address %q: want unix:///path/to.sock, an absolute socket path or http://host:port", addr)
	}
}

func newUnix(path string) (*Client, error) {
	if path == "" {
		return nil, errors.New("invalid agent address \"unix://\": the socket path is missing")
	}
	base, err := url.Parse(unixBaseURL)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	tr := &http.Transport{
		// Whatever host the URL names, the connection goes to the socket.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
		ResponseHeaderTimeout: responseHeaderTimeout,
		MaxIdleConns:          2,
		IdleConnTimeout:       30 * time.Second,
	}
	return &Client{addr: "unix://" + path, base: base, unix: true, http: &http.Client{Transport: tr}}, nil
}

func newHTTP(addr string) (*Client, error) {
	base, err := url.Parse(strings.TrimRight(addr, "/"))
	if err != nil {
		return nil, fmt.Errorf("invalid agent address %q: %w", addr, err)
	}
	if base.Host == "" {
		return nil, fmt.Errorf("invalid agent address %q: the host is missing", addr)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = responseHeaderTimeout
	return &Client{addr: base.String(), base: base, http: &http.Client{Transport: tr}}, nil
}

// Addr returns the agent address in canonical form (a bare socket path is
// shown as unix:///path), as used in error messages.
func (c *Client) Addr() string { return c.addr }

// Freeze asks the agent to freeze a container and returns the new task. The
// freeze runs in the background; follow it with Task or Wait.
func (c *Client) Freeze(ctx context.Context, req api.FreezeRequest) (*api.Task, error) {
	if req.Container == "" {
		return nil, errors.New("no container given")
	}
	var t api.Task
	err := c.do(ctx, http.MethodPost, api.RouteFreezes, req, &t,
		http.StatusAccepted, http.StatusCreated, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// Task returns the task with the given id.
func (c *Client) Task(ctx context.Context, id string) (*api.Task, error) {
	if id == "" {
		return nil, errors.New("no task id given")
	}
	var t api.Task
	if err := c.do(ctx, http.MethodGet, api.RouteTask+url.PathEscape(id), nil, &t, http.StatusOK); err != nil {
		return nil, err
	}
	return &t, nil
}

// Tasks returns the caller's tasks, newest first. It never returns a nil
// slice without an error, so callers can print it as a JSON array as is.
func (c *Client) Tasks(ctx context.Context) ([]api.Task, error) {
	var ts []api.Task
	if err := c.do(ctx, http.MethodGet, api.RouteTasks, nil, &ts, http.StatusOK); err != nil {
		return nil, err
	}
	if ts == nil {
		ts = []api.Task{}
	}
	return ts, nil
}

// Sessions returns the caller's containers on the agent's node. Like Tasks,
// it returns an empty, non-nil slice when there are none.
func (c *Client) Sessions(ctx context.Context) ([]api.Session, error) {
	var ss []api.Session
	if err := c.do(ctx, http.MethodGet, api.RouteSessions, nil, &ss, http.StatusOK); err != nil {
		return nil, err
	}
	if ss == nil {
		ss = []api.Session{}
	}
	return ss, nil
}

// SessionQuery narrows a session listing. On an agent only User counts;
// the manager looks on Node, or on the nodes of Job, or else on every node
// where the user has a running job.
type SessionQuery struct {
	User, Node, Job string
}

// SessionsOf returns the sessions q selects. Like Sessions, it returns an
// empty, non-nil slice when there are none.
func (c *Client) SessionsOf(ctx context.Context, q SessionQuery) ([]api.Session, error) {
	v := url.Values{}
	for k, s := range map[string]string{api.QueryUser: q.User, api.QueryNode: q.Node, api.QueryJob: q.Job} {
		if s != "" {
			v.Set(k, s)
		}
	}
	route := api.RouteSessions
	if len(v) > 0 {
		route += "?" + v.Encode()
	}
	ss := []api.Session{}
	if err := c.do(ctx, http.MethodGet, route, nil, &ss, http.StatusOK); err != nil {
		return nil, err
	}
	if ss == nil {
		ss = []api.Session{}
	}
	return ss, nil
}

// Archives returns the caller's archives, newest first, as the agent (or,
// through the manager, one of the agents) finds them through their
// sidecars, reading them as the caller. Archives is never nil.
func (c *Client) Archives(ctx context.Context) (*api.ArchiveList, error) {
	var l api.ArchiveList
	if err := c.do(ctx, http.MethodGet, api.RouteArchives, nil, &l, http.StatusOK); err != nil {
		return nil, err
	}
	if l.Archives == nil {
		l.Archives = []api.ArchiveEntry{}
	}
	return &l, nil
}

// Nodes returns the nodes a manager routes to, with their agents' health.
func (c *Client) Nodes(ctx context.Context) ([]api.NodeStatus, error) {
	ns := []api.NodeStatus{}
	if err := c.do(ctx, http.MethodGet, api.RouteNodes, nil, &ns, http.StatusOK); err != nil {
		return nil, err
	}
	if ns == nil {
		ns = []api.NodeStatus{}
	}
	return ns, nil
}

// Version returns the agent's version and who it thinks the caller is.
func (c *Client) Version(ctx context.Context) (*api.VersionInfo, error) {
	var v api.VersionInfo
	if err := c.do(ctx, http.MethodGet, api.RouteVersion, nil, &v, http.StatusOK); err != nil {
		return nil, err
	}
	return &v, nil
}

// do sends one request with an optional JSON body and decodes a JSON answer
// into out when the status is one of ok. Any other status becomes an error:
// *APIError for non-2xx answers.
func (c *Client) do(ctx context.Context, method, route string, in, out any, ok ...int) error {
	var body io.Reader
	var raw []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		body, raw = bytes.NewReader(b), b
	}
	// route is already escaped (a task id goes through url.PathEscape), so
	// join strings rather than setting URL.Path, which would escape it again.
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.base.String(), "/")+route, body)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.sign != nil {
		if err := c.sign(ctx, req, raw); err != nil {
			return fmt.Errorf("proving who you are to the baicommit %s: %w", c.server, err)
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.transportError(ctx, err)
	}
	defer resp.Body.Close()
	if c.warn != nil {
		for _, w := range resp.Header.Values("Warning") {
			c.warn(w)
		}
	}

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeAPIError(resp)
	}
	if !statusIn(resp.StatusCode, ok) {
		return fmt.Errorf("unexpected answer from the baicommit %s at %s to %s %s: %s", c.server, c.addr, method, route, resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding the %s's answer to %s %s: %w", c.server, method, route, err)
	}
	return nil
}

func statusIn(code int, ok []int) bool {
	for _, s := range ok {
		if code == s {
			return true
		}
	}
	return false
}

// Usage says how much user (empty: the caller) keeps below their save
// directory, against the quotas; naming another user takes an admin.
func (c *Client) Usage(ctx context.Context, user string) (*api.Usage, error) {
	route := api.RouteUsage
	if user != "" {
		route += "?" + url.Values{api.QueryUser: {user}}.Encode()
	}
	var u api.Usage
	if err := c.do(ctx, http.MethodGet, route, nil, &u, http.StatusOK); err != nil {
		return nil, err
	}
	return &u, nil
}

// Prune applies the retention rules (the site's and the caller's own) to
// the caller's archives; with dryRun it only says what would go.
func (c *Client) Prune(ctx context.Context, dryRun bool) (*api.PruneResult, error) {
	var r api.PruneResult
	if err := c.do(ctx, http.MethodPost, api.RouteArchivesPrune, api.PruneRequest{DryRun: dryRun}, &r, http.StatusOK); err != nil {
		return nil, err
	}
	return &r, nil
}

// RemoveArchives removes the caller's archives at paths, with their
// sidecars.
func (c *Client) RemoveArchives(ctx context.Context, paths []string) (*api.RemoveResult, error) {
	var r api.RemoveResult
	if err := c.do(ctx, http.MethodPost, api.RouteArchivesRemove, api.RemoveRequest{Paths: paths}, &r, http.StatusOK); err != nil {
		return nil, err
	}
	return &r, nil
}
