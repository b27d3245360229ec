package layerstore

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/baicommit/baicommit/internal/safefile"
)

// tempSuffix ends every temporary name in a store; temporary names also
// start with a dot, so that no reader ever takes one for a blob, an index
// entry, a hold or an image.
const tempSuffix = ".partial"

func randomToken() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// isTemp reports whether name is one of the store's temporary names.
func isTemp(name string) bool { return strings.HasPrefix(name, ".") }

// writeFile writes data to name in dir through the temporary file temp:
// synced, then renamed without replacing anything (replace: over what is
// there). A name that exists already is no error when replace is unset:
// in a content-addressed store it holds the same bytes.
func writeFile(dir *os.File, name, temp string, mode os.FileMode, data []byte, replace bool) error {
	f, err := safefile.CreateTemp(dir, temp, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if replace {
			err = unix.Renameat(int(dir.Fd()), temp, int(dir.Fd()), name)
		} else {
			err = safefile.RenameNoReplace(dir, temp, name)
		}
	}
	if err != nil {
		unix.Unlinkat(int(dir.Fd()), temp, 0)
		if errors.Is(err, unix.EEXIST) {
			return nil
		}
		return fmt.Errorf("write %s in %s: %w", name, dir.Name(), err)
	}
	return nil
}

// readFileAt reads at most limit bytes of the regular file name in dir,
// not following a link.
func readFileAt(dir *os.File, name string, limit int64) ([]byte, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	b := make([]byte, fi.Size())
	n, err := f.ReadAt(b, 0)
	if err != nil && n != len(b) {
		return nil, err
	}
	return b[:n], nil
}

// statAt lstat's name in dir.
func statAt(dir *os.File, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

// openDirAt opens the directory name in dir, not following a link.
func openDirAt(dir *os.File, name string) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), dir.Name()+"/"+name), nil
}

// names lists dir (from its start).
func names(dir *os.File) ([]string, error) {
	d, err := openDirAt(dir, ".")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// removeAllAt removes name in dir and, when it is a directory, what it
// holds (one level: image layouts hold files and a link only).
func removeAllAt(dir *os.File, name string) error {
	err := unix.Unlinkat(int(dir.Fd()), name, 0)
	if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EPERM) {
		err = removeDirAt(dir, name)
	}
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// removeDirAt removes the directory name in dir and the files in it.
func removeDirAt(dir *os.File, name string) error {
	sub, err := openDirAt(dir, name)
	if err != nil {
		return err
	}
	ns, err := names(sub)
	for _, n := range ns {
		if e := unix.Unlinkat(int(sub.Fd()), n, 0); e != nil && !errors.Is(e, unix.ENOENT) && err == nil {
			err = e
		}
	}
	sub.Close()
	if err != nil {
		return err
	}
	return unix.Unlinkat(int(dir.Fd()), name, unix.AT_REMOVEDIR)
}
