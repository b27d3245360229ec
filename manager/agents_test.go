package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/internal/reqauth"
)

// fakeAgent checks the manager's signatures as an agent does and answers
// from a table; restart forgets its sessions, as a restarted agent does.
type fakeAgent struct {
	node     string
	ts       *httptest.Server
	mu       sync.Mutex
	auth     *reqauth.Server
	archives []api.ArchiveEntry
	hang     bool

	requests, challenges, opens atomic.Int32
}

func newFakeAgent(t *testing.T, node string) *fakeAgent {
	f := &fakeAgent{node: node, auth: reqauth.NewServer(node, reqauth.ServerOptions{})}
	f.ts = httptest.NewServer(f)
	t.Cleanup(f.ts.Close)
	return f
}

func (f *fakeAgent) sessions() *reqauth.Server {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.auth
}

func (f *fakeAgent) restart() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = reqauth.NewServer(f.node, reqauth.ServerOptions{})
}

func (f *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	if f.hang {
		<-r.Context().Done()
		return
	}
	uid, err := identity.FromSession(f.sessions(), r, 1<<10)
	if errors.Is(err, reqauth.ErrNoSession) {
		f.challenges.Add(1)
		reqauth.Challenge(w.Header())
	}
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, api.Error{Message: err.Error()})
		return
	}
	switch r.URL.Path {
	case api.RouteTasks:
		writeJSON(w, http.StatusOK, []api.Task{{ID: "t1." + f.node, Node: f.node, OwnerUID: uid}})
	case api.RouteVersion:
		writeJSON(w, http.StatusOK, api.VersionInfo{Version: "v1", Node: f.node, CallerUID: uid})
	case api.RouteArchives:
		writeJSON(w, http.StatusOK, api.ArchiveList{Archives: f.archives})
	default:
		http.NotFound(w, r)
	}
}

// testCluster is a manager in front of fake agents, opening sessions
// with them directly (the MUNGE part is the end-to-end tests').
func testCluster(t *testing.T, cfg Config, s Slurm, agents ...*fakeAgent) *Manager {
	cfg.Agents = map[string]string{}
	byNode := map[string]*fakeAgent{}
	for _, a := range agents {
		cfg.Agents[a.node] = a.ts.URL
		byNode[a.node] = a
	}
	m := newTestManager(cfg, s)
	m.sessions = reqauth.NewClient(func(_ context.Context, node string, hello []byte) ([]byte, error) {
		a := byNode[node]
		a.opens.Add(1)
		if a.hang {
			return nil, &Error{Kind: KindTimeout, Msg: "node " + node + " hangs"}
		}
		return a.sessions().Accept(hello)
	}, reqauth.ClientOptions{})
	return m
}

var alice = &Identity{UID: 1000, User: &identity.User{UID: 1000, Name: "alice"}}

// An agent that restarted no longer knows the manager's session: the
// request still succeeds, through one new session.
func TestAgentRestartFailsNoRequest(t *testing.T) {
	a := newFakeAgent(t, "cn01")
	m := testCluster(t, DefaultConfig(), &fakeSlurm{}, a)
	ctx := context.Background()
	for range 3 {
		rep, err := m.callAgent(ctx, "cn01", http.MethodGet, api.RouteVersion, nil, 1000)
		assert.NilError(t, err)
		assert.Check(t, is.Equal(rep.status, http.StatusOK))
	}
	assert.Check(t, is.Equal(a.opens.Load(), int32(1)), "one session for every request")

	a.restart()
	rep, err := m.callAgent(ctx, "cn01", http.MethodGet, api.RouteVersion, nil, 1000)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(rep.status, http.StatusOK), "%s", rep.body)
	assert.Check(t, is.Equal(a.challenges.Load(), int32(1)))
	assert.Check(t, is.Equal(a.opens.Load(), int32(2)))
}

// An agent that refuses the manager's signature for another reason is the
// manager's problem, not the user's: 502, naming the node.
func TestAgentRefusingTheManagerIsABadGateway(t *testing.T) {
	a := newFakeAgent(t, "cn01")
	m := testCluster(t, DefaultConfig(), &fakeSlurm{}, a)
	// A session the agent never opened: challenged twice, given up.
	m.sessions = reqauth.NewClient(func(_ context.Context, node string, hello []byte) ([]byte, error) {
		return reqauth.NewServer(node, reqauth.ServerOptions{}).Accept(hello)
	}, reqauth.ClientOptions{})
	_, err := m.callAgent(context.Background(), "cn01", http.MethodGet, api.RouteVersion, nil, 1000)
	assert.Check(t, is.Equal(Status(err), http.StatusBadGateway))
	assert.Check(t, is.ErrorContains(err, "node cn01 refused the manager's request"))
	assert.Check(t, is.Equal(a.challenges.Load(), int32(2)), "asked again once")
}

func TestFanOutBoundsConcurrency(t *testing.T) {
	var now, peak atomic.Int32
	nodes := make([]string, 40)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("cn%02d", i)
	}
	res := fanOut(context.Background(), nodes, 4, func(_ context.Context, n string) (string, error) {
		c := now.Add(1)
		for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
		}
		time.Sleep(2 * time.Millisecond)
		now.Add(-1)
		return "answer of " + n, nil
	})
	assert.Check(t, peak.Load() <= 4, "%d at once", peak.Load())
	assert.Check(t, is.Len(res, 40))
	for i, r := range res {
		assert.Check(t, is.Equal(r.node, nodes[i]))
		assert.Check(t, is.Equal(r.val, "answer of "+nodes[i]))
	}
}

