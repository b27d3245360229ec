package agent

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/agent/taskstore"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/policy"
)

// These tests drive the freeze path through fakes of Podman and of the
// owner-side helper (fakes_test.go): no root, no Podman.

// wait returns task id once it has ended.
func (ta *testAgent) wait(t *testing.T, c Caller, id string) *api.Task {
	t.Helper()
	var task *api.Task
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		var err error
		task, err = ta.Task(c, id)
		if err != nil {
			return poll.Error(err)
		}
		if task.Done() {
			return poll.Success()
		}
		return poll.Continue("task %s is %s", id, task.State)
	}, poll.WithTimeout(10*time.Second), poll.WithDelay(5*time.Millisecond))
	return task
}

// Who may freeze whose session: the owner, root and admins; nobody else,
// and a refusal says why.
func TestFreezeAuthorization(t *testing.T) {
	for _, tc := range []struct {
		name, caller, owner string
		status              int // 0: accepted
		contains            string
	}{
		{name: "the owner", caller: "alice"},
		{name: "the owner, naming themselves", caller: "alice", owner: "alice"},
		{name: "root for a user", caller: "root", owner: "alice"},
		{name: "an admin by group", caller: "carol", owner: "alice"},
		{name: "another user", caller: "bob", owner: "alice", status: 403, contains: "the sessions of alice are not yours"},
		{name: "another user's container by name alone", caller: "bob", status: 404, contains: `no container "work" in the Podman of bob`},
		{name: "root without an owner", caller: "root", status: 400, contains: "root has no rootless sessions"},
		{name: "an unknown owner", caller: "root", owner: "mallory", status: 404, contains: `no user "mallory"`},
		{name: "root's own containers", caller: "carol", owner: "root", status: 400, contains: "root's containers are not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			podmans := newFakePodmans()
			podmans.add("alice", "work", nil)
			ta := newTestAgent(t, testConfig(t), podmans, &fakeHelpers{})
			c := ta.caller(tc.caller)
			task, err := ta.Freeze(context.Background(), c, api.FreezeRequest{Container: "work", User: tc.owner})
			if tc.status != 0 {
				assert.Check(t, is.Equal(Status(err), tc.status), "%v", err)
				assert.Check(t, is.ErrorContains(err, tc.contains))
				assert.Check(t, is.Len(ta.helpers.specs(), 0), "nothing ran for a refused freeze")
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.Equal(task.Owner, "alice"))
			assert.Check(t, is.Equal(task.Requester, c.UID))
			done := ta.wait(t, c, task.ID)
			assert.Check(t, is.Equal(done.State, api.StateSucceeded), done.Error)
			// The owner always sees it, whoever started it.
			_, err = ta.Task(ta.caller("alice"), task.ID)
			assert.Check(t, err)
			_, err = ta.Task(ta.caller("bob"), task.ID)
			assert.Check(t, is.Equal(Status(err), http.StatusForbidden))
		})
	}
}

