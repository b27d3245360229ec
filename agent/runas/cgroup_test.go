package runas

import (
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/internal/identity"
)

// With no template that exists, a process stays where it is; templates
// must be relative and clean.
func TestCgroupsNothingToPlace(t *testing.T) {
	u := &identity.User{UID: 4242424, Name: "nobody-here"}
	placed, err := Cgroups{Templates: []string{"no-such-slice/user-{uid}.slice"}}.Place(os.Getpid(), u)
	assert.NilError(t, err)
	assert.Check(t, is.Len(placed, 0))
	_, err = Cgroups{Templates: []string{"../{uid}"}}.Place(os.Getpid(), u)
	assert.Check(t, is.ErrorContains(err, "clean relative path"))
}

// enter writes the pid into cgroup.procs of the directory given.
func TestEnterWritesProcs(t *testing.T) {
	dir := t.TempDir()
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "cgroup.procs"), nil, 0o644))
	got, err := enter(dir, 4711)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got, dir))
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(b), "4711\n"))
}
