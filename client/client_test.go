package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/client"
)

// fakeAgent serves h on a unix socket in a temporary directory and returns
// a client of it.
func fakeAgent(t *testing.T, h http.HandlerFunc) *client.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	assert.NilError(t, err)
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := client.New("unix://" + sock)
	assert.NilError(t, err)
	return c
}

func writeJSON(t *testing.T, w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	assert.Check(t, json.NewEncoder(w).Encode(v))
}

func TestFreeze(t *testing.T) {
	want := api.FreezeRequest{Container: "box", User: "alice", Image: "frozen/box:1", Job: "42"}
	var got api.FreezeRequest
	c := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		assert.Check(t, is.Equal(r.Method, http.MethodPost))
		assert.Check(t, is.Equal(r.URL.Path, api.RouteFreezes))
		assert.Check(t, is.Equal(r.Header.Get("Content-Type"), "application/json"))
		assert.Check(t, json.NewDecoder(r.Body).Decode(&got))
		writeJSON(t, w, http.StatusAccepted, api.Task{ID: "t1", State: api.StateQueued, Container: "box", Owner: "alice"})
	})

	task, err := c.Freeze(context.Background(), want)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(got, want))
	assert.Check(t, is.Equal(task.ID, "t1"))
	assert.Check(t, is.Equal(task.State, api.StateQueued))
	assert.Check(t, is.Equal(task.Owner, "alice"))
}

func TestFreezeRejectsUnexpectedSuccess(t *testing.T) {
	c := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	_, err := c.Freeze(context.Background(), api.FreezeRequest{Container: "box"})
	assert.ErrorContains(t, err, "204")
}

func TestAPIErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   client.APIError
	}{
		{
			name:   "forbidden",
			status: http.StatusForbidden,
			body:   `{"error":"you may only freeze your own containers"}`,
			want:   client.APIError{Status: 403, Message: "you may only freeze your own containers"},
		},
		{
			name:   "not found",
			status: http.StatusNotFound,
			body:   `{"error":"no container \"box\" in alice's Podman"}`,
			want:   client.APIError{Status: 404, Message: `no container "box" in alice's Podman`},
		},
		{
			name:   "conflict",
			status: http.StatusConflict,
			body:   `{"error":"box is already being frozen","task":"t7"}`,
			want:   client.APIError{Status: 409, Message: "box is already being frozen", Task: "t7"},
		},
		{
			name:   "not JSON",
			status: http.StatusBadGateway,
			body:   "<html>bad gateway</html>\nmore",
			want:   client.APIError{Status: 502, Message: "the baicommit agent answered 502 Bad Gateway: <html>bad gateway</html>"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})
			_, err := c.Freeze(context.Background(), api.FreezeRequest{Container: "box"})
			var apiErr *client.APIError
			assert.Assert(t, errors.As(err, &apiErr), "got %T: %v", err, err)
			assert.Check(t, is.DeepEqual(*apiErr, tc.want))
			assert.Check(t, is.Equal(err.Error(), tc.want.Message))
		})
	}
}

func TestTaskEscapesID(t *testing.T) {
	var uri string
	c := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		uri = r.RequestURI
		writeJSON(t, w, http.StatusOK, api.Task{ID: "a/b c"})
	})
	task, err := c.Task(context.Background(), "a/b c")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(uri, "/v1/tasks/a%2Fb%20c"))
	assert.Check(t, is.Equal(task.ID, "a/b c"))
}

func TestListsAreNeverNil(t *testing.T) {
	c := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("null"))
	})
	ts, err := c.Tasks(context.Background())
	assert.NilError(t, err)
	assert.Check(t, ts != nil)
	ss, err := c.Sessions(context.Background())
	assert.NilError(t, err)
	assert.Check(t, ss != nil)
}

