package asowner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/baicommit/baicommit/agent/messages"

	"golang.org/x/sys/unix"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/archives"
	"github.com/baicommit/baicommit/internal/registry"
	"github.com/baicommit/baicommit/internal/safefile"
)

// push checks the finished archive spec.Name against the digest and size
// the agent recorded (spec.Sidecar), pushes it to spec.Push.Ref with the
// credentials of the user the helper runs as (their auth files, found
// through the HOME the agent set), or the ones the request carried, and
// then records the push in the sidecar.
func push(ctx context.Context, spec messages.Spec, emit func(messages.Event)) error {
	if spec.Push == nil {
		return errors.New("push: no destination")
	}
	if !safefile.ValidName(spec.Name) || !safefile.ValidName(spec.SidecarName) {
		return fmt.Errorf("%w: bad archive name %q", safefile.ErrUnsafePath, spec.Name)
	}
	dir, err := safefile.OpenDir(spec.Root, spec.Dir, false)
	if err != nil {
		return err
	}
	defer dir.Close()
	fd, err := unix.Openat(int(dir.Fd()), spec.Name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", spec.Name, err)
	}
	f := os.NewFile(uintptr(fd), spec.Name)
	defer f.Close()
	// No prune or rm takes the archive while it is checked and pushed.
	archives.Share(f)
	// What is pushed is what was frozen: the digest the agent recorded
	// when the archive was written (not the sidecar's, which anyone who
	// can write there could change with the archive).
	if spec.Sidecar.SHA256 == "" {
		return errors.New("push: the agent gave no digest to check the archive against")
	}
	want := spec.Sidecar
	want.Archive = spec.Name
	if err := archives.Verify(ctx, f, &want); err != nil {
		return err
	}

	p := spec.Push
	opts := registry.Options{
		// The file this helper opened, not a path that could be swapped.
		Archive:  fmt.Sprintf("/proc/self/fd/%d", f.Fd()),
		Ref:      p.Ref,
		Creds:    p.Creds,
		AuthFile: p.AuthFile,
		Insecure: p.TLSVerify != nil && !*p.TLSVerify,
		Retries:  registry.DefaultRetries,
		Progress: func(sent, total int64) {
			emit(messages.Event{Event: messages.EventProgress, Read: sent, Size: total})
		},
	}
	res, err := registry.Push(ctx, opts)
	if err != nil {
		return err
	}
	rec := api.PushRecord{Ref: res.Ref, Digest: res.Digest, Pushed: time.Now().UTC()}
	if err := archives.RecordPushAt(dir, spec.SidecarName, rec); err != nil {
		emit(messages.Event{Event: messages.EventWarning, Message: "the image was pushed but the sidecar could not record it: " + err.Error()})
	}
	emit(messages.Event{Event: messages.EventDone, Digest: res.Digest, Message: res.Ref})
	return nil
}
