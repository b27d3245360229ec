package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
)

// now is the fixed clock of the tests.
var now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeAgent serves routes on a unix socket in a temporary directory and
// returns its address. Unknown routes answer 404 with an api.Error.
func fakeAgent(t *testing.T, routes map[string]http.HandlerFunc) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	assert.NilError(t, err)
	mux := http.NewServeMux()
	for pattern, h := range routes {
		mux.HandleFunc(pattern, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusNotFound, api.Error{Message: "no route " + r.URL.Path})
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return "unix://" + sock
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// sequence answers with each task in turn, then keeps answering the last.
func sequence(tasks ...api.Task) http.HandlerFunc {
	var mu sync.Mutex
	i := 0
	return func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		reply(w, http.StatusOK, tasks[min(i, len(tasks)-1)])
		i++
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs the CLI against the agent at addr, without a terminal.
func run(t *testing.T, addr string, args ...string) result {
	t.Helper()
	return runWith(context.Background(), false, addr, args...)
}

// runWith runs the CLI with a context, pretending stderr is a terminal if
// tty is set.
func runWith(ctx context.Context, tty bool, addr string, args ...string) result {
	var stdout, stderr bytes.Buffer
	e := newEnv(&stdout, &stderr)
	e.now = func() time.Time { return now }
	e.poll = time.Millisecond
	e.tty = tty
	code := e.run(ctx, append([]string{"baicommit", "--agent", addr}, args...))
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

var (
	queued = api.Task{
		ID: "t1", State: api.StateQueued, Container: "box", Owner: "alice", OwnerUID: 1000,
		Requester: 1000, Node: "n1", Image: "localhost/baicommit/box:1", Created: now.Add(-time.Minute),
	}
	exporting = with(queued, func(t *api.Task) {
		t.State, t.Phase = api.StateRunning, api.PhaseExporting
		t.Progress = api.Progress{BytesRead: 300 << 20, BytesWritten: 100 << 20, BytesTotal: 1 << 30}
	})
	succeeded = with(queued, func(t *api.Task) {
		t.State = api.StateSucceeded
		t.Archive = &api.Archive{Path: "/srv/frozen/alice/box-1.tar.gz", SHA256: "abc123", Size: 3 << 20, Uncompressed: 9 << 20}
		t.Warnings = []string{"container was running; froze a live filesystem"}
		t.Durations = api.Durations{Commit: 1.2, Export: 3.4, Total: 4.6}
		t.Finished = now
	})
	failed = with(queued, func(t *api.Task) {
		t.State, t.Error = api.StateFailed, "podman commit: no space left on device"
		t.Finished = now
	})
)

func with(t api.Task, f func(*api.Task)) api.Task {
	f(&t)
	return t
}

func TestListJSONEmpty(t *testing.T) {
	for _, body := range []string{"[]", "null"} {
		t.Run(body, func(t *testing.T) {
			addr := fakeAgent(t, map[string]http.HandlerFunc{
				"GET " + api.RouteTasks: func(w http.ResponseWriter, r *http.Request) {
					_, _ = w.Write([]byte(body))
				},
			})
			r := run(t, addr, "list", "--json")
			assert.Equal(t, r.code, 0, r.stderr)
			assert.Check(t, json.Valid([]byte(r.stdout)))
			assert.Check(t, is.Equal(strings.Join(strings.Fields(r.stdout), " "), `{ "tasks": [], "archives": [] }`))
		})
	}
}

func TestList(t *testing.T) {
	addr := fakeAgent(t, map[string]http.HandlerFunc{
		"GET " + api.RouteTasks: func(w http.ResponseWriter, r *http.Request) {
			reply(w, http.StatusOK, []api.Task{exporting, succeeded, failed})
		},
	})
	r := run(t, addr, "list")
	assert.Equal(t, r.code, 0, r.stderr)
	// Running and failed freezes; succeeded ones are listed as archives.
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	assert.Assert(t, is.Len(lines, 5))
	assert.Check(t, is.Contains(lines[0], "ARCHIVE/ERROR"))
	assert.Check(t, is.Contains(lines[1], "exporting 29%"))
	assert.Check(t, is.Contains(lines[2], "error: podman commit: no space left on device"))
	assert.Check(t, is.Contains(lines[2], "1 minute ago"))
	assert.Check(t, is.Equal(lines[3], ""))
	assert.Check(t, is.Equal(lines[4], "No archive directory known: give --dir DIR."))
}

func TestCommit(t *testing.T) {
	var got api.FreezeRequest
	addr := fakeAgent(t, map[string]http.HandlerFunc{
		"POST " + api.RouteFreezes: func(w http.ResponseWriter, r *http.Request) {
			_ = json.NewDecoder(r.Body).Decode(&got)
			reply(w, http.StatusAccepted, queued)
		},
	})
	r := run(t, addr, "commit", "--tag", "me/box:v1", "--user", "alice", "--job", "42", "box")
	assert.Equal(t, r.code, 0, r.stderr)
	assert.Check(t, is.Equal(r.stdout, "t1\n"))
	assert.Check(t, is.Contains(r.stderr, "baicommit status t1"))
	assert.Check(t, is.DeepEqual(got, api.FreezeRequest{Container: "box", User: "alice", Image: "me/box:v1", Job: "42"}))
}

func TestCommitWait(t *testing.T) {
	addr := fakeAgent(t, map[string]http.HandlerFunc{
		"POST " + api.RouteFreezes:      func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusAccepted, queued) },
		"GET " + api.RouteTask + "{id}": sequence(queued, exporting, exporting, succeeded),
	})
	r := run(t, addr, "commit", "--wait", "box")
	assert.Equal(t, r.code, 0, r.stderr)
	// Without a terminal: one line per phase, no carriage returns.
	assert.Check(t, is.Equal(r.stderr, "1:00 queued\n1:00 writing the archive\n"))
	for _, want := range []string{
		"Froze box into /srv/frozen/alice/box-1.tar.gz",
		"3.0 MiB (9.0 MiB uncompressed)",
		"abc123",
		"4.6s",
		"warning: container was running",
	} {
		assert.Check(t, is.Contains(r.stdout, want))
	}
}

func TestCommitWaitJSONFailed(t *testing.T) {
	addr := fakeAgent(t, map[string]http.HandlerFunc{
		"POST " + api.RouteFreezes:      func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusAccepted, queued) },
		"GET " + api.RouteTask + "{id}": sequence(exporting, failed),
	})
	r := run(t, addr, "commit", "--wait", "--json", "box")
	assert.Equal(t, r.code, 1)
	var task api.Task
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &task), r.stdout)
	assert.Check(t, is.Equal(task.ID, "t1"))
	assert.Check(t, is.Equal(task.State, api.StateFailed))
	assert.Check(t, is.Equal(task.Error, failed.Error))
	// No progress lines off a terminal with --json, just the reason.
	assert.Check(t, is.Equal(r.stderr, "baicommit: freezing box failed (task t1): podman commit: no space left on device\n"))
}

