package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/munge"
	"github.com/baicommit/baicommit/internal/reqauth"
)

// managerUser is the system account scripts/setup.sh creates for the
// manager; agents trust MUNGE credentials of this user only.
const managerUser = "bcmanager"

// freePort returns a loopback TCP port nobody listens on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// cluster is agents on loopback, each under its own node name and TCP port,
// and manager replicas in front of them, all sharing one save root.
type cluster struct {
	save     string
	agents   map[string]*agentProc // by node
	urls     map[string]string     // agent URL by node
	managers []*managerProc
}

type managerProc struct {
	url  string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

// newCluster starts an agent for each node and n manager replicas.
// extraAgents maps more node names to URLs (e.g. dead ones) in the
// managers' configuration only.
func newCluster(t *testing.T, nodes []string, replicas int, extraAgents map[string]string, managerKeys ...string) *cluster {
	t.Helper()
	save, err := os.MkdirTemp("", "baicommit-e2e-shared-")
	assert.NilError(t, err)
	assert.NilError(t, os.Chmod(save, os.ModeSticky|0o777))
	t.Cleanup(func() { os.RemoveAll(save) })
	c := &cluster{save: save, agents: map[string]*agentProc{}, urls: map[string]string{}}
	for _, n := range nodes {
		port := freePort(t)
		a := newAgent(t, withKey("node_name", strconv.Quote(n)), withSave(save),
			withKey("manager_user", strconv.Quote(managerUser)), withKey("admins", `["bcbob"]`))
		a.listen = []string{fmt.Sprintf("tcp://127.0.0.1:%d", port)}
		a.start()
		c.agents[n] = a
		c.urls[n] = fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	for n, u := range extraAgents {
		c.urls[n] = u
	}
	for range replicas {
		c.managers = append(c.managers, startManager(t, c.urls, append([]string{
			// The site's save path: below the agents' save root, so they accept it.
			"save_path = " + strconv.Quote(save+"/site/{user}"),
			`admins = ["bcbob"]`,
		}, managerKeys...)...))
	}
	return c
}

func startManager(t *testing.T, agents map[string]string, keys ...string) *managerProc {
	t.Helper()
	dir, err := os.MkdirTemp("", "baicommit-e2e-manager-")
	assert.NilError(t, err)
	assert.NilError(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() { os.RemoveAll(dir) })
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "\n")
	}
	b.WriteString("[agents]\n")
	for n, u := range agents {
		fmt.Fprintf(&b, "%s = %q\n", strconv.Quote(n), u)
	}
	cfg := filepath.Join(dir, "manager.toml")
	assert.NilError(t, os.WriteFile(cfg, []byte(b.String()), 0o644))
	port := freePort(t)
	scheme := "http"
	for _, k := range keys {
		if strings.HasPrefix(k, "tls_cert") {
			scheme = "https"
		}
	}
	m := &managerProc{url: fmt.Sprintf("%s://127.0.0.1:%d", scheme, port), log: &lockedBuffer{}, done: make(chan struct{})}
	// Only to see that it is up: the tests check certificates themselves.
	probe := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	// Straight as the manager's account (no runuser in between), so that
	// signals reach the manager itself.
	u, err := user.Lookup(managerUser)
	assert.NilError(t, err, "scripts/setup.sh creates the %s account", managerUser)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	m.cmd = exec.Command(bins.manager, "--config", cfg, "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	m.cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	assert.NilError(t, m.cmd.Start())
	go func() { m.cmd.Wait(); close(m.done) }()
	t.Cleanup(func() {
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
			t.Errorf("the manager did not stop within 10 s of SIGTERM")
			m.cmd.Process.Kill()
			<-m.done
		}
		if t.Failed() {
			t.Logf("manager %s log:\n%s", m.url, m.log)
		}
	})
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		select {
		case <-m.done:
			return poll.Error(fmt.Errorf("manager exited: %s", m.log))
		default:
		}
		resp, err := probe.Get(m.url + "/healthz")
		if err != nil {
			return poll.Continue("manager not up: %v", err)
		}
		resp.Body.Close()
		return poll.Success()
	}, poll.WithTimeout(20*time.Second))
	return m
}