// Where an archive goes: the site's template, expanded with safe values
// only, below a save root; the manager's template from the manager alone.
func TestFreezePlacement(t *testing.T) {
	for _, tc := range []struct {
		name       string
		savePath   string
		relayed    bool
		template   string // the request's save_path
		job        string
		labels     map[string]string
		wantDir    string
		wantInFile string
		status     int
		contains   string
	}{
		{name: "the agent's template", savePath: "/srv/bc/{user}/{job}", job: "4242", wantDir: "/srv/bc/alice/4242", wantInFile: "-4242-n1-"},
		{name: "the job from the session's label", savePath: "/srv/bc/{user}/{job}", labels: map[string]string{api.LabelJob: "77"}, wantDir: "/srv/bc/alice/77"},
		{name: "no job", savePath: "/srv/bc/{user}/{job}", wantDir: "/srv/bc/alice/nojob"},
		{name: "by uid and date", savePath: "/srv/bc/{uid}/{date}", wantDir: "/srv/bc/1000/" + time.Now().UTC().Format("2006-01-02")},
		{name: "the manager's template", savePath: "/srv/bc/{user}", relayed: true, template: "/srv/bc/site/{user}", wantDir: "/srv/bc/site/alice"},
		{name: "a user's own template", savePath: "/srv/bc/{user}", template: "/srv/bc/x/{user}", status: 403, contains: "set by the site"},
		{name: "the manager's template outside the roots", savePath: "/srv/bc/{user}", relayed: true, template: "/home/{user}", status: 400, contains: "outside the allowed save_roots"},
		{name: "a bad job id", savePath: "/srv/bc/{user}", job: "1;rm", status: 400, contains: "not a Slurm job id"},
		{name: "a request for another node", savePath: "/srv/bc/{user}", status: 400, contains: "this is node n1, not n2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.SavePath, cfg.SaveRoots = tc.savePath, nil
			assert.NilError(t, cfg.Validate())
			podmans := newFakePodmans()
			podmans.add("alice", "work", tc.labels)
			helpers := &fakeHelpers{}
			ta := newTestAgent(t, cfg, podmans, helpers)
			c := ta.caller("alice")
			c.Relayed = tc.relayed
			req := api.FreezeRequest{Container: "work", Job: tc.job, SavePath: tc.template}
			if tc.name == "a request for another node" {
				req.Node = "n2"
			}
			task, err := ta.Freeze(context.Background(), c, req)
			if tc.status != 0 {
				assert.Check(t, is.Equal(Status(err), tc.status), "%v", err)
				assert.Check(t, is.ErrorContains(err, tc.contains))
				return
			}
			assert.NilError(t, err)
			done := ta.wait(t, c, task.ID)
			assert.Assert(t, is.Equal(done.State, api.StateSucceeded), done.Error)
			assert.Check(t, strings.HasPrefix(done.Archive.Path, tc.wantDir+"/work-"), done.Archive.Path)
			assert.Check(t, strings.HasSuffix(done.Archive.Path, "-"+taskToken(task.ID)+api.ArchiveSuffix), done.Archive.Path)
			assert.Check(t, is.Equal(done.Archive.Sidecar, api.SidecarName(done.Archive.Path)))
			assert.Check(t, is.Contains(done.Archive.Path, tc.wantInFile))
			specs := helpers.specs()
			assert.Assert(t, is.Len(specs, 1))
			spec := specs[0]
			assert.Check(t, is.Equal(spec.Op, messages.OpFreeze))
			assert.Check(t, is.Equal(done.Method, api.MethodDirect))
			assert.Check(t, is.Equal(spec.Dir, tc.wantDir))
			assert.Check(t, strings.HasPrefix(tc.wantDir, spec.Root+"/"), "root %s", spec.Root)
			assert.Check(t, is.Equal(spec.Name+"", done.Archive.Path[len(tc.wantDir)+1:]))
			assert.Check(t, strings.HasPrefix(spec.Temp, ".baicommit-"+taskToken(task.ID)+".n1"), spec.Temp)
			assert.Check(t, is.Equal(spec.Sidecar.User, "alice"))
			assert.Check(t, is.Equal(spec.Sidecar.Task, task.ID))
			// No commit, no image: the helper read the container itself.
			commits, _, _, removed := podmans.calls()
			assert.Check(t, is.Len(commits, 0))
			assert.Check(t, is.Len(removed, 0))
		})
	}
}

// A running container is paused for the freeze and unpaused after it;
// where the runtime cannot pause it (rootless on cgroup v1), it is frozen
// running, with a warning. The commit path pauses through the commit.
func TestFreezePauseFallback(t *testing.T) {
	for _, tc := range []struct {
		name        string
		method      string
		cannotPause bool
		warning     string
	}{
		{name: "direct, pauses", method: policy.FreezeDirect},
		{name: "direct, cannot pause", method: policy.FreezeDirect, cannotPause: true, warning: "could not be paused (rootless on cgroup v1), so it was frozen while running"},
		{name: "commit, pauses", method: policy.FreezeCommit},
		{name: "commit, cannot pause", method: policy.FreezeCommit, cannotPause: true, warning: "could not be paused (rootless on cgroup v1), so it was committed while running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.FreezeMethod = tc.method
			podmans := newFakePodmans()
			ctr := podmans.add("alice", "work", nil)
			podmans.cannotPause = tc.cannotPause
			ta := newTestAgent(t, cfg, podmans, &fakeHelpers{})
			c := ta.caller("alice")
			task, err := ta.Freeze(context.Background(), c, api.FreezeRequest{Container: "work"})
			assert.NilError(t, err)
			done := ta.wait(t, c, task.ID)
			assert.Assert(t, is.Equal(done.State, api.StateSucceeded), done.Error)
			assert.Check(t, is.Equal(done.Method, tc.method))
			commits, paused, unpaused, removed := podmans.calls()
			if tc.warning != "" {
				assert.Check(t, is.Contains(strings.Join(done.Warnings, "\n"), tc.warning))
			} else {
				assert.Check(t, is.Len(done.Warnings, 0))
			}
			if tc.method == policy.FreezeCommit {
				var pauses []bool
				for _, o := range commits {
					pauses = append(pauses, o.Pause)
				}
				want := []bool{true}
				if tc.cannotPause {
					want = []bool{true, false}
				}
				assert.Check(t, is.DeepEqual(pauses, want))
				assert.Check(t, is.DeepEqual(removed, []string{"image1"}), "the intermediate image is removed")
				return
			}
			assert.Check(t, is.Len(commits, 0))
			if tc.cannotPause {
				assert.Check(t, is.Len(paused, 0))
				assert.Check(t, is.Len(unpaused, 0))
			} else {
				assert.Check(t, is.DeepEqual(paused, []string{ctr.ID}))
				assert.Check(t, is.DeepEqual(unpaused, []string{ctr.ID}), "unpaused after the freeze")
			}
		})
	}
}

