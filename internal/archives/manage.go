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

// In use: whoever reads an archive to restore or push it holds a shared
// lock on it (flock, which NFSv4 and Lustre carry across nodes), and
// Remove refuses an archive it cannot lock exclusively at once. So
// retention and rm never pull an archive out from under a restore or a
// push, on any node.

// ErrInUse marks an archive a restore or a push is reading.
var ErrInUse = errors.New("the archive is being read (a restore or a push is using it)")

// Share takes the shared lock of an archive being read through f; it is
// held until f is closed. Where the filesystem cannot lock, reading goes
// on unprotected.
func Share(f *os.File) { _ = unix.Flock(int(f.Fd()), unix.LOCK_SH) }

// Sizes is what the archive of e and its sidecar take, in bytes, as du
// counts them (apparent sizes).
func Sizes(e *Entry) int64 {
	var n int64
	for _, p := range []string{e.Path, e.SidecarFile} {
		if fi, err := os.Lstat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// Usage sums the archives of uid below dir (a directory that does not
// exist yet is no usage), by source container.
func Usage(ctx context.Context, dir string, uid int) (*api.Usage, error) {
	out := &api.Usage{Dir: dir, ByContainer: []api.ContainerUsage{}}
	entries, warnings, err := List(ctx, dir, uid)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	out.Warnings = warnings
	by := map[string]*api.ContainerUsage{}
	for i := range entries {
		e := &entries[i]
		n := Sizes(e)
		out.Archives++
		out.Bytes += n
		c := by[e.SourceContainer]
		if c == nil {
			c = &api.ContainerUsage{Container: e.SourceContainer}
			by[e.SourceContainer] = c
		}
		c.Archives++
		c.Bytes += n
		if e.Created.After(c.Newest) {
			c.Newest = e.Created
		}
	}
	for _, c := range by {
		out.ByContainer = append(out.ByContainer, *c)
	}
	slices.SortFunc(out.ByContainer, func(a, b api.ContainerUsage) int { return strings.Compare(a.Container, b.Container) })
	return out, nil
}

// GroupScope is the project directory of group gid that dest lies in: the
// outermost directory from root (itself included) on the way to dest that
// belongs to gid; "" if there is none. The outermost, so that every
// member's subdirectory of a project counts against the one quota.
func GroupScope(root, dest string, gid int) string {
	rel, err := filepath.Rel(root, dest)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return ""
	}
	cur := root
	for _, c := range append([]string{"."}, strings.Split(rel, string(filepath.Separator))...) {
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		if err != nil || !fi.IsDir() {
			return ""
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Gid) == gid {
			return cur
		}
	}
	return ""
}

// GroupUsage sums the archives and sidecars of group gid below dir,
// whoever made them (the project's members), as far as the caller can see
// the directories: it needs no read access to the files themselves.
func GroupUsage(ctx context.Context, dir string, gid int) (archives int, bytes int64, err error) {
	base := strings.Count(filepath.Clean(dir), string(filepath.Separator))
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			if path != dir {
				return fs.SkipDir
			}
			return err
		}
		if d.IsDir() {
			if path != dir && (strings.HasPrefix(d.Name(), ".") || strings.Count(path, string(filepath.Separator))-base > MaxDepth) {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		archive := strings.HasSuffix(d.Name(), api.ArchiveSuffix)
		if !archive && !strings.HasSuffix(d.Name(), api.SidecarSuffix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Gid) == gid {
			bytes += fi.Size()
			if archive {
				archives++
			}
		}
		return nil
	})
	return archives, bytes, err
}

// Remove removes the archive of e and its sidecar: only a regular file the
// caller owns, never through a symbolic link, and not while a restore or a
// push reads it (ErrInUse).
func Remove(e *Entry, uid int) error {
	f, fi, err := openRegular(e.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	if owner := fileUID(fi); owner != uid {
		return fmt.Errorf("%s is not yours: it belongs to uid %d", e.Path, owner)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("%s: %w", e.Path, ErrInUse)
	}
	// The archive first: a sidecar left alone by a crash is skipped by
	// list with a warning, an archive without its sidecar could not be.
	if err := os.Remove(e.Path); err != nil {
		return err
	}
	if err := os.Remove(e.SidecarFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
