package safefile

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// Which directories the owner side writes below: its own and root's, not
// open to others without the sticky bit; another user's only on the way,
// and only when nobody but that user can write to it.
func TestJudge(t *testing.T) {
	const me, bob = 1000, 1001
	for _, tc := range []struct {
		name       string
		uid, mode  uint32
		root, leaf bool
		// ns: inside a user namespace, where 65534 is root or unmapped.
		ns   bool
		want string // "" accepted, else part of the error
	}{
		{name: "save root 1777", uid: 0, mode: 0o1777, root: true},
		{name: "save root 2770 of a project group", uid: 0, mode: 0o2770, root: true},
		{name: "save root 0777", uid: 0, mode: 0o777, root: true, want: "written by everyone"},
		{name: "save root of another owner, 0755", uid: bob, mode: 0o755, root: true},
		{name: "my directory 0700", uid: me, mode: 0o700, leaf: true},
		{name: "my directory 2750", uid: me, mode: 0o2750, leaf: true},
		{name: "my directory 0770", uid: me, mode: 0o770, leaf: true, want: "its group or by others"},
		{name: "my directory 1770", uid: me, mode: 0o1770, leaf: true},
		{name: "my directory 0777 on the way", uid: me, mode: 0o777, want: "no sticky bit"},
		{name: "root's directory 0755 on the way", uid: 0, mode: 0o755},
		{name: "root's directory 1777", uid: 0, mode: 0o1777, leaf: true},
		{name: "bob made my directory, 2777", uid: bob, mode: 0o2777, leaf: true, want: "belongs to uid 1001, not to you"},
		{name: "bob made my directory, 3777", uid: bob, mode: 0o3777, leaf: true, want: "belongs to uid 1001"},
		{name: "bob made my directory, 0700", uid: bob, mode: 0o700, leaf: true, want: "belongs to uid 1001"},
		{name: "bob's directory 1777 on the way", uid: bob, mode: 0o1777, want: "belongs to uid 1001"},
		{name: "bob's directory 0755 on the way", uid: bob, mode: 0o755},
		{name: "root's 1777 seen from the user namespace", uid: 65534, mode: 0o1777, ns: true},
		{name: "root's 0777 seen from the user namespace", uid: 65534, mode: 0o777, ns: true, want: "no sticky bit"},
		{name: "unmapped owner for the files, in the namespace", uid: 65534, mode: 0o1777, ns: true, leaf: true, want: "belongs to uid 65534"},
		{name: "nobody's 1777 outside a namespace", uid: 65534, mode: 0o1777, want: "belongs to uid 65534"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unmapped := int64(-1)
			if tc.ns {
				unmapped = 65534
			}
			err := judge("/save/d", tc.uid, tc.mode|unix.S_IFDIR, me, unmapped, tc.root, tc.leaf)
			if tc.want == "" {
				assert.Check(t, err)
				return
			}
			assert.Check(t, errors.Is(err, ErrUntrusted), "%v", err)
			assert.Check(t, is.ErrorContains(err, tc.want))
		})
	}
}

func TestDirModeFor(t *testing.T) {
	for file, dir := range map[uint32]uint32{0o600: 0o700, 0o640: 0o750, 0o644: 0o755, 0o604: 0o705} {
		assert.Check(t, is.Equal(uint32(DirModeFor(osMode(file))), dir), "%o", file)
	}
}

func osMode(m uint32) (fm os.FileMode) { return os.FileMode(m) }
