package e2e

// Starvation: no user can hold the node's freeze slots, connections or
// task store for everyone else, or outlast their deadlines.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"

	"github.com/baicommit/baicommit/agent/taskstore"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/client"
)

// waitWithin polls task id as root until it ends, at most d.
func (a *agentProc) waitWithin(t *testing.T, id string, d time.Duration) (*api.Task, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return a.client(t).Wait(ctx, id, 200*time.Millisecond, nil)
}

// fakeID is a container id of the fake Podman's.
func fakeID(n int) string { return fmt.Sprintf("%064x", 0xbad0000+n) }

// Carol serves a Podman API of her own at her socket that never answers a
// commit, and asks for two freezes: she holds one slot (max_running_per_
// user) until task_timeout, not both forever; the freeze the epilog asks
// for when alice's Slurm job ends runs meanwhile.
func TestPodmanThatNeverAnswers(t *testing.T) {
	withRuntimeDir(t)
	a := newAgent(t, withKey("task_timeout", `"20s"`)).start()
	fakePodmanOf(t, carol, fakeSpec{Commit: "hang", Containers: []fakeContainer{
		{ID: fakeID(1), Name: "box1", Image: baseImage}, {ID: fakeID(2), Name: "box2", Image: baseImage}}})
	c := a.client(t)
	ctx := context.Background()
	var carols []string
	for _, name := range []string{"box1", "box2"} {
		task, err := c.Freeze(ctx, api.FreezeRequest{Container: name, User: carol})
		assert.NilError(t, err)
		carols = append(carols, task.ID)
	}
	// A job id of this run only: a session a killed earlier run left
	// behind must not join this job.
	jobID := fmt.Sprint(500000000 + rand.IntN(400000000))
	session(t, alice, "echo mine > /root/mine.txt", "--label", api.LabelJob+"="+jobID, "--label", api.LabelFreeze+"="+api.FreezeOnExit)
	job, err := c.FreezeJob(ctx, jobID, api.JobFreezeRequest{User: alice, Exit: "0:0"})
	assert.NilError(t, err)
	assert.Assert(t, is.Len(job.Tasks, 1), "%+v", job)
	done, err := a.waitWithin(t, job.Tasks[0].ID, 60*time.Second)
	assert.NilError(t, err, "alice's epilog freeze waited behind carol's Podman that never answers")
	assert.Check(t, is.Equal(done.State, api.StateSucceeded), done.Error)

	for _, id := range carols {
		got, err := a.waitWithin(t, id, 90*time.Second)
		assert.NilError(t, err, "carol's freeze outlived its task_timeout")
		assert.Check(t, is.Equal(got.State, api.StateFailed))
		assert.Check(t, is.Contains(got.Error, "task_timeout 20s"))
	}
}

// Bob stops (SIGSTOP) each helper the agent runs for him, which runs as
// him, so that it never ends: his freezes hold one slot, not both, until
// task_timeout, when they fail and leave no file; alice's freeze runs.
func TestStoppedHelpers(t *testing.T) {
	a := newAgent(t, withKey("task_timeout", `"15s"`)).start()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := stopHelpers(ctx, t, bob)
	defer cancel()
	c := a.client(t)
	var bobs []string
	for range 2 {
		ctr := session(t, bob, "busybox dd if=/dev/urandom of=/data bs=1M count=40 2>/dev/null")
		task, err := c.Freeze(context.Background(), api.FreezeRequest{Container: ctr, User: bob})
		assert.NilError(t, err)
		bobs = append(bobs, task.ID)
	}
	ctr := session(t, alice, "echo mine > /root/mine.txt")
	task, err := c.Freeze(context.Background(), api.FreezeRequest{Container: ctr, User: alice})
	assert.NilError(t, err)
	done, err := a.waitWithin(t, task.ID, 60*time.Second)
	assert.NilError(t, err, "alice's freeze waited behind bob's stopped helpers")
	assert.Check(t, is.Equal(done.State, api.StateSucceeded), done.Error)

	for _, id := range bobs {
		got, err := a.waitWithin(t, id, 90*time.Second)
		assert.NilError(t, err, "bob's stopped helper outlived its task_timeout")
		assert.Check(t, is.Equal(got.State, api.StateFailed))
		assert.Check(t, is.Contains(got.Error, "task_timeout 15s"))
	}
	cancel()
	assert.Check(t, <-stopped >= 2, "bob stopped no helper: the test proves nothing")
	assert.Check(t, is.Len(listDir(t, filepath.Join(a.save, bob)), 0), "a stopped helper left files")
	assert.Check(t, is.Len(helperPIDs(t, bob, ""), 0), "a stopped helper is still there")
}

