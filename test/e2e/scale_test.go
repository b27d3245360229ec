package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/test/scale/sim"
)

// startSim brings up a simulated cluster of n nodes (package sim: the
// real manager, the real agent code for every node, the real munged) and
// stops it when the test ends, with its logs if it failed.
func startSim(t *testing.T, shape sim.Shape) *sim.Cluster {
	t.Helper()
	users, err := sim.SystemUsers(sim.SimUsers...)
	assert.NilError(t, err, "scripts/setup.sh creates the simulation's users")
	shape.Users = users
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := sim.Start(ctx, sim.Options{Shape: shape, Bin: bins.dir, ManagerUser: managerUser})
	assert.NilError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("simulation logs:\n%s", c.Logs())
		}
		c.Close()
	})
	return c
}

// At 2,000 nodes, under a light load of 50 clients (10 users, 5 each),
// every user sees exactly their own sessions, tasks and archives and
// nobody else's; a node that does not answer is a warning, not a failure;
// what a request costs does not grow with the cluster.
func TestScale2000Nodes(t *testing.T) {
	c := startSim(t, sim.Shape{Nodes: 2000, Unanswering: true, UnansweringJobNode: true})
	ctx := context.Background()
	p := c.Plan
	hung := p.Hung[0] // a node of the first user's running job
	tasks, err := c.FreezeAll(ctx)
	assert.NilError(t, err)

	byUID := map[int]sim.User{}
	for _, u := range p.Users {
		byUID[u.UID] = u
	}
	run := func(name string, reqs func(u sim.User) []sim.Request) (map[int]*sim.ClientResult, *sim.Snapshot) {
		t.Helper()
		specs := map[int]sim.ClientSpec{}
		for _, u := range p.Users {
			specs[u.UID] = sim.ClientSpec{Workers: 5, Repeat: 2, Requests: reqs(u), Keep: true}
		}
		before, err := c.Snapshot(ctx)
		assert.NilError(t, err)
		res, err := c.RunAll(ctx, specs)
		assert.NilError(t, err, name)
		after, err := c.Snapshot(ctx)
		assert.NilError(t, err)
		return res, after.Sub(before)
	}
	get := func(path string) func(sim.User) []sim.Request {
		return func(sim.User) []sim.Request { return []sim.Request{{Method: http.MethodGet, Path: path}} }
	}
	warned := func(a sim.Answer, node string) bool {
		return slices.ContainsFunc(a.Warnings, func(w string) bool { return strings.Contains(w, node) })
	}

	t.Run("sessions", func(t *testing.T) {
		res, _ := run("sessions", get(api.RouteSessions))
		for uid, r := range res {
			u := byUID[uid]
			var want []string
			for _, n := range p.RunningNodes(u.Name) {
				if p.Answers(n) {
					for _, s := range p.SessionsOf(n, u.Name) {
						want = append(want, n+"/"+s.Name)
					}
				}
			}
			slices.Sort(want)
			for _, a := range r.Answers {
				assert.Assert(t, is.Equal(a.Status, http.StatusOK), "%s: %s %s", u.Name, a.Body, a.Err)
				var ss []api.Session
				assert.NilError(t, json.Unmarshal(a.Body, &ss))
				var got []string
				for _, s := range ss {
					assert.Check(t, is.Equal(s.Owner, u.Name), "%s was shown %s's session", u.Name, s.Owner)
					got = append(got, s.Node+"/"+s.Name)
				}
				slices.Sort(got)
				assert.Check(t, is.DeepEqual(got, want), "%s", u.Name)
				hasHung := slices.Contains(p.RunningNodes(u.Name), hung)
				assert.Check(t, is.Equal(warned(a, hung), hasHung), "%s: warnings %v", u.Name, a.Warnings)
			}
		}
	})

	var listCost *sim.Snapshot
	t.Run("list", func(t *testing.T) {
		res, d := run("list", get(api.RouteTasks))
		listCost = d
		for uid, r := range res {
			u := byUID[uid]
			var want []string
			for _, tk := range tasks[u.Name] {
				want = append(want, tk.ID)
			}
			slices.Sort(want)
			for _, a := range r.Answers {
				assert.Assert(t, is.Equal(a.Status, http.StatusOK), "%s: %s %s", u.Name, a.Body, a.Err)
				var ts []api.Task
				assert.NilError(t, json.Unmarshal(a.Body, &ts))
				var got []string
				for _, tk := range ts {
					assert.Check(t, is.Equal(tk.Owner, u.Name), "%s was shown %s's task", u.Name, tk.Owner)
					got = append(got, tk.ID)
				}
				slices.Sort(got)
				// Those of running and ended jobs, and the stray one only
				// the archives lead to.
				assert.Check(t, is.DeepEqual(got, want), "%s", u.Name)
				hasHung := slices.Contains(p.RunningNodes(u.Name), hung)
				assert.Check(t, is.Equal(warned(a, hung), hasHung), "%s: warnings %v", u.Name, a.Warnings)
			}
		}
	})

	t.Run("archives", func(t *testing.T) {
		res, _ := run("archives", get(api.RouteArchives))
		for uid, r := range res {
			u := byUID[uid]
			var want []string
			for _, tk := range tasks[u.Name] {
				want = append(want, tk.ID)
			}
			slices.Sort(want)
			for _, a := range r.Answers {
				assert.Assert(t, is.Equal(a.Status, http.StatusOK), "%s: %s %s", u.Name, a.Body, a.Err)
				var l api.ArchiveList
				assert.NilError(t, json.Unmarshal(a.Body, &l))
				var got []string
				for _, e := range l.Archives {
					assert.Check(t, is.Equal(e.UID, u.UID), "%s was shown %s's archive", u.Name, e.User)
					got = append(got, e.Task)
				}
				slices.Sort(got)
				assert.Check(t, is.DeepEqual(got, want), "%s", u.Name)
			}
		}
	})

	t.Run("another user's task", func(t *testing.T) {
		res, _ := run("status", func(u sim.User) []sim.Request {
			other := p.Users[(slices.Index(p.Users, u)+1)%len(p.Users)]
			return sim.StatusRequests(tasks[other.Name][:1])
		})
		for uid, r := range res {
			for _, a := range r.Answers {
				assert.Check(t, is.Equal(a.Status, http.StatusForbidden), "%s: %s", byUID[uid].Name, a.Body)
				assert.Check(t, is.Contains(string(a.Body), "you can only see your own freezes"))
			}
		}
	})

	t.Run("what a request costs", func(t *testing.T) {
		// Each user's list asked the nodes of their jobs and archives and
		// one agent for the archives: a handful, not 2,000.
		assert.Assert(t, listCost != nil)
		perList := float64(listCost.AgentRequests()) / float64(len(p.Users)*5*2)
		t.Logf("list: %.1f agent requests per request at %d nodes", perList, len(p.Nodes))
		assert.Check(t, perList <= 8, "list asked %.1f agents per request", perList)
		// A status costs the client's credential and the manager's decode:
		// the agents' sessions are open already.
		_, d := run("status", func(u sim.User) []sim.Request { return sim.StatusRequests(tasks[u.Name]) })
		var n int64
		for _, u := range p.Users {
			n += int64(5 * 2 * len(tasks[u.Name]))
		}
		assert.Check(t, is.Equal(d.Munge[sim.RoleClient], n))
		assert.Check(t, is.Equal(d.Munge[sim.RoleManager], n))
		assert.Check(t, is.Equal(d.Munge[sim.RoleAgent], int64(0)))
		assert.Check(t, is.Equal(d.Agent[sim.KindTask], n))
	})

	t.Run("nodes", func(t *testing.T) {
		res, err := c.Run(ctx, 0, sim.ClientSpec{Workers: 1, Repeat: 1, Keep: true,
			Requests: []sim.Request{{Method: http.MethodGet, Path: api.RouteNodes}}})
		assert.NilError(t, err)
		a := res.Answers[0]
		assert.Assert(t, is.Equal(a.Status, http.StatusOK), "%s %s", a.Body, a.Err)
		var ns []api.NodeStatus
		assert.NilError(t, json.Unmarshal(a.Body, &ns))
		assert.Assert(t, is.Len(ns, 2000))
		for _, n := range ns {
			switch {
			case slices.Contains(p.Hung, n.Node):
				assert.Check(t, !n.Reachable && strings.Contains(n.Error, "did not answer within"), "%+v", n)
			case slices.Contains(p.Down, n.Node):
				assert.Check(t, !n.Reachable && strings.Contains(n.Error, "cannot reach the agent"), "%+v", n)
			default:
				assert.Check(t, n.Reachable, "%+v", n)
			}
		}
		t.Logf("nodes: 2000 agents asked in %.0f ms", a.Ms)
	})
	rss, peak, err := c.Memory()
	assert.NilError(t, err)
	t.Logf("manager RSS %d KiB, peak %d KiB", rss, peak)
}

