package manager

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/httperr"
	"github.com/baicommit/baicommit/internal/slurm"
	"github.com/baicommit/baicommit/internal/version"
	"github.com/baicommit/baicommit/policy"
)

// Routes of the manager's own, next to the API routes it shares with agents.
const (
	RouteHealth  = "/healthz"
	RouteMetrics = "/metrics"
)

// Handler returns the manager's HTTP handler.
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.RouteFreezes, m.authed(m.handleFreeze))
	mux.HandleFunc("GET "+api.RouteTasks, m.authed(m.handleTasks))
	mux.HandleFunc("GET "+api.RouteTask+"{id}", m.authed(m.handleTask))
	mux.HandleFunc("GET "+api.RouteSessions, m.authed(m.handleSessions))
	mux.HandleFunc("GET "+api.RouteNodes, m.authed(m.handleNodes))
	mux.HandleFunc("GET "+api.RouteVersion, m.authed(m.handleVersion))
	mux.HandleFunc("GET "+api.RouteArchives, m.authed(m.handleArchives))
	mux.HandleFunc("GET "+api.RouteUsage, m.authed(m.handleUsage))
	mux.HandleFunc("POST "+api.RouteArchivesPrune, m.authed(m.handlePrune))
	mux.HandleFunc("POST "+api.RouteArchivesRemove, m.authed(m.handleRemove))
	mux.HandleFunc("GET "+RouteHealth, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.Handle("GET "+RouteMetrics, m.metrics.handler())
	m.webRoutes(mux)
	return m.metrics.instrument(mux)
}

