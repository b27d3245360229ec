package safefile

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"sync/atomic"

	"github.com/klauspost/pgzip"
	"golang.org/x/sys/unix"
)

// File is an archive being written under a temporary name.
type File struct {
	dir   *os.File
	temp  string
	f     *os.File
	hash  hash.Hash
	count countingWriter
	gz    *pgzip.Writer
	done  bool
}

// Create makes the temporary file temp in dir (from OpenDir), refusing to
// reuse or follow anything already there, and prepares a parallel gzip
// stream at the given level whose compressed bytes are hashed as they are
// written.
func Create(dir *os.File, temp string, mode os.FileMode, level int) (*File, error) {
	if !ValidTemp(temp) {
		return nil, fmt.Errorf("%w: bad temporary name %q", ErrUnsafePath, temp)
	}
	f, err := CreateTemp(dir, temp, mode)
	if err != nil {
		return nil, err
	}
	a := &File{dir: dir, temp: temp, f: f, hash: sha256.New()}
	a.count.w = io.MultiWriter(f, a.hash)
	gz, err := pgzip.NewWriterLevel(&a.count, level)
	if err != nil {
		a.Abort()
		return nil, err
	}
	// 1 MiB blocks, two per core in flight: enough to keep every core busy
	// while the memory held stays a few MiB whatever the image size.
	if err := gz.SetConcurrency(1<<20, 2*runtime.GOMAXPROCS(0)); err != nil {
		a.Abort()
		return nil, err
	}
	a.gz = gz
	return a, nil
}

// Write compresses p into the archive.
func (a *File) Write(p []byte) (int, error) { return a.gz.Write(p) }

// Written is the number of compressed bytes that reached the file so far.
func (a *File) Written() int64 { return a.count.n.Load() }

// Result is what a committed archive is.
type Result struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Commit finishes the gzip stream, syncs the file, moves it to name
// without replacing anything that exists there, and syncs the directory.
// After an error the temporary file is gone.
func (a *File) Commit(name string) (Result, error) {
	if !ValidName(name) {
		a.Abort()
		return Result{}, fmt.Errorf("%w: bad archive name %q", ErrUnsafePath, name)
	}
	err := a.gz.Close()
	if err == nil {
		err = publish(a.dir, a.f, name)
	}
	if err != nil {
		a.Abort()
		return Result{}, fmt.Errorf("finish %s: %w", name, err)
	}
	a.done = true
	return Result{Name: name, SHA256: hex.EncodeToString(a.hash.Sum(nil)), Size: a.Written()}, nil
}

// Abort removes the temporary file. It is safe to call more than once and
// after Commit (when it does nothing).
func (a *File) Abort() {
	if a.done {
		return
	}
	a.done = true
	if a.gz != nil {
		a.gz.Close()
	}
	a.f.Close()
	unix.Unlinkat(int(a.dir.Fd()), a.temp, 0)
}

// WriteSidecar writes v as indented JSON to name in dir, through a
// temporary file so that a reader never sees half of it.
func WriteSidecar(dir *os.File, name string, mode os.FileMode, v any) error {
	return writeJSON(dir, name, mode, v, false)
}

// ReplaceSidecar writes v over the sidecar name in dir atomically: through
// a temporary file of its own, renamed over the old one, so that a reader
// sees either the old or the new sidecar, never a mix, and a crash leaves
// the old one.
func ReplaceSidecar(dir *os.File, name string, mode os.FileMode, v any) error {
	return writeJSON(dir, name, mode, v, true)
}

