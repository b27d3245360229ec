// Package safefile writes frozen images onto the shared filesystem safely.
//
// It runs inside a helper process that already has the identity of the
// archive's owner, so ordinary permission checks (and NFS root_squash)
// apply. On top of that it never follows a symbolic link below the
// configured save root, never writes below a directory that someone else
// controls, and never makes a partial file visible under a final name: data
// goes to a temporary name unique to node and task, is synced, and is then
// moved to the final name without replacing anything there.
package safefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// DirMode is the mode of directories created below the save root when
// nothing else is asked: the owner's alone. Many clusters put every user
// in one primary group, so group access is the site's choice (DirModeFor).
const DirMode = 0o700

// DirModeFor is the mode of directories that hold files of mode m: whoever
// may read the files may list and enter the directory; nobody but the
// owner may write to it. 0600 gives 0700, 0640 (a project group) 0750.
func DirModeFor(m os.FileMode) os.FileMode {
	d := os.FileMode(0o700)
	if m&0o040 != 0 {
		d |= 0o050
	}
	if m&0o004 != 0 {
		d |= 0o005
	}
	return d
}

// ErrUntrusted reports a directory on the way to the save directory that
// someone else controls: another user owns it, or others can write to it
// without the sticky bit, so they could replace or read what is written
// below it.
var ErrUntrusted = errors.New("untrusted directory")

// OpenDir opens dir, which must lie below root, for use as the directory of
// an archive. root is trusted (it comes from the agent's configuration) and
// may involve symbolic links; every component of dir below root is opened
// with O_NOFOLLOW, so a link a user planted there is refused rather than
// followed. Missing components are created with DirMode when create is set.
//
// Every directory on the way is checked (see MakeDir): OpenDir refuses to
// lead below a directory another user could have prepared.
func OpenDir(root, dir string, create bool) (*os.File, error) {
	return openDir(root, dir, create, DirMode)
}

// MakeDir is OpenDir creating missing components with mode perm (and the
// setgid bit and group they inherit from their parent, so that a project
// directory's group carries on). Each directory on the way must be:
//
//   - the save root: not writable by everyone unless it has the sticky
//     bit (who owns it is the site's configuration);
//   - below it: owned by the caller or by root and not writable by its
//     group or others unless it has the sticky bit; the directory the
//     files go into must be one of those. A directory of another user is
//     passed through only when nobody but that user can write to it, which
//     leaves nothing to be planted in it.
//
// Inside the owner's rootless user namespace, root's directories show as
// owned by the overflow uid, like those of every user not mapped there:
// such a directory is taken for root's on the way (never as the one the
// files go into). The agent makes sure it is, by running MakeDir with the
// owner's host credentials first (agent/asowner's prepare-dir).
func MakeDir(root, dir string, perm os.FileMode) (*os.File, error) {
	return openDir(root, dir, true, perm)
}

func openDir(root, dir string, create bool, perm os.FileMode) (*os.File, error) {
	rel, err := Below(root, dir)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open save root %s: %w", root, err)
	}
	if err := checkDir(fd, root, true, rel == ""); err != nil {
		unix.Close(fd)
		return nil, err
	}
	cur := root
	if rel != "" {
		names := strings.Split(rel, "/")
		for i, name := range names {
			next, err := openChild(fd, name, create, perm)
			unix.Close(fd)
			cur = filepath.Join(cur, name)
			if err != nil {
				return nil, fmt.Errorf("open %s: %w", cur, err)
			}
			if err := checkDir(next, cur, false, i == len(names)-1); err != nil {
				unix.Close(next)
				return nil, err
			}
			fd = next
		}
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// checkDir applies MakeDir's rules to the open directory fd at path.
func checkDir(fd int, path string, isRoot, isLeaf bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	return judge(path, st.Uid, st.Mode, uint32(os.Geteuid()), unmappedUID(), isRoot, isLeaf)
}

// unmappedUID is the uid that files of users not mapped into this
// process's user namespace show as, or -1 outside a user namespace.
var unmappedUID = sync.OnceValue(func() int64 {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil || strings.Join(strings.Fields(string(b)), " ") == "0 0 4294967295" {
		return -1
	}
	o, err := os.ReadFile("/proc/sys/kernel/overflowuid")
	if err != nil {
		return 65534
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(o)), 10, 64)
	if err != nil {
		return 65534
	}
	return n
})