// NewServer returns the manager's HTTP server (without its listener).
func (m *Manager) NewServer() *http.Server {
	return &http.Server{
		Handler:           m.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
}

type handler func(w http.ResponseWriter, r *http.Request, id *Identity)

// authed authenticates every request before its handler runs.
func (m *Manager) authed(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := m.authenticate(r)
		if err != nil {
			m.log.Info("request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "status", Status(err), "err", err)
			// The body was not read; nor is it to keep the connection.
			w.Header().Set("Connection", "close")
			m.writeError(w, err)
			return
		}
		h(w, r, id)
	}
}

// handleFreeze relays a freeze to the node that runs the session: users
// say where it runs (node or job), the site says where archives go.
func (m *Manager) handleFreeze(w http.ResponseWriter, r *http.Request, id *Identity) {
	var req api.FreezeRequest
	if err := httperr.DecodeJSON(r.Body, maxRequestBody, &req); err != nil {
		m.writeError(w, err)
		return
	}
	if req.SavePath != "" || req.Quotas != nil {
		m.writeError(w, userErr(KindForbidden, "save_path and quotas are set by the site, not per request"))
		return
	}
	if err := mayActFor(id, req.User); err != nil {
		m.refused(w, err)
		return
	}
	if err := m.checkWebPush(r, req.Push); err != nil {
		m.refused(w, err)
		return
	}
	if err := m.placeFormat(&req); err != nil {
		m.writeError(w, err)
		return
	}
	node, err := m.placeFreeze(r.Context(), id, &req)
	if err != nil {
		m.refused(w, err)
		return
	}
	if err := m.checkCredsInClear(r.Context(), node, req.Push); err != nil {
		m.refused(w, err)
		return
	}
	req.Node, req.SavePath, req.Quotas = node, m.cfg.SavePath, m.siteQuotas()
	body, err := json.Marshal(req)
	if err != nil {
		m.writeError(w, err)
		return
	}
	// Handed to the agent whole even if the caller stops waiting (a page
	// reloaded right after Commit, Ctrl-C): the agent then owns the freeze
	// and every view shows it. agent_timeout still bounds the call.
	rep, err := m.callAgent(context.WithoutCancel(r.Context()), node, http.MethodPost, api.RouteFreezes, body, id.UID)
	if err != nil {
		m.refused(w, err)
		return
	}
	if rep.status == http.StatusAccepted {
		m.metrics.freezes.WithLabelValues("started").Inc()
	} else {
		m.metrics.freezes.WithLabelValues("refused").Inc()
	}
	m.log.Info("freeze relayed", "user", id.Name(), "node", node, "container", req.Container, "job", req.Job, "status", rep.status)
	relay(w, rep)
}

// checkCredsInClear refuses to relay a push's password to an agent
// reached over plain HTTP, where anyone on the path could read it.
func (m *Manager) checkCredsInClear(ctx context.Context, node string, p *api.PushRequest) error {
	if p == nil || p.Creds == "" {
		return nil
	}
	base, err := m.agentURL(ctx, node)
	if err != nil {
		return err
	}
	if strings.HasPrefix(base, "https://") {
		return nil
	}
	return userErr(KindInvalid, "--creds would travel to the agent of node %s in clear (%s): this site's agent URLs must be https:// for that. Push without --creds (with the registry login of your account on the node), or push the archive with `baicommit push`", node, base)
}

func (m *Manager) refused(w http.ResponseWriter, err error) {
	m.metrics.freezes.WithLabelValues("refused").Inc()
	m.writeError(w, err)
}

// placeFreeze finds the node that runs the session: the one named, or the
// job's (which must be the caller's, unless they are an admin).
func (m *Manager) placeFreeze(ctx context.Context, id *Identity, req *api.FreezeRequest) (string, error) {
	if req.Job == "" {
		if req.Node == "" {
			return "", userErr(KindInvalid, "say where the session runs: --node NODE or --job JOBID")
		}
		return req.Node, nil
	}
	job, err := m.job(ctx, id, req.Job, req.User)
	if err != nil {
		return "", err
	}
	if req.User == "" && job.User != id.Name() {
		// An admin naming someone else's job means its owner's session.
		req.User = job.User
	}
	switch {
	case req.Node != "":
		if !slices.Contains(job.Nodes, req.Node) {
			return "", userErr(KindInvalid, "job %s does not run on node %s (it runs on %s)", job.ID, req.Node, strings.Join(job.Nodes, ","))
		}
		return req.Node, nil
	case len(job.Nodes) == 0:
		return "", userErr(KindInvalid, "job %s has no node yet (it is %s)", job.ID, strings.ToLower(job.State))
	case len(job.Nodes) == 1:
		return job.Nodes[0], nil
	}
	// Several nodes: the one whose agent lists the container.
	owner := req.User
	if owner == "" {
		owner = id.Name()
	}
	found := fanOut(ctx, job.Nodes, m.cfg.MaxFanout, func(ctx context.Context, node string) ([]api.Session, error) {
		return getJSON[[]api.Session](ctx, m, node, api.RouteSessions+"?"+url.Values{api.QueryUser: {owner}}.Encode(), id.UID)
	})
	for _, f := range found {
		for _, s := range f.val {
			if s.Name == req.Container || strings.HasPrefix(s.ID, req.Container) {
				return f.node, nil
			}
		}
	}
	return "", userErr(KindNotFound, "no container %q of %s on the nodes of job %s (%s); name one with --node", req.Container, owner, job.ID, strings.Join(job.Nodes, ","))
}

// job asks Slurm for a job and checks the caller may act on it.
func (m *Manager) job(ctx context.Context, id *Identity, jobID, owner string) (*slurm.Job, error) {
	job, err := m.slurm.Job(ctx, jobID)
	switch {
	case errors.Is(err, slurm.ErrNoJob):
		return nil, userErr(KindNotFound, "Slurm lists no running job %s: it has ended or never existed; name the node with --node", jobID)
	case errors.Is(err, slurm.ErrUnavailable):
		return nil, &Error{Kind: KindUnavailable, Err: err, Msg: "cannot ask Slurm where job " + jobID + " runs: " + err.Error() + "; name the node with --node"}
	case err != nil:
		return nil, userErr(KindInvalid, "%v", err)
	}
	if job.User != id.Name() && !id.Admin {
		return nil, userErr(KindForbidden, "job %s is %s's, not yours", jobID, job.User)
	}
	if owner != "" && owner != job.User {
		return nil, userErr(KindInvalid, "job %s is %s's, not %s's", jobID, job.User, owner)
	}
	return job, nil
}

func (m *Manager) handleTask(w http.ResponseWriter, r *http.Request, id *Identity) {
	tid := r.PathValue("id")
	_, node, ok := strings.Cut(tid, ".")
	if !ok || node == "" {
		m.writeError(w, userErr(KindInvalid, "%q is not a task id (they look like 3f9a1c2b7d4e.node01)", tid))
		return
	}
	rep, err := m.callAgent(r.Context(), node, http.MethodGet, api.RouteTask+url.PathEscape(tid), nil, id.UID)
	if err != nil {
		m.writeError(w, err)
		return
	}
	// A status polled every second need not be decoded again once its end
	// was counted.
	if rep.status == http.StatusOK && !m.metrics.counted(tid) {
		var t api.Task
		if json.Unmarshal(rep.body, &t) == nil {
			m.metrics.observe(&t)
		}
	}
	relay(w, rep)
}

// handleTasks lists the caller's tasks from the nodes that may hold them,
// never from the whole cluster, so that what a list costs grows with what
// the user has: the nodes of their jobs Slurm still lists (running, and
// ended less than MinJobAge ago: a freeze at a job's end runs after it),
// and those their recent archives on the shared filesystem name (each
// sidecar records its node and task), for freezes whose jobs Slurm forgot.
// The job nodes are asked while one agent lists the archives. What cannot
// be asked is a warning: the list still comes, from the rest. ?node=NODE
// asks that node alone.
func (m *Manager) handleTasks(w http.ResponseWriter, r *http.Request, id *Identity) {
	ctx := r.Context()
	ask := func(nodes []string) []result[[]api.Task] {
		return fanOut(ctx, nodes, m.cfg.MaxFanout, func(ctx context.Context, node string) ([]api.Task, error) {
			return getJSON[[]api.Task](ctx, m, node, api.RouteTasks, id.UID)
		})
	}
	var res []result[[]api.Task]
	if n := r.URL.Query().Get(api.QueryNode); n != "" {
		res = ask([]string{n})
		if res[0].err != nil {
			m.writeError(w, res[0].err)
			return
		}
	} else {
		known, kerr := m.nodes(ctx)
		jobs, serr := m.slurm.RecentNodes(ctx, id.Name())
		if kerr != nil && serr != nil {
			m.writeError(w, kerr)
			return
		}
		if serr != nil {
			w.Header().Add("Warning", warningValue("cannot ask Slurm where your jobs ran: "+serr.Error()+"; tasks are looked for only on the nodes your archives name"))
		}
		served := func(ns []string, except []string) []string {
			var out []string
			for _, n := range ns {
				if (kerr != nil || known.contains(n)) && !slices.Contains(out, n) && !slices.Contains(except, n) {
					out = append(out, n)
				}
			}
			return out
		}
		jobs = served(jobs, nil)
		type found struct {
			nodes []string
			err   error
		}
		archived := make(chan found, 1)
		go func() {
			ns, err := m.archiveTaskNodes(ctx, id, jobs)
			archived <- found{ns, err}
		}()
		res = ask(jobs)
		a := <-archived
		if a.err != nil {
			w.Header().Add("Warning", warningValue("tasks are looked for only on the nodes of your recent jobs: "+a.err.Error()))
		}
		res = append(res, ask(served(a.nodes, jobs))...)
	}
	all := []api.Task{}
	for _, f := range res {
		if f.err != nil {
			warn(w, f.node, f.err)
			continue
		}
		all = append(all, f.val...)
	}
	slices.SortStableFunc(all, func(a, b api.Task) int { return b.Created.Compare(a.Created) })
	for i := range all {
		m.metrics.observe(&all[i])
	}
	writeJSON(w, http.StatusOK, all)
}

// What the archives add to the nodes that may hold a user's tasks: the
// nodes named by the archives of the last recentArchives, at most
// maxArchiveNodes of them, newest first.
const (
	recentArchives  = 7 * 24 * time.Hour
	maxArchiveNodes = 32
)

// archiveTaskNodes are the nodes id's recent archives name, as one agent
// lists them (those of jobs first: their agents are up).
func (m *Manager) archiveTaskNodes(ctx context.Context, id *Identity, jobs []string) ([]string, error) {
	tried, err := m.archiveNodes(ctx, jobs)
	if err != nil {
		return nil, err
	}
	list, _, err := firstAnswer(ctx, tried, func(ctx context.Context, node string) (api.ArchiveList, error) {
		return getJSON[api.ArchiveList](ctx, m, node, m.archivesTarget(), id.UID)
	})
	if err != nil {
		return nil, err
	}
	var out []string
	since := time.Now().Add(-recentArchives)
	for _, a := range list.Archives {
		if len(out) >= maxArchiveNodes {
			break
		}
		if a.Created.After(since) && !slices.Contains(out, a.Node) {
			out = append(out, a.Node)
		}
	}
	return out, nil
}

func (m *Manager) handleSessions(w http.ResponseWriter, r *http.Request, id *Identity) {
	q := r.URL.Query()
	owner := q.Get(api.QueryUser)
	if err := mayActFor(id, owner); err != nil {
		m.writeError(w, err)
		return
	}
	if owner == "" {
		owner = id.Name()
	}
	var nodes []string
	switch {
	case q.Get(api.QueryNode) != "":
		nodes = []string{q.Get(api.QueryNode)}
	case q.Get(api.QueryJob) != "":
		job, err := m.job(r.Context(), id, q.Get(api.QueryJob), q.Get(api.QueryUser))
		if err != nil {
			m.writeError(w, err)
			return
		}
		owner, nodes = job.User, job.Nodes
	default:
		userNodes := m.slurm.UserNodes
		if _, fromPage := r.Context().Value(browserKey{}).(*browser); fromPage {
			userNodes = m.pageUserNodes
		}
		ns, err := userNodes(r.Context(), owner)
		if err != nil {
			m.writeError(w, &Error{Kind: KindUnavailable, Err: err,
				Msg: "cannot ask Slurm where " + owner + " has jobs: " + err.Error() + "; name the node with --node"})
			return
		}
		nodes = ns
	}
	target := api.RouteSessions + "?" + url.Values{api.QueryUser: {owner}}.Encode()
	res := fanOut(r.Context(), nodes, m.cfg.MaxFanout, func(ctx context.Context, node string) ([]api.Session, error) {
		return getJSON[[]api.Session](ctx, m, node, target, id.UID)
	})
	all := []api.Session{}
	for _, f := range res {
		if f.err != nil {
			if len(nodes) == 1 {
				// Asked of one node: its error is the answer.
				m.writeError(w, f.err)
				return
			}
			warn(w, f.node, f.err)
			continue
		}
		all = append(all, f.val...)
	}
	writeJSON(w, http.StatusOK, all)
}

// handleNodes asks every node's agent for its version, at most max_fanout
// at once, and answers after nodes_timeout at the latest with what it has:
// a node that did not answer in time shows as unreachable, and a Warning
// says how many did not.
func (m *Manager) handleNodes(w http.ResponseWriter, r *http.Request, id *Identity) {
	known, err := m.nodes(r.Context())
	if err != nil {
		m.writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), m.cfg.NodesTimeout.Duration)
	defer cancel()
	res := fanOut(ctx, known.list, m.cfg.MaxFanout, func(ctx context.Context, node string) (api.NodeStatus, error) {
		t0 := time.Now()
		v, err := getJSON[api.VersionInfo](ctx, m, node, api.RouteVersion, id.UID)
		st := api.NodeStatus{Node: node, LatencyMS: float64(time.Since(t0).Microseconds()) / 1000}
		if err != nil {
			return st, err
		}
		st.Reachable, st.Version, st.Running = true, v.Version, v.Running
		return st, nil
	})
	out := make([]api.NodeStatus, 0, len(res))
	late := 0
	for _, f := range res {
		st := f.val
		st.Node = f.node
		switch {
		case f.err == nil:
		case ctx.Err() != nil && r.Context().Err() == nil && errors.Is(f.err, ctx.Err()):
			late++
			st.Error = fmt.Sprintf("no answer within nodes_timeout (%s)", m.cfg.NodesTimeout.Duration)
		default:
			st.Error = f.err.Error()
		}
		out = append(out, st)
	}
	if late > 0 {
		w.Header().Add("Warning", warningValue(fmt.Sprintf("%d of %d nodes did not answer within nodes_timeout (%s)", late, len(res), m.cfg.NodesTimeout.Duration)))
	}
	writeJSON(w, http.StatusOK, out)
}

