// Package safefile writes frozen images onto the shared filesystem safely.
//
// It runs inside a helper process that already has the identity of the
// archive's owner, so ordinary permission checks (and NFS root_squash)
// apply. On top of that it never follows a symbolic link below the
// configured save root and never makes a partial file visible under a final
// name: data goes to a temporary name unique to node and task, is synced,
// and is then moved to the final name without replacing anything there.
package safefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// DirMode is the mode of directories created below the save root.
const DirMode = 0o750

// OpenDir opens dir, which must lie below root, for use as the directory of
// an archive. root is trusted (it comes from the agent's configuration) and
// may involve symbolic links; every component of dir below root is opened
// with O_NOFOLLOW, so a link a user planted there is refused rather than
// followed. Missing components are created with DirMode when create is set.
func OpenDir(root, dir string, create bool) (*os.File, error) {
	rel, err := Below(root, dir)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open save root %s: %w", root, err)
	}
	cur := root
	if rel != "" {
		for _, name := range strings.Split(rel, "/") {
			next, err := openChild(fd, name, create)
			unix.Close(fd)
			cur = filepath.Join(cur, name)
			if err != nil {
				return nil, fmt.Errorf("open %s: %w", cur, err)
			}
			fd = next
		}
	}
	return os.NewFile(uintptr(fd), dir), nil
}

func openChild(dirfd int, name string, create bool) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dirfd, name, flags, 0)
	if errors.Is(err, unix.ENOENT) && create {
		err = unix.Mkdirat(dirfd, name, DirMode)
		made := err == nil
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, err
		}
		fd, err = unix.Openat(dirfd, name, flags, 0)
		if err == nil && made {
			// The umask may have narrowed the mode. A setgid bit the
			// directory inherited from a project directory stays: it
			// keeps what is made below in the project's group, and so
			// counted against the group's quota.
			var st unix.Stat_t
			err := unix.Fstat(fd, &st)
			if err == nil {
				err = unix.Fchmod(fd, DirMode|(st.Mode&unix.S_ISGID))
			}
			if err != nil {
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