// cli runs the baicommit CLI as who through this manager.
func (m *managerProc) cli(t *testing.T, who string, args ...string) result {
	t.Helper()
	return runAs(t, who, append([]string{bins.cli, "--manager", m.url}, args...)...)
}

// sbatch starts a job that sleeps as who, waits until it runs and cancels
// it when the test ends.
func sbatch(t *testing.T, who string) string {
	t.Helper()
	r := runAs(t, who, "sbatch", "--parsable", "--job-name", "e2e-"+randHex(2), "--output", "/dev/null", "--wrap", "sleep 900")
	assert.Equal(t, r.code, 0, "sbatch: %s", r)
	job := strings.TrimSpace(strings.Split(r.stdout, ";")[0])
	t.Cleanup(func() { rootCmd("scancel", job) })
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		out, err := rootCmd("squeue", "-h", "-j", job, "-o", "%T")
		if err != nil {
			return poll.Error(fmt.Errorf("squeue: %v: %s", err, out))
		}
		if strings.TrimSpace(out) == "RUNNING" {
			return poll.Success()
		}
		return poll.Continue("job %s is %q", job, strings.TrimSpace(out))
	}, poll.WithTimeout(60*time.Second))
	return job
}

func decodeTask(t *testing.T, r result) api.Task {
	t.Helper()
	var task api.Task
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &task), "%s", r)
	return task
}

// A user freezes their session through one replica, naming only the Slurm
// job; the archive lands where the site's save path says, owned by them,
// with their file inside; any replica answers for the task.
func TestManagerFreezeThroughSlurmJob(t *testing.T) {
	n1 := slurmNode(t)
	c := newCluster(t, []string{n1, "bcn2"}, 2, nil)
	job := sbatch(t, alice)
	ctr := session(t, alice, "echo kept-through-the-manager > /root/notes.txt")

	ss := c.managers[0].cli(t, alice, "sessions", "--job", job, "--json")
	assert.Equal(t, ss.code, 0, "%s", ss)
	assert.Check(t, is.Contains(ss.stdout, ctr))
	// Without flags: the nodes where alice has running jobs, found through Slurm.
	ss = c.managers[1].cli(t, alice, "sessions")
	assert.Equal(t, ss.code, 0, "%s", ss)
	assert.Check(t, is.Contains(ss.stdout, ctr))
	assert.Check(t, is.Contains(ss.stdout, n1))
	// bob sees his own sessions only, never alice's.
	ss = c.managers[1].cli(t, bob, "sessions", "--json")
	assert.Equal(t, ss.code, 0, "%s", ss)
	assert.Check(t, !strings.Contains(ss.stdout, ctr), "bob sees alice's session: %s", ss.stdout)

	r := c.managers[0].cli(t, alice, "commit", "--job", job, "--wait", "--json", ctr)
	assert.Equal(t, r.code, 0, "%s", r)
	task := decodeTask(t, r)
	assert.Equal(t, task.State, api.StateSucceeded, "%+v", task)
	assert.Check(t, is.Equal(task.Node, n1))
	assert.Check(t, is.Equal(task.Job, job))
	assert.Check(t, strings.HasSuffix(task.ID, "."+n1), task.ID)
	assert.Check(t, is.Equal(filepath.Dir(task.Archive.Path), filepath.Join(c.save, "site", alice)), "the manager's save_path was not used")

	st, err := os.Stat(task.Archive.Path)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(st.Sys().(*syscall.Stat_t).Uid, uidOf(t, alice)))
	assert.Check(t, is.Equal(fileInArchive(t, alice, task.Archive.Path, "/root/notes.txt"), "kept-through-the-manager"))

	// The second replica never saw this task and still answers for it.
	s2 := c.managers[1].cli(t, alice, "status", "--json", task.ID)
	assert.Equal(t, s2.code, 0, "%s", s2)
	got := decodeTask(t, s2)
	assert.Check(t, is.Equal(got.State, api.StateSucceeded))
	assert.Check(t, is.Equal(got.Archive.Path, task.Archive.Path))
	// The archive, found through the manager's save path on the shared filesystem.
	l2 := c.managers[1].cli(t, alice, "list", "--json")
	assert.Equal(t, l2.code, 0, "%s", l2)
	var listed struct {
		Archives []struct {
			Path string `json:"path"`
		} `json:"archives"`
	}
	assert.NilError(t, json.Unmarshal([]byte(l2.stdout), &listed), "%s", l2)
	assert.Assert(t, is.Len(listed.Archives, 1), "%s", l2)
	assert.Check(t, is.Equal(listed.Archives[0].Path, task.Archive.Path))

	// Metrics of the replica that relayed the freeze and saw it end.
	metrics := httpGet(t, c.managers[0].url+"/metrics")
	assert.Check(t, is.Contains(metrics, `baicommit_manager_requests_total{code="202",route="POST /v1/freezes"} 1`))
	assert.Check(t, is.Contains(metrics, `baicommit_manager_freezes_total{outcome="started"} 1`))
	assert.Check(t, is.Contains(metrics, `baicommit_manager_freezes_total{outcome="succeeded"} 1`))
	assert.Check(t, is.Equal(metricValue(t, metrics, "baicommit_manager_archive_bytes_written_total"), float64(task.Archive.Size)))
	assert.Check(t, is.Contains(metrics, "baicommit_manager_freeze_duration_seconds_count 1"))
	assert.Check(t, is.Contains(metrics, fmt.Sprintf(`baicommit_manager_agent_up{node=%q} 1`, n1)))
}

