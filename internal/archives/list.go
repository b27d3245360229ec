package archives

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/baicommit/baicommit/api"
)

// Entry is one archive found through its sidecar. It is the API's type,
// so that the agent's listing and the CLI's print the same JSON.
type Entry = api.ArchiveEntry

// MaxDepth is how many directory levels below the given one List looks
// into (save paths such as ROOT/{user}/{date} have one or two).
const MaxDepth = 4

// Anyone is List's owner for a listing of every user's archives (root's).
const Anyone = -1

// List finds the sidecars below dir (at most MaxDepth levels, never
// following symbolic links), newest first. With owner >= 0 it keeps only
// that user's archives: the sidecar says so, and the sidecar file and the
// archive belong to that uid. What a file says can be forged by whoever
// wrote it; who owns it cannot, so a sidecar another user planted among
// owner's, claiming to be theirs, is skipped (with a warning: someone
// tried). A sidecar that cannot be read or parsed, or whose archive is
// gone, is skipped and reported in the warnings. Only sidecars are read,
// never the archives.
func List(ctx context.Context, dir string, owner int) ([]Entry, []string, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("archive directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, nil, fmt.Errorf("archive directory %s is not a directory", dir)
	}
	entries := []Entry{}
	var warnings []string
	if uid := fileUID(fi); owner >= 0 && uid != owner {
		warnings = append(warnings, fmt.Sprintf("%s belongs to uid %d, not to you: only files of yours in it are listed", dir, uid))
	}
	base := strings.Count(filepath.Clean(dir), string(filepath.Separator))
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			if path != dir && errors.Is(err, fs.ErrPermission) {
				// Someone else's directory: not ours to list.
				return fs.SkipDir
			}
			warnings = append(warnings, err.Error())
			return nil
		}
		if d.IsDir() {
			if path != dir && (strings.HasPrefix(d.Name(), ".") ||
				strings.Count(path, string(filepath.Separator))-base > MaxDepth || isLayout(path)) {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(d.Name(), api.SidecarSuffix) || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		sc, scUID, err := readOwnedSidecar(path)
		if err != nil {
			if !errors.Is(err, fs.ErrPermission) {
				warnings = append(warnings, "skipped "+err.Error())
			}
			return nil
		}
		if owner >= 0 && sc.UID != owner {
			return nil // someone else's archive
		}
		e := Entry{Path: filepath.Join(filepath.Dir(path), sc.Archive), SidecarFile: path, Sidecar: *sc}
		if owner >= 0 && scUID != owner {
			warnings = append(warnings, fmt.Sprintf("skipped %s: it claims to describe an archive of yours but belongs to uid %d", path, scUID))
			return nil
		}
		afi, err := os.Lstat(e.Path)
		switch {
		case err != nil:
			warnings = append(warnings, fmt.Sprintf("skipped %s: its archive %s is gone", path, e.Path))
			return nil
		case !afi.Mode().IsRegular():
			warnings = append(warnings, fmt.Sprintf("skipped %s: its archive %s is not a regular file", path, e.Path))
			return nil
		case owner >= 0 && fileUID(afi) != owner:
			warnings = append(warnings, fmt.Sprintf("skipped %s: its archive %s belongs to uid %d, not to you", path, e.Path, fileUID(afi)))
			return nil
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, warnings, err
	}
	slices.SortStableFunc(entries, func(a, b Entry) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	return entries, warnings, nil
}

// readOwnedSidecar reads the sidecar at path, not following a link there
// and not blocking on anything but a regular file, and says who owns the
// file it read.
func readOwnedSidecar(path string) (*api.Sidecar, int, error) {
	f, fi, err := openRegular(path)
	if err != nil {
		return nil, -1, err
	}
	defer f.Close()
	sc, err := decodeSidecar(f, path)
	return sc, fileUID(fi), err
}

// openRegular opens path for reading if it is a regular file, without
// following a symbolic link at its last component (nor waiting on a FIFO
// someone put there).
func openRegular(path string) (*os.File, os.FileInfo, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s is not a regular file", path)
	}
	// Reads of a regular file never block; clear the flag for clarity.
	if err := unix.SetNonblock(fd, false); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// fileUID is the owner of the file fi describes.
func fileUID(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// isLayout reports whether dir is an OCI image layout or a layer store
// (both hold an oci-layout file): their .json files are not sidecars, and
// a store's images are listed from the store itself.
func isLayout(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, "oci-layout"))
	return err == nil
}