// A setup the direct freeze cannot read falls back to the commit path,
// and the task says why; a failed direct freeze still unpauses.
func TestFreezeFallsBackToCommit(t *testing.T) {
	podmans := newFakePodmans()
	ctr := podmans.add("alice", "work", nil)
	helpers := &fakeHelpers{}
	helpers.run = func(_ *identity.User, spec messages.Spec, emit func(messages.Event)) error {
		if spec.Op == messages.OpFreeze {
			return &helperError{msg: "layer 1 of the image is not in the store's own layers", unsupported: true}
		}
		emit(messages.Event{Event: messages.EventDone, SHA256: strings.Repeat("ab", 32), Size: 3})
		return nil
	}
	ta := newTestAgent(t, testConfig(t), podmans, helpers)
	c := ta.caller("alice")
	task, err := ta.Freeze(context.Background(), c, api.FreezeRequest{Container: "work"})
	assert.NilError(t, err)
	done := ta.wait(t, c, task.ID)
	assert.Assert(t, is.Equal(done.State, api.StateSucceeded), done.Error)
	assert.Check(t, is.Equal(done.Method, api.MethodCommit))
	assert.Check(t, is.Contains(strings.Join(done.Warnings, "\n"), "could not be read directly (layer 1 of the image is not in the store's own layers), so it was frozen through podman commit instead"))
	var ops []string
	for _, s := range helpers.specs() {
		ops = append(ops, s.Op)
	}
	assert.Check(t, is.DeepEqual(ops, []string{messages.OpFreeze, messages.OpArchiveImage}))
	_, paused, unpaused, _ := podmans.calls()
	assert.Check(t, is.DeepEqual(paused, []string{ctr.ID}))
	assert.Check(t, is.DeepEqual(unpaused, []string{ctr.ID}))
	got, _ := ta.Task(c, task.ID)
	assert.Check(t, !taskPaused(t, ta, got.ID))
}

// taskPaused reads whether the store still says the task's container is
// paused.
func taskPaused(t *testing.T, ta *testAgent, id string) bool {
	t.Helper()
	r, err := ta.store.Get(id)
	assert.NilError(t, err)
	return r.Paused
}

// blockingHelpers holds every helper run until released.
func blockingHelpers() (*fakeHelpers, chan struct{}, chan string) {
	release := make(chan struct{})
	started := make(chan string, 16)
	h := &fakeHelpers{}
	h.run = func(_ *identity.User, spec messages.Spec, emit func(messages.Event)) error {
		started <- spec.Sidecar.SourceContainer
		<-release
		emit(messages.Event{Event: messages.EventDone, SHA256: strings.Repeat("cd", 32), Size: 10})
		return nil
	}
	return h, release, started
}

// A second freeze of a container whose freeze runs is refused with 409
// naming the running task; once it ends, the container may be frozen again.
func TestFreezeConflict(t *testing.T) {
	podmans := newFakePodmans()
	podmans.add("alice", "work", nil)
	helpers, release, started := blockingHelpers()
	ta := newTestAgent(t, testConfig(t), podmans, helpers)
	c := ta.caller("alice")
	first, err := ta.Freeze(context.Background(), c, api.FreezeRequest{Container: "work"})
	assert.NilError(t, err)
	<-started
	_, err = ta.Freeze(context.Background(), c, api.FreezeRequest{Container: "work"})
	var e *Error
	assert.Assert(t, errors.As(err, &e), "%v", err)
	assert.Check(t, is.Equal(Status(err), http.StatusConflict))
	assert.Check(t, is.Equal(e.Task, first.ID))
	assert.Check(t, is.ErrorContains(err, "a freeze of work is already running (task "+first.ID+")"))
	// The session shows the running freeze.
	ss, err := ta.Sessions(context.Background(), c, "")
	assert.NilError(t, err)
	assert.Assert(t, is.Len(ss, 1))
	assert.Check(t, is.Equal(ss[0].Task, first.ID))

	close(release)
	assert.Check(t, is.Equal(ta.wait(t, c, first.ID).State, api.StateSucceeded))
	again, err := ta.Freeze(context.Background(), c, api.FreezeRequest{Container: "work"})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(ta.wait(t, c, again.ID).State, api.StateSucceeded))
}