func (m *Manager) handleVersion(w http.ResponseWriter, _ *http.Request, id *Identity) {
	v := api.VersionInfo{Version: version.Version, API: api.Version, Node: "manager", CallerUID: id.UID, CallerName: id.Name()}
	if m.cfg.SavePath != "" {
		// Where `baicommit list` finds the caller's archives.
		p := policy.Policy{SavePath: m.cfg.SavePath}
		v.SaveDir = p.UserDir(id.Name(), strconv.Itoa(id.UID))
	}
	writeJSON(w, http.StatusOK, v)
}

// result is one node's answer in a fan-out.
type result[T any] struct {
	node string
	val  T
	err  error
}

// fanOut asks the nodes, at most limit at once, and returns the answers in
// node order. Once ctx ends, the nodes not asked yet get its error.
func fanOut[T any](ctx context.Context, nodes []string, limit int, ask func(context.Context, string) (T, error)) []result[T] {
	res := make([]result[T], len(nodes))
	slots := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i, n := range nodes {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			for j := i; j < len(nodes); j++ {
				res[j] = result[T]{node: nodes[j], err: ctx.Err()}
			}
			wg.Wait()
			return res
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			v, err := ask(ctx, n)
			res[i] = result[T]{node: n, val: v, err: err}
		}()
	}
	wg.Wait()
	return res
}

