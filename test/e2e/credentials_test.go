package e2e

// Credentials, output and the transient Podman service: the low-severity
// attacks of issue 13, and the service that ran outside the user's limits.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/client"
)

// onArchive calls f with the path of each archive renamed into dir (the
// moment a freeze publishes it) until the test ends.
func onArchive(t *testing.T, dir string, f func(path string)) {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	assert.NilError(t, err)
	_, err = unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO)
	assert.NilError(t, err)
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { unix.Close(fd) }) })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if err != nil || n <= 0 {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafePointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				off += unix.SizeofInotifyEvent + int(ev.Len)
				if strings.HasSuffix(name, api.ArchiveSuffix) {
					f(filepath.Join(dir, name))
				}
			}
		}
	}()
}

// The archive is replaced (here by another, valid archive of alice's) in
// the moment between its freeze and its push: the agent's push checks it
// against the digest the freeze recorded and pushes nothing.
func TestPushChecksTheArchive(t *testing.T) {
	reg := startRegistry(t, "alice")
	a := newAgent(t).start()
	decoy, r := commitJSON(t, a, alice, session(t, alice, "echo decoy > /root/decoy.txt"))
	assert.Equal(t, decoy.State, api.StateSucceeded, "%s", r)
	other, err := os.ReadFile(decoy.Archive.Path)
	assert.NilError(t, err)
	var swapped string
	var mu sync.Mutex
	onArchive(t, filepath.Dir(decoy.Archive.Path), func(path string) {
		if path == decoy.Archive.Path {
			return
		}
		assert.Check(t, os.WriteFile(path, other, 0o600))
		mu.Lock()
		swapped = path
		mu.Unlock()
	})

	repo := "alice/swapped-" + randHex(3)
	ctr := session(t, alice, "echo real > /root/real.txt")
	task, r := commitJSON(t, a, alice, "--push", reg.addr+"/"+repo+":v1", "--creds", reg.creds(), "--tls-verify=false", ctr)
	mu.Lock()
	assert.Equal(t, swapped, task.Archive.Path, "the archive was not swapped in time: %s", r)
	mu.Unlock()
	assert.Equal(t, task.State, api.StateSucceeded, "%s", r)
	assert.Assert(t, task.Push != nil)
	assert.Check(t, is.Equal(task.Push.State, api.PushFailed), "the swapped archive was pushed: %s", r)
	assert.Check(t, is.Contains(task.Push.Error, "after the freeze; refusing to use it"))
	assert.Check(t, is.Equal(reg.manifestDigest(t, repo, "v1"), ""), "the registry got the swapped image")
}

// Root (or an admin) asks for a push of alice's session with root's own
// password: refused, since the push runs as alice, who could read it from
// that process. Alice's own pushes run in a helper she cannot read either.
func TestCredsNotLentToTheOwner(t *testing.T) {
	reg := startRegistry(t, "alice")
	a := newAgent(t).start()
	ctr := session(t, alice, "busybox dd if=/dev/urandom of=/data bs=1M count=30 2>/dev/null")
	_, err := a.client(t).Freeze(context.Background(), api.FreezeRequest{Container: ctr, User: alice,
		Push: &api.PushRequest{Ref: reg.addr + "/alice/x:v1", Creds: "root:root-s3cret"}})
	var apiErr *client.APIError
	assert.Assert(t, errors.As(err, &apiErr), "root's password was handed to alice's push: %v", err)
	assert.Check(t, is.Equal(apiErr.Status, http.StatusForbidden))
	assert.Check(t, is.Contains(apiErr.Message, "--creds cannot be used for the session of "+alice))
	assert.Check(t, !strings.Contains(apiErr.Message, "root-s3cret"))
	ts, err := a.client(t).Tasks(context.Background())
	assert.NilError(t, err)
	assert.Check(t, is.Len(ts, 0))

	// Alice's own push: its helper runs as her, and still she cannot read
	// its memory or environment.
	done := make(chan result, 1)
	go func() {
		done <- a.cli(t, alice, "commit", "--wait", "--push", reg.addr+"/alice/own:v1", "--creds", reg.creds(), "--tls-verify=false", ctr)
	}()
	var pid int
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if pids := helperPIDs(t, alice, "push"); len(pids) > 0 {
			pid = pids[0]
			return poll.Success()
		}
		select {
		case r := <-done:
			return poll.Error(fmt.Errorf("the push ended before its helper was seen: %s", r))
		default:
		}
		return poll.Continue("no push helper yet")
	}, poll.WithTimeout(2*time.Minute), poll.WithDelay(2*time.Millisecond))
	// A process that is not dumpable has the files of its /proc entry
	// (environ, mem) owned by root (the helper makes itself so first
	// thing; the first look may come before).
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		var st syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/mem", pid), &st); err != nil {
			return poll.Error(fmt.Errorf("the push helper ended before it was undumpable: %v", err))
		}
		if st.Uid != 0 {
			return poll.Continue("the push helper's memory belongs to uid %d", st.Uid)
		}
		return poll.Success()
	}, poll.WithTimeout(10*time.Second), poll.WithDelay(time.Millisecond))
	rr := runAs(t, alice, "cat", fmt.Sprintf("/proc/%d/environ", pid))
	assert.Check(t, rr.code != 0 && strings.Contains(rr.stderr, "ermission denied"), "alice read her push helper: %s", rr)
	r := <-done
	assert.Equal(t, r.code, 0, "%s", r)
}

