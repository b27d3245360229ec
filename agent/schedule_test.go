package agent

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/policy"
)

// granted reports whether sl holds a slot.
func granted(sl *slot) bool {
	select {
	case <-sl.granted:
		return true
	default:
		return false
	}
}

// The scheduler's rules: at most perUser slots per user, free slots to the
// users in turn, epilog freezes first, a full queue refused.
func TestScheduler(t *testing.T) {
	const alice, bob, carol = 1000, 1001, 1002
	s := newScheduler(2, 1, 2)
	admit := func(uid int, epilog bool) *slot {
		t.Helper()
		sl, err := s.admit(uid, epilog)
		assert.NilError(t, err)
		return sl
	}
	a1, a2, a3 := admit(alice, false), admit(alice, false), admit(alice, false)
	assert.Check(t, granted(a1))
	assert.Check(t, !granted(a2), "alice holds both slots")
	_, err := s.admit(alice, false)
	assert.Check(t, is.Equal(Status(err), http.StatusTooManyRequests), "%v", err)
	assert.Check(t, is.ErrorContains(err, "max_queued_per_user"))

	b1 := admit(bob, false)
	assert.Check(t, granted(b1), "bob waits behind alice's queue")
	c1, c2 := admit(carol, false), admit(carol, true)
	s.release(a1)
	assert.Check(t, granted(c2), "carol's epilog freeze goes first, before her own and alice's")
	assert.Check(t, !granted(a2) && !granted(c1))
	s.release(b1)
	assert.Check(t, granted(a2), "alice's turn comes before carol's second")
	assert.Check(t, !granted(c1))
	s.release(c2)
	assert.Check(t, granted(c1))

	// A waiting freeze given up leaves the queue; a released one's slot
	// goes on; a double release changes nothing.
	s.release(a3)
	s.release(a2)
	s.release(a2)
	s.release(c1)
	assert.Check(t, is.Equal(s.total, 0))
	assert.Check(t, is.Len(s.turn, 0))
	ctx, cancel := context.WithCancel(context.Background())
	w1, w2, w3 := admit(alice, false), admit(bob, false), admit(bob, false)
	cancel()
	assert.Check(t, errors.Is(s.wait(ctx, w3), context.Canceled))
	s.release(w1)
	s.release(w2)
	assert.Check(t, is.Equal(s.total, 0))
	assert.Check(t, is.Len(s.queues, 0))
}

// A freeze is keyed by owner and container: alice's Podman (hers to
// control) naming its container with the id of bob's blocks nothing of
// bob's.
func TestFreezeKeyedByOwner(t *testing.T) {
	podmans := newFakePodmans()
	bobs := podmans.add("bob", "work", nil)
	fake := podmans.add("alice", "fake", nil)
	fake.ID = bobs.ID
	helpers, release, started := blockingHelpers()
	defer close(release)
	ta := newTestAgent(t, testConfig(t), podmans, helpers)
	_, err := ta.Freeze(context.Background(), ta.caller("alice"), api.FreezeRequest{Container: "fake"})
	assert.NilError(t, err)
	<-started
	task, err := ta.Freeze(context.Background(), ta.caller("bob"), api.FreezeRequest{Container: "work"})
	assert.NilError(t, err, "alice's freeze blocked bob's")
	ss, err := ta.Sessions(context.Background(), ta.caller("bob"), "")
	assert.NilError(t, err)
	assert.Assert(t, is.Len(ss, 1))
	assert.Check(t, ss[0].Task == "" || ss[0].Task == task.ID, "bob's session shows alice's task %s", ss[0].Task)
}

// A Podman that never answers a commit holds a slot until task_timeout,
// then the task fails saying so, and the slot serves the next freeze; a
// helper that never ends is stopped the same way. Meanwhile, one user's
// stuck freezes leave the other slot to others.
func TestStuckFreezesGiveTheirSlotBack(t *testing.T) {
	cfg := testConfig(t)
	cfg.TaskTimeout.Duration = 300 * time.Millisecond
	cfg.FreezeMethod = policy.FreezeCommit // the stuck call is the commit
	podmans := newFakePodmans()
	podmans.add("bob", "stuck", nil)
	podmans.add("bob", "stuck2", nil)
	podmans.add("alice", "work", nil)
	podmans.commitHook = func(ctx context.Context, owner string) error {
		if owner == "bob" {
			<-ctx.Done() // never answers
			return ctx.Err()
		}
		return nil
	}
	ta := newTestAgent(t, cfg, podmans, &fakeHelpers{})
	b1, err := ta.Freeze(context.Background(), ta.caller("bob"), api.FreezeRequest{Container: "stuck"})
	assert.NilError(t, err)
	b2, err := ta.Freeze(context.Background(), ta.caller("bob"), api.FreezeRequest{Container: "stuck2"})
	assert.NilError(t, err)
	a1, err := ta.Freeze(context.Background(), ta.caller("alice"), api.FreezeRequest{Container: "work"})
	assert.NilError(t, err)
	done := ta.wait(t, ta.caller("alice"), a1.ID)
	assert.Check(t, is.Equal(done.State, api.StateSucceeded))
	cur, err := ta.Task(ta.caller("bob"), b2.ID)
	assert.NilError(t, err)
	assert.Check(t, !cur.Done(), "bob's second freeze ended before his first gave its slot back")
	for _, id := range []string{b1.ID, b2.ID} {
		got := ta.wait(t, ta.caller("bob"), id)
		assert.Check(t, is.Equal(got.State, api.StateFailed))
		assert.Check(t, is.Contains(got.Error, "task_timeout 300ms"))
	}

	// A helper that never ends.
	podmans.commitHook = nil
	helpers := &fakeHelpers{runCtx: func(ctx context.Context, _ *identity.User, _ messages.Spec, _ func(messages.Event)) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	cfg = testConfig(t)
	cfg.TaskTimeout.Duration = 200 * time.Millisecond
	ta = newTestAgent(t, cfg, podmans, helpers)
	b3, err := ta.Freeze(context.Background(), ta.caller("bob"), api.FreezeRequest{Container: "stuck"})
	assert.NilError(t, err)
	got := ta.wait(t, ta.caller("bob"), b3.ID)
	assert.Check(t, is.Equal(got.State, api.StateFailed))
	assert.Check(t, is.Contains(got.Error, "task_timeout"))
}
