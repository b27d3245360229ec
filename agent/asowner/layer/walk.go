package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/idtools"
	"golang.org/x/sys/unix"
)

func unixTime(sec int64) time.Time { return time.Unix(sec, 0) }

// Source is where a layer's changes are read from.
type Source struct {
	// Root is the directory that holds the changed files: a native
	// overlay's upper directory, or the container's mounted root for a
	// change list.
	Root string
	// Lowers are the directories of the layers below (overlay's lower
	// diff directories, top first), or the parent layer's mounted root,
	// to tell what the base image has.
	Lowers []string
	// Changes, when set, is the driver's change list (relative paths and
	// whether each was deleted); nil means Root is an overlay upper
	// directory, walked whole.
	Changes []Change
	// IDMap maps owners on disk back to the container's view (nil: none).
	IDMap *idtools.IDMappings
	// Mounts are the container paths the runtime mounted over: their
	// empty placeholders are left out.
	Mounts []string
	// Exclude are the site's and the user's glob patterns of container
	// paths left out with everything below them.
	Exclude []string
}

// Change is one changed path of a change list.
type Change struct {
	Path    string // relative, no leading slash
	Deleted bool
}

// excluded reports whether the container path p (absolute) or one of its
// parents matches a pattern.
func excluded(patterns []string, p string) bool {
	for q := p; q != "/" && q != "."; q = path.Dir(q) {
		for _, pat := range patterns {
			if ok, _ := path.Match(pat, q); ok {
				return true
			}
		}
	}
	return false
}

// Build lists the layer of src's changes into scratch (an empty file of
// the freeze's own, on the save location).
func Build(src Source, scratch *os.File) (*List, error) {
	l := newList(scratch, src.IDMap)
	leave, err := placeholders(src)
	if err != nil {
		return nil, err
	}
	for p := range leave {
		l.LeftOut = append(l.LeftOut, "/"+p)
	}
	slices.Sort(l.LeftOut)
	b := &builder{l: l, src: src, leave: leave}
	if src.Changes == nil {
		err = b.walk("")
	} else {
		err = b.changes()
	}
	if err != nil {
		return nil, err
	}
	return l, nil
}

type builder struct {
	l     *List
	src   Source
	leave map[string]bool // relative paths of placeholders left out
}

// skip reports whether rel (relative) stays out, counting what the
// exclusion patterns remove.
func (b *builder) skip(rel string, fi os.FileInfo) bool {
	if b.leave[rel] {
		return true
	}
	if len(b.src.Exclude) == 0 || !excluded(b.src.Exclude, "/"+rel) {
		return false
	}
	b.l.Excluded.Entries++
	if fi.Mode().IsRegular() {
		b.l.Excluded.Bytes += fi.Size()
	}
	if fi.IsDir() && b.src.Changes == nil {
		// Count what is below too; the walk does not go there.
		_ = filepath.WalkDir(filepath.Join(b.src.Root, rel), func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == filepath.Join(b.src.Root, rel) {
				return nil
			}
			b.l.Excluded.Entries++
			if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
				b.l.Excluded.Bytes += info.Size()
			}
			return nil
		})
	}
	return true
}

// walk lists an overlay upper directory below rel, in lexical order, as
// containers/storage's overlay diff does, converting overlay's whiteouts
// (0/0 character devices) and opaque directories (an xattr) to the
// ".wh." files of image layers.
func (b *builder) walk(rel string) error {
	dir := filepath.Join(b.src.Root, rel)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read the container's changes: %w", err)
	}
	for _, e := range ents {
		r := path.Join(rel, e.Name())
		abs := filepath.Join(b.src.Root, r)
		fi, err := os.Lstat(abs)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the directory was read
		}
		if err != nil {
			return fmt.Errorf("read the container's changes: %w", err)
		}
		if b.skip(r, fi) {
			continue
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		switch {
		case fi.Mode()&os.ModeSocket != 0:
			continue // not in tar, as in containers/storage
		case fi.Mode()&os.ModeCharDevice != 0 && st != nil && st.Rdev == 0:
			if err := b.l.add(whiteout(r, int(st.Uid), int(st.Gid), st.Mtim.Sec), ""); err != nil {
				return err
			}
			continue
		}
		hdr, err := b.l.header(abs, r, fi)
		if err != nil {
			return err
		}
		src := ""
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			src = r
		}
		if err := b.l.add(hdr, src); err != nil {
			return err
		}
		if !fi.IsDir() {
			continue
		}
		if opaque(abs) && b.inBase(r) {
			// Everything the layers below had here is gone: say so with
			// the marker, as containers/storage does for a directory that
			// was there before.
			o := &tar.Header{Typeflag: tar.TypeReg, Name: r + "/" + archive.WhiteoutOpaqueDir, Mode: hdr.Mode & 0o777,
				Uid: hdr.Uid, Gid: hdr.Gid, ModTime: hdr.ModTime}
			if err := b.l.add(o, ""); err != nil {
				return err
			}
		}
		if err := b.walk(r); err != nil {
			return err
		}
	}
	return nil
}

// opaqueXattrs are where overlay marks a directory opaque: the kernel's
// own (trusted.*, or user.* for unprivileged mounts) and fuse-overlayfs's.
var opaqueXattrs = []string{"user.overlay.opaque", "trusted.overlay.opaque", "user.fuseoverlayfs.opaque"}

func opaque(abs string) bool {
	for _, x := range opaqueXattrs {
		if v, err := getXattr(abs, x); err == nil && string(v) == "y" {
			return true
		}
	}
	_, err := os.Lstat(filepath.Join(abs, archive.WhiteoutOpaqueDir))
	return err == nil
}

