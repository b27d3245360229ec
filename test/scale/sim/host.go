package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/baicommit/baicommit/agent"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/reqauth"
)

// Counters are what one host's agents were asked, by kind of request.
type Counters map[string]int64

// Kinds of agent requests, as counted.
const (
	KindTask     = "task"     // GET /v1/tasks/{id}
	KindTasks    = "tasks"    // GET /v1/tasks
	KindSessions = "sessions" // GET /v1/sessions
	KindArchives = "archives" // GET /v1/archives
	KindVersion  = "version"  // GET /v1/version
	KindFreeze   = "freeze"   // POST /v1/freezes
	KindOpen     = "open"     // POST reqauth.Route: a session opened
	KindOther    = "other"
)

func kindOf(r *http.Request) string {
	switch p := r.URL.Path; {
	case p == reqauth.Route:
		return KindOpen
	case strings.HasPrefix(p, api.RouteTask):
		return KindTask
	case p == api.RouteTasks:
		return KindTasks
	case p == api.RouteSessions:
		return KindSessions
	case p == api.RouteArchives:
		return KindArchives
	case p == api.RouteVersion:
		return KindVersion
	case p == api.RouteFreezes:
		return KindFreeze
	}
	return KindOther
}

// Host serves some of a plan's nodes in this process, each with the real
// agent code on its own address, and a control socket for the driver.
type Host struct {
	plan  *Plan
	log   *slog.Logger
	mu    sync.Mutex
	nodes map[string]*hostNode
	count map[string]*atomic.Int64
	hung  []net.Listener
}

type hostNode struct {
	name string
	addr string
	a    *agent.Agent
	srv  *http.Server
}

// NewHost returns a host of the plan's nodes [from, to).
func NewHost(p *Plan, from, to int, log *slog.Logger) *Host {
	h := &Host{plan: p, log: log, nodes: map[string]*hostNode{}, count: map[string]*atomic.Int64{}}
	for _, k := range []string{KindTask, KindTasks, KindSessions, KindArchives, KindVersion, KindFreeze, KindOpen, KindOther} {
		h.count[k] = &atomic.Int64{}
	}
	for _, n := range p.Nodes[from:min(to, len(p.Nodes))] {
		h.nodes[n.Name] = &hostNode{name: n.Name, addr: n.Addr}
	}
	return h
}

// Start starts every node's agent; hung nodes get a listener that never
// answers, down nodes nothing.
func (h *Host) Start() error {
	for _, n := range h.nodes {
		switch {
		case slices.Contains(h.plan.Down, n.name):
		case slices.Contains(h.plan.Hung, n.name):
			ln, err := net.Listen("tcp", net.JoinHostPort(n.addr, fmt.Sprint(Port)))
			if err != nil {
				return err
			}
			h.hung = append(h.hung, ln)
			go hold(ln)
		default:
			if err := h.startNode(n); err != nil {
				return fmt.Errorf("node %s: %w", n.name, err)
			}
		}
	}
	return nil
}

// hold accepts connections and never answers, as a hung agent.
func hold(ln net.Listener) {
	var conns []net.Conn
	for {
		c, err := ln.Accept()
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return
		}
		conns = append(conns, c)
	}
}

func (h *Host) config(node string) (agent.Config, error) {
	cfg := agent.DefaultConfig()
	cfg.NodeName = node
	cfg.StateDir = filepath.Join(h.plan.Dir, "state", node)
	cfg.RunDir = filepath.Join(h.plan.Dir, "run", node)
	cfg.SavePath = h.plan.SaveRoot + "/{user}"
	cfg.SaveRoots = []string{h.plan.SaveRoot}
	cfg.ManagerUser = h.plan.ManagerUser
	cfg.MungeSocket = h.plan.MungeSocket
	cfg.IdleExit.Duration = 0
	return cfg, cfg.Validate()
}

func (h *Host) startNode(n *hostNode) error {
	cfg, err := h.config(n.name)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, agent.Deps{Podman: newPodmans(h.plan, n.name), Helpers: helpers{}}, h.log.With("node", n.name))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(n.addr, fmt.Sprint(Port)))
	if err != nil {
		a.Close()
		return err
	}
	srv := agent.NewServer(a)
	inner := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.count[kindOf(r)].Add(1)
		inner.ServeHTTP(w, r)
	})
	n.a, n.srv = a, srv
	go func() { _ = srv.Serve(ln) }()
	return nil
}

func (h *Host) stopNode(n *hostNode) {
	if n.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.srv.Shutdown(ctx)
	_ = n.a.Close()
	n.srv, n.a = nil, nil
}

// Restart stops node's agent and starts it again, as an agent that
// restarts: its tasks are in its store, its sessions with managers gone.
func (h *Host) Restart(node string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	n, ok := h.nodes[node]
	if !ok || n.srv == nil {
		return fmt.Errorf("no agent of node %s here", node)
	}
	h.stopNode(n)
	return h.startNode(n)
}

// Counters are the requests this host's agents were sent so far.
func (h *Host) Counters() Counters {
	out := Counters{}
	for k, c := range h.count {
		out[k] = c.Load()
	}
	return out
}

// Close stops every agent.
func (h *Host) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range h.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); h.stopNode(n) }()
	}
	wg.Wait()
	for _, ln := range h.hung {
		ln.Close()
	}
}

// ServeControl answers the driver on a unix socket until ctx ends:
// GET /counters, POST /restart?node=NODE.
func (h *Host) ServeControl(ctx context.Context, sock string) error {
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /counters", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(h.Counters())
	})
	mux.HandleFunc("POST /restart", func(w http.ResponseWriter, r *http.Request) {
		if err := h.Restart(r.URL.Query().Get("node")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
