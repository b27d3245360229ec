// Package sim simulates a Slurm cluster of thousands of nodes on one
// machine, to measure and test baicommit-manager at scale: the real
// manager binary; the real agent code (package agent, NewServer) for every
// node, many nodes to a process, each on its own loopback address, with a
// Podman and an owner-side helper faked through the agent's seams
// (agent.Podmans, agent.Helpers); the real munged, behind counting proxies
// (MungeCounter); and stand-ins for squeue, sinfo and scontrol that answer
// for the simulated cluster (a one-node Slurm cannot hold 2,000 nodes).
//
// A Plan says what the cluster holds; Start brings it up (as root), a
// Cluster runs clients as the simulated users (Run) and reads what each
// part counted. It is test code: internal/deptest keeps every program
// from linking it.
package sim

import (
	"fmt"
	"slices"
	"strconv"
)

// Port is the agents' port, as in agent_url = "http://{node}:7471".
const Port = 7471

// Node is one simulated node.
type Node struct {
	Name string `json:"name"`
	// Addr is its loopback address: the manager resolves Name to it
	// through a hosts file of its own.
	Addr string `json:"addr"`
}

// User is an account that has jobs on the cluster; it must exist on the
// machine (scripts/setup.sh creates the bcsim users).
type User struct {
	Name string `json:"name"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
}

// Job is a Slurm job as the stand-in squeue lists it.
type Job struct {
	ID    string   `json:"id"`
	User  string   `json:"user"`
	State string   `json:"state"` // RUNNING, COMPLETED, PENDING
	Nodes []string `json:"nodes"`
}

// Session is a container in a user's Podman on a node.
type Session struct {
	Node string `json:"node"`
	User string `json:"user"`
	Name string `json:"name"`
	Job  string `json:"job,omitempty"`
	// Running, else it exited (its job ended).
	Running bool `json:"running"`
}

// Plan is the simulated cluster.
type Plan struct {
	Nodes    []Node    `json:"nodes"`
	Users    []User    `json:"users"`
	Jobs     []Job     `json:"jobs"`
	Sessions []Session `json:"sessions"`
	// Hung nodes accept connections and never answer; Down nodes have no
	// agent at all (connection refused).
	Hung []string `json:"hung,omitempty"`
	Down []string `json:"down,omitempty"`
	// Dir holds everything of the simulation: agents' state, the shared
	// filesystem (SaveRoot), sockets, logs.
	Dir      string `json:"dir"`
	SaveRoot string `json:"save_root"`
	// ManagerUser is the manager's account, the agents' manager_user.
	ManagerUser string `json:"manager_user"`
	// MungeSocket is the socket the agents ask munged through.
	MungeSocket string `json:"munge_socket"`
}

// Shape says how large a plan is.
type Shape struct {
	Nodes int
	Users []User
	// Unanswering adds a hung node and a down one to the idle nodes;
	// UnansweringJobNode makes one of the first user's job nodes hang
	// too. Either must make a warning, not a failure.
	Unanswering, UnansweringJobNode bool
}

// Job ids of user k: a running job, one that ended within MinJobAge, one
// pending.
func runningJob(k int) string { return strconv.Itoa(1000 + k) }
func endedJob(k int) string   { return strconv.Itoa(2000 + k) }
func pendingJob(k int) string { return strconv.Itoa(3000 + k) }

// NodeName is the name of node i (0-based).
func NodeName(i int) string { return fmt.Sprintf("sim%05d", i+1) }

// nodeAddr is node i's loopback address: 127.77.0.10, 127.77.0.11, …
func nodeAddr(i int) string { return fmt.Sprintf("127.77.%d.%d", i/200, 10+i%200) }

// NewPlan lays out a cluster of s.Nodes nodes (at least 64). Each user
// has a running job on three nodes of a small "busy" set that users share
// (so agents must tell users apart), with two sessions on each; a job that
// ended recently on another node, with an exited session there; a pending
// job; and a stray session on a node where no job of theirs is known any
// more (only their archives lead there). The rest of the cluster is idle
// nodes.
func NewPlan(dir string, s Shape, managerUser, mungeSocket string) (*Plan, error) {
	if s.Nodes < 64 {
		return nil, fmt.Errorf("a plan needs at least 64 nodes, not %d", s.Nodes)
	}
	if len(s.Users) == 0 || len(s.Users) > 16 {
		return nil, fmt.Errorf("a plan has 1 to 16 users, not %d", len(s.Users))
	}
	p := &Plan{Users: s.Users, Dir: dir, SaveRoot: dir + "/shared", ManagerUser: managerUser, MungeSocket: mungeSocket}
	for i := range s.Nodes {
		p.Nodes = append(p.Nodes, Node{Name: NodeName(i), Addr: nodeAddr(i)})
	}
	const busy = 16
	for k, u := range s.Users {
		var run []string
		for j := range 3 {
			run = append(run, NodeName((k*5+j*3)%busy))
		}
		slices.Sort(run)
		run = slices.Compact(run)
		ended := NodeName(busy + k)
		p.Jobs = append(p.Jobs,
			Job{ID: runningJob(k), User: u.Name, State: "RUNNING", Nodes: run},
			Job{ID: endedJob(k), User: u.Name, State: "COMPLETED", Nodes: []string{ended}},
			Job{ID: pendingJob(k), User: u.Name, State: "PENDING"})
		for _, n := range run {
			for _, name := range []string{"box1", "box2"} {
				p.Sessions = append(p.Sessions, Session{Node: n, User: u.Name, Name: name, Job: runningJob(k), Running: true})
			}
		}
		p.Sessions = append(p.Sessions,
			Session{Node: ended, User: u.Name, Name: "old1", Job: endedJob(k)},
			Session{Node: NodeName(busy + 16 + k), User: u.Name, Name: "stray", Running: true})
	}
	if s.UnansweringJobNode {
		// A node of the first user's running job (and maybe others').
		p.Hung = append(p.Hung, p.Jobs[0].Nodes[0])
	}
	if s.Unanswering {
		p.Hung = append(p.Hung, NodeName(s.Nodes-1))
		p.Down = append(p.Down, NodeName(s.Nodes-2))
	}
	return p, nil
}

// User returns the user named name.
func (p *Plan) User(name string) (User, bool) {
	i := slices.IndexFunc(p.Users, func(u User) bool { return u.Name == name })
	if i < 0 {
		return User{}, false
	}
	return p.Users[i], true
}

// Answers reports whether node's agent answers (it is neither hung nor
// down).
func (p *Plan) Answers(node string) bool {
	return !slices.Contains(p.Hung, node) && !slices.Contains(p.Down, node)
}

// SessionsOf are user's sessions on node.
func (p *Plan) SessionsOf(node, user string) []Session {
	var out []Session
	for _, s := range p.Sessions {
		if s.Node == node && s.User == user {
			out = append(out, s)
		}
	}
	return out
}

// RunningNodes are the nodes of user's running jobs.
func (p *Plan) RunningNodes(user string) []string {
	var out []string
	for _, j := range p.Jobs {
		if j.User == user && j.State == "RUNNING" {
			out = append(out, j.Nodes...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// FreezeTargets are the sessions a user freezes in a run, one per node
// where they have one that answers: each running job node, the ended
// job's, and the stray one.
func (p *Plan) FreezeTargets(user string) []Session {
	var out []Session
	seen := map[string]bool{}
	for _, s := range p.Sessions {
		if s.User == user && !seen[s.Node] && p.Answers(s.Node) {
			seen[s.Node] = true
			out = append(out, s)
		}
	}
	return out
}