// A user is refused another user's session and job, and nothing is
// written; an admin may freeze it.
func TestManagerOwnership(t *testing.T) {
	n1 := slurmNode(t)
	c := newCluster(t, []string{n1, "bcn2"}, 1, nil)
	m := c.managers[0]
	bobs := session(t, bob, "echo bob-only > /root/b.txt")
	bobJob := sbatch(t, bob)

	r := m.cli(t, alice, "commit", "--node", "bcn2", "--user", bob, "--wait", bobs)
	assert.Equal(t, r.code, 1, "%s", r)
	assert.Check(t, is.Contains(r.stderr, "not yours"))
	r = m.cli(t, alice, "commit", "--job", bobJob, "--wait", bobs)
	assert.Equal(t, r.code, 1, "%s", r)
	assert.Check(t, is.Contains(r.stderr, "job "+bobJob+" is "+bob+"'s, not yours"))
	// Without --user, alice's own Podman has no such container.
	r = m.cli(t, alice, "commit", "--node", "bcn2", "--wait", bobs)
	assert.Equal(t, r.code, 1, "%s", r)
	assert.Check(t, is.Contains(r.stderr, "no container"))
	r = m.cli(t, alice, "sessions", "--node", "bcn2", "--user", bob)
	assert.Equal(t, r.code, 1, "%s", r)
	assert.Check(t, is.Contains(r.stderr, "not yours"))
	assert.Check(t, is.Len(listDir(t, filepath.Join(c.save, "site")), 0), "a refused freeze wrote something")

	// bob is an admin on the manager and the agents: he may freeze alice's.
	alices := session(t, alice, "echo alice-data > /root/a.txt")
	r = m.cli(t, bob, "commit", "--node", "bcn2", "--user", alice, "--wait", "--json", alices)
	assert.Equal(t, r.code, 0, "%s", r)
	task := decodeTask(t, r)
	assert.Check(t, is.Equal(task.Owner, alice))
	assert.Check(t, is.Equal(task.Node, "bcn2"))
	st, err := os.Stat(task.Archive.Path)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(st.Sys().(*syscall.Stat_t).Uid, uidOf(t, alice)), "an admin's freeze is still written as the owner")
}

