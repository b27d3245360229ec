package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/user"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/baicommit/baicommit/api"
)

// SystemUsers looks the named accounts up.
func SystemUsers(names ...string) ([]User, error) {
	var out []User
	for _, n := range names {
		u, err := user.Lookup(n)
		if err != nil {
			return nil, fmt.Errorf("the simulation's users come from scripts/setup.sh: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		out = append(out, User{Name: n, UID: uid, GID: gid})
	}
	return out, nil
}

// SimUsers are the accounts scripts/setup.sh creates for the simulation.
var SimUsers = []string{"bcsim01", "bcsim02", "bcsim03", "bcsim04", "bcsim05", "bcsim06", "bcsim07", "bcsim08", "bcsim09", "bcsim10"}

// FreezeAll has every user freeze, through the manager, one session on
// each node where they have one whose agent answers (FreezeTargets), and
// waits until every freeze ended. It returns each user's tasks.
func (c *Cluster) FreezeAll(ctx context.Context) (map[string][]api.Task, error) {
	specs := map[int]ClientSpec{}
	for _, u := range c.Plan.Users {
		var reqs []Request
		for _, s := range c.Plan.FreezeTargets(u.Name) {
			b, _ := json.Marshal(api.FreezeRequest{Container: s.Name, Node: s.Node})
			reqs = append(reqs, Request{Method: http.MethodPost, Path: api.RouteFreezes, Body: b})
		}
		specs[u.UID] = ClientSpec{Workers: 1, Repeat: 1, Requests: reqs, Keep: true}
	}
	res, err := c.RunAll(ctx, specs)
	if err != nil {
		return nil, err
	}
	out := map[string][]api.Task{}
	for _, u := range c.Plan.Users {
		for _, a := range res[u.UID].Answers {
			if a.Status != http.StatusAccepted {
				return nil, fmt.Errorf("%s's freeze %d: %d %s %s", u.Name, a.Request, a.Status, a.Body, a.Err)
			}
			var t api.Task
			if err := json.Unmarshal(a.Body, &t); err != nil {
				return nil, err
			}
			out[u.Name] = append(out[u.Name], t)
		}
	}
	// The simulated helper takes no time; the tasks end at once.
	for range 100 {
		done, err := c.allDone(ctx, out)
		if err != nil || done {
			return out, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("the freezes did not end")
}

// allDone reports whether every task ended, as their owners see them.
func (c *Cluster) allDone(ctx context.Context, tasks map[string][]api.Task) (bool, error) {
	specs := map[int]ClientSpec{}
	for _, u := range c.Plan.Users {
		specs[u.UID] = ClientSpec{Workers: 1, Repeat: 1, Requests: StatusRequests(tasks[u.Name]), Keep: true}
	}
	res, err := c.RunAll(ctx, specs)
	if err != nil {
		return false, err
	}
	for _, u := range c.Plan.Users {
		for _, a := range res[u.UID].Answers {
			var t api.Task
			if a.Status != http.StatusOK || json.Unmarshal(a.Body, &t) != nil {
				return false, fmt.Errorf("%s's status: %d %s %s", u.Name, a.Status, a.Body, a.Err)
			}
			if !t.Done() {
				return false, nil
			}
			if t.State != api.StateSucceeded {
				return false, fmt.Errorf("%s's freeze %s failed: %s", u.Name, t.ID, t.Error)
			}
		}
	}
	return true, nil
}

// StatusRequests asks for each of tasks.
func StatusRequests(tasks []api.Task) []Request {
	var out []Request
	for _, t := range tasks {
		out = append(out, Request{Method: http.MethodGet, Path: api.RouteTask + t.ID})
	}
	return out
}

// Phase is one route measured: every user's client process runs Workers
// goroutines, each sending Repeat rounds of the user's requests.
type Phase struct {
	Name    string
	Workers int
	Repeat  int
	// Requests are a user's (nil: the user sends none).
	Requests func(u User) []Request
	// AsRoot sends them as root instead, once (an admin's view).
	AsRoot bool
}

// Result is what a phase measured.
type Result struct {
	Name     string  `json:"name"`
	Requests int     `json:"requests"`
	Failures int     `json:"failures"`
	Failure  string  `json:"first_failure,omitempty"`
	Warnings int     `json:"warnings"`
	Seconds  float64 `json:"seconds"`
	// Per user request: agent requests (sessions opened included) and
	// MUNGE operations, of every role and by role.
	Agent       float64            `json:"agent_requests_per_request"`
	Munge       float64            `json:"munge_per_request"`
	MungeByRole map[string]float64 `json:"munge_by_role"`
	// Slurm commands (squeue, scontrol, sinfo) the manager ran.
	Slurm float64 `json:"slurm_commands_per_request"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	// The manager's resident memory after the phase and its peak, KiB.
	RSS  int `json:"manager_rss_kib"`
	Peak int `json:"manager_peak_kib"`
}

// Measure runs one phase and reads the counters around it.
func (c *Cluster) Measure(ctx context.Context, ph Phase) (*Result, error) {
	specs := map[int]ClientSpec{}
	if ph.AsRoot {
		specs[0] = ClientSpec{Workers: ph.Workers, Repeat: ph.Repeat, Requests: ph.Requests(User{Name: "root"})}
	} else {
		for _, u := range c.Plan.Users {
			if reqs := ph.Requests(u); len(reqs) > 0 {
				specs[u.UID] = ClientSpec{Workers: ph.Workers, Repeat: ph.Repeat, Requests: reqs}
			}
		}
	}
	before, err := c.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	res, err := c.RunAll(ctx, specs)
	if err != nil {
		return nil, err
	}
	r := &Result{Name: ph.Name, Seconds: time.Since(t0).Seconds(), MungeByRole: map[string]float64{}}
	after, err := c.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	var lat []float64
	for _, cr := range res {
		for _, a := range cr.Answers {
			r.Requests++
			lat = append(lat, a.Ms)
			if a.Err != "" || a.Status >= 300 {
				r.Failures++
				if r.Failure == "" {
					r.Failure = fmt.Sprintf("%d %s%s", a.Status, a.Body, a.Err)
				}
			}
			r.Warnings += len(a.Warnings)
		}
	}
	if r.Requests == 0 {
		return nil, fmt.Errorf("phase %s sent nothing", ph.Name)
	}
	d := after.Sub(before)
	n := float64(r.Requests)
	r.Agent = float64(d.AgentRequests()) / n
	r.Munge = float64(d.MungeOps()) / n
	r.Slurm = float64(d.SlurmCommands()) / n
	for role, v := range d.Munge {
		r.MungeByRole[role] = float64(v) / n
	}
	sort.Float64s(lat)
	r.P50, r.P99 = percentile(lat, 0.50), percentile(lat, 0.99)
	r.RSS, r.Peak, err = c.Memory()
	return r, err
}

func percentile(sorted []float64, p float64) float64 {
	return sorted[int(p*float64(len(sorted)-1))]
}

// Phases are the routes the benchmark measures, with tasks the users'
// (from FreezeAll): each user's own tasks' status, their sessions, their
// list, their archives, freezes, and the admin's node list (the first
// time, when the manager opens a session with every agent, and again).
func Phases(p *Plan, tasks map[string][]api.Task, workers, repeat int) []Phase {
	same := func(r Request) func(User) []Request { return func(User) []Request { return []Request{r} } }
	return []Phase{
		{Name: "status", Workers: workers, Repeat: repeat, Requests: func(u User) []Request { return StatusRequests(tasks[u.Name]) }},
		{Name: "sessions", Workers: workers, Repeat: repeat, Requests: same(Request{Method: http.MethodGet, Path: api.RouteSessions})},
		// The same, naming the node: what Slurm adds to the above.
		{Name: "sessions --node", Workers: workers, Repeat: repeat, Requests: func(u User) []Request {
			q := url.Values{api.QueryNode: {p.RunningNodes(u.Name)[0]}}
			return []Request{{Method: http.MethodGet, Path: api.RouteSessions + "?" + q.Encode()}}
		}},
		{Name: "list", Workers: workers, Repeat: repeat, Requests: same(Request{Method: http.MethodGet, Path: api.RouteTasks})},
		{Name: "archives", Workers: workers, Repeat: repeat, Requests: same(Request{Method: http.MethodGet, Path: api.RouteArchives})},
		{Name: "freeze", Workers: 1, Repeat: 1, Requests: func(u User) []Request {
			var out []Request
			for _, s := range p.FreezeTargets(u.Name) {
				if s.Running && slices.Contains(p.RunningNodes(u.Name), s.Node) {
					b, _ := json.Marshal(api.FreezeRequest{Container: s.Name, Node: s.Node})
					out = append(out, Request{Method: http.MethodPost, Path: api.RouteFreezes, Body: b})
				}
			}
			return out
		}},
		{Name: "nodes (first)", AsRoot: true, Workers: 1, Repeat: 1, Requests: same(Request{Method: http.MethodGet, Path: api.RouteNodes})},
		{Name: "nodes (again)", AsRoot: true, Workers: 1, Repeat: 3, Requests: same(Request{Method: http.MethodGet, Path: api.RouteNodes})},
	}
}
