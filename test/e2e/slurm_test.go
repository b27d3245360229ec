package e2e

// End-to-end tests of freezing at the end of a Slurm job, on the real
// one-node Slurm cluster scripts/setup.sh runs (MUNGE, slurmctld, slurmd,
// proctrack/linuxproc): a test user submits a real batch job, slurmd runs
// the real Epilog (/etc/slurm/epilog.sh, replaced for the test by a wrapper
// that runs bin/baicommit-epilog against the test's agent) as root with
// Slurm's environment.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"

	"github.com/baicommit/baicommit/api"
)

const slurmEpilog = "/etc/slurm/epilog.sh"

// slurmEpilogMu keeps the tests of this file from installing epilogs over
// each other (they do not run in parallel anyway; this says why).
var slurmEpilogMu sync.Mutex

// slurmNode is the node's name in Slurm (scripts/setup.sh: hostname -s).
func slurmNode(t *testing.T) string {
	t.Helper()
	out, err := rootCmd("hostname", "-s")
	assert.NilError(t, err, out)
	return strings.TrimSpace(out)
}

// nodeState is the node's state as sinfo prints it (idle, mixed, drained…).
func nodeState(t *testing.T, node string) string {
	t.Helper()
	out, err := rootCmd("sinfo", "-h", "-n", node, "-o", "%T")
	assert.NilError(t, err, "sinfo: %s", out)
	return strings.TrimSpace(out)
}

// assertNodeUp fails loudly if Slurm drained the node (a failing epilog
// does that) and resumes it at clean-up so later tests can run jobs.
func assertNodeUp(t *testing.T, node string) {
	t.Helper()
	st := nodeState(t, node)
	if strings.HasPrefix(st, "drain") || strings.HasPrefix(st, "down") || strings.HasSuffix(st, "*") {
		reason, _ := rootCmd("sinfo", "-h", "-n", node, "-o", "%E")
		t.Errorf("!!! Slurm node %s is %q (reason: %s): the epilog made Slurm drain it", node, st, strings.TrimSpace(reason))
	}
}

// slurmJobs is one test's view of the cluster: its private job directory
// and the epilog installed for its agent.
type slurmJobs struct {
	t      *testing.T
	a      *agentProc
	node   string
	dir    string // job scripts, outputs; world-writable like a scratch dir
	log    string // the epilog's stderr
	done   string // a line "JOBID RC" per epilog run of this test's jobs
	syslog *syslogSink
}

// newSlurmJobs checks the cluster, installs an epilog that freezes through
// agent a (with extra epilog flags) and restores the previous epilog, and
// the node, at clean-up.
func newSlurmJobs(t *testing.T, a *agentProc, epilogArgs ...string) *slurmJobs {
	t.Helper()
	slurmEpilogMu.Lock()
	t.Cleanup(slurmEpilogMu.Unlock)
	node := slurmNode(t)
	if st := nodeState(t, node); st == "" || strings.HasPrefix(st, "drain") || strings.HasPrefix(st, "down") {
		t.Fatalf("!!! the Slurm node %s is %q before the test: run scripts/setup.sh cluster (and see /var/log/slurm/)", node, st)
	}
	s := &slurmJobs{t: t, a: a, node: node, dir: filepath.Join(a.dir, "jobs")}
	assert.NilError(t, os.Mkdir(s.dir, 0o777))
	assert.NilError(t, os.Chmod(s.dir, os.ModeSticky|0o777))
	s.log = filepath.Join(a.dir, "epilog.log")
	s.done = filepath.Join(a.dir, "epilog.done")
	s.syslog = listenSyslog(t, filepath.Join(a.dir, "syslog.sock"))

	prev, err := os.ReadFile(slurmEpilog)
	if err != nil || len(prev) == 0 {
		prev = []byte("#!/bin/sh\nexit 0\n")
	}
	args := append([]string{"--agent", "unix://" + a.sock, "--syslog", s.syslog.path, "--poll", "200ms"}, epilogArgs...)
	// Only this test's jobs (their working directory is the test's job
	// directory) reach the test's agent: jobs of other tests on the
	// machine meet the usual no-op. The exit code is passed on to slurmd,
	// so an epilog that fails drains the node, as it would on a site.
	script := fmt.Sprintf(`#!/bin/sh
# installed by baicommit's e2e test %s; restored at its end
case "$SLURM_JOB_WORK_DIR" in
%s*) ;;
*) exit 0 ;;
esac
%s %s >>%s 2>&1
rc=$?
echo "$SLURM_JOB_ID $rc" >>%s
exit $rc
`, t.Name(), s.dir, bins.dir+"/baicommit-epilog", strings.Join(args, " "), s.log, s.done)
	writeEpilog(t, []byte(script))
	t.Cleanup(func() {
		writeEpilog(t, prev)
		if st := nodeState(t, node); strings.HasPrefix(st, "drain") || strings.HasPrefix(st, "down") {
			t.Logf("!!! resuming Slurm node %s (state %q)", node, st)
			rootCmd("scontrol", "update", "nodename="+node, "state=resume")
		}
		if t.Failed() {
			b, _ := os.ReadFile(s.log)
			t.Logf("epilog log:\n%s\nsyslog:\n%s", b, s.syslog)
		}
	})
	return s
}