// Forged, expired, replayed and misdirected credentials are refused with
// 401 and a message that says why.
func TestManagerCredentials(t *testing.T) {
	c := newCluster(t, []string{"bcn1"}, 1, nil)
	url := c.managers[0].url
	codec := munge.Codec{}
	ctx := context.Background()

	signed := func(path string, ttl time.Duration) *http.Request {
		req, err := http.NewRequest(http.MethodGet, url+path, nil)
		assert.NilError(t, err)
		assert.NilError(t, codec.Sign(ctx, req, nil, munge.AudienceManager, munge.EncodeOptions{TTL: ttl}))
		return req
	}
	send := func(req *http.Request) (int, string) {
		resp, err := http.DefaultClient.Do(req)
		assert.NilError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// A good one works once.
	good := signed(api.RouteVersion, time.Minute)
	replay := good.Clone(ctx)
	code, body := send(good)
	assert.Equal(t, code, http.StatusOK, body)
	code, body = send(replay)
	assert.Check(t, is.Equal(code, http.StatusUnauthorized))
	assert.Check(t, is.Contains(body, "replayed"))

	forged, _ := http.NewRequest(http.MethodGet, url+api.RouteVersion, nil)
	forged.Header.Set("Authorization", "MUNGE MUNGE:AwQFAAB3ZWxsIHRoaXMgaXMgbm90IGEgcmVhbCBvbmU=:")
	code, body = send(forged)
	assert.Check(t, is.Equal(code, http.StatusUnauthorized))
	assert.Check(t, is.Contains(body, "invalid credential"))

	none, _ := http.NewRequest(http.MethodGet, url+api.RouteTasks, nil)
	code, body = send(none)
	assert.Check(t, is.Equal(code, http.StatusUnauthorized))
	assert.Check(t, is.Contains(body, "no MUNGE credential"))

	// Made for one route, sent to another.
	other := signed(api.RouteVersion, time.Minute)
	moved, _ := http.NewRequest(http.MethodGet, url+api.RouteNodes, nil)
	moved.Header = other.Header
	code, body = send(moved)
	assert.Check(t, is.Equal(code, http.StatusUnauthorized))
	assert.Check(t, is.Contains(body, "made for another request"))

	expired := signed(api.RouteVersion, time.Second)
	time.Sleep(2100 * time.Millisecond)
	code, body = send(expired)
	assert.Check(t, is.Equal(code, http.StatusUnauthorized))
	assert.Check(t, is.Contains(body, "expired"))

	metrics := httpGet(t, url+"/metrics")
	assert.Check(t, is.Contains(metrics, `baicommit_manager_requests_total{code="401",route="GET /v1/version"} 3`))
}

// The agent's TCP port answers nobody but the manager, and says so.
func TestAgentTCPRefusesAllButTheManager(t *testing.T) {
	c := newCluster(t, []string{"bcn1"}, 0, nil)
	a := c.agents["bcn1"]
	url := c.urls["bcn1"]

	resp, err := http.Get(url + api.RouteTasks)
	assert.NilError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Check(t, is.Equal(resp.StatusCode, http.StatusUnauthorized))
	assert.Check(t, is.Contains(string(b), "answers only baicommit-manager"))

	// alice signs a perfectly good request of her own: still not the manager.
	ctr := session(t, alice, "")
	r := runAs(t, alice, bins.cli, "--manager", url, "commit", "--node", "bcn1", ctr)
	assert.Equal(t, r.code, 1, "%s", r)
	assert.Check(t, is.Contains(r.stderr, "answers only baicommit-manager"))
	assert.Check(t, is.Contains(a.log.String(), "refused a TCP request not signed by the manager"))
	ts, err := a.client(t).Tasks(context.Background())
	assert.NilError(t, err)
	assert.Check(t, is.Len(ts, 0), "a refused request started a task")

	// Nor does anyone but the manager's account open a session: root's
	// credential, made for this very node, is refused and named.
	hello := []byte(`{"public_key":"` + strings.Repeat("A", 42) + `="}`)
	req, err := http.NewRequest(http.MethodPost, url+reqauth.Route, bytes.NewReader(hello))
	assert.NilError(t, err)
	assert.NilError(t, munge.Codec{}.Sign(context.Background(), req, hello, "bcn1", munge.EncodeOptions{}))
	resp, err = http.DefaultClient.Do(req)
	assert.NilError(t, err)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Check(t, is.Equal(resp.StatusCode, http.StatusUnauthorized))
	assert.Check(t, is.Contains(string(b), "the credential is uid 0's"))
	// The log comes through a pipe: it may arrive after the answer.
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if strings.Contains(a.log.String(), "refused a manager session not opened by the manager") {
			return poll.Success()
		}
		return poll.Continue("the refusal is not in the agent's log")
	}, poll.WithTimeout(10*time.Second))

	// An agent with no manager_user refuses even the manager, and says why.
	port := freePort(t)
	lone := newAgent(t, withKey("node_name", `"bclone"`))
	lone.listen = []string{fmt.Sprintf("tcp://127.0.0.1:%d", port)}
	lone.start()
	m := startManager(t, map[string]string{"bclone": fmt.Sprintf("http://127.0.0.1:%d", port)})
	r = m.cli(t, alice, "sessions", "--node", "bclone")
	assert.Equal(t, r.code, 1, "%s", r)
	assert.Check(t, is.Contains(r.stderr, "this agent has no manager_user configured"))
}