// Carol's Podman (hers to control) names its container with the id of
// bob's: her freeze of it blocks nothing of bob's.
func TestAnotherUsersContainerID(t *testing.T) {
	withRuntimeDir(t)
	a := newAgent(t).start()
	bobs := session(t, bob, "echo bob > /root/b.txt")
	bobsID := podman(t, bob, "inspect", "--format", "{{.Id}}", bobs)
	fakePodmanOf(t, carol, fakeSpec{Commit: "hang", Containers: []fakeContainer{{ID: bobsID, Name: "box", Image: baseImage}}})
	c := a.client(t)
	ctx := context.Background()
	held, err := c.Freeze(ctx, api.FreezeRequest{Container: "box", User: carol})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(held.ContainerID, bobsID))

	task, r := commitJSON(t, a, bob, bobs)
	assert.Equal(t, r.code, 0, "carol's freeze blocked bob's: %s", r)
	assert.Check(t, is.Equal(task.State, api.StateSucceeded))
	// Nor does it show as running on bob's session.
	_, err = c.Freeze(ctx, api.FreezeRequest{Container: bobs, User: bob})
	assert.NilError(t, err)
	r = a.cli(t, bob, "sessions", "--json")
	assert.Equal(t, r.code, 0, "%s", r)
	var ss []api.Session
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &ss), "%s", r)
	s := findSession(t, ss, bobs)
	assert.Check(t, s.Task != held.ID, "bob's session shows carol's freeze")
}

// Bob opens many connections to the agent's socket and holds them: some
// idle after one request, some sending a request whose body never comes.
// Beyond max_connections_per_user they are closed at once, the others
// after request_timeout or idle_connection_timeout; alice is served
// throughout.
func TestConnectionsHeldOpen(t *testing.T) {
	a := newAgent(t, withKey("max_connections_per_user", "6"),
		withKey("request_timeout", `"3s"`), withKey("idle_connection_timeout", `"3s"`)).start()
	at := startAttack(t, bob, "hold", a.sock, holdSpec{Idle: 10, Silent: 10})
	t0 := time.Now()
	r := a.cli(t, alice, "version", "--json")
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Check(t, time.Since(t0) < 5*time.Second)

	type closed struct {
		Kind    string
		Served  bool
		Seconds float64
	}
	var got []closed
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		got = nil
		for _, line := range strings.Split(strings.TrimSpace(at.stdout.String()), "\n") {
			var c closed
			if json.Unmarshal([]byte(line), &c) == nil && c.Kind != "" {
				got = append(got, c)
			}
		}
		if len(got) == 20 {
			return poll.Success()
		}
		return poll.Continue("%d of bob's 20 connections closed by the agent", len(got))
	}, poll.WithTimeout(20*time.Second), poll.WithDelay(200*time.Millisecond))
	held := 0
	for _, c := range got {
		if c.Seconds > 1.5 {
			held++
			assert.Check(t, c.Seconds < 10, "a %s connection was held %.1fs", c.Kind, c.Seconds)
		}
	}
	assert.Check(t, held <= 6, "%d connections held, more than max_connections_per_user: %+v", held, got)
	assert.Check(t, held >= 1, "no connection was served at all: %+v", got)

	// And the agent still answers everyone, bob included, once his are gone.
	r = a.cli(t, bob, "version")
	assert.Equal(t, r.code, 0, "%s", r)
}