// writeEpilog replaces the Epilog atomically: slurmd must never run a
// half-written script.
func writeEpilog(t *testing.T, b []byte) {
	t.Helper()
	tmp := slurmEpilog + ".baicommit-e2e"
	assert.NilError(t, os.WriteFile(tmp, b, 0o755))
	assert.NilError(t, os.Chmod(tmp, 0o755))
	assert.NilError(t, os.Rename(tmp, slurmEpilog))
}

// submit writes a batch script and submits it as who, from the test's job
// directory; it returns the job id.
func (s *slurmJobs) submit(who, script string, sbatchArgs ...string) string {
	s.t.Helper()
	path := filepath.Join(s.dir, "job-"+randHex(4)+".sh")
	assert.NilError(s.t, os.WriteFile(path, []byte(script), 0o755))
	args := append([]string{"sbatch", "--parsable", "-D", s.dir, "-o", s.dir + "/slurm-%j.out", "-J", "bce2e"}, sbatchArgs...)
	r := runAs(s.t, who, append(args, path)...)
	assert.Equal(s.t, r.code, 0, "sbatch: %s", r)
	job := strings.TrimSpace(strings.SplitN(r.stdout, ";", 2)[0])
	assert.Assert(s.t, regexp.MustCompile(`^[0-9]+$`).MatchString(job), "sbatch said %q", r.stdout)
	s.t.Cleanup(func() { rootCmd("scancel", job) })
	s.t.Logf("submitted job %s as %s", job, who)
	return job
}

// waitEpilog waits until the epilog of job has run and returns its exit
// code as slurmd saw it.
func (s *slurmJobs) waitEpilog(job string, timeout time.Duration) string {
	s.t.Helper()
	var rc string
	poll.WaitOn(s.t, func(poll.LogT) poll.Result {
		b, _ := os.ReadFile(s.done)
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == job {
				rc = f[1]
				return poll.Success()
			}
		}
		st, _ := rootCmd("squeue", "-h", "-j", job, "-o", "%T")
		return poll.Continue("job %s: %s; epilog not run yet", job, strings.TrimSpace(st))
	}, poll.WithTimeout(timeout), poll.WithDelay(250*time.Millisecond))
	return rc
}

// output is the job's stdout and stderr.
func (s *slurmJobs) output(job string) string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "slurm-"+job+".out"))
	return string(b)
}

func (s *slurmJobs) epilogLog() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// syslogSink is a system log for the epilog: a unix datagram socket that
// keeps what it receives.
type syslogSink struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func listenSyslog(t *testing.T, path string) *syslogSink {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	assert.NilError(t, err)
	s := &syslogSink{path: path}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, string(buf[:n]))
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return s
}

func (s *syslogSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.msgs, "\n")
}

// contrib returns the path of a file of contrib/slurm, copied where the
// test users can read it.
func contrib(t *testing.T, a *agentProc, name string) string {
	t.Helper()
	src, err := filepath.Abs(filepath.Join("..", "..", "contrib", "slurm", name))
	assert.NilError(t, err)
	dst := filepath.Join(a.dir, name)
	out, err := rootCmd("install", "-m", "0755", src, dst)
	assert.NilError(t, err, out)
	return dst
}