// Through the manager a push's password would cross the network to the
// agent: refused to an http:// agent URL, accepted to an agent that speaks
// TLS (tls_cert, tls_key) whose certificate the manager trusts.
func TestManagerCredsOnlyOverTLS(t *testing.T) {
	reg := startRegistry(t, "alice")
	dir, err := os.MkdirTemp("", "baicommit-e2e-pki-")
	assert.NilError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	assert.NilError(t, os.Chmod(dir, 0o755))
	caFile, certFile, keyFile := writeTestPKI(t, dir)
	c := newCluster(t, []string{"bcn1"}, 0, nil)
	port := freePort(t)
	tlsAgent := newAgent(t, withKey("node_name", `"bctls"`), withKey("manager_user", strconv.Quote(managerUser)),
		withKey("tls_cert", strconv.Quote(certFile)), withKey("tls_key", strconv.Quote(keyFile)))
	tlsAgent.listen = []string{fmt.Sprintf("tcp://127.0.0.1:%d", port)}
	tlsAgent.start()
	m := startManager(t, map[string]string{"bcn1": c.urls["bcn1"], "bctls": fmt.Sprintf("https://127.0.0.1:%d", port)},
		"agent_ca_file = "+strconv.Quote(caFile))
	ctr := session(t, alice, "echo pushed > /root/p.txt")

	r := m.cli(t, alice, "commit", "--node", "bcn1", "--wait", "--push", reg.addr+"/alice/clear:v1",
		"--creds", reg.creds(), "--tls-verify=false", ctr)
	assert.Equal(t, r.code, 1, "%s", r)
	assert.Check(t, is.Contains(r.stderr, "would travel to the agent of node bcn1 in clear"))
	assert.Check(t, !strings.Contains(c.agents["bcn1"].log.String(), "freeze queued"), "the agent got the request")

	r = m.cli(t, alice, "commit", "--node", "bctls", "--wait", "--json", "--push", reg.addr+"/alice/tls:v1",
		"--creds", reg.creds(), "--tls-verify=false", ctr)
	assert.Equal(t, r.code, 0, "%s", r)
	task := decodeTask(t, r)
	assert.Check(t, is.Equal(task.Push.State, api.PushSucceeded))
	assert.Check(t, is.Equal(reg.manifestDigest(t, "alice/tls", "v1"), task.Push.Digest))
	// Without --creds, plain HTTP is fine: nothing secret crosses it.
	r = m.cli(t, alice, "commit", "--node", "bcn1", "--wait", ctr)
	assert.Equal(t, r.code, 0, "%s", r)
}

// Carol's Podman names its containers and images with escape sequences
// and fails commits with one: root (or an admin) looking at carol's
// sessions and tasks gets none of them on the terminal.
func TestControlCharactersFromPodman(t *testing.T) {
	withRuntimeDir(t)
	a := newAgent(t).start()
	const esc = "\x1b]0;owned\x07\x1b[2J"
	fakePodmanOf(t, carol, fakeSpec{Commit: "fail:" + esc + "bye", Containers: []fakeContainer{
		{ID: fakeID(3), Name: "evil" + esc, Image: "img" + esc},
		{ID: fakeID(4), Name: "box", Image: "localhost/busybox" + esc}}})
	r := runAs(t, "root", bins.cli, "--agent", "unix://"+a.sock, "sessions", "--user", carol)
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Check(t, is.Contains(r.stdout, "evil]0;owned[2J"))
	assert.Check(t, !strings.ContainsAny(r.stdout+r.stderr, "\x1b\x07"), "escape sequences reached the terminal: %q", r.stdout)

	task, err := a.client(t).Freeze(context.Background(), api.FreezeRequest{Container: "box", User: carol})
	assert.NilError(t, err)
	done := a.waitTask(t, task.ID)
	assert.Check(t, is.Equal(done.State, api.StateFailed))
	assert.Check(t, is.Contains(done.Error, esc), "the fake's message did not come through (the test proves nothing)")
	for _, args := range [][]string{{"status", task.ID}, {"list"}} {
		r = runAs(t, "root", append([]string{bins.cli, "--agent", "unix://" + a.sock}, args...)...)
		assert.Check(t, !strings.ContainsAny(r.stdout+r.stderr, "\x1b\x07"), "%v: escape sequences reached the terminal: %q", args, r.stdout+r.stderr)
		assert.Check(t, is.Contains(r.stdout+r.stderr, "]0;owned"), "%v: %s", args, r)
	}
	// --json keeps the data, escaped.
	r = runAs(t, "root", bins.cli, "--agent", "unix://"+a.sock, "status", "--json", task.ID)
	assert.Check(t, is.Contains(r.stdout, `\u001b]0;owned\u0007`), "%s", r)
}

