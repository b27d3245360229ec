package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options say what to simulate and with what.
type Options struct {
	// Shape is the plan's size; its users must exist here.
	Shape Shape
	// Bin holds baicommit-manager and baicommit-sim.
	Bin string
	// ManagerUser is the manager's account (bcmanager in the tests).
	ManagerUser string
	// Munge is munged's socket (DefaultMungeSocket).
	Munge string
	// NodesPerHost is how many nodes one process serves (500).
	NodesPerHost int
	// AgentTimeout is the manager's agent_timeout ("3s").
	AgentTimeout string
	// Keep leaves the directory (state, logs) for a look afterwards.
	Keep bool
}

// Cluster is a running simulation: host processes serving the nodes, the
// manager, and the counters in front of munged.
type Cluster struct {
	Plan    *Plan
	Manager string // its URL
	dir     string
	bin     string
	keep    bool

	munge    map[string]*MungeCounter // by role: client, manager, agent
	hosts    []*process
	controls []string
	manager  *process
	mcfg     string
	hostsTxt string
	mport    int
	muser    *user.User
	perHost  int
}

// Roles that ask munged, each through its own counter.
const (
	RoleClient  = "client"
	RoleManager = "manager"
	RoleAgent   = "agent"
)

type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func (p *process) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Start brings a simulated cluster up. It runs as root: agents serve on
// loopback addresses, the manager gets a hosts file of its own (a private
// mount namespace) and the MUNGE counters connect as each caller.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	if o.Munge == "" {
		o.Munge = DefaultMungeSocket
	}
	if o.NodesPerHost <= 0 {
		o.NodesPerHost = 500
	}
	if o.AgentTimeout == "" {
		o.AgentTimeout = "3s"
	}
	dir, err := os.MkdirTemp("/var/tmp", "baicommit-sim-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, keep: o.Keep, munge: map[string]*MungeCounter{}, perHost: o.NodesPerHost}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.muser, err = user.Lookup(o.ManagerUser); err != nil {
		return nil, fmt.Errorf("the manager's account: %w", err)
	}
	for _, d := range []string{"", "bin", "munge", "ctl", "log", "state", "run", "manager"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
		if err := os.Chmod(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// Where every user and the manager's account can run them.
	c.bin = filepath.Join(dir, "bin")
	for _, b := range []string{"baicommit-manager", "baicommit-sim"} {
		if out, err := exec.Command("install", "-m", "0755", filepath.Join(o.Bin, b), c.bin).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("install %s: %v: %s", b, err, out)
		}
	}
	for _, role := range []string{RoleClient, RoleManager, RoleAgent} {
		m, err := StartMungeCounter(filepath.Join(dir, "munge", role+".sock"), o.Munge)
		if err != nil {
			return nil, err
		}
		c.munge[role] = m
	}
	p, err := NewPlan(dir, o.Shape, o.ManagerUser, c.munge[RoleAgent].Path())
	if err != nil {
		return nil, err
	}
	c.Plan = p
	if err := os.MkdirAll(p.SaveRoot, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(p.SaveRoot, 0o1777); err != nil {
		return nil, err
	}
	planFile := filepath.Join(dir, "plan.json")
	b, err := json.MarshalIndent(p, "", " ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(planFile, b, 0o644); err != nil {
		return nil, err
	}
	slurmBin, err := WriteSlurm(p, filepath.Join(dir, "slurm"))
	if err != nil {
		return nil, err
	}
	for k, from := 0, 0; from < len(p.Nodes); k, from = k+1, from+o.NodesPerHost {
		ctl := filepath.Join(dir, "ctl", fmt.Sprintf("host-%d.sock", k))
		log := filepath.Join(dir, "log", fmt.Sprintf("host-%d.log", k))
		cmd := exec.Command(filepath.Join(c.bin, "baicommit-sim"), "nodes", "--plan", planFile,
			"--from", strconv.Itoa(from), "--to", strconv.Itoa(from+o.NodesPerHost), "--control", ctl)
		pr, err := startProcess(cmd, log)
		if err != nil {
			return nil, err
		}
		c.hosts = append(c.hosts, pr)
		c.controls = append(c.controls, ctl)
	}
	for i, ctl := range c.controls {
		if err := waitFor(ctx, c.hosts[i], 2*time.Minute, func() error { _, err := c.hostCounters(ctx, ctl); return err }); err != nil {
			return nil, fmt.Errorf("host %d did not start: %w", i, err)
		}
	}
	// The manager resolves node names through a hosts file of its own.
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1 localhost\n")
	for _, n := range p.Nodes {
		fmt.Fprintf(&hosts, "%s %s\n", n.Addr, n.Name)
	}
	c.hostsTxt = filepath.Join(dir, "manager", "hosts")
	if err := os.WriteFile(c.hostsTxt, []byte(hosts.String()), 0o644); err != nil {
		return nil, err
	}
	c.mport, err = freePort()
	if err != nil {
		return nil, err
	}
	c.Manager = fmt.Sprintf("http://127.0.0.1:%d", c.mport)
	c.mcfg = filepath.Join(dir, "manager", "manager.toml")
	cfg := fmt.Sprintf(`listen = "127.0.0.1:%d"
agent_url = "http://{node}:%d"
agent_timeout = %q
save_path = %q
munge_socket = %q
slurm_bin_dir = %q
web_key_file = ""
`, c.mport, Port, o.AgentTimeout, p.SaveRoot+"/{user}", c.munge[RoleManager].Path(), slurmBin)
	if err := os.WriteFile(c.mcfg, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	if err := c.StartManager(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// StartManager starts the manager (again), as its account, in a mount
// namespace where /etc/hosts is the simulation's.
func (c *Cluster) StartManager(ctx context.Context) error {
	cmd := exec.Command("unshare", "--mount", "--", "/bin/sh", "-c",
		`mount --bind "$1" /etc/hosts && exec setpriv --reuid="$2" --regid="$3" --init-groups -- "$4" --config "$5"`,
		"sh", c.hostsTxt, c.muser.Uid, c.muser.Gid, filepath.Join(c.bin, "baicommit-manager"), c.mcfg)
	// The Go resolver reads the hosts file once into a table, as a site's
	// DNS answers: glibc would parse 2,000 lines for every new connection.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/", "GODEBUG=netdns=go"}
	pr, err := startProcess(cmd, filepath.Join(c.dir, "log", "manager.log"))
	if err != nil {
		return err
	}
	c.manager = pr
	return waitFor(ctx, pr, time.Minute, func() error {
		resp, err := http.Get(c.Manager + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
}

// StopManager stops the manager (SIGTERM: it finishes what it serves).
func (c *Cluster) StopManager() {
	c.manager.stop()
	c.manager = nil
}

func startProcess(cmd *exec.Cmd, log string) (*process, error) {
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: log}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// waitFor polls ready until it succeeds, p exits or the time is up.
func waitFor(ctx context.Context, p *process, limit time.Duration, ready func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			return fmt.Errorf("%s exited: %s", filepath.Base(p.cmd.Path), tail(b))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", limit, err)
		}
	}
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// control is an HTTP client of a host's control socket.
func control(sock string) *http.Client {
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
}

func (c *Cluster) hostCounters(ctx context.Context, sock string) (Counters, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://host/counters", nil)
	resp, err := control(sock).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var cs Counters
	return cs, json.NewDecoder(resp.Body).Decode(&cs)
}

// Snapshot is what everything counted so far.
type Snapshot struct {
	// Agent requests, by kind, over all nodes.
	Agent Counters
	// MUNGE operations, by role.
	Munge map[string]int64
	// Slurm commands the manager ran, by name.
	Slurm map[string]int64
}

// Snapshot reads every counter.
func (c *Cluster) Snapshot(ctx context.Context) (*Snapshot, error) {
	s := &Snapshot{Agent: Counters{}, Munge: map[string]int64{}}
	for _, ctl := range c.controls {
		cs, err := c.hostCounters(ctx, ctl)
		if err != nil {
			return nil, err
		}
		for k, v := range cs {
			s.Agent[k] += v
		}
	}
	for role, m := range c.munge {
		s.Munge[role] = m.Count()
	}
	var err error
	s.Slurm, err = SlurmCalls(filepath.Join(c.dir, "slurm"))
	return s, err
}

// Sub is s - before.
func (s *Snapshot) Sub(before *Snapshot) *Snapshot {
	d := &Snapshot{Agent: Counters{}, Munge: map[string]int64{}, Slurm: map[string]int64{}}
	for k, v := range s.Agent {
		d.Agent[k] = v - before.Agent[k]
	}
	for k, v := range s.Slurm {
		d.Slurm[k] = v - before.Slurm[k]
	}
	for k, v := range s.Munge {
		d.Munge[k] = v - before.Munge[k]
	}
	return d
}

// AgentRequests is the number of agent requests, sessions opened included.
func (s *Snapshot) AgentRequests() int64 {
	var n int64
	for _, v := range s.Agent {
		n += v
	}
	return n
}

// SlurmCommands is the number of Slurm commands the manager ran.
func (s *Snapshot) SlurmCommands() int64 {
	var n int64
	for _, v := range s.Slurm {
		n += v
	}
	return n
}

// MungeOps is the number of MUNGE operations of every role.
func (s *Snapshot) MungeOps() int64 {
	var n int64
	for _, v := range s.Munge {
		n += v
	}
	return n
}

// Restart restarts node's agent in its host process.
func (c *Cluster) Restart(ctx context.Context, node string) error {
	i := -1
	for k, n := range c.Plan.Nodes {
		if n.Name == node {
			i = k
		}
	}
	if i < 0 {
		return fmt.Errorf("no node %s", node)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://host/restart?node="+node, nil)
	resp, err := control(c.controls[i/c.perHost]).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("restart %s: %s", node, b)
	}
	return nil
}

// Memory is the manager's resident memory now and at its peak, in KiB.
func (c *Cluster) Memory() (rss, peak int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.manager.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, _ = strconv.Atoi(f[1])
		case "VmHWM:":
			peak, _ = strconv.Atoi(f[1])
		}
	}
	return rss, peak, nil
}

// Run runs spec as the user with uid (0: root, an admin) in a client
// process of its own, so that its MUNGE credentials are that user's.
func (c *Cluster) Run(ctx context.Context, uid int, spec ClientSpec) (*ClientResult, error) {
	spec.Manager, spec.MungeSocket = c.Manager, c.munge[RoleClient].Path()
	in, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "baicommit-sim"), "client")
	gid := 0
	for _, u := range c.Plan.Users {
		if u.UID == uid {
			gid = u.GID
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	cmd.Dir = "/"
	cmd.Stdin = bytes.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("client as uid %d: %v: %s", uid, err, errb.String())
	}
	var res ClientResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("client as uid %d: %w", uid, err)
	}
	return &res, nil
}

// RunAll runs one client process per uid at once.
func (c *Cluster) RunAll(ctx context.Context, specs map[int]ClientSpec) (map[int]*ClientResult, error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := map[int]*ClientResult{}
	var errs []error
	for uid, spec := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.Run(ctx, uid, spec)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			out[uid] = r
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// Logs is the tail of the manager's and the hosts' logs, for a failed
// test.
func (c *Cluster) Logs() string {
	var b strings.Builder
	matches, _ := filepath.Glob(filepath.Join(c.dir, "log", "*.log"))
	for _, m := range matches {
		data, _ := os.ReadFile(m)
		fmt.Fprintf(&b, "--- %s:\n%s\n", filepath.Base(m), tail(data))
	}
	return b.String()
}

// Dir is where the simulation keeps everything.
func (c *Cluster) Dir() string { return c.dir }

// Close stops everything and removes the directory (unless Keep).
func (c *Cluster) Close() {
	c.manager.stop()
	var wg sync.WaitGroup
	for _, h := range c.hosts {
		wg.Add(1)
		go func() { defer wg.Done(); h.stop() }()
	}
	wg.Wait()
	for _, m := range c.munge {
		m.Close()
	}
	if !c.keep {
		os.RemoveAll(c.dir)
	}
}