// An agent that is down gives 502 naming its node, one that hangs gives
// 504, and the manager keeps answering for the others.
func TestManagerAgentDownOrSlow(t *testing.T) {
	// A listener that accepts and never answers: a hung agent.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	defer hung.Close()
	go func() {
		for {
			conn, err := hung.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	c := newCluster(t, []string{"bcn1", "bcn2"}, 1, map[string]string{"bcslow": "http://" + hung.Addr().String()},
		`agent_timeout = "1s"`)
	m := c.managers[0]
	ctr := session(t, alice, "")
	r := m.cli(t, alice, "commit", "--node", "bcn2", "--wait", "--json", ctr)
	assert.Equal(t, r.code, 0, "%s", r)
	task := decodeTask(t, r)

	c.agents["bcn2"].stop()
	r = m.cli(t, alice, "status", task.ID)
	assert.Equal(t, r.code, 1, "%s", r)
	assert.Check(t, is.Contains(r.stderr, "cannot reach the agent of node bcn2"))
	assert.Check(t, is.Equal(statusOf(t, m, api.RouteTask+task.ID), http.StatusBadGateway))
	assert.Check(t, is.Equal(statusOf(t, m, api.RouteTask+"abc.bcslow"), http.StatusGatewayTimeout))
	assert.Check(t, is.Equal(statusOf(t, m, api.RouteTask+"abc.nosuchnode"), http.StatusNotFound))

	r = m.cli(t, alice, "nodes", "--json")
	assert.Equal(t, r.code, 0, "%s", r)
	var ns []api.NodeStatus
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &ns))
	up := map[string]bool{}
	for _, n := range ns {
		up[n.Node] = n.Reachable
	}
	assert.Check(t, is.DeepEqual(up, map[string]bool{"bcn1": true, "bcn2": false, "bcslow": false}))

	// The list still comes, from the nodes that answer, with a warning.
	r = m.cli(t, alice, "list")
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Check(t, is.Contains(r.stderr, "warning: cannot reach the agent of node bcn2"))
	assert.Check(t, is.Contains(httpGet(t, m.url+"/healthz"), "ok"))
	assert.Check(t, is.Contains(httpGet(t, m.url+"/metrics"), `baicommit_manager_agent_up{node="bcn2"} 0`))
}