// jobTasks returns the tasks of who's that record job, as root sees them.
func jobTasks(t *testing.T, a *agentProc, who, job string) []api.Task {
	t.Helper()
	r := a.cli(t, who, "list", "--json")
	assert.Equal(t, r.code, 0, "baicommit list: %s", r)
	var out []api.Task
	for _, task := range decodeTasks(t, r.stdout) {
		if task.Job == job {
			out = append(out, task)
		}
	}
	return out
}

// decodeTasks reads `baicommit list --json`: a list of tasks, or an object
// with a "tasks" list.
func decodeTasks(t *testing.T, s string) []api.Task {
	t.Helper()
	var ts []api.Task
	if err := json.Unmarshal([]byte(s), &ts); err == nil {
		return ts
	}
	var obj struct {
		Tasks []api.Task `json:"tasks"`
	}
	assert.NilError(t, json.Unmarshal([]byte(s), &obj), "baicommit list --json said: %s", s)
	return obj.Tasks
}

// containerState is who's container's state, or "" if it is gone.
func containerState(t *testing.T, who, name string) string {
	t.Helper()
	r := runAs(t, who, "podman", "inspect", "--format", "{{.State.Status}}", name)
	if r.code != 0 {
		return ""
	}
	return strings.TrimSpace(r.stdout)
}

// removeLater removes who's container name when the test ends: the job
// started it, so session() did not.
func removeLater(t *testing.T, who, name string) {
	t.Cleanup(func() { runAs(t, who, "podman", "rm", "-f", "-t", "0", name) })
}

// A user's batch job starts a session with the opt-in labels, writes a
// file in it and ends; the epilog freezes it into an archive named after
// job and node, owned by the user, with the file inside and a sidecar
// recording job, user, node and exit state. A container of the same user's
// other job, and one of this job that did not opt in, are not touched.
func TestSlurmEpilogFreezesLabelledSession(t *testing.T) {
	a := newAgent(t)
	// {job} in save_path and file_name, {node} in file_name.
	rewriteConfig(t, a, map[string]string{
		"save_path": fmt.Sprintf("%q", a.save+"/{user}/{job}"),
		"file_name": `"{container}-job{job}-{node}-{task}"`,
	})
	a.start()
	s := newSlurmJobs(t, a)
	run := contrib(t, a, "baicommit-run")

	// A session of another job of the same user on this node, opted in:
	// the epilog of this job must leave it alone.
	other := session(t, alice, "echo other > /root/other.txt",
		"--label", api.LabelJob+"=990000001", "--label", api.LabelFreeze+"="+api.FreezeOnExit)

	ctr := "e2e-slurm-frozen-" + randHex(3)
	optout := "e2e-slurm-optout-" + randHex(3)
	removeLater(t, alice, ctr)
	removeLater(t, alice, optout)
	job := s.submit(alice, fmt.Sprintf(`#!/bin/sh
set -e
# An opted-in session, through the contrib wrapper; its main process
# ends on SIGTERM, as a shell or a service would.
%s -d --network=none --name %s %s sh -c 'trap "exit 0" TERM; sleep 3600 & wait'
podman exec %s sh -c "echo results of job $SLURM_JOB_ID > /root/result.txt"
# A session of this job that did not opt in.
podman run -d --network=none --name %s --label baicommit.job=$SLURM_JOB_ID %s sleep 3600
echo started
`, run, ctr, baseImage, ctr, optout, baseImage))

	rc := s.waitEpilog(job, 3*time.Minute)
	t.Logf("epilog log:\n%s", s.epilogLog())
	assert.Equal(t, rc, "0", "the epilog must exit 0")
	assert.Assert(t, is.Contains(s.output(job), "started"), "job output: %s", s.output(job))
	assertNodeUp(t, s.node)

	tasks := jobTasks(t, a, alice, job)
	assert.Equal(t, len(tasks), 1, "tasks of job %s: %+v", job, tasks)
	task := tasks[0]
	assert.Equal(t, task.State, api.StateSucceeded, "task: %+v", task)
	assert.Equal(t, task.Container, ctr)
	assert.Equal(t, task.Trigger, api.TriggerEpilog)
	assert.Equal(t, task.Requester, 0, "the epilog (root) asked")

	// `baicommit list`, as the user would look.
	r := a.cli(t, alice, "list")
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Assert(t, is.Contains(r.stdout, task.ID), "baicommit list does not show the epilog's task:\n%s", r.stdout)

	// The archive: named after job and node, in the job's directory,
	// the user's, with the file inside.
	dir := filepath.Join(a.save, alice, job)
	assert.Equal(t, filepath.Dir(task.Archive.Path), dir)
	name := filepath.Base(task.Archive.Path)
	assert.Assert(t, strings.HasPrefix(name, ctr+"-job"+job+"-"+node+"-"), "archive name %s names neither job nor node", name)
	fi, err := os.Stat(task.Archive.Path)
	assert.NilError(t, err)
	assert.Equal(t, fi.Sys().(*syscall.Stat_t).Uid, uidOf(t, alice), "the archive must belong to the user")
	img := loadArchive(t, alice, task.Archive.Path)
	out := podman(t, alice, "run", "--rm", "--network=none", img, "cat", "/root/result.txt")
	assert.Equal(t, out, "results of job "+job)

	sc := readSidecar(t, task.Archive.Sidecar)
	assert.Equal(t, sc.Job, job)
	assert.Equal(t, sc.User, alice)
	assert.Equal(t, sc.Node, node)
	assert.Equal(t, sc.JobExit, "0:0")
	assert.Equal(t, sc.Trigger, api.TriggerEpilog)
	// proctrack/linuxproc does not follow conmon out of the job, so the
	// session still ran: the agent stopped it first (SIGTERM, exit 0).
	assert.Equal(t, sc.ContainerState, "exited")
	assert.Assert(t, sc.ContainerExit != nil && *sc.ContainerExit == 0, "container exit code: %v", sc.ContainerExit)

	// Not touched: the session of the other job runs on, the one that did
	// not opt in too, and neither has a task.
	assert.Equal(t, containerState(t, alice, other), "running")
	assert.Equal(t, containerState(t, alice, optout), "running")
	assert.Equal(t, len(jobTasks(t, a, alice, "990000001")), 0)
	assert.Assert(t, is.Contains(s.epilogLog(), "not opted in"))
	assert.Assert(t, is.Contains(s.syslog.String(), "session frozen"), "syslog: %s", s.syslog)
	assert.Assert(t, is.Contains(s.syslog.String(), task.ID), "syslog: %s", s.syslog)
}