// judge decides whether a directory at path, owned by uid with mode, may
// be written below by the process running as me; unmapped is the uid of
// files whose owner the user namespace does not map (-1: none).
func judge(path string, uid, mode, me uint32, unmapped int64, isRoot, isLeaf bool) error {
	sticky := mode&unix.S_ISVTX != 0
	if isRoot {
		if mode&0o002 != 0 && !sticky {
			return fmt.Errorf("%w: the save root %s can be written by everyone and has no sticky bit, so anyone could replace what is below it: ask your site admin to run chmod +t %s", ErrUntrusted, path, path)
		}
		return nil
	}
	othersWrite := mode&0o022 != 0
	rootOrUnmapped := uid == 0 || !isLeaf && int64(uid) == unmapped
	if uid == me || rootOrUnmapped {
		if othersWrite && !sticky {
			return fmt.Errorf("%w: %s can be written by its group or by others and has no sticky bit, so they could replace what is in it: run chmod go-w %s (or chmod +t for a shared directory)", ErrUntrusted, path, path)
		}
		return nil
	}
	if isLeaf || othersWrite {
		return fmt.Errorf("%w: %s belongs to uid %d, not to you: baicommit writes only into directories of yours (someone may have created it before your first freeze); ask its owner or your site admin to remove it", ErrUntrusted, path, uid)
	}
	return nil
}

func openChild(dirfd int, name string, create bool, perm os.FileMode) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dirfd, name, flags, 0)
	if errors.Is(err, unix.ENOENT) && create {
		err = unix.Mkdirat(dirfd, name, uint32(perm.Perm()))
		made := err == nil
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, err
		}
		fd, err = unix.Openat(dirfd, name, flags, 0)
		if err == nil && made {
			if err := setMode(fd, perm); err != nil {
				unix.Close(fd)
				return -1, err
			}
		}
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return -1, fmt.Errorf("%w: it is a symbolic link or not a directory", ErrUnsafePath)
	}
	return fd, err
}

// setMode gives a directory just made exactly perm, which the umask may
// have narrowed, keeping the setgid bit it inherited from its parent.
func setMode(fd int, perm os.FileMode) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	return unix.Fchmod(fd, uint32(perm.Perm())|st.Mode&unix.S_ISGID)
}

// ErrUnsafePath reports a path that escapes the save root or that goes
// through a symbolic link.
var ErrUnsafePath = errors.New("unsafe path")

// Below returns dir relative to root ("" when they are equal). Both must be
// absolute and clean; dir must not leave root.
func Below(root, dir string) (string, error) {
	if !filepath.IsAbs(root) || !filepath.IsAbs(dir) || filepath.Clean(root) != root || filepath.Clean(dir) != dir {
		return "", fmt.Errorf("%w: %q and %q must be absolute and clean", ErrUnsafePath, root, dir)
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: %s is not below the save root %s", ErrUnsafePath, dir, root)
	}
	if rel == "." {
		return "", nil
	}
	return rel, nil
}

// ValidName reports whether name can be a file name in a save directory:
// one path component, no leading dot (those are ours for temporary files),
// printable ASCII without separators.
func ValidName(name string) bool {
	if name == "" || len(name) > 255 || name[0] == '.' {
		return false
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '.' || r == '_' || r == '-' || r == '+' || r == '@' || r == ':'
		if !ok {
			return false
		}
	}
	return true
}