// getJSON asks node's agent for target and decodes a 200 answer; other
// answers become errors with the agent's message.
func getJSON[T any](ctx context.Context, m *Manager, node, target string, uid int) (T, error) {
	return callJSON[T](ctx, m, node, http.MethodGet, target, nil, uid)
}

// callJSON sends body (JSON, or nil) to node's agent and decodes a 200
// answer, like getJSON.
func callJSON[T any](ctx context.Context, m *Manager, node, method, target string, body []byte, uid int) (T, error) {
	var v T
	rep, err := m.callAgent(ctx, node, method, target, body, uid)
	if err != nil {
		return v, err
	}
	if rep.status != http.StatusOK {
		var e api.Error
		_ = json.Unmarshal(rep.body, &e)
		return v, httperr.FromStatus(rep.status, e.Message)
	}
	if err := json.Unmarshal(rep.body, &v); err != nil {
		return v, fmt.Errorf("node %s: undecodable answer: %w", node, err)
	}
	return v, nil
}

// warn adds a Warning header saying a node's part is missing.
func warn(w http.ResponseWriter, node string, err error) {
	msg := err.Error()
	if !strings.Contains(msg, node) {
		msg = "node " + node + ": " + msg
	}
	w.Header().Add("Warning", warningValue(msg))
}

