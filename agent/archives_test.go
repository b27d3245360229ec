package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/identity"
)

// The archives listed are below the caller's save directory: the agent's
// own save path for a local caller, the manager's template only from the
// manager (or root), and always below the agent's save_roots, by the same
// checks a freeze's destination passes.
func TestArchiveDir(t *testing.T) {
	alice := &identity.User{UID: 1000, GID: 1000, Name: "alice"}
	local := Caller{UID: 1000, User: alice}
	viaManager := Caller{UID: 1000, User: alice, Relayed: true}
	for _, tc := range []struct {
		name      string
		savePath  string // the agent's
		roots     []string
		c         Caller
		template  string // the request's save_path
		dir, root string
		status    int
		contains  string
	}{
		{name: "local: the agent's save path", savePath: "/srv/bc/{user}/{date}", c: local, dir: "/srv/bc/alice", root: "/srv/bc"},
		{name: "local: by uid", savePath: "/srv/bc/{uid}", c: local, dir: "/srv/bc/1000", root: "/srv/bc"},
		{name: "local: a node-first save path lists the root", savePath: "/srv/bc/{node}/{user}", c: local, dir: "/srv/bc", root: "/srv/bc"},
		{name: "manager: the site's save path", savePath: "/srv/bc/{user}", c: viaManager, template: "/srv/bc/site/{user}/{job}", dir: "/srv/bc/site/alice", root: "/srv/bc"},
		{name: "manager: another save root", savePath: "/srv/bc/{user}", roots: []string{"/srv/bc", "/scratch"}, c: viaManager, template: "/scratch/{user}", dir: "/scratch/alice", root: "/scratch"},
		{name: "manager: outside the save roots", savePath: "/srv/bc/{user}", c: viaManager, template: "/home/{user}", status: 400, contains: "outside the allowed save_roots"},
		{name: "manager: not clean", savePath: "/srv/bc/{user}", c: viaManager, template: "/srv/bc/../etc/{user}", status: 400, contains: "clean absolute path"},
		{name: "manager: relative", savePath: "/srv/bc/{user}", c: viaManager, template: "srv/{user}", status: 400, contains: "clean absolute path"},
		{name: "local: no save_path of their own", savePath: "/srv/bc/{user}", c: local, template: "/srv/bc/x/{user}", status: 403, contains: "set by the site"},
		{name: "root", savePath: "/srv/bc/{user}", c: Caller{UID: 0, User: &identity.User{Name: "root"}}, status: 400, contains: "root has no archives"},
		{name: "no account", savePath: "/srv/bc/{user}", c: Caller{UID: 4242}, status: 403, contains: "uid 4242 has no account on node n1"},
		{name: "a name unfit for a path", savePath: "/srv/bc/{user}", c: Caller{UID: 1000, User: &identity.User{UID: 1000, Name: "a b"}}, status: 400, contains: "cannot be used in a save path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.NodeName = "n1"
			cfg.SavePath, cfg.SaveRoots = tc.savePath, tc.roots
			assert.NilError(t, cfg.Validate())
			a := &Agent{cfg: cfg}
			dir, root, err := a.archiveDir(tc.c, tc.template)
			if tc.status != 0 {
				assert.Check(t, is.Equal(Status(err), tc.status), "%v", err)
				assert.Check(t, is.ErrorContains(err, tc.contains))
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.Equal(dir, tc.dir))
			assert.Check(t, is.Equal(root, tc.root))
		})
	}
}

func TestBelow(t *testing.T) {
	for _, tc := range []struct {
		p, dir string
		want   bool
	}{
		{"/s/alice/a.tar.gz", "/s/alice", true},
		{"/s/alice/2025/a.json", "/s/alice", true},
		{"/s/alice", "/s/alice", false},
		{"/s/alicex/a.tar.gz", "/s/alice", false},
		{"/s/alice/../bob/a.tar.gz", "/s/alice", false},
		{"", "/s/alice", false},
		{"/a.json", "/", true},
	} {
		assert.Check(t, is.Equal(below(tc.p, tc.dir), tc.want), "below(%q, %q)", tc.p, tc.dir)
	}
}

// replayHelper is a helper that ignores its spec and reports lines, as a
// helper the user tampered with could.
func replayHelper(lines []string) Helpers {
	return &fakeHelpers{run: func(_ *identity.User, _ messages.Spec, emit func(messages.Event)) error {
		var failed error
		err := messages.Decode(strings.NewReader(strings.Join(lines, "\n")+"\n"), func(ev messages.Event) {
			if ev.Event == messages.EventError {
				failed = &helperError{msg: ev.Message, noSpace: ev.NoSpace, denied: ev.Denied}
				return
			}
			emit(ev)
		})
		if failed != nil {
			return failed
		}
		return err
	}}
}

func entryLine(t *testing.T, path string, uid int) string {
	t.Helper()
	b, err := json.Marshal(messages.Event{Event: messages.EventArchive, Archive: &api.ArchiveEntry{
		Path: path, SidecarFile: strings.TrimSuffix(path, ".tar.gz") + ".json", Sidecar: api.Sidecar{UID: uid}}})
	assert.NilError(t, err)
	return string(b)
}

// What the list helper reports is checked and bounded: only the user's
// archives below their directory, at most maxListed, and only a list the
// helper finished.
func TestArchivesTrustsTheHelperLittle(t *testing.T) {
	const uid = 64123
	done := `{"event":"done"}`
	many := make([]string, 0, maxListed+2)
	for i := range maxListed + 1 {
		many = append(many, entryLine(t, fmt.Sprintf("/srv/bc/alice/a%d.tar.gz", i), uid))
	}
	for _, tc := range []struct {
		name     string
		lines    []string
		want     int
		warnings []string
		err      string
	}{
		{
			name: "only the user's, only below their directory",
			lines: []string{
				entryLine(t, "/srv/bc/alice/mine.tar.gz", uid),
				entryLine(t, "/srv/bc/alice/bobs.tar.gz", uid+1),
				entryLine(t, "/srv/bc/bob/mine-they-say.tar.gz", uid),
				entryLine(t, "/srv/bc/alice/../bob/x.tar.gz", uid),
				`{"event":"warning","message":"skipped junk.json"}`, done,
			},
			want: 1, warnings: []string{"skipped junk.json"},
		},
		{name: "cut at maxListed", lines: append(many, done), want: maxListed, warnings: []string{fmt.Sprintf("the list stops after %d archives", maxListed)}},
		{name: "not finished", lines: []string{entryLine(t, "/srv/bc/alice/mine.tar.gz", uid)}, err: "ended without finishing the list"},
		{name: "a failure it reports", lines: []string{`{"event":"error","message":"list archives: stat /srv/bc/alice: permission denied","denied":true}`}, err: "cannot read the save directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.NodeName, cfg.SavePath = "n1", "/srv/bc/{user}"
			assert.NilError(t, cfg.Validate())
			a := &Agent{cfg: cfg, helpers: replayHelper(tc.lines), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			c := Caller{UID: uid, User: &identity.User{UID: uid, GID: uid, Name: "alice", Home: "/"}}
			list, err := a.Archives(context.Background(), c, "", "")
			if tc.err != "" {
				assert.Check(t, is.ErrorContains(err, tc.err))
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.Equal(list.Dir, "/srv/bc/alice"))
			assert.Check(t, is.Len(list.Archives, tc.want))
			assert.Assert(t, is.Len(list.Warnings, len(tc.warnings)), "%q", list.Warnings)
			for i, w := range tc.warnings {
				assert.Check(t, is.Contains(list.Warnings[i], w))
			}
		})
	}
}