// rewriteConfig sets keys of an agent's configuration before it starts.
func rewriteConfig(t *testing.T, a *agentProc, keys map[string]string) {
	t.Helper()
	b, err := os.ReadFile(a.cfgPath)
	assert.NilError(t, err)
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, _, _ := strings.Cut(line, " = ")
		if _, ok := keys[k]; !ok {
			lines = append(lines, line)
		}
	}
	for k, v := range keys {
		lines = append(lines, k+" = "+v)
	}
	assert.NilError(t, os.WriteFile(a.cfgPath, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
}

// jobState is Slurm's state of job (COMPLETED, TIMEOUT, …).
func jobState(t *testing.T, job string) string {
	t.Helper()
	// Right after the epilog, slurmctld may not have marked the job
	// ended yet: COMPLETING is on the way to the state asked about.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err := rootCmd("scontrol", "-o", "show", "job", job)
		assert.NilError(t, err, out)
		m := regexp.MustCompile(`JobState=(\S+)`).FindStringSubmatch(out)
		assert.Assert(t, m != nil, "scontrol: %s", out)
		if m[1] != "COMPLETING" || time.Now().After(deadline) {
			return m[1]
		}
	}
}

// A job whose sessions did not opt in leaves nothing: no task, no file,
// the sessions untouched.
func TestSlurmEpilogLeavesJobWithoutOptInAlone(t *testing.T) {
	a := newAgent(t).start()
	s := newSlurmJobs(t, a)
	labelled, plain := "e2e-slurm-jobonly-"+randHex(3), "e2e-slurm-plain-"+randHex(3)
	removeLater(t, alice, labelled)
	removeLater(t, alice, plain)
	job := s.submit(alice, fmt.Sprintf(`#!/bin/sh
set -e
podman run -d --network=none --name %s --label baicommit.job=$SLURM_JOB_ID %s sleep 3600
podman run -d --network=none --name %s %s sleep 3600
echo started
`, labelled, baseImage, plain, baseImage))

	rc := s.waitEpilog(job, 3*time.Minute)
	assert.Equal(t, rc, "0", "the epilog must exit 0; log:\n%s", s.epilogLog())
	assert.Assert(t, is.Contains(s.output(job), "started"), "job output: %s", s.output(job))
	assertNodeUp(t, s.node)
	assert.Assert(t, is.Contains(s.epilogLog(), "no session of this job to freeze"), s.epilogLog())
	assert.Equal(t, len(jobTasks(t, a, alice, job)), 0)
	assert.Assert(t, is.Len(listDir(t, a.save), 0), "the save location must stay empty")
	assert.Equal(t, containerState(t, alice, labelled), "running")
	assert.Equal(t, containerState(t, alice, plain), "running")

	// Only root and admins may ask for another user's job; a user may ask
	// for their own, which selects the same way.
	post := func(who, body string) string {
		r := runAs(t, who, "curl", "-sS", "--unix-socket", a.sock, "-X", "POST", "-H", "Content-Type: application/json",
			"-d", body, "-w", "\n%{http_code}", "http://agent"+api.JobFreezesPath(job))
		assert.Equal(t, r.code, 0, "curl: %s", r)
		return r.stdout
	}
	out := post(bob, `{"user":"bcalice"}`)
	assert.Assert(t, strings.HasSuffix(out, "\n403"), "bob asking for alice's job: %s", out)
	out = post(alice, `{"user":"bcalice","exit":"0:0"}`)
	assert.Assert(t, strings.HasSuffix(out, "\n202"), "alice asking for her own job: %s", out)
	assert.Assert(t, is.Contains(out, `"tasks":[]`), out)
	assert.Assert(t, is.Contains(out, labelled), out)
	assert.Equal(t, len(jobTasks(t, a, alice, job)), 0)
}