// The Podman service the agent starts for bob listens where bob cannot
// connect (he could start containers through it, outside his jobs'
// limits, that outlive them); it and the helpers run in bob's cgroups (as
// Slurm's cgroup plugin makes them: slurm/uid_UID in every controller).
func TestTransientServiceOutOfReach(t *testing.T) {
	uid := uidOf(t, bob)
	var cgroups []string
	for _, ctrl := range []string{"memory", "pids", "cpu"} {
		d := fmt.Sprintf("/sys/fs/cgroup/%s/slurm/uid_%d", ctrl, uid)
		if _, err := os.Stat(filepath.Dir(filepath.Dir(d))); err != nil {
			continue
		}
		assert.NilError(t, os.MkdirAll(d, 0o755))
		cgroups = append(cgroups, d)
	}
	assert.Assert(t, len(cgroups) > 0, "!!! no cgroup v1 controller mounted under /sys/fs/cgroup")
	a := newAgent(t).start()
	t.Cleanup(func() {
		killServices(filepath.Join(a.dir, "run"), syscall.SIGKILL)
		for _, d := range cgroups {
			poll.WaitOn(t, func(poll.LogT) poll.Result {
				if err := os.Remove(d); err != nil {
					return poll.Continue("%v", err)
				}
				return poll.Success()
			}, poll.WithTimeout(20*time.Second))
			os.Remove(filepath.Dir(d))
		}
	})
	ctr := session(t, bob, "busybox dd if=/dev/urandom of=/data bs=1M count=60 2>/dev/null")
	task, err := a.client(t).Freeze(context.Background(), api.FreezeRequest{Container: ctr, User: bob})
	assert.NilError(t, err)
	// The helper is moved before it reads its spec, so a first look right
	// after it started may still see the agent's cgroup.
	want := fmt.Sprintf("memory:/slurm/uid_%d", uid)
	var helperCgroups string
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		for _, pid := range helperPIDs(t, bob, "") {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); err == nil {
				helperCgroups = string(b)
				if strings.Contains(helperCgroups, want) {
					return poll.Success()
				}
			}
		}
		if cur, err := a.client(t).Task(context.Background(), task.ID); err == nil && cur.Done() {
			return poll.Error(fmt.Errorf("the freeze ended with its helper never seen in bob's cgroup (last seen in %q)", helperCgroups))
		}
		return poll.Continue("no helper of bob's in his cgroup yet")
	}, poll.WithTimeout(2*time.Minute), poll.WithDelay(2*time.Millisecond))
	assert.Check(t, is.Equal(a.waitTask(t, task.ID).State, api.StateSucceeded))

	sock := findTransientSocket(t, a, bob)
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), "BAICOMMIT_PODMAN_SOCKET="+sock+"\x00") {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			pids = append(pids, pid)
		}
	}
	assert.Assert(t, len(pids) > 0, "no podman service for bob")
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err == nil {
			assert.Check(t, is.Contains(string(b), want), "the podman service (pid %d) runs outside bob's cgroup", pid)
		}
	}

	// Bob talking to that service directly: no way in.
	r := runAs(t, bob, "podman", "--url", "unix://"+sock, "run", "-d", "--network=none", baseImage, "sleep", "600")
	assert.Check(t, r.code != 0, "bob started a container through the agent's service: %s", r)
	assert.Check(t, is.Contains(r.stderr, "ermission denied"), "%s", r)
}

func unsafePointer(b *byte) unsafe.Pointer { return unsafe.Pointer(b) }