func writeJSON(dir *os.File, name string, mode os.FileMode, v any, replace bool) error {
	if !ValidName(name) {
		return fmt.Errorf("%w: bad sidecar name %q", ErrUnsafePath, name)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	temp := "." + name + ".partial"
	if replace {
		// Several updates may race; each has its own temporary file.
		var rnd [6]byte
		_, _ = rand.Read(rnd[:])
		temp = "." + name + "." + hex.EncodeToString(rnd[:]) + ".partial"
	}
	f, err := CreateTemp(dir, temp, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	switch {
	case err == nil && replace:
		err = publishReplace(dir, f, name)
	case err == nil:
		err = publish(dir, f, name)
	default:
		f.Close()
	}
	if err != nil {
		unix.Unlinkat(int(dir.Fd()), temp, 0)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// CreateTemp creates the temporary file temp in dir with exactly mode,
// refusing to reuse or follow anything already there.
func CreateTemp(dir *os.File, temp string, mode os.FileMode) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), temp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(mode.Perm()))
	if err != nil {
		return nil, fmt.Errorf("create %s in %s: %w", temp, dir.Name(), err)
	}
	f := os.NewFile(uintptr(fd), temp)
	// The umask may have narrowed the mode; the site's archive_mode wins.
	if err := f.Chmod(mode.Perm()); err != nil {
		f.Close()
		unix.Unlinkat(int(dir.Fd()), temp, 0)
		return nil, fmt.Errorf("chmod %s: %w", temp, err)
	}
	return f, nil
}

// publish syncs and closes the temporary file f, moves it to name without
// replacing anything there, and syncs the directory. The caller removes
// the temporary file if it fails.
func publish(dir, f *os.File, name string) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = RenameNoReplace(dir, f.Name(), name)
		if errors.Is(err, unix.EEXIST) {
			err = fmt.Errorf("%s already exists; nothing was replaced: %w", name, err)
		}
	}
	if err == nil {
		err = dir.Sync()
	}
	return err
}

// publishReplace is publish for a file that replaces name.
func publishReplace(dir, f *os.File, name string) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(int(dir.Fd()), f.Name(), int(dir.Fd()), name)
	}
	if err == nil {
		err = dir.Sync()
	}
	return err
}

// Remove deletes name from dir if it is there (not following links).
func Remove(dir *os.File, name string) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: bad name %q", ErrUnsafePath, name)
	}
	err := unix.Unlinkat(int(dir.Fd()), name, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// RenameNoReplace moves from to to within dir, failing with an error that
// is unix.EEXIST if to exists (even as a dangling symbolic link).
// Filesystems without renameat2 flags (NFS, older Lustre) get link+unlink,
// which has the same no-replace guarantee for files; a directory is
// renamed plainly there, which replaces only an empty one.
func RenameNoReplace(dir *os.File, from, to string) error {
	d := int(dir.Fd())
	err := unix.Renameat2(d, from, d, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		if err = unix.Linkat(d, from, d, to, 0); err == nil {
			err = unix.Unlinkat(d, from, 0)
		} else if errors.Is(err, unix.EPERM) {
			// link(2) of a directory.
			err = unix.Renameat(d, from, d, to)
			if errors.Is(err, unix.ENOTEMPTY) {
				err = unix.EEXIST
			}
		}
	}
	return err
}

// ValidTemp reports whether name is one of our temporary names: a hidden
// file ending in ".partial", one component.
func ValidTemp(name string) bool {
	return len(name) > len(".partial")+1 && name[0] == '.' && ValidName(name[1:]) &&
		name[len(name)-len(".partial"):] == ".partial"
}

type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// Scratch creates the hidden file name in dir for scratch data of its
// own (a freeze's list of entries) and unlinks it at once: nothing of it
// is ever visible, and it is gone when closed, even after a crash. It
// lives on the save location's filesystem, not on the node's disk.
func Scratch(dir *os.File, name string) (*os.File, error) {
	if !ValidTemp(name) {
		return nil, fmt.Errorf("%w: bad scratch name %q", ErrUnsafePath, name)
	}
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create %s in %s: %w", name, dir.Name(), err)
	}
	f := os.NewFile(uintptr(fd), name)
	if err := unix.Unlinkat(int(dir.Fd()), name, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("unlink %s: %w", name, err)
	}
	return f, nil
}
