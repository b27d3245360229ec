package taskstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/agent/taskstore"
	"github.com/baicommit/baicommit/api"
)

var t0 = time.Date(2024, 3, 5, 6, 8, 9, 0, time.UTC)

func record(id, owner string, created time.Time, state string) *taskstore.Record {
	return &taskstore.Record{
		Task: api.Task{
			ID: id, State: state, Container: "box", ContainerID: "c0ffee" + id, Owner: owner, OwnerUID: 1000,
			Requester: 1000, Node: "n01", Job: "4711", Image: "localhost/baicommit/box:20240305-060809",
			Created: created, Warnings: []string{"w"},
			Archive:  &api.Archive{Path: "/shared/" + owner + "/a.tar.gz", SHA256: "ab", Size: 42},
			Progress: api.Progress{BytesRead: 7, BytesWritten: 3},
		},
		Dir: "/shared/" + owner, Root: "/shared", Temp: ".a.tar.gz.n01." + id + ".partial",
	}
}

func open(t *testing.T, dir string) *taskstore.Store {
	t.Helper()
	s, err := taskstore.Open(dir, time.Second)
	assert.NilError(t, err)
	return s
}

func TestPutGetRoundTrip(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir())
	defer s.Close()
	want := record("aaaaaaaaaaaa.n01", "alice", t0, api.StateRunning)
	assert.NilError(t, s.Put(want))
	got, err := s.Get(want.ID)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(got, want))

	// Put replaces.
	want.State, want.Temp = api.StateSucceeded, ""
	assert.NilError(t, s.Put(want))
	got, err = s.Get(want.ID)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got.State, api.StateSucceeded))
	assert.Check(t, is.Equal(got.Temp, ""))
	all, err := s.List(nil)
	assert.NilError(t, err)
	assert.Check(t, is.Len(all, 1))
}

func TestGetUnknown(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir())
	defer s.Close()
	assert.NilError(t, s.Put(record("aaaaaaaaaaaa.n01", "alice", t0, api.StateQueued)))
	for _, id := range []string{"bbbbbbbbbbbb.n01", "", "aaaaaaaaaaaa", "aaaaaaaaaaaa.n01 "} {
		r, err := s.Get(id)
		assert.Check(t, errors.Is(err, taskstore.ErrNotFound), "%q: %v", id, err)
		assert.Check(t, r == nil)
	}
}

func TestListNewestFirstAndFiltered(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir())
	defer s.Close()
	// Ids sort the other way round from creation times, so that the order
	// cannot come from the keys.
	recs := []*taskstore.Record{
		record("aaaa.n01", "alice", t0.Add(3*time.Hour), api.StateSucceeded),
		record("bbbb.n01", "bob", t0.Add(2*time.Hour), api.StateFailed),
		record("cccc.n01", "alice", t0.Add(time.Hour), api.StateRunning),
		record("dddd.n01", "alice", t0, api.StateQueued),
		record("eeee.n01", "bob", t0.Add(4*time.Hour), api.StateRunning),
	}
	for _, r := range recs {
		assert.NilError(t, s.Put(r))
	}
	ids := func(rs []*taskstore.Record) []string {
		out := []string{}
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		keep func(*taskstore.Record) bool
		want []string
	}{
		{"all", nil, []string{"eeee.n01", "aaaa.n01", "bbbb.n01", "cccc.n01", "dddd.n01"}},
		{"alice", func(r *taskstore.Record) bool { return r.Owner == "alice" }, []string{"aaaa.n01", "cccc.n01", "dddd.n01"}},
		{"not done", func(r *taskstore.Record) bool { return !r.Done() }, []string{"eeee.n01", "cccc.n01", "dddd.n01"}},
		{"none", func(*taskstore.Record) bool { return false }, []string{}},
	} {
		got, err := s.List(tc.keep)
		assert.NilError(t, err)
		assert.Check(t, is.DeepEqual(ids(got), tc.want), tc.name)
	}
	got, err := s.List(nil)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(got[1], recs[0]))
}

func TestSurvivesReopen(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state", "sub") // created by Open
	s := open(t, dir)
	want := record("aaaaaaaaaaaa.n01", "alice", t0, api.StateRunning)
	assert.NilError(t, s.Put(want))
	assert.NilError(t, s.Close())

	fi, err := os.Stat(dir)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(0o700)))
	fi, err = os.Stat(filepath.Join(dir, "tasks.db"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(0o600)))

	s = open(t, dir)
	defer s.Close()
	got, err := s.Get(want.ID)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(got, want))
}