// A simulated agent that restarts under load (its sessions gone) and
// comes back: the manager opens a new session, and the requests that
// found it down succeed when sent again.
func TestScaleAgentRestartUnderLoad(t *testing.T) {
	c := startSim(t, sim.Shape{Nodes: 64})
	ctx := context.Background()
	tasks, err := c.FreezeAll(ctx)
	assert.NilError(t, err)
	node := c.Plan.RunningNodes(c.Plan.Users[0].Name)[0]
	done := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		done <- c.Restart(ctx, node)
	}()
	specs := map[int]sim.ClientSpec{}
	for _, u := range c.Plan.Users {
		specs[u.UID] = sim.ClientSpec{Workers: 5, Repeat: 20, Requests: sim.StatusRequests(tasks[u.Name])}
	}
	before, err := c.Snapshot(ctx)
	assert.NilError(t, err)
	res, err := c.RunAll(ctx, specs)
	assert.NilError(t, err)
	assert.NilError(t, <-done)
	after, err := c.Snapshot(ctx)
	assert.NilError(t, err)
	refused := 0
	for _, r := range res {
		for _, a := range r.Answers {
			if a.Status == http.StatusOK {
				continue
			}
			// Only while the agent was away: a 502 that names it.
			assert.Check(t, a.Status == http.StatusBadGateway && strings.Contains(string(a.Body), "node "+node), "%d %s %s", a.Status, a.Body, a.Err)
			refused++
		}
	}
	opened := after.Sub(before).Agent[sim.KindOpen]
	t.Logf("agent restart under load: %d of the requests found it away (502), %d sessions opened again", refused, opened)
	assert.Check(t, opened >= 1, "no new session was opened after the restart")

	// Sent again, every one of them succeeds.
	for _, u := range c.Plan.Users {
		specs[u.UID] = sim.ClientSpec{Workers: 1, Repeat: 1, Requests: sim.StatusRequests(tasks[u.Name])}
	}
	res, err = c.RunAll(ctx, specs)
	assert.NilError(t, err)
	for _, r := range res {
		for _, a := range r.Answers {
			assert.Check(t, is.Equal(a.Status, http.StatusOK), "%s %s", a.Body, a.Err)
		}
	}
}
