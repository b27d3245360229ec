package archives

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/safefile"
)

// RecordPush adds rec to the pushes of the sidecar at path, replacing the
// sidecar atomically (temporary file, rename).
func RecordPush(path string, rec api.PushRecord) error {
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return RecordPushAt(dir, filepath.Base(path), rec)
}

// RecordPushAt is RecordPush for the sidecar name in the open directory
// dir; the agent's helper uses it on a directory it opened without
// following links.
func RecordPushAt(dir *os.File, name string, rec api.PushRecord) error {
	return updateSidecarAt(dir, name, "record the push", func(sc *api.Sidecar) { sc.Pushes = append(sc.Pushes, rec) })
}

// RecordUse records in the sidecar at path that its archive was restored
// at t (retention can keep archives used lately).
func RecordUse(path string, t time.Time) error {
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return updateSidecarAt(dir, filepath.Base(path), "record the restore", func(sc *api.Sidecar) { sc.LastUsed = t.UTC() })
}

// updateSidecarAt rewrites the sidecar name in dir with change applied,
// atomically (what says what is done, for errors).
func updateSidecarAt(dir *os.File, name, what string, change func(*api.Sidecar)) error {
	// Two pushes of one archive ending together would each rewrite the
	// sidecar from what they read, and one record would be lost: the
	// directory's lock serializes them. Where the filesystem cannot lock a
	// directory (NFS maps flock to write locks, which need a file opened
	// for writing), go on without: the sidecar is still never torn.
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX); err == nil {
		defer unix.Flock(int(dir.Fd()), unix.LOCK_UN)
	}
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open sidecar %s: %w", filepath.Join(dir.Name(), name), err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir.Name(), name))
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("sidecar %s is not a regular file", f.Name())
	}
	sc, err := decodeSidecar(f, f.Name())
	if err != nil {
		return err
	}
	change(sc)
	if err := safefile.ReplaceSidecar(dir, name, fi.Mode().Perm(), sc); err != nil {
		return fmt.Errorf("%s in %s: %w", what, f.Name(), err)
	}
	return nil
}