// A freeze that fails (the save location is not writable by the user)
// leaves the node up: the epilog exits 0 and says why in the system log,
// and the task says it too.
func TestSlurmEpilogFailedFreezeLeavesNodeUp(t *testing.T) {
	a := newAgent(t)
	locked := filepath.Join(a.dir, "locked")
	assert.NilError(t, os.Mkdir(locked, 0o755)) // root's: users cannot create anything
	rewriteConfig(t, a, map[string]string{
		"save_path":  fmt.Sprintf("%q", locked+"/{user}"),
		"save_roots": fmt.Sprintf("[%q]", locked),
	})
	a.start()
	s := newSlurmJobs(t, a)
	ctr := "e2e-slurm-nowrite-" + randHex(3)
	removeLater(t, alice, ctr)
	job := s.submit(alice, fmt.Sprintf(`#!/bin/sh
set -e
podman run -d --network=none --name %s --label baicommit.job=$SLURM_JOB_ID --label baicommit.freeze=on-exit %s sh -c 'trap "exit 0" TERM; sleep 3600 & wait'
echo started
`, ctr, baseImage))

	rc := s.waitEpilog(job, 3*time.Minute)
	assert.Equal(t, rc, "0", "the epilog must exit 0 when a freeze fails; log:\n%s", s.epilogLog())
	st := nodeState(t, s.node)
	assert.Assert(t, !strings.HasPrefix(st, "drain") && !strings.HasPrefix(st, "down"), "!!! node %s is %s after a failed freeze", s.node, st)
	assertNodeUp(t, s.node)

	tasks := jobTasks(t, a, alice, job)
	assert.Equal(t, len(tasks), 1, "tasks: %+v", tasks)
	assert.Equal(t, tasks[0].State, api.StateFailed)
	assert.Assert(t, is.Contains(tasks[0].Error, "permission denied"), "task error: %s", tasks[0].Error)
	sys := s.syslog.String()
	assert.Assert(t, is.Contains(sys, "freeze failed"), "syslog: %s", sys)
	assert.Assert(t, is.Contains(sys, tasks[0].ID), "syslog: %s", sys)
	assert.Assert(t, is.Contains(sys, "permission denied"), "syslog: %s", sys)
	assert.Assert(t, is.Contains(s.epilogLog(), "freeze failed"))
	assert.Assert(t, is.Len(listDir(t, locked), 0), "nothing may be left in the save location")
}

