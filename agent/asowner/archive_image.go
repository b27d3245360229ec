package asowner

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"go.podman.io/image/v5/copy"
	dockerarchive "go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/internal/ociarchive"
	"github.com/baicommit/baicommit/internal/safefile"
)

// progressEvery is how often a running export reports its byte counts.
const progressEvery = 250 * time.Millisecond

// archiveImage writes the committed image spec.ImageID from the owner's
// containers-storage, as containers/image exports it, rewritten on the fly
// into the layout a direct freeze writes (rewriteDockerArchive), through a
// parallel gzip writer that hashes what it writes; then it moves it to its
// final name and writes its sidecar.
func archiveImage(ctx context.Context, spec messages.Spec, emit func(messages.Event)) error {
	if !safefile.ValidName(spec.Name) || !safefile.ValidName(spec.SidecarName) {
		return fmt.Errorf("%w: bad archive name %q", safefile.ErrUnsafePath, spec.Name)
	}
	named, err := reference.ParseNormalizedNamed(spec.RepoTag)
	if err != nil {
		return fmt.Errorf("image name %q: %w", spec.RepoTag, err)
	}
	tagged, ok := reference.TagNameOnly(named).(reference.NamedTagged)
	if !ok {
		return fmt.Errorf("image name %q has no tag", spec.RepoTag)
	}

	store, err := openStore(spec.Store)
	if err != nil {
		return err
	}
	defer store.Shutdown(false)
	srcRef, err := istorage.Transport.ParseStoreReference(store, "@"+spec.ImageID)
	if err != nil {
		return fmt.Errorf("find image %s: %w", spec.ImageID, err)
	}
	var removed []string
	var src types.ImageReference = srcRef
	if len(spec.ScrubEnv) > 0 {
		src = scrubbedRef{ImageReference: srcRef, patterns: spec.ScrubEnv, removed: &removed}
	}

	mode := os.FileMode(spec.Mode)
	if mode == 0 {
		mode = 0o600
	}
	dir, err := safefile.MakeDir(spec.Root, spec.Dir, safefile.DirModeFor(mode))
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := checkLimits(spec.Quota, spec.SizeHint, destination{dir, spec.Dir, spec.SizeHint}); err != nil {
		return err
	}
	out, err := safefile.Create(dir, spec.Temp, mode, spec.Level)
	if err != nil {
		return err
	}
	defer out.Abort()

	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	destRef, err := dockerarchive.NewReference(fmt.Sprintf("/proc/self/fd/%d", pw.Fd()), tagged)
	if err != nil {
		pw.Close()
		return err
	}
	policy, err := signature.NewPolicyContext(&signature.Policy{
		Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		pw.Close()
		return err
	}
	defer policy.Destroy()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	copyErr := make(chan error, 1)
	go func() {
		_, err := copy.Image(ctx, policy, destRef, src, &copy.Options{})
		// Our end of the pipe is the last writer; closing it ends the stream.
		pw.Close()
		copyErr <- err
	}()

	var read atomic.Int64
	stopProgress := reportProgress(emit, &read, 0, out.Written)
	defer stopProgress()
	aw := ociarchive.NewWriter(out, time.Now().UTC())
	configDigest, werr := rewriteDockerArchive(countingReader{pr, &read}, aw, tagged.String())
	if werr == nil {
		werr = aw.Close()
	}
	if werr != nil {
		// Unblock the copy so that it fails instead of waiting on the pipe.
		cancel()
		pr.Close()
	}
	cerr := <-copyErr
	stopProgress()
	if werr != nil {
		return fmt.Errorf("write archive: %w", werr)
	}
	if cerr != nil {
		return fmt.Errorf("read image %s: %w", spec.ImageID, cerr)
	}
	if len(removed) > 0 {
		emit(messages.Event{Event: messages.EventWarning, Message: fmt.Sprintf("removed %d environment variable(s) that look like secrets from the image: %v", len(removed), removed)})
	}
	res, err := out.Commit(spec.Name)
	if err != nil {
		return err
	}
	sc := spec.Sidecar
	sc.Archive, sc.SHA256, sc.Size, sc.ImageID = res.Name, res.SHA256, res.Size, configDigest.String()
	if err := safefile.WriteSidecar(dir, spec.SidecarName, mode, sc); err != nil {
		// The archive is complete and useful without its sidecar; say so.
		emit(messages.Event{Event: messages.EventWarning, Message: "the archive is complete but its sidecar could not be written: " + err.Error()})
	}
	emit(messages.Event{Event: messages.EventDone, Read: read.Load(), Written: res.Size, SHA256: res.SHA256, Size: res.Size, ImageID: configDigest.String()})
	return nil
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
