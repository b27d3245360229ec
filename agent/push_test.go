package agent

import (
	"net/http"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/agent/taskstore"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/identity"
)

func TestCheckPush(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  api.PushRequest
		ref  string // normalized; "" means refused
		err  string
		// by is the requester's uid (nil: the owner, alice).
		by     *int
		status int
	}{
		{name: "tag kept", req: api.PushRequest{Ref: "reg.example:5000/a/b:v1"}, ref: "reg.example:5000/a/b:v1"},
		{name: "tag added", req: api.PushRequest{Ref: "docker://reg.example/a/b"}, ref: "reg.example/a/b:latest"},
		{name: "creds and authfile", req: api.PushRequest{Ref: "r.example/a:b", Creds: "u:p", AuthFile: "/home/u/auth.json"}, ref: "r.example/a:b"},
		{name: "bad ref", req: api.PushRequest{Ref: "UPPER/case"}, err: "--push:"},
		{name: "bad creds", req: api.PushRequest{Ref: "r.example/a:b", Creds: "hunter2"}, err: "--creds: credentials must be USER:PASSWORD"},
		{name: "relative authfile", req: api.PushRequest{Ref: "r.example/a:b", AuthFile: "auth.json"}, err: "--authfile"},
		{name: "unclean authfile", req: api.PushRequest{Ref: "r.example/a:b", AuthFile: "/home/u/../v/auth.json"}, err: "--authfile"},
		// The push runs as alice, who could read root's password from it.
		{name: "root's creds for alice", req: api.PushRequest{Ref: "r.example/a:b", Creds: "root:hunter2"}, by: ptr(0), status: http.StatusForbidden, err: "--creds cannot be used for the session of alice"},
		{name: "root's auth files for alice", req: api.PushRequest{Ref: "r.example/a:b"}, by: ptr(0), ref: "r.example/a:b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alice := &identity.User{UID: 1000, Name: "alice"}
			by := Caller{UID: 1000, User: alice}
			if tc.by != nil {
				by = Caller{UID: *tc.by}
			}
			st, err := checkPush(&tc.req, by, alice)
			if tc.err != "" {
				assert.Check(t, is.ErrorContains(err, tc.err))
				want := http.StatusBadRequest
				if tc.status != 0 {
					want = tc.status
				}
				assert.Check(t, is.Equal(Status(err), want))
				assert.Check(t, !strings.Contains(err.Error(), "hunter2"), "credentials in an error")
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.DeepEqual(*st, api.PushStatus{Ref: tc.ref, State: api.PushPending}))
		})
	}
}

func TestCloneCopiesPush(t *testing.T) {
	r := &taskstore.Record{Task: api.Task{ID: "t", Push: &api.PushStatus{Ref: "r/a:b", State: api.PushRunning}}}
	cp := clone(r)
	r.Push.Sent = 42
	assert.Check(t, is.Equal(cp.Push.Sent, int64(0)), "a reader's copy must not change under it")
}

func ptr[T any](v T) *T { return &v }