func TestOpenBadDir(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	assert.NilError(t, os.WriteFile(file, nil, 0o600))
	_, err := taskstore.Open(filepath.Join(file, "state"), time.Second)
	assert.ErrorContains(t, err, "state directory")
}

// A second agent on the same state directory gets an error (after the
// 10 s lock timeout) rather than hanging.
func TestSecondOpenFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	type result struct {
		s   *taskstore.Store
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		s2, err := taskstore.Open(dir, time.Second)
		done <- result{s2, err}
	}()
	select {
	case r := <-done:
		if r.s != nil {
			r.s.Close()
		}
		assert.Check(t, r.err != nil, "a second Open of a store in use succeeded")
		assert.Check(t, time.Since(start) < 5*time.Second)
		assert.ErrorContains(t, r.err, "tasks.db")
	case <-time.After(5 * time.Second):
		t.Fatal("a second Open of a store in use hangs")
	}
	// The first store still works.
	assert.NilError(t, s.Put(record("aaaa.n01", "alice", t0, api.StateQueued)))
}

// A user's records are found without reading anyone else's, newest first,
// whether they own them or asked for them.
func TestListUser(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	mk := func(id string, owner, requester int, at time.Duration) {
		r := record(id, "u", t0.Add(at), api.StateSucceeded)
		r.OwnerUID, r.Requester = owner, requester
		assert.NilError(t, s.Put(r))
	}
	mk("a.n01", 1000, 1000, 0)
	mk("b.n01", 1001, 1001, time.Minute)
	mk("c.n01", 1000, 0, 2*time.Minute) // root froze alice's
	mk("d.n01", 1001, 1000, 3*time.Minute)
	ids := func(uid int) []string {
		rs, err := s.ListUser(uid, nil)
		assert.NilError(t, err)
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	assert.Check(t, is.DeepEqual(ids(1000), []string{"d.n01", "c.n01", "a.n01"}))
	assert.Check(t, is.DeepEqual(ids(1001), []string{"d.n01", "b.n01"}))
	assert.Check(t, is.DeepEqual(ids(0), []string{"c.n01"}))
	assert.Check(t, is.Len(ids(4242), 0))
}

// Finished tasks are kept for MaxAge and at most PerUser per owner; tasks
// that have not ended are never pruned.
func TestPrune(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	now := t0.Add(100 * time.Hour)
	put := func(id string, owner int, finished time.Time, state string) {
		r := record(id, "u", finished.Add(-time.Minute), state)
		r.OwnerUID, r.Requester, r.Finished = owner, owner, finished
		assert.NilError(t, s.Put(r))
	}
	put("old.n01", 1000, now.Add(-50*time.Hour), api.StateSucceeded)
	for i, id := range []string{"f1.n01", "f2.n01", "f3.n01"} {
		put(id, 1000, now.Add(-time.Duration(3-i)*time.Hour), api.StateFailed)
	}
	put("run.n01", 1000, now.Add(-30*time.Hour), api.StateRunning)
	put("bob.n01", 1001, now.Add(-50*time.Hour), api.StateSucceeded)

	n, err := s.Prune(1000, taskstore.Retention{MaxAge: 24 * time.Hour, PerUser: 2}, now)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(n, 2))
	rs, err := s.ListUser(1000, nil)
	assert.NilError(t, err)
	var left []string
	for _, r := range rs {
		left = append(left, r.ID)
	}
	assert.Check(t, is.DeepEqual(left, []string{"f3.n01", "f2.n01", "run.n01"}), "the running task is never pruned")
	// Bob's is his owner's business: PruneAll takes every owner.
	_, err = s.Get("bob.n01")
	assert.Check(t, err)
	n, err = s.PruneAll(taskstore.Retention{MaxAge: 24 * time.Hour, PerUser: 2}, now)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(n, 1))
	_, err = s.Get("bob.n01")
	assert.Check(t, errors.Is(err, taskstore.ErrNotFound))
}

// A database written before the index existed is indexed when opened.
func TestOpenIndexesOldStore(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	assert.NilError(t, s.Put(record("a.n01", "alice", t0, api.StateSucceeded)))
	assert.NilError(t, s.DropIndexForTest())
	assert.NilError(t, s.Close())
	s = open(t, dir)
	defer s.Close()
	rs, err := s.ListUser(1000, nil)
	assert.NilError(t, err)
	assert.Check(t, is.Len(rs, 1))
}