// inBase reports whether the layers below have rel: it exists in one of
// them as other than a whiteout, and no layer above that one deleted it.
func (b *builder) inBase(rel string) bool {
	for _, low := range b.src.Lowers {
		fi, err := os.Lstat(filepath.Join(low, rel))
		if err != nil {
			if b.src.Changes == nil && deletedIn(low, rel) {
				return false
			}
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode()&os.ModeCharDevice != 0 && st.Rdev == 0 {
			return false // a whiteout: deleted in that layer
		}
		return true
	}
	return false
}

// deletedIn reports whether an overlay layer dir deletes rel through a
// whiteout of rel or of a parent, or an opaque parent.
func deletedIn(low, rel string) bool {
	for p := rel; p != "." && p != ""; p = path.Dir(p) {
		fi, err := os.Lstat(filepath.Join(low, p))
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode()&os.ModeCharDevice != 0 && st.Rdev == 0 {
			return true
		}
		if p != rel && fi.IsDir() && opaque(filepath.Join(low, p)) {
			return true
		}
	}
	return false
}

// changes lists a change list: deleted paths as whiteouts, the others
// with their current metadata from Root.
func (b *builder) changes() error {
	cs := slices.Clone(b.src.Changes)
	slices.SortFunc(cs, func(x, y Change) int { return strings.Compare(x.Path, y.Path) })
	var skipped []string // directories excluded: what is below goes too
	for _, c := range cs {
		if slices.ContainsFunc(skipped, func(d string) bool { return strings.HasPrefix(c.Path, d+"/") }) {
			// Below an excluded directory: out too, and counted.
			b.l.Excluded.Entries++
			if fi, err := os.Lstat(filepath.Join(b.src.Root, c.Path)); err == nil && fi.Mode().IsRegular() && !c.Deleted {
				b.l.Excluded.Bytes += fi.Size()
			}
			continue
		}
		abs := filepath.Join(b.src.Root, c.Path)
		if c.Deleted {
			if len(b.src.Exclude) > 0 && excluded(b.src.Exclude, "/"+c.Path) {
				b.l.Excluded.Entries++
				continue
			}
			if err := b.l.add(whiteout(c.Path, 0, 0, time.Now().Unix()), ""); err != nil {
				return err
			}
			continue
		}
		fi, err := os.Lstat(abs)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read the container's changes: %w", err)
		}
		if b.skip(c.Path, fi) {
			if fi.IsDir() && !b.leave[c.Path] {
				skipped = append(skipped, c.Path)
			}
			continue
		}
		if fi.Mode()&os.ModeSocket != 0 {
			continue
		}
		hdr, err := b.l.header(abs, c.Path, fi)
		if err != nil {
			return err
		}
		src := ""
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			src = c.Path
		}
		if err := b.l.add(hdr, src); err != nil {
			return err
		}
	}
	return nil
}

// placeholders are the relative paths the runtime created only to mount
// something over: a mount destination that is, in the container's own
// layer, an empty regular file or an empty directory the base image does
// not have, and the directories made only to hold such placeholders.
func placeholders(src Source) (map[string]bool, error) {
	leave := map[string]bool{}
	b := &builder{src: src}
	for _, m := range src.Mounts {
		rel := strings.TrimPrefix(path.Clean("/"+m), "/")
		if rel == "" {
			continue
		}
		fi, err := os.Lstat(filepath.Join(src.Root, rel))
		if err != nil || !isEmpty(filepath.Join(src.Root, rel), fi, leave, rel) || b.inBase(rel) {
			continue
		}
		if src.Changes != nil && !changed(src.Changes, rel) {
			continue
		}
		leave[rel] = true
	}
	// Parents made for them: empty but for what is left out, and new.
	for {
		grew := false
		for rel := range leave {
			parent := path.Dir(rel)
			if parent == "." || leave[parent] {
				continue
			}
			fi, err := os.Lstat(filepath.Join(src.Root, parent))
			if err != nil || !fi.IsDir() || b.inBase(parent) || !isEmpty(filepath.Join(src.Root, parent), fi, leave, parent) {
				continue
			}
			if src.Changes != nil && !changed(src.Changes, parent) {
				continue
			}
			leave[parent] = true
			grew = true
		}
		if !grew {
			return leave, nil
		}
	}
}

func changed(cs []Change, rel string) bool {
	return slices.ContainsFunc(cs, func(c Change) bool { return c.Path == rel && !c.Deleted })
}

// isEmpty reports whether the file at abs is an empty placeholder: a
// regular file of no bytes, or a directory holding nothing but what is
// left out already.
func isEmpty(abs string, fi os.FileInfo, leave map[string]bool, rel string) bool {
	switch {
	case fi.Mode().IsRegular():
		return fi.Size() == 0
	case fi.IsDir():
		ents, err := os.ReadDir(abs)
		if err != nil {
			return false
		}
		for _, e := range ents {
			if !leave[path.Join(rel, e.Name())] {
				return false
			}
		}
		return true
	}
	return false
}

// OpenBeneath returns an open function for Stream that opens regular
// files below root only: no symbolic link is followed anywhere on the
// way (RESOLVE_NO_SYMLINKS), the path cannot leave root, and a file
// swapped for a FIFO or device after it was listed is refused rather than
// waited on.
func OpenBeneath(root string) (func(rel string) (*os.File, error), func() error, error) {
	rfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", root, err)
	}
	open := func(rel string) (*os.File, error) {
		how := &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
		fd, err := unix.Openat2(rfd, rel, how)
		if err != nil {
			return nil, err
		}
		f := os.NewFile(uintptr(fd), rel)
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			f.Close()
			if err == nil {
				err = fmt.Errorf("not a regular file any more (%s)", fi.Mode().Type())
			}
			return nil, err
		}
		return f, nil
	}
	return open, func() error { return unix.Close(rfd) }, nil
}