// Bob freezes many times: the node keeps max_tasks_per_user of his
// finished tasks, not every one forever.
func TestTaskStoreBounded(t *testing.T) {
	a := newAgent(t, withKey("max_tasks_per_user", "2")).start()
	ctr := session(t, bob, "echo b > /root/b.txt")
	var ids []string
	for range 4 {
		task, r := commitJSON(t, a, bob, ctr)
		assert.Equal(t, r.code, 0, "%s", r)
		ids = append(ids, task.ID)
	}
	r := a.cli(t, bob, "list", "--json")
	assert.Equal(t, r.code, 0, "%s", r)
	var listed struct{ Tasks []api.Task }
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &listed))
	var kept []string
	for _, task := range listed.Tasks {
		kept = append(kept, task.ID)
	}
	assert.Check(t, is.DeepEqual(kept, []string{ids[3], ids[2]}))
	_, err := a.client(t).Task(context.Background(), ids[0])
	var apiErr *client.APIError
	assert.Check(t, errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound, "%v", err)
}

// Tasks an agent left running or queued are cleaned up after its restart
// while it serves: many of one user's (an older agent let anyone queue
// without a limit), their helpers stopped by that user as they start, do
// not keep the agent from answering everyone.
func TestRestartRecoveryDoesNotWait(t *testing.T) {
	const stale = 300
	a := newAgent(t)
	store, err := taskstore.Open(filepath.Join(a.dir, "state"), time.Second)
	assert.NilError(t, err)
	uid := int(uidOf(t, bob))
	now := time.Now().UTC()
	for i := range stale {
		tok := fmt.Sprintf("%012x", 0xdead00000+i)
		assert.NilError(t, store.Put(&taskstore.Record{
			Task: api.Task{ID: tok + "." + node, State: api.StateQueued, Container: "box", Owner: bob, OwnerUID: uid,
				Requester: uid, Node: node, Created: now.Add(time.Duration(i) * time.Millisecond)},
			Dir: filepath.Join(a.save, bob), Root: a.save, Temp: ".baicommit-" + tok + "." + node + ".partial",
		}))
	}
	assert.NilError(t, store.Close())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := stopHelpersFast(ctx, t, bob)

	a.start()
	t0 := time.Now()
	c := a.client(t)
	qctx, qcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer qcancel()
	_, err = c.Version(qctx)
	assert.NilError(t, err, "the agent did not answer while it recovered")
	took := time.Since(t0)
	t.Logf("first answer %s after the start, with %d stale tasks to clean up", took.Round(time.Millisecond), stale)
	assert.Check(t, took < 3*time.Second, "the agent served only after %s", took)
	got, err := c.Task(qctx, fmt.Sprintf("%012x.%s", 0xdead00000+stale-1, node))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got.State, api.StateFailed))
	assert.Check(t, is.Contains(got.Error, "agent restarted"))
	cancel()
	t.Logf("bob stopped %d of his helpers", <-stopped)
}

// stopHelpersFast stops (SIGSTOP) who's helpers as soon as they appear,
// as fast as the test can look, until ctx ends: what who may do to their
// own processes, done by root only to be quicker than a shell loop.
func stopHelpersFast(ctx context.Context, t *testing.T, who string) <-chan int {
	out := make(chan int, 1)
	go func() {
		stopped := map[int]bool{}
		for ctx.Err() == nil {
			for _, pid := range helperPIDs(t, who, "") {
				if !stopped[pid] && syscall.Kill(pid, syscall.SIGSTOP) == nil {
					stopped[pid] = true
				}
			}
			time.Sleep(time.Millisecond)
		}
		out <- len(stopped)
	}()
	return out
}

// Carol's Podman answers the list of her containers with JSON that never
// ends: the agent reads a bounded answer, says so, and keeps its memory.
func TestPodmanAnswerWithoutEnd(t *testing.T) {
	withRuntimeDir(t)
	a := newAgent(t).start()
	fakePodmanOf(t, carol, fakeSpec{EndlessList: true})
	r := runAs(t, "root", bins.cli, "--agent", "unix://"+a.sock, "sessions", "--user", carol)
	assert.Equal(t, r.code, 1, "%s", r)
	assert.Check(t, is.Contains(r.stderr, "answer is larger than"), "%s", r)
	peak := peakRSS(t, a.cmd.Process.Pid)
	t.Logf("agent peak RSS after an endless answer: %s", peak)
	kb, err := strconv.Atoi(strings.Fields(peak)[0])
	assert.NilError(t, err)
	assert.Check(t, kb < 512<<10, "the agent's memory grew to %s reading one answer", peak)
	// And it serves the next request.
	r = a.cli(t, alice, "version")
	assert.Equal(t, r.code, 0, "%s", r)
}