// A bounded load run: 50 clients ask one replica for a task's status 2,000
// times, each with its own credential. No request may fail; the latency
// percentiles are reported, not asserted.
func TestManagerLoad(t *testing.T) {
	const clients, requests = 50, 2000
	c := newCluster(t, []string{"bcn1"}, 1, nil)
	m := c.managers[0]
	ctr := session(t, alice, "")
	r := m.cli(t, alice, "commit", "--node", "bcn1", "--json", ctr)
	assert.Equal(t, r.code, 0, "%s", r)
	id := decodeTask(t, r).ID
	c.agents["bcn1"].waitTask(t, id)

	codec := munge.Codec{}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var (
		mu    sync.Mutex
		lat   []time.Duration
		fails []string
		wg    sync.WaitGroup
	)
	work := make(chan struct{}, requests)
	for range requests {
		work <- struct{}{}
	}
	close(work)
	t0 := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				req, _ := http.NewRequest(http.MethodGet, m.url+api.RouteTask+id, nil)
				if err := codec.Sign(context.Background(), req, nil, munge.AudienceManager, munge.EncodeOptions{}); err != nil {
					mu.Lock()
					fails = append(fails, err.Error())
					mu.Unlock()
					continue
				}
				start := time.Now()
				resp, err := hc.Do(req)
				d := time.Since(start)
				msg := ""
				if err != nil {
					msg = err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(id)) {
						msg = fmt.Sprintf("%d %s", resp.StatusCode, b)
					}
				}
				mu.Lock()
				lat = append(lat, d)
				if msg != "" {
					fails = append(fails, msg)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	total := time.Since(t0)
	assert.Check(t, is.Len(fails, 0), "first failures: %v", fails[:min(len(fails), 5)])
	assert.Equal(t, len(lat), requests)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	peak := peakRSS(t, m.cmd.Process.Pid)
	t.Logf("LOAD: %d clients, %d status requests through the manager in %s (%.0f req/s): p50 %s, p90 %s, p99 %s, max %s; manager peak RSS %s",
		clients, requests, total.Round(time.Millisecond), float64(requests)/total.Seconds(),
		pct(0.50).Round(time.Microsecond), pct(0.90).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond), peak)
	if out := os.Getenv("BAICOMMIT_LOAD_RESULT"); out != "" {
		b, _ := json.Marshal(map[string]any{"clients": clients, "requests": requests, "seconds": total.Seconds(),
			"manager_peak_rss": peak, "p50_ms": ms(pct(0.5)), "p90_ms": ms(pct(0.9)), "p99_ms": ms(pct(0.99)), "max_ms": ms(lat[len(lat)-1])})
		assert.NilError(t, os.WriteFile(out, b, 0o644))
	}
}

// metricValue returns the value of an unlabelled metric in Prometheus text.
func metricValue(t *testing.T, text, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			assert.NilError(t, err)
			return f
		}
	}
	t.Fatalf("no metric %s in:\n%s", name, text)
	return 0
}

// peakRSS is a process's peak resident memory (VmHWM), as /proc says it.
func peakRSS(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	assert.NilError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// statusOf sends a GET signed as root and returns the status code.
func statusOf(t *testing.T, m *managerProc, path string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, m.url+path, nil)
	assert.NilError(t, err)
	assert.NilError(t, munge.Codec{}.Sign(context.Background(), req, nil, munge.AudienceManager, munge.EncodeOptions{}))
	resp, err := http.DefaultClient.Do(req)
	assert.NilError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	assert.NilError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	assert.NilError(t, err)
	return string(b)
}

// fileInArchive loads the archive into who's Podman and prints file from a
// new container of the image.
func fileInArchive(t *testing.T, who, archive, file string) string {
	t.Helper()
	img := loadArchive(t, who, archive)
	return podman(t, who, "run", "--rm", "--network=none", img, "cat", file)
}

