package agent

import (
	"context"
	"slices"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/agent/podman"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/internal/units"
	"github.com/baicommit/baicommit/policy"
)

// Bad input is refused before anything runs, naming the flag.
func TestFreezeStorageRequestRefused(t *testing.T) {
	for _, tc := range []struct {
		name     string
		req      api.FreezeRequest
		relayed  bool
		status   int
		contains string
	}{
		{name: "a command that does not parse", req: api.FreezeRequest{Before: []string{`conda clean -afy "`}}, status: 400, contains: `--before "conda clean -afy \"" does not parse`},
		{name: "an empty command", req: api.FreezeRequest{Before: []string{"  "}}, status: 400, contains: "no command"},
		{name: "a relative pattern", req: api.FreezeRequest{Exclude: []string{"root/.cache"}}, status: 400, contains: `--exclude pattern "root/.cache": give an absolute container path`},
		{name: "a bad glob", req: api.FreezeRequest{Exclude: []string{"/root/[x"}}, status: 400, contains: `--exclude pattern "/root/[x": syntax error in pattern`},
		{name: "a user's own quota", req: api.FreezeRequest{Quotas: &api.Quotas{}}, status: 403, contains: "quotas are set by the site"},
		{name: "the manager's quota", req: api.FreezeRequest{Quotas: &api.Quotas{User: api.Quota{MaxArchives: 3}}}, relayed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			podmans := newFakePodmans()
			podmans.add("alice", "work", nil)
			ta := newTestAgent(t, testConfig(t), podmans, &fakeHelpers{})
			c := ta.caller("alice")
			c.Relayed = tc.relayed
			req := tc.req
			req.Container = "work"
			task, err := ta.Freeze(context.Background(), c, req)
			if tc.status == 0 {
				assert.NilError(t, err)
				ta.wait(t, c, task.ID)
				return
			}
			assert.Check(t, is.Equal(Status(err), tc.status), "%v", err)
			assert.Check(t, is.ErrorContains(err, tc.contains))
		})
	}
}

// The site's commands run first, then the user's, each recorded; a
// failure is a warning, or aborts the freeze when the site says so; a
// container that does not run has its commands skipped, with a warning.
func TestFreezeBeforeCommands(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failure  string
		exec     func(argv []string) (int, string, error)
		stopped  bool
		state    string
		warning  string
		errorMsg string
		ran      [][]string
		killed   []int
	}{
		{name: "all succeed", exec: func([]string) (int, string, error) { return 0, "cleaned", nil }, state: api.StateSucceeded,
			ran: [][]string{{"conda", "clean", "-afy"}, {"pip", "cache", "purge"}, {"rm", "-rf", "/root/my cache"}}},
		{name: "one fails: a warning", exec: failing("pip"), state: api.StateSucceeded, warning: `the command "pip cache purge" run before the freeze exited with status 3; the session was frozen anyway`},
		{name: "one fails, the site aborts", failure: policy.BeforeAbort, exec: failing("pip"), state: api.StateFailed,
			errorMsg: `the command "pip cache purge" run before the freeze exited with status 3, and this site aborts a freeze then`},
		{name: "one hangs", exec: func(argv []string) (int, string, error) {
			if argv[0] == "conda" {
				return -1, "", &podman.ExecTimeoutError{PID: 4242}
			}
			return 0, "", nil
		}, state: api.StateSucceeded, warning: "did not end within 10m0s and was killed", killed: []int{4242}},
		{name: "not running", stopped: true, state: api.StateSucceeded, warning: "the container is exited, so the commands to run before the freeze were not run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.BeforeFreeze = []string{"conda clean -afy", "pip cache purge"}
			if tc.failure != "" {
				cfg.BeforeFreezeFailure = tc.failure
			}
			podmans := newFakePodmans()
			ctr := podmans.add("alice", "work", nil)
			if tc.stopped {
				ctr.State, ctr.Running = "exited", false
			}
			podmans.exec = tc.exec
			helpers := &fakeHelpers{}
			ta := newTestAgent(t, cfg, podmans, helpers)
			c := ta.caller("alice")
			task, err := ta.Freeze(context.Background(), c, api.FreezeRequest{Container: "work", Before: []string{`rm -rf "/root/my cache"`}})
			assert.NilError(t, err)
			done := ta.wait(t, c, task.ID)
			assert.Check(t, is.Equal(done.State, tc.state), done.Error)
			if tc.warning != "" {
				assert.Check(t, is.Contains(strings.Join(done.Warnings, "\n"), tc.warning))
			}
			if tc.errorMsg != "" {
				assert.Check(t, is.Contains(done.Error, tc.errorMsg))
				assert.Check(t, is.Len(helpers.specs(), 0), "nothing was frozen")
			}
			if tc.ran != nil {
				assert.Check(t, is.DeepEqual(podmans.execs, tc.ran))
				assert.Assert(t, is.Len(done.Before, 3))
				assert.Check(t, is.Equal(done.Before[0].Source, "site"))
				assert.Check(t, is.Equal(done.Before[2].Source, "user"))
				assert.Check(t, is.Equal(done.Before[2].Output, "cleaned"))
			}
			if tc.stopped {
				assert.Check(t, is.Len(podmans.execs, 0))
			}
			// A late command's process is ended by a helper with the
			// owner's rights, never by the agent.
			var killed []int
			for _, s := range helpers.specs() {
				if s.Op == messages.OpKill {
					killed = append(killed, s.PID)
				}
			}
			assert.Check(t, is.DeepEqual(killed, tc.killed))
		})
	}
}