// When the freezes take longer than the epilog's budget, the epilog
// returns and the freeze goes on in the agent to its end. The session
// ignores SIGTERM, so stopping it takes its whole stop timeout and it
// ends killed (137), which the sidecar records.
func TestSlurmEpilogBudgetLeavesFreezeToAgent(t *testing.T) {
	a := newAgent(t).start()
	s := newSlurmJobs(t, a, "--budget", "2s")
	ctr := "e2e-slurm-slow-" + randHex(3)
	removeLater(t, alice, ctr)
	job := s.submit(alice, fmt.Sprintf(`#!/bin/sh
set -e
podman run -d --network=none --stop-timeout 6 --name %s --label baicommit.job=$SLURM_JOB_ID --label baicommit.freeze=on-exit %s sleep 3600
podman exec %s sh -c 'echo slow > /root/slow.txt'
`, ctr, baseImage, ctr))

	rc := s.waitEpilog(job, 3*time.Minute)
	assert.Equal(t, rc, "0", "log:\n%s", s.epilogLog())
	assertNodeUp(t, s.node)
	assert.Assert(t, is.Contains(s.epilogLog(), "goes on in the agent"), s.epilogLog())
	tasks := jobTasks(t, a, alice, job)
	assert.Equal(t, len(tasks), 1, "tasks: %+v", tasks)
	task := a.waitTask(t, tasks[0].ID)
	assert.Equal(t, task.State, api.StateSucceeded, "task: %+v", task)
	assert.Assert(t, is.Contains(strings.Join(task.Warnings, "\n"), "stopped before the freeze"))
	sc := readSidecar(t, task.Archive.Sidecar)
	assert.Assert(t, sc.ContainerExit != nil && *sc.ContainerExit == 137, "container exit code: %v", sc.ContainerExit)
	img := loadArchive(t, alice, task.Archive.Path)
	assert.Equal(t, podman(t, alice, "run", "--rm", "--network=none", img, "cat", "/root/slow.txt"), "slow")
}

// The --signal path: a batch script sources baicommit-on-signal.sh and
// runs a --rm session; USR1, sent by Slurm 50 s before the one-minute
// time limit, freezes the session before the job is killed, then the
// session is stopped (and removed by Podman) and the job ends COMPLETED.
func TestSlurmSignalHelperFreezesRmSession(t *testing.T) {
	a := newAgent(t).start()
	s := newSlurmJobs(t, a)
	run := contrib(t, a, "baicommit-run")
	helper := contrib(t, a, "baicommit-on-signal.sh")
	ctr := "e2e-slurm-signal-" + randHex(3)
	removeLater(t, alice, ctr)
	job := s.submit(alice, fmt.Sprintf(`#!/bin/bash
export BAICOMMIT=%s BAICOMMIT_AGENT=unix://%s
source %s
%s --on-signal -d --rm --network=none --name %s %s sh -c 'trap "exit 0" TERM; sleep 3600 & wait'
podman exec %s sh -c 'echo written before the time limit > /root/result.txt'
echo "waiting for the signal"
baicommit_wait
echo "NOT REACHED: the session ended before the signal"
`, bins.cli, a.sock, helper, run, ctr, baseImage, ctr), "--time=1", "--signal=B:USR1@50")

	rc := s.waitEpilog(job, 3*time.Minute)
	out := s.output(job)
	t.Logf("job output:\n%s", out)
	assert.Equal(t, rc, "0", "log:\n%s", s.epilogLog())
	assertNodeUp(t, s.node)
	assert.Equal(t, jobState(t, job), "COMPLETED", "the job must end by the helper, not by its time limit")
	assert.Assert(t, is.Contains(out, "freezing "+ctr))
	assert.Assert(t, !strings.Contains(out, "NOT REACHED"))

	tasks := jobTasks(t, a, alice, job)
	assert.Equal(t, len(tasks), 1, "tasks: %+v", tasks)
	task := tasks[0]
	assert.Equal(t, task.State, api.StateSucceeded, "task: %+v", task)
	assert.Equal(t, task.Requester, int(uidOf(t, alice)), "the user's own CLI asked")
	r := a.cli(t, alice, "status", "--json", task.ID)
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Assert(t, is.Contains(r.stdout, task.ID))

	sc := readSidecar(t, task.Archive.Sidecar)
	assert.Equal(t, sc.Job, job)
	assert.Equal(t, sc.ContainerState, "running", "frozen before the job was killed")
	img := loadArchive(t, alice, task.Archive.Path)
	assert.Equal(t, podman(t, alice, "run", "--rm", "--network=none", img, "cat", "/root/result.txt"), "written before the time limit")
	// Stopped after its freeze, so Podman removed the --rm session.
	assert.Equal(t, containerState(t, alice, ctr), "")
}
