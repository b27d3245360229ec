package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/agent/taskstore"
	"github.com/baicommit/baicommit/api"
)

// What a freeze writes, and where the layer store is: the site's default
// format or one it offers, the store in the user's save directory or
// where store_path (the agent's, or the manager's) puts it; a user cannot
// choose the store's place, nor a format the site does not offer.
func TestFreezeFormatAndStore(t *testing.T) {
	for _, tc := range []struct {
		name      string
		format    string // the agent's format
		formats   []string
		storePath string // the agent's store_path
		relayed   bool
		req       api.FreezeRequest
		wantStore string // the spec's layer store dir; "" for none
		wantFmt   string
		status    int
		contains  string
	}{
		{name: "the default: an archive", wantFmt: api.FormatArchive},
		{name: "asked for the store", req: api.FreezeRequest{Format: api.FormatStore}, wantFmt: api.FormatStore, wantStore: "/srv/bc/alice/store"},
		{name: "the site's default store", format: api.FormatBoth, wantFmt: api.FormatBoth, wantStore: "/srv/bc/alice/store"},
		{name: "a store per group", storePath: "/srv/bc/projects/{group}/store", req: api.FreezeRequest{Format: api.FormatStore}, wantFmt: api.FormatStore, wantStore: "/srv/bc/projects/alice/store"},
		{name: "the manager's store path", relayed: true, req: api.FreezeRequest{Format: api.FormatStore, StorePath: "/srv/bc/site/{user}"}, wantFmt: api.FormatStore, wantStore: "/srv/bc/site/alice"},
		{name: "a user's own store path", req: api.FreezeRequest{Format: api.FormatStore, StorePath: "/srv/bc/mine"}, status: 403, contains: "store_path is set by the site"},
		{name: "a store path outside the roots", relayed: true, req: api.FreezeRequest{Format: api.FormatStore, StorePath: "/home/{user}/store"}, status: 400, contains: "outside the allowed save_roots"},
		{name: "a format the site does not offer", formats: []string{api.FormatArchive}, req: api.FreezeRequest{Format: api.FormatStore}, status: 400, contains: `format "store" is not offered here; choose one of archive`},
		{name: "an unknown format", req: api.FreezeRequest{Format: "zip"}, status: 400, contains: `format "zip" is not offered here`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Format, cfg.Formats, cfg.StorePath = tc.format, tc.formats, tc.storePath
			assert.NilError(t, cfg.Validate())
			podmans := newFakePodmans()
			podmans.add("alice", "work", nil)
			helpers := &fakeHelpers{}
			ta := newTestAgent(t, cfg, podmans, helpers)
			c := ta.caller("alice")
			c.Relayed = tc.relayed
			tc.req.Container = "work"
			task, err := ta.Freeze(context.Background(), c, tc.req)
			if tc.status != 0 {
				assert.Check(t, is.Equal(Status(err), tc.status), "%v", err)
				assert.Check(t, is.ErrorContains(err, tc.contains))
				return
			}
			assert.NilError(t, err)
			done := ta.wait(t, c, task.ID)
			assert.Assert(t, is.Equal(done.State, api.StateSucceeded), done.Error)
			assert.Check(t, is.Equal(done.Format, tc.wantFmt))
			spec := helpers.specs()[0]
			assert.Check(t, is.Equal(spec.Format, tc.wantFmt))
			if tc.wantStore == "" {
				assert.Check(t, spec.LayerStore == nil)
				assert.Check(t, done.Archive != nil)
				return
			}
			assert.Assert(t, spec.LayerStore != nil)
			assert.Check(t, is.Equal(spec.LayerStore.Dir, tc.wantStore))
			assert.Check(t, is.Equal(spec.LayerStore.Root, "/srv/bc"))
			assert.Check(t, is.Equal(spec.LayerStore.Token, "baicommit-"+taskToken(task.ID)+".n1"))
			assert.Check(t, is.Equal(spec.LayerStore.Image, strings.ToLower(spec.LayerStore.Image)), "lower case")
			assert.Check(t, is.Equal(done.Archive == nil, tc.wantFmt == api.FormatStore), "a store-only freeze shows no archive")
		})
	}
}

// The restart recovery removes a store freeze's hold and temporary files.
func TestRestartRecoveryCleansTheStore(t *testing.T) {
	cfg := testConfig(t)
	store, err := taskstore.Open(cfg.StateDir, time.Second)
	assert.NilError(t, err)
	rec := &taskstore.Record{
		Task: api.Task{ID: "0123456789ab.n1", State: api.StateRunning, Phase: api.PhaseExporting, Container: "work",
			Owner: "alice", OwnerUID: 1000, Node: "n1", Format: api.FormatStore, Created: time.Now().UTC()},
		Dir: "/srv/bc/alice", Root: "/srv/bc", Temp: ".baicommit-0123456789ab.n1.partial",
		StoreDir: "/srv/bc/alice/store", StoreRoot: "/srv/bc", StoreToken: "baicommit-0123456789ab.n1",
	}
	assert.NilError(t, store.Put(rec))
	assert.NilError(t, store.Close())
	helpers := &fakeHelpers{}
	ta := newTestAgent(t, cfg, newFakePodmans(), helpers)
	specs := helpers.specs()
	assert.Assert(t, is.Len(specs, 1))
	assert.Check(t, is.DeepEqual(specs[0], messages.Spec{Op: messages.OpRemove, Root: "/srv/bc", Dir: "/srv/bc/alice", Temp: rec.Temp,
		LayerStore: &messages.LayerStore{Root: "/srv/bc", Dir: "/srv/bc/alice/store", Token: rec.StoreToken}}))
	got, err := ta.Task(ta.caller("alice"), rec.ID)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got.State, api.StateFailed))
}