func TestUnreachable(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")

	// A socket file nobody listens on: bound, then closed without unlinking.
	refused := filepath.Join(dir, "refused.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: refused, Net: "unix"})
	assert.NilError(t, err)
	l.SetUnlinkOnClose(false)
	assert.NilError(t, l.Close())

	tests := []struct {
		name  string
		addr  string
		errno syscall.Errno
		want  string
	}{
		{
			name:  "missing socket",
			addr:  "unix://" + missing,
			errno: syscall.ENOENT,
			want:  "cannot reach the baicommit agent at unix://" + missing + ": is baicommit-agent.socket enabled on this node? (connect: no such file or directory)",
		},
		{
			name:  "bare path",
			addr:  missing,
			errno: syscall.ENOENT,
			want:  "cannot reach the baicommit agent at unix://" + missing + ": is baicommit-agent.socket enabled on this node? (connect: no such file or directory)",
		},
		{
			name:  "connection refused",
			addr:  "unix://" + refused,
			errno: syscall.ECONNREFUSED,
			want:  "cannot reach the baicommit agent at unix://" + refused + ": is baicommit-agent.socket enabled on this node? (connect: connection refused)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.New(tc.addr)
			assert.NilError(t, err)
			_, err = c.Version(context.Background())
			assert.Error(t, err, tc.want)
			assert.Check(t, errors.Is(err, tc.errno))
			var unreachable *client.UnreachableError
			assert.Check(t, errors.As(err, &unreachable))
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		addr    string
		want    string // canonical address
		wantErr string
	}{
		{addr: "unix:///run/baicommit/agent.sock", want: "unix:///run/baicommit/agent.sock"},
		{addr: "/tmp/a.sock", want: "unix:///tmp/a.sock"},
		{addr: "http://127.0.0.1:8080/", want: "http://127.0.0.1:8080"},
		{addr: "", wantErr: "no agent address given"},
		{addr: "unix://", wantErr: "socket path is missing"},
		{addr: "http://", wantErr: "host is missing"},
		{addr: "agent.sock", wantErr: "invalid agent address"},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			c, err := client.New(tc.addr)
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.Equal(c.Addr(), tc.want))
		})
	}
}

func TestWait(t *testing.T) {
	states := []api.Task{
		{ID: "t1", State: api.StateQueued},
		{ID: "t1", State: api.StateRunning, Phase: api.PhaseExporting},
		{ID: "t1", State: api.StateSucceeded, Archive: &api.Archive{Path: "/a.tar.gz"}},
	}
	var mu sync.Mutex
	calls := 0
	c := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		writeJSON(t, w, http.StatusOK, states[min(calls, len(states)-1)])
		calls++
	})

	var seen []string
	final, err := c.Wait(context.Background(), "t1", time.Millisecond, func(t *api.Task) {
		seen = append(seen, t.State)
	})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(final.State, api.StateSucceeded))
	assert.Check(t, is.Equal(final.Archive.Path, "/a.tar.gz"))
	assert.Check(t, is.DeepEqual(seen, []string{api.StateQueued, api.StateRunning, api.StateSucceeded}))
}

func TestWaitStopsWithContext(t *testing.T) {
	c := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(t, w, http.StatusOK, api.Task{ID: "t1", State: api.StateRunning})
	})
	ctx, cancel := context.WithCancel(context.Background())
	polls := 0
	_, err := c.Wait(ctx, "t1", time.Millisecond, func(*api.Task) {
		if polls++; polls == 3 {
			cancel()
		}
	})
	assert.Check(t, errors.Is(err, context.Canceled), "got %v", err)
	assert.Check(t, is.Equal(polls, 3))
}

func TestWaitReportsLostTask(t *testing.T) {
	c := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(t, w, http.StatusNotFound, api.Error{Message: "no task t1"})
	})
	_, err := c.Wait(context.Background(), "t1", time.Millisecond, nil)
	assert.Error(t, err, "no task t1")
}

func TestArchives(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		status int
		want   *api.ArchiveList
		err    string
	}{
		{
			name: "listed", status: http.StatusOK,
			body: `{"dir":"/s/alice","archives":[{"path":"/s/alice/a.tar.gz","sidecar":"/s/alice/a.json","archive":"a.tar.gz","sha256":"ab","size":3,"uid":1000}],"warnings":["skipped x"]}`,
			want: &api.ArchiveList{Dir: "/s/alice", Warnings: []string{"skipped x"}, Archives: []api.ArchiveEntry{{
				Path: "/s/alice/a.tar.gz", SidecarFile: "/s/alice/a.json",
				Sidecar: api.Sidecar{Archive: "a.tar.gz", SHA256: "ab", Size: 3, UID: 1000}}}},
		},
		{name: "none: an empty list", status: http.StatusOK, body: `{"dir":"/s/alice"}`, want: &api.ArchiveList{Dir: "/s/alice", Archives: []api.ArchiveEntry{}}},
		{name: "refused", status: http.StatusBadRequest, body: `{"error":"root has no archives of its own"}`, err: "root has no archives of its own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
				assert.Check(t, is.Equal(r.Method, http.MethodGet))
				assert.Check(t, is.Equal(r.URL.Path, api.RouteArchives))
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})
			got, err := c.Archives(context.Background())
			if tc.err != "" {
				var apiErr *client.APIError
				assert.Assert(t, errors.As(err, &apiErr), "%v", err)
				assert.Check(t, is.Equal(apiErr.Status, tc.status))
				assert.Check(t, is.ErrorContains(err, tc.err))
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.DeepEqual(got, tc.want))
		})
	}
}