func TestCommitConflict(t *testing.T) {
	addr := fakeAgent(t, map[string]http.HandlerFunc{
		"POST " + api.RouteFreezes: func(w http.ResponseWriter, r *http.Request) {
			reply(w, http.StatusConflict, api.Error{Message: "box is already being frozen", Task: "t0"})
		},
	})
	r := run(t, addr, "commit", "box")
	assert.Check(t, is.Equal(r.code, 1))
	assert.Check(t, is.Equal(r.stdout, ""))
	assert.Check(t, is.Contains(r.stderr, "baicommit: box is already being frozen\n"))
	assert.Check(t, is.Contains(r.stderr, "baicommit status t0"))
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{args: []string{"commit"}, want: "commit needs a CONTAINER argument"},
		{args: []string{"commit", "box", "--wait"}, want: "flags go before CONTAINER"},
		{args: []string{"commit", "a", "b"}, want: "commit takes one CONTAINER"},
		{args: []string{"commit", "--nope", "box"}, want: "flag provided but not defined"},
		{args: []string{"status"}, want: "status needs a TASK argument"},
		{args: []string{"list", "x"}, want: "list takes no arguments"},
		{args: []string{"web"}, want: "the web page is served by baicommit-manager: pass --manager URL"},
		{args: []string{"frobnicate"}, want: `unknown command "frobnicate"`},
		{args: []string{"help", "frobnicate"}, want: "No help topic for 'frobnicate'"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			// No agent needed: usage errors come before any request.
			r := run(t, "unix:///nonexistent/agent.sock", tc.args...)
			assert.Check(t, is.Equal(r.code, 2))
			assert.Check(t, is.Contains(r.stderr, "baicommit: "+tc.want))
			assert.Check(t, is.Contains(r.stderr, "--help' for usage"))
		})
	}
}

