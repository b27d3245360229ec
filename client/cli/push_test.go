package cli

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/archivetest"
)

func TestCommitPushRequest(t *testing.T) {
	var got api.FreezeRequest
	addr := fakeAgent(t, map[string]http.HandlerFunc{
		"POST " + api.RouteFreezes: func(w http.ResponseWriter, r *http.Request) {
			_ = json.NewDecoder(r.Body).Decode(&got)
			reply(w, http.StatusAccepted, queued)
		},
	})
	t.Chdir(t.TempDir())
	cwd, _ := os.Getwd()
	r := run(t, addr, "commit", "--push", "reg.example/a/box:v1", "--creds", "u:p", "--authfile", "auth.json", "--tls-verify=false", "box")
	assert.Equal(t, r.code, 0, r.stderr)
	no := false
	assert.Check(t, is.DeepEqual(got.Push, &api.PushRequest{Ref: "reg.example/a/box:v1", Creds: "u:p",
		AuthFile: filepath.Join(cwd, "auth.json"), TLSVerify: &no}))

	// Without registry flags only the reference goes.
	got = api.FreezeRequest{}
	r = run(t, addr, "commit", "--push", "reg.example/a/box:v1", "box")
	assert.Equal(t, r.code, 0, r.stderr)
	assert.Check(t, is.DeepEqual(got.Push, &api.PushRequest{Ref: "reg.example/a/box:v1"}))
	got = api.FreezeRequest{}
	r = run(t, addr, "commit", "box")
	assert.Equal(t, r.code, 0, r.stderr)
	assert.Check(t, got.Push == nil)
}

func TestCommitPushUsage(t *testing.T) {
	addr := fakeAgent(t, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"commit", "--tls-verify=false", "box"}, "--tls-verify only applies with --push REF"},
		{[]string{"commit", "--authfile", "/a", "box"}, "--authfile only applies with --push REF"},
		{[]string{"commit", "--push", "Bad Ref", "box"}, "--push: "},
		{[]string{"push", "only-one.tar.gz"}, "push needs ARCHIVE and REF"},
		{[]string{"push", "a.tar.gz", "Bad Ref"}, "not a valid image reference"},
		{[]string{"restore"}, "restore needs a ARCHIVE or REF argument"},
	} {
		r := run(t, addr, tc.args...)
		assert.Check(t, is.Equal(r.code, 2), "%v: %s", tc.args, r.stderr)
		assert.Check(t, is.Contains(r.stderr, tc.want), "%v", tc.args)
	}
}

func TestCommitWaitPush(t *testing.T) {
	pushed := with(succeeded, func(t *api.Task) {
		t.Push = &api.PushStatus{Ref: "reg.example/a/box:v1", State: api.PushSucceeded, Digest: "sha256:feed"}
	})
	pushFailed := with(succeeded, func(t *api.Task) {
		t.Push = &api.PushStatus{Ref: "reg.example/a/box:v1", State: api.PushFailed,
			Error: "authentication required/denied by the registry reg.example: check --creds"}
	})
	pushing := with(exporting, func(t *api.Task) {
		t.Phase = api.PhasePushing
		t.Push = &api.PushStatus{Ref: "reg.example/a/box:v1", State: api.PushRunning, Sent: 50 << 20, Total: 100 << 20}
	})

	addr := fakeAgent(t, map[string]http.HandlerFunc{
		"POST " + api.RouteFreezes:      func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusAccepted, queued) },
		"GET " + api.RouteTask + "{id}": sequence(pushing, pushed),
	})
	r := run(t, addr, "commit", "--wait", "--push", "reg.example/a/box:v1", "box")
	assert.Equal(t, r.code, 0, r.stderr)
	assert.Check(t, is.Contains(r.stdout, "  pushed:  reg.example/a/box:v1\n"))
	assert.Check(t, is.Contains(r.stdout, "  digest:  sha256:feed\n"))
	assert.Check(t, is.Contains(r.stderr, "pushing to the registry"))

	addr = fakeAgent(t, map[string]http.HandlerFunc{
		"POST " + api.RouteFreezes:      func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusAccepted, queued) },
		"GET " + api.RouteTask + "{id}": sequence(pushFailed),
	})
	r = run(t, addr, "commit", "--wait", "--push", "reg.example/a/box:v1", "box")
	assert.Check(t, is.Equal(r.code, 1))
	assert.Check(t, is.Contains(r.stdout, "Froze box into /srv/frozen/alice/box-1.tar.gz"))
	assert.Check(t, !strings.Contains(r.stdout, "pushed:"))
	assert.Check(t, is.Contains(r.stderr, "the archive is complete, but pushing it to reg.example/a/box:v1 failed: authentication required/denied"))
}