// The agent's TCP port is socket-activated like its unix socket: started by
// systemd-socket-activate with both, it serves a freeze the manager relays.
func TestSocketActivatedTCPListener(t *testing.T) {
	sa, err := exec.LookPath("systemd-socket-activate")
	assert.NilError(t, err, "systemd-socket-activate is needed (Debian package systemd)")
	a := newAgent(t, withKey("node_name", `"bcact"`), withKey("manager_user", strconv.Quote(managerUser)))
	port := freePort(t)
	cmd := exec.Command(sa, "-l", a.sock, "-l", fmt.Sprintf("127.0.0.1:%d", port), "--fdname=agent:manager",
		bins.agent, "--config", a.cfgPath)
	cmd.Stdout, cmd.Stderr = a.log, a.log
	assert.NilError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	m := startManager(t, map[string]string{"bcact": fmt.Sprintf("http://127.0.0.1:%d", port)})

	ctr := session(t, alice, "echo activated > /root/a.txt")
	r := m.cli(t, alice, "commit", "--node", "bcact", "--wait", "--json", ctr)
	assert.Equal(t, r.code, 0, "%s\nagent log:\n%s", r, a.log)
	task := decodeTask(t, r)
	assert.Equal(t, task.State, api.StateSucceeded)
	assert.Check(t, is.Contains(a.log.String(), `"listeners":2,"socket_activated":true`))
	assert.Check(t, is.Equal(fileInArchive(t, alice, task.Archive.Path, "/root/a.txt"), "activated"))
}

// With tls_cert and tls_key the manager speaks HTTPS; the CLI trusts a site
// CA given with --ca and refuses a certificate nobody it trusts signed.
func TestManagerTLS(t *testing.T) {
	dir, err := os.MkdirTemp("", "baicommit-e2e-pki-")
	assert.NilError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	assert.NilError(t, os.Chmod(dir, 0o755)) // the manager's account reads its certificate here
	caFile, certFile, keyFile := writeTestPKI(t, dir)
	c := newCluster(t, []string{"bcn1"}, 0, nil)
	m := startManager(t, c.urls, "tls_cert = "+strconv.Quote(certFile), "tls_key = "+strconv.Quote(keyFile))
	assert.Assert(t, strings.HasPrefix(m.url, "https://"))

	r := m.cli(t, alice, "--ca", caFile, "version", "--json")
	assert.Equal(t, r.code, 0, "%s", r)
	var v api.VersionInfo
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &v))
	assert.Check(t, is.Equal(v.CallerName, alice))

	r = m.cli(t, alice, "version")
	assert.Equal(t, r.code, 1, "%s", r)
	assert.Check(t, is.Contains(r.stderr, "certificate signed by unknown authority"))
}

// writeTestPKI writes a CA and a certificate for 127.0.0.1 signed by it.
func writeTestPKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	assert.NilError(t, err)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "baicommit test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	assert.NilError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	assert.NilError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	assert.NilError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	assert.NilError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	assert.NilError(t, err)
	write := func(name, typ string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		assert.NilError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), mode))
		return p
	}
	caFile = write("ca.pem", "CERTIFICATE", caDER, 0o644)
	certFile = write("manager.pem", "CERTIFICATE", der, 0o644)
	keyFile = write("manager.key", "EC PRIVATE KEY", keyDER, 0o600)
	giveToManager(t, keyFile)
	return caFile, certFile, keyFile
}

// giveToManager makes the manager's account own path, for a secret only
// it may read.
func giveToManager(t *testing.T, path string) {
	t.Helper()
	u, err := user.Lookup(managerUser)
	assert.NilError(t, err)
	uid, _ := strconv.Atoi(u.Uid)
	assert.NilError(t, os.Chown(path, uid, -1))
}