// warningValue is an HTTP Warning header saying msg.
func warningValue(msg string) string {
	return `199 baicommit "` + strings.NewReplacer(`"`, `'`, "\n", " ").Replace(msg) + `"`
}

// relay passes an agent's answer on unchanged.
func relay(w http.ResponseWriter, rep *reply) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	_, _ = w.Write(rep.body)
}

func writeJSON(w http.ResponseWriter, status int, v any) { httperr.WriteJSON(w, status, v) }

func (m *Manager) writeError(w http.ResponseWriter, err error) {
	if httperr.Status(err) == http.StatusInternalServerError {
		m.log.Error("internal error", "err", err)
	}
	httperr.Write(w, err)
}

// readAll reads at most max bytes of r.
func readAll(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err == nil && int64(len(b)) > max {
		err = fmt.Errorf("answer larger than %d bytes", max)
	}
	return b, err
}

// unwrapURL drops url.Error's "Get \"http://…\":" prefix, which repeats
// what the message already says.
func unwrapURL(err error) error {
	var u *url.Error
	if errors.As(err, &u) {
		return u.Err
	}
	return err
}

// ListenAndServe serves on the configured address (HTTPS when tls_cert
// and tls_key are set) until ctx ends, then stops accepting and waits at
// most 10 s for requests in flight.
func (m *Manager) ListenAndServe(ctx context.Context) error {
	srv := m.NewServer()
	if m.cfg.TLSCert != "" {
		// Read now, so a bad certificate stops the start instead of the
		// first request.
		cert, err := tls.LoadX509KeyPair(m.cfg.TLSCert, m.cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("tls_cert/tls_key: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", m.cfg.Listen)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	m.log.Info("manager started", "listen", ln.Addr().String(), "tls", m.cfg.TLSCert != "", "version", version.Version)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	m.log.Info("manager stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