// Once its context ends, a fan-out asks nobody more and returns at once.
func TestFanOutStopsAtItsDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var asked atomic.Int32
	t0 := time.Now()
	res := fanOut(ctx, []string{"a", "b", "c", "d", "e"}, 2, func(ctx context.Context, _ string) (int, error) {
		asked.Add(1)
		<-ctx.Done()
		return 0, ctx.Err()
	})
	assert.Check(t, time.Since(t0) < 2*time.Second)
	assert.Check(t, is.Equal(asked.Load(), int32(2)))
	for _, r := range res {
		assert.Check(t, is.ErrorIs(r.err, context.DeadlineExceeded), "%s", r.node)
	}
}

// nodes answers by nodes_timeout with what it has: an agent that hangs is
// unreachable, with a warning, and the others are there.
func TestNodesAnswersWithWhatItHas(t *testing.T) {
	up1, up2, hung := newFakeAgent(t, "cn01"), newFakeAgent(t, "cn02"), newFakeAgent(t, "cn03")
	hung.hang = true
	cfg := DefaultConfig()
	cfg.NodesTimeout.Duration = 300 * time.Millisecond
	cfg.AgentTimeout.Duration = time.Minute
	m := testCluster(t, cfg, &fakeSlurm{}, up1, up2, hung)
	// Open the hung agent's session, so that its request is what hangs.
	m.sessions = reqauth.NewClient(func(_ context.Context, node string, hello []byte) ([]byte, error) {
		if node == "cn03" {
			return reqauth.NewServer(node, reqauth.ServerOptions{}).Accept(hello)
		}
		return map[string]*fakeAgent{"cn01": up1, "cn02": up2}[node].sessions().Accept(hello)
	}, reqauth.ClientOptions{})

	w := httptest.NewRecorder()
	t0 := time.Now()
	m.handleNodes(w, httptest.NewRequest(http.MethodGet, api.RouteNodes, nil), alice)
	assert.Check(t, time.Since(t0) < 5*time.Second, "took %s", time.Since(t0))
	assert.Equal(t, w.Code, http.StatusOK)
	var got []api.NodeStatus
	assert.NilError(t, json.Unmarshal(w.Body.Bytes(), &got))
	assert.Assert(t, is.Len(got, 3))
	assert.Check(t, got[0].Reachable && got[1].Reachable)
	assert.Check(t, !got[2].Reachable)
	assert.Check(t, is.Contains(got[2].Error, "no answer within nodes_timeout"))
	assert.Check(t, is.Contains(w.Header().Get("Warning"), "1 of 3 nodes did not answer"))
}

// recentSlurm knows where a user's jobs ran lately.
type recentSlurm struct {
	userNodesSlurm
	recent []string
	err    error
}

func (s recentSlurm) RecentNodes(context.Context, string) ([]string, error) { return s.recent, s.err }

// A user's tasks are looked for on the nodes of their recent jobs and of
// their recent archives: nowhere else, however large the cluster.
func TestListAsksOnlyTheUsersNodes(t *testing.T) {
	agents := []*fakeAgent{newFakeAgent(t, "cn1"), newFakeAgent(t, "cn2"), newFakeAgent(t, "cn3"), newFakeAgent(t, "cn4"), newFakeAgent(t, "cn5")}
	now := time.Now()
	archives := []api.ArchiveEntry{
		{Sidecar: api.Sidecar{Node: "cn3", Created: now.Add(-time.Hour)}},
		{Sidecar: api.Sidecar{Node: "cn2", Created: now.Add(-2 * time.Hour)}},
		{Sidecar: api.Sidecar{Node: "cn4", Created: now.Add(-30 * 24 * time.Hour)}}, // too old to matter
	}
	for _, a := range agents {
		a.archives = archives
	}
	for _, tc := range []struct {
		name     string
		slurm    recentSlurm
		query    string
		down     bool
		want     []string
		warnings []string
	}{
		{name: "jobs and archives", slurm: recentSlurm{recent: []string{"cn1", "cn2", "login1"}}, want: []string{"cn1", "cn2", "cn3"}},
		{name: "no jobs", want: []string{"cn2", "cn3"}},
		{name: "Slurm down", slurm: recentSlurm{err: errors.New("slurmctld down")}, want: []string{"cn2", "cn3"},
			warnings: []string{"cannot ask Slurm where your jobs ran"}},
		{name: "no agent lists archives", slurm: recentSlurm{recent: []string{"cn5"}}, down: true,
			warnings: []string{"only on the nodes of your recent jobs", "node cn5"}},
		{name: "one node asked for", query: "?node=cn4", slurm: recentSlurm{recent: []string{"cn1"}}, want: []string{"cn4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, a := range agents {
				a.hang = tc.down
			}
			cfg := DefaultConfig()
			cfg.AgentTimeout.Duration = 200 * time.Millisecond
			m := testCluster(t, cfg, tc.slurm, agents...)
			w := httptest.NewRecorder()
			m.handleTasks(w, httptest.NewRequest(http.MethodGet, api.RouteTasks+tc.query, nil), alice)
			assert.Equal(t, w.Code, http.StatusOK, w.Body.String())
			var ts []api.Task
			assert.NilError(t, json.Unmarshal(w.Body.Bytes(), &ts))
			var got []string
			for _, tk := range ts {
				got = append(got, tk.Node)
			}
			slices.Sort(got)
			assert.Check(t, is.DeepEqual(got, tc.want))
			warnings := strings.Join(w.Header().Values("Warning"), "\n")
			for _, want := range tc.warnings {
				assert.Check(t, is.Contains(warnings, want))
			}
			if len(tc.warnings) == 0 {
				assert.Check(t, is.Equal(warnings, ""))
			}
		})
	}
}
