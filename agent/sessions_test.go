package agent

import (
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/agent/taskstore"
	"github.com/baicommit/baicommit/api"
)

// storeAgent is an agent with a task store and no Podman: enough for what
// reads tasks.
func storeAgent(t *testing.T) *Agent {
	t.Helper()
	store, err := taskstore.Open(t.TempDir(), time.Second)
	assert.NilError(t, err)
	t.Cleanup(func() { store.Close() })
	cfg := DefaultConfig()
	cfg.NodeName = "n1"
	return &Agent{cfg: cfg, store: store, live: map[string]*taskstore.Record{}, busy: map[busyKey]string{}}
}

// A session's last task is its container's newest, from the store or,
// while it runs, live with its progress; other users', other nodes' and
// other containers' tasks are not it.
func TestLastTasks(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	rec := func(id, ctr string, uid int, node string, created time.Time, state string) *taskstore.Record {
		return &taskstore.Record{Task: api.Task{ID: id, ContainerID: ctr, OwnerUID: uid, Node: node, Created: created, State: state}}
	}
	for _, tc := range []struct {
		name   string
		stored []*taskstore.Record
		live   []*taskstore.Record
		want   map[string]string // container id → task id
		// progress of the last task of container "c1", when set.
		progress int64
	}{
		{name: "none", want: map[string]string{}},
		{
			name: "newest of each container",
			stored: []*taskstore.Record{
				rec("old.n1", "c1", 1000, "n1", t0, api.StateSucceeded),
				rec("new.n1", "c1", 1000, "n1", t0.Add(time.Minute), api.StateFailed),
				rec("other.n1", "c2", 1000, "n1", t0, api.StateSucceeded),
			},
			want: map[string]string{"c1": "new.n1", "c2": "other.n1"},
		},
		{
			name: "not another user's, node's or a task without container",
			stored: []*taskstore.Record{
				rec("mine.n1", "c1", 1000, "n1", t0, api.StateSucceeded),
				rec("bobs.n1", "c1", 1001, "n1", t0.Add(time.Minute), api.StateSucceeded),
				rec("elsewhere.n2", "c1", 1000, "n2", t0.Add(time.Minute), api.StateSucceeded),
				rec("noctr.n1", "", 1000, "n1", t0.Add(time.Minute), api.StateFailed),
			},
			want: map[string]string{"c1": "mine.n1"},
		},
		{
			name: "same instant: one newest",
			stored: []*taskstore.Record{
				rec("aaa.n1", "c1", 1000, "n1", t0, api.StateSucceeded),
				rec("bbb.n1", "c1", 1000, "n1", t0, api.StateSucceeded),
			},
			want: map[string]string{"c1": "bbb.n1"},
		},
		{
			name:     "running: the live record, with progress",
			stored:   []*taskstore.Record{rec("old.n1", "c1", 1000, "n1", t0, api.StateSucceeded), rec("run.n1", "c1", 1000, "n1", t0.Add(time.Minute), api.StateQueued)},
			live:     []*taskstore.Record{rec("run.n1", "c1", 1000, "n1", t0.Add(time.Minute), api.StateRunning)},
			want:     map[string]string{"c1": "run.n1"},
			progress: 777,
		},
		{
			name: "running, started after the store was read",
			live: []*taskstore.Record{rec("run.n1", "c1", 1000, "n1", t0, api.StateRunning)},
			want: map[string]string{"c1": "run.n1"},
		},
		{
			name: "not another user's running task",
			live: []*taskstore.Record{rec("run.n1", "c1", 1001, "n1", t0, api.StateRunning)},
			want: map[string]string{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := storeAgent(t)
			for _, r := range tc.stored {
				assert.NilError(t, a.store.Put(r))
			}
			for _, r := range tc.live {
				r.Progress.BytesWritten = tc.progress
				a.live[r.ID] = r
			}
			got, err := a.lastTasks(1000)
			assert.NilError(t, err)
			ids := map[string]string{}
			for ctr, task := range got {
				ids[ctr] = task.ID
			}
			assert.Check(t, is.DeepEqual(ids, tc.want))
			if tc.progress != 0 {
				assert.Check(t, is.Equal(got["c1"].State, api.StateRunning))
				assert.Check(t, is.Equal(got["c1"].Progress.BytesWritten, tc.progress))
			}
		})
	}
}

// The last task handed out is a copy: the running task goes on changing
// its own record.
func TestLastTasksCopiesLiveRecords(t *testing.T) {
	a := storeAgent(t)
	r := &taskstore.Record{Task: api.Task{ID: "run.n1", ContainerID: "c1", OwnerUID: 1000, Node: "n1", State: api.StateRunning,
		Archive: &api.Archive{Path: "/s/a.tar.gz"}}}
	a.live[r.ID] = r
	got, err := a.lastTasks(1000)
	assert.NilError(t, err)
	r.Progress.BytesWritten, r.Archive.Size = 5, 9
	assert.Check(t, is.Equal(got["c1"].Progress.BytesWritten, int64(0)))
	assert.Check(t, is.Equal(got["c1"].Archive.Size, int64(0)))
}