func TestStatus(t *testing.T) {
	var uri string
	addr := fakeAgent(t, map[string]http.HandlerFunc{
		"GET " + api.RouteTask + "{id}": func(w http.ResponseWriter, r *http.Request) {
			uri = r.RequestURI
			reply(w, http.StatusOK, succeeded)
		},
	})
	r := run(t, addr, "status", "t1")
	assert.Equal(t, r.code, 0, r.stderr)
	assert.Check(t, is.Equal(uri, "/v1/tasks/t1"))
	for _, want := range []string{
		"Task:", "t1", "succeeded", "alice (uid 1000)",
		"/srv/frozen/alice/box-1.tar.gz", "abc123",
		"commit 1.2s, export 3.4s, total 4.6s",
		"Warnings:", "froze a live filesystem",
	} {
		assert.Check(t, is.Contains(r.stdout, want))
	}

	r = run(t, addr, "status", "--json", "t1")
	assert.Equal(t, r.code, 0, r.stderr)
	var task api.Task
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &task))
	assert.Check(t, is.Equal(task.Archive.Path, "/srv/frozen/alice/box-1.tar.gz"))
}

func TestSessions(t *testing.T) {
	addr := fakeAgent(t, map[string]http.HandlerFunc{
		"GET " + api.RouteSessions: func(w http.ResponseWriter, r *http.Request) {
			reply(w, http.StatusOK, []api.Session{
				{ID: "0123456789abcdef0123", Name: "box", State: "running", Image: "ubuntu:24.04", Node: "n1", Job: "42", Task: "t1", Created: now.Add(-2 * time.Hour)},
				{ID: "fedcba9876543210", Name: "other", State: "exited", Image: "alpine", Created: now.Add(-3 * 24 * time.Hour)},
			})
		},
	})
	r := run(t, addr, "sessions")
	assert.Equal(t, r.code, 0, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	assert.Assert(t, is.Len(lines, 3))
	assert.Check(t, is.Equal(strings.Join(strings.Fields(lines[1]), " "), "0123456789ab box running ubuntu:24.04 n1 42 t1 2 hours ago"))
	assert.Check(t, is.Equal(strings.Join(strings.Fields(lines[2]), " "), "fedcba987654 other exited alpine - - - 3 days ago"))
}

func TestAgentUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	r := run(t, "unix://"+sock, "list")
	assert.Check(t, is.Equal(r.code, 1))
	assert.Check(t, is.Equal(r.stderr, "baicommit: cannot reach the baicommit agent at unix://"+sock+
		": is baicommit-agent.socket enabled on this node? (connect: no such file or directory)\n"))
}

func TestAgentFromEnvironment(t *testing.T) {
	addr := fakeAgent(t, map[string]http.HandlerFunc{
		"GET " + api.RouteTasks: func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusOK, []api.Task{}) },
	})
	t.Setenv(EnvAgent, addr)
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), []string{"baicommit", "list", "--json"}, &stdout, &stderr)
	assert.Equal(t, code, 0, stderr.String())
	assert.Check(t, is.Equal(strings.Join(strings.Fields(stdout.String()), " "), `{ "tasks": [], "archives": [] }`))
}

func TestCommitWaitTerminal(t *testing.T) {
	addr := fakeAgent(t, map[string]http.HandlerFunc{
		"POST " + api.RouteFreezes:      func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusAccepted, queued) },
		"GET " + api.RouteTask + "{id}": sequence(exporting, succeeded),
	})
	r := runWith(context.Background(), true, addr, "commit", "--wait", "--json", "box")
	assert.Equal(t, r.code, 0, r.stderr)
	// The bar is drawn on stderr and cleared; stdout holds only the JSON.
	assert.Check(t, is.Contains(r.stderr, "\rexporting  300.0 MiB / 1.0 GiB  29% ["))
	assert.Check(t, strings.HasSuffix(r.stderr, "\r\x1b[K"))
	assert.Check(t, !strings.Contains(r.stderr, "\n"))
	var task api.Task
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &task), r.stdout)
	assert.Check(t, is.Equal(task.State, api.StateSucceeded))
}

func TestCommitWaitInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	polls := 0
	addr := fakeAgent(t, map[string]http.HandlerFunc{
		"POST " + api.RouteFreezes: func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusAccepted, queued) },
		"GET " + api.RouteTask + "{id}": func(w http.ResponseWriter, r *http.Request) {
			if polls++; polls == 3 {
				cancel() // as SIGINT would
			}
			reply(w, http.StatusOK, exporting)
		},
	})
	r := runWith(ctx, false, addr, "commit", "--wait", "box")
	assert.Check(t, is.Equal(r.code, 130))
	assert.Check(t, is.Equal(r.stdout, ""))
	assert.Check(t, is.Contains(r.stderr, "stopped waiting; the freeze goes on: baicommit status t1"))
}