// Beyond max_parallel, freezes wait queued and start as slots free up.
func TestFreezeQueueBeyondMaxParallel(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxParallel = 1
	podmans := newFakePodmans()
	podmans.add("alice", "one", nil)
	podmans.add("alice", "two", nil)
	helpers, release, started := blockingHelpers()
	ta := newTestAgent(t, cfg, podmans, helpers)
	c := ta.caller("alice")
	one, err := ta.Freeze(context.Background(), c, api.FreezeRequest{Container: "one"})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(<-started, "one"))
	two, err := ta.Freeze(context.Background(), c, api.FreezeRequest{Container: "two"})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(two.State, api.StateQueued))
	// It stays queued while the slot is taken.
	time.Sleep(50 * time.Millisecond)
	cur, err := ta.Task(c, two.ID)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(cur.State, api.StateQueued))
	assert.Check(t, is.Equal(ta.Running(), 2), "both are in flight: one running, one queued")

	release <- struct{}{}
	assert.Check(t, is.Equal(ta.wait(t, c, one.ID).State, api.StateSucceeded))
	assert.Check(t, is.Equal(<-started, "two"))
	close(release)
	assert.Check(t, is.Equal(ta.wait(t, c, two.ID).State, api.StateSucceeded))
}

// A task an earlier agent left running fails when the agent starts again:
// its temporary file is removed as its owner, its intermediate image
// dropped, and its push marked failed.
func TestRestartRecovery(t *testing.T) {
	cfg := testConfig(t)
	store, err := taskstore.Open(cfg.StateDir, time.Second)
	assert.NilError(t, err)
	rec := &taskstore.Record{
		Task: api.Task{ID: "0123456789ab.n1", State: api.StateRunning, Phase: api.PhaseExporting, Container: "work",
			Owner: "alice", OwnerUID: 1000, Node: "n1", Image: "localhost/baicommit/work:1", ImageID: "image7",
			Push: &api.PushStatus{Ref: "r.example/a:b", State: api.PushPending}, Created: time.Now().UTC()},
		Dir: "/srv/bc/alice", Root: "/srv/bc", Temp: ".baicommit-0123456789ab.n1.partial",
	}
	done := &taskstore.Record{Task: api.Task{ID: "fedcba987654.n1", State: api.StateSucceeded, OwnerUID: 1000, Node: "n1", Created: time.Now().UTC()}}
	podmans := newFakePodmans()
	ctr := podmans.add("alice", "work", nil)
	paused := &taskstore.Record{
		Task: api.Task{ID: "aaaaaaaaaaaa.n1", State: api.StateRunning, Phase: api.PhaseExporting, Method: api.MethodDirect,
			Container: "work", ContainerID: ctr.ID, Owner: "alice", OwnerUID: 1000, Node: "n1", Created: time.Now().UTC()},
		Paused: true,
	}
	assert.NilError(t, store.Put(rec))
	assert.NilError(t, store.Put(done))
	assert.NilError(t, store.Put(paused))
	assert.NilError(t, store.Close())

	helpers := &fakeHelpers{}
	ta := newTestAgent(t, cfg, podmans, helpers)
	c := ta.caller("alice")
	got, err := ta.Task(c, rec.ID)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got.State, api.StateFailed))
	assert.Check(t, is.Contains(got.Error, "the agent restarted while this freeze was running"))
	assert.Check(t, is.Equal(got.Push.State, api.PushFailed))
	// The temporary file goes in the background: the agent serves at once.
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if len(helpers.specs()) > 0 {
			return poll.Success()
		}
		return poll.Continue("no helper run yet")
	}, poll.WithTimeout(5*time.Second))
	specs := helpers.specs()
	assert.Assert(t, is.Len(specs, 1))
	assert.Check(t, is.DeepEqual(specs[0], messages.Spec{Op: messages.OpRemove, Root: "/srv/bc", Dir: "/srv/bc/alice", Temp: rec.Temp}))
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if _, _, _, removed := podmans.calls(); slices.Contains(removed, "image7") {
			return poll.Success()
		}
		return poll.Continue("image not removed yet")
	}, poll.WithTimeout(5*time.Second))
	// The container a dead agent left paused runs again.
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if _, _, unpaused, _ := podmans.calls(); slices.Contains(unpaused, ctr.ID) {
			return poll.Success()
		}
		return poll.Continue("container not unpaused yet")
	}, poll.WithTimeout(5*time.Second))
	got, err = ta.Task(c, paused.ID)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got.State, api.StateFailed))
	// A finished task is left as it was.
	got, err = ta.Task(c, done.ID)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got.State, api.StateSucceeded))
}
