package agent

import (
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/agent/userpodman"
)

// The archives listed are below the caller's save directory: the agent's
// own save path for a local caller, the manager's template only from the
// manager (or root), and always below the agent's save_roots, by the same
// checks a freeze's destination passes.
func TestArchiveDir(t *testing.T) {
	alice := &userpodman.User{UID: 1000, GID: 1000, Name: "alice"}
	local := Caller{UID: 1000, User: alice}
	viaManager := Caller{UID: 1000, User: alice, Manager: true}
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
		{name: "root", savePath: "/srv/bc/{user}", c: Caller{UID: 0, User: &userpodman.User{Name: "root"}}, status: 400, contains: "root has no archives"},
		{name: "no account", savePath: "/srv/bc/{user}", c: Caller{UID: 4242}, status: 403, contains: "uid 4242 has no account on node n1"},
		{name: "a name unfit for a path", savePath: "/srv/bc/{user}", c: Caller{UID: 1000, User: &userpodman.User{UID: 1000, Name: "a b"}}, status: 400, contains: "cannot be used in a save path"},
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