func TestPushLine(t *testing.T) {
	p := &api.PushStatus{Sent: 50 << 20, Total: 200 << 20}
	assert.Check(t, is.Equal(pushLine(p, 3*time.Second, 80), "pushing  50.0 MiB / 200.0 MiB  25% [=========>                          ]  0:03"))
	assert.Check(t, is.Equal(pushLine(p, 3*time.Second, 40), "pushing  50.0 MiB / 200.0 MiB  25%   0:"))
	assert.Check(t, is.Equal(pushLine(&api.PushStatus{Sent: 10}, time.Second, 80), "pushing  10 B sent  0:01"))
}

// writeArchive writes an archive file and its sidecar below dir.
func writeArchive(t *testing.T, dir, name string, sc api.Sidecar) string {
	t.Helper()
	return archivetest.Write(t, dir, name, []byte(name), sc)
}

func TestListArchives(t *testing.T) {
	dir := t.TempDir()
	older := writeArchive(t, dir, "box-1", api.Sidecar{SourceContainer: "box", Job: "42", Task: "0123456789ab.n1", UID: os.Getuid(), Created: now.Add(-2 * time.Hour)})
	newer := writeArchive(t, filepath.Join(dir, "2025-03-01"), "lab-2", api.Sidecar{SourceContainer: "lab", UID: os.Getuid(), Created: now.Add(-time.Minute),
		Pushes: []api.PushRecord{{Ref: "reg.example/a/lab:v1", Digest: "sha256:1"}}})
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "broken.json"), []byte("{"), 0o644))
	addr := fakeAgent(t, map[string]http.HandlerFunc{
		"GET " + api.RouteTasks: func(w http.ResponseWriter, r *http.Request) {
			reply(w, http.StatusOK, []api.Task{exporting, succeeded})
		},
		"GET " + api.RouteVersion: func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusOK, api.VersionInfo{SaveDir: dir}) },
	})

	r := run(t, addr, "list")
	assert.Equal(t, r.code, 0, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	assert.Assert(t, is.Len(lines, 6), r.stdout)
	assert.Check(t, is.Contains(lines[1], "exporting 29%"))
	assert.Check(t, is.Equal(lines[2], ""))
	assert.Check(t, is.Equal(strings.Join(strings.Fields(lines[3]), " "), "CREATED SIZE SOURCE JOB TASK PUSHED TO PATH"))
	assert.Check(t, is.Equal(strings.Join(strings.Fields(lines[4]), " "), "1 minute ago 5 B lab - - reg.example/a/lab:v1 "+newer))
	assert.Check(t, is.Equal(strings.Join(strings.Fields(lines[5]), " "), "2 hours ago 5 B box 42 0123456789ab.n1 - "+older))
	assert.Check(t, is.Contains(r.stderr, "baicommit: warning: skipped "+filepath.Join(dir, "broken.json")))

	r = run(t, addr, "list", "--json")
	assert.Equal(t, r.code, 0, r.stderr)
	var out listOutput
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &out))
	assert.Check(t, is.Len(out.Tasks, 2))
	assert.Assert(t, is.Len(out.Archives, 2))
	assert.Check(t, is.Equal(out.Archives[0].Path, newer))
	assert.Check(t, is.Equal(out.Archives[0].LastPush().Ref, "reg.example/a/lab:v1"))

	// --dir wins over the agent's directory; a missing one is an error.
	r = run(t, addr, "list", "--json", "--dir", filepath.Join(dir, "2025-03-01"))
	assert.Equal(t, r.code, 0, r.stderr)
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &out))
	assert.Check(t, is.Len(out.Archives, 1))
	r = run(t, addr, "list", "--dir", filepath.Join(dir, "nope"))
	assert.Check(t, is.Equal(r.code, 1))
	assert.Check(t, is.Contains(r.stderr, "no such file or directory"))
}

func TestListDirWithoutAgent(t *testing.T) {
	dir := t.TempDir()
	path := writeArchive(t, dir, "box-1", api.Sidecar{SourceContainer: "box", UID: os.Getuid(), Created: now})
	sock := "unix://" + filepath.Join(t.TempDir(), "agent.sock")
	r := run(t, sock, "list", "--dir", dir)
	assert.Equal(t, r.code, 0, r.stderr)
	assert.Check(t, is.Contains(r.stderr, "cannot reach the baicommit agent"))
	assert.Check(t, is.Contains(r.stderr, "listing the archives only"))
	assert.Check(t, is.Contains(r.stdout, path))
}

func TestPushAndRestoreRefuseChangedArchive(t *testing.T) {
	dir := t.TempDir()
	path := writeArchive(t, dir, "box-1", api.Sidecar{Created: now})
	assert.NilError(t, os.WriteFile(path, []byte("box-2"), 0o640))
	for _, args := range [][]string{
		{"push", path, "127.0.0.1:1/a/b:c"},
		{"restore", path},
	} {
		r := run(t, "unix:///nonexistent.sock", args...)
		assert.Check(t, is.Equal(r.code, 1), "%v", args)
		assert.Check(t, is.Contains(r.stderr, "was changed after the freeze; refusing to use it"), "%v", args)
	}
}