func failing(prog string) func([]string) (int, string, error) {
	return func(argv []string) (int, string, error) {
		if argv[0] == prog {
			return 3, "no cache", nil
		}
		return 0, "", nil
	}
}

// With a quota, the freeze carries the limits and the usage a helper
// counted just before into its spec; retention runs after every freeze
// that succeeded, with the site's rules.
func TestFreezeQuotaAndRetention(t *testing.T) {
	cfg := testConfig(t)
	cfg.Quota.MaxArchives = 10
	cfg.Quota.MaxBytes = units.Size(1 << 30)
	cfg.MaxFreezeSize = units.Size(1 << 20)
	cfg.Retention.KeepPerContainer = 3
	podmans := newFakePodmans()
	podmans.add("alice", "work", nil)
	helpers := &fakeHelpers{usage: &api.Usage{Dir: "/srv/bc/alice", Archives: 4, Bytes: 4000}}
	ta := newTestAgent(t, cfg, podmans, helpers)
	c := ta.caller("alice")
	task, err := ta.Freeze(context.Background(), c, api.FreezeRequest{Container: "work", Exclude: []string{"/scratch"}})
	assert.NilError(t, err)
	done := ta.wait(t, c, task.ID)
	assert.Assert(t, is.Equal(done.State, api.StateSucceeded), done.Error)
	assert.Check(t, is.DeepEqual(helpers.ops(), []string{messages.OpUsage, messages.OpFreeze, messages.OpPrune}))
	var freeze, prune messages.Spec
	for _, s := range helpers.runs {
		switch s.Op {
		case messages.OpFreeze:
			freeze = s
		case messages.OpPrune:
			prune = s
		}
	}
	assert.Assert(t, freeze.Quota != nil)
	assert.Check(t, is.DeepEqual(freeze.Quota.Quotas, api.Quotas{User: api.Quota{MaxArchives: 10, MaxBytes: 1 << 30}, MaxFreezeSize: 1 << 20}))
	assert.Check(t, is.Equal(freeze.Quota.Usage.Archives, 4))
	assert.Check(t, is.DeepEqual(freeze.UserExclude, []string{"/scratch"}))
	assert.Check(t, is.Equal(prune.Dir, "/srv/bc/alice"))
	assert.Check(t, is.Equal(prune.Retention.KeepPerContainer, 3))
	assert.Check(t, !prune.DryRun)

	// A quota refusal reaches the user as the helper wrote it.
	helpers.run = func(_ *identity.User, spec messages.Spec, emit func(messages.Event)) error {
		return &helperError{msg: "you keep 10 archives (1.0 GiB) below /srv/bc/alice, and your quota is 10 archives: remove …; nothing was written", quotaExceeded: true}
	}
	task, err = ta.Freeze(context.Background(), c, api.FreezeRequest{Container: "work"})
	assert.NilError(t, err)
	done = ta.wait(t, c, task.ID)
	assert.Check(t, is.Equal(done.State, api.StateFailed))
	assert.Check(t, is.Contains(done.Error, "your quota is 10 archives"))
	assert.Check(t, !slices.Contains(helpers.ops()[3:], messages.OpPrune), "no retention after a failed freeze")
}
