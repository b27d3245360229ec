package asowner

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/vbatts/tar-split/tar/asm"
	tsstorage "github.com/vbatts/tar-split/tar/storage"
	"go.podman.io/image/v5/docker/reference"
	drivers "go.podman.io/storage/drivers"

	"github.com/baicommit/baicommit/agent/asowner/layer"
	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/safefile"
	"github.com/baicommit/baicommit/policy"
)

// freeze writes the archive of container spec.ContainerID straight from
// the owner's containers-storage, in one pass: the image's layers as their
// tar-split reproduces them (each checked against its recorded digest),
// then the container's changes as a new layer, then the config and the
// manifests. The total is known before the first byte is written, so
// progress counts toward it from the start. Nothing is staged on the
// node's disk: the list of the new layer's entries goes to a scratch file
// beside the archive, on the save location.
func freeze(ctx context.Context, spec messages.Spec, emit func(messages.Event)) (err error) {
	if !safefile.ValidName(spec.Name) || !safefile.ValidName(spec.SidecarName) {
		return fmt.Errorf("%w: bad archive name %q", safefile.ErrUnsafePath, spec.Name)
	}
	if err := policy.ValidExclude("exclude", spec.Exclude); err != nil {
		return err
	}
	if err := policy.ValidExclude("--exclude", spec.UserExclude); err != nil {
		return err
	}
	mine, err := userExcludes()
	if err != nil {
		return err
	}
	userPatterns := append(slices.Clone(spec.UserExclude), mine...)
	named, err := reference.ParseNormalizedNamed(spec.RepoTag)
	if err != nil {
		return fmt.Errorf("image name %q: %w", spec.RepoTag, err)
	}
	ref := reference.TagNameOnly(named).String()

	store, err := openStore(spec.Store)
	if err != nil {
		return err
	}
	defer store.Shutdown(false)
	f, err := locate(ctx, store, spec)
	if err != nil {
		return err
	}
	defer f.release()

	mode := os.FileMode(spec.Mode)
	if mode == 0 {
		mode = 0o600
	}
	dir, err := safefile.MakeDir(spec.Root, spec.Dir, safefile.DirModeFor(mode))
	if err != nil {
		return err
	}
	defer dir.Close()
	scratch, err := safefile.Scratch(dir, strings.TrimSuffix(spec.Temp, ".partial")+".list.partial")
	if err != nil {
		return err
	}
	f.src.Exclude = append(slices.Clone(spec.Exclude), userPatterns...)
	list, err := layer.Build(f.src, scratch)
	if err != nil {
		scratch.Close()
		return err
	}
	defer list.Close()

	created := time.Now().UTC()
	aw := &archiveWriter{mtime: created}
	// The docs made with a stand-in for the new layer's digest have the
	// lengths of the real ones.
	standIn := digest.FromString("")
	newLayerPath := spec.Temp[1:len(spec.Temp)-len(".partial")] + "/layer.tar"
	layers := make([]imgspecv1.Descriptor, 0, len(f.base)+1)
	for _, b := range f.base {
		layers = append(layers, imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageLayer, Digest: digest.Digest(b.diffID), Size: b.size})
	}
	cfg, _ := freezeConfig(f.config, spec.Container, spec, standIn, created)
	provisional, err := makeDocs(cfg, append(layers, imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageLayer, Digest: standIn, Size: list.Size}), newLayerPath, ref)
	if err != nil {
		return err
	}
	total, err := aw.archiveSize(f.base, newLayerPath, list.Size, provisional)
	if err != nil {
		return err
	}
	if err := checkLimits(spec.Quota, dir, spec.Dir, total, list.Size); err != nil {
		return err
	}

	out, err := safefile.Create(dir, spec.Temp, mode, spec.Level)
	if err != nil {
		return err
	}
	defer out.Abort()
	var read atomic.Int64
	raw := &counter{w: out, n: &read}
	aw.tw = tar.NewWriter(raw)
	stopProgress := reportProgress(emit, &read, total, out)
	defer stopProgress()
	emit(messages.Event{Event: messages.EventProgress, Total: total})

	warn := func(format string, args ...any) {
		emit(messages.Event{Event: messages.EventWarning, Message: fmt.Sprintf(format, args...)})
	}
	if err := aw.bytes(ociLayoutFile, layout()); err != nil {
		return err
	}
	for i, b := range f.base {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := streamBase(aw, f.driver, b); err != nil {
			return fmt.Errorf("layer %d of the image (%s): %w", i+1, short(b.id), err)
		}
	}
	open, closeRoot, err := layer.OpenBeneath(f.src.Root)
	if err != nil {
		return err
	}
	defer closeRoot()
	h := sha256.New()
	err = aw.file(newLayerPath, list.Size, func(w io.Writer) error {
		_, err := list.Stream(ctxWriter{ctx, io.MultiWriter(w, h)}, open, warn)
		return err
	})
	if err != nil {
		return fmt.Errorf("the container's changes: %w", err)
	}
	newDiffID := digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
	cfg, removed := freezeConfig(f.config, spec.Container, spec, newDiffID, created)
	docs, err := makeDocs(cfg, append(layers, imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageLayer, Digest: newDiffID, Size: list.Size}), newLayerPath, ref)
	if err != nil {
		return err
	}
	if len(docs.config) != len(provisional.config) || len(docs.manifest) != len(provisional.manifest) ||
		len(docs.index) != len(provisional.index) || len(docs.dockerManifest) != len(provisional.dockerManifest) {
		return errors.New("internal error: the image's documents changed length")
	}
	for _, e := range []struct {
		name string
		b    []byte
	}{
		{blobPath(docs.configDigest), docs.config},
		{blobPath(docs.manifestDigest), docs.manifest},
		{ociIndexFile, docs.index},
		{dockerManifest, docs.dockerManifest},
	} {
		if e.name == blobPath(docs.configDigest) {
			if err := aw.link(blobPath(newDiffID), newLayerPath); err != nil {
				return err
			}
		}
		if err := aw.bytes(e.name, e.b); err != nil {
			return err
		}
	}
	if err := aw.tw.Close(); err != nil {
		return err
	}
	// A container removed meanwhile took its files with it: what was read
	// of them is not a freeze of anything.
	if _, err := store.Container(spec.ContainerID); err != nil {
		return fmt.Errorf("container %s was removed while it was being frozen; nothing was written", short(spec.ContainerID))
	}
	stopProgress()
	if read.Load() != total {
		return fmt.Errorf("internal error: wrote %d bytes, planned %d", read.Load(), total)
	}
	if len(removed) > 0 {
		warn("removed %d environment variable(s) that look like secrets from the image: %v", len(removed), removed)
	}

	res, err := out.Commit(spec.Name)
	if err != nil {
		return err
	}
	ex := &api.Exclusions{Placeholders: list.LeftOut, Patterns: spec.Exclude, UserPatterns: userPatterns,
		Entries: list.Excluded.Entries, Bytes: list.Excluded.Bytes}
	sc := spec.Sidecar
	sc.Archive, sc.SHA256, sc.Size = res.Name, res.SHA256, res.Size
	sc.ImageID, sc.Method, sc.Exclusions = docs.configDigest.String(), api.MethodDirect, ex
	if err := safefile.WriteSidecar(dir, spec.SidecarName, mode, sc); err != nil {
		warn("the archive is complete but its sidecar could not be written: %v", err)
	}
	emit(messages.Event{Event: messages.EventDone, Read: total, Total: total, Written: res.Size, SHA256: res.SHA256, Size: res.Size,
		ImageID: docs.configDigest.String(), Exclusions: ex})
	return nil
}

// streamBase writes one base layer as its tar-split reassembles it from
// the layer's files, and checks it against the digest the store recorded
// for it: a layer whose files changed on disk is refused, naming it.
func streamBase(aw *archiveWriter, driver drivers.Driver, b baseLayer) error {
	want, err := digest.Parse(b.diffID)
	if err != nil {
		return err
	}
	getter, ok := driver.(drivers.DiffGetterDriver)
	if !ok {
		return fmt.Errorf("the %s driver cannot read a layer's files", driver.String())
	}
	fg, err := getter.DiffGetter(b.id)
	if err != nil {
		return fmt.Errorf("open its files: %w", err)
	}
	defer fg.Close()
	ts, err := os.Open(b.tarSplit)
	if err != nil {
		return fmt.Errorf("open its tar-split: %w", err)
	}
	defer ts.Close()
	zr, err := gzip.NewReader(ts)
	if err != nil {
		return fmt.Errorf("read its tar-split: %w", err)
	}
	h := want.Algorithm().Hash()
	err = aw.file(blobPath(want), b.size, func(w io.Writer) error {
		err := asm.WriteOutputTarStream(fg, tsstorage.NewJSONUnpacker(zr), io.MultiWriter(w, h))
		if errors.Is(err, tar.ErrWriteTooLong) {
			return fmt.Errorf("it is larger than the %d bytes the store recorded: its files changed on disk", b.size)
		}
		return err
	})
	if err != nil {
		var werr writeFailure
		if errors.As(err, &werr) {
			return err
		}
		return fmt.Errorf("it does not match what the store recorded (%v); the image store is damaged, so nothing was written", err)
	}
	if got := digest.NewDigest(want.Algorithm(), h); got != want {
		return fmt.Errorf("its content has digest %s but the store recorded %s: the image store is damaged (its files changed on disk), so nothing was written", got, want)
	}
	return nil
}

// writeFailure is a failure to write the archive (a full disk), as
// opposed to one of reading what goes into it.
type writeFailure struct{ err error }

func (w writeFailure) Error() string { return w.err.Error() }
func (w writeFailure) Unwrap() error { return w.err }

// counter counts what reaches the archive (uncompressed) and marks write
// failures as such.
type counter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	if err != nil {
		return n, writeFailure{err}
	}
	return n, nil
}

// ctxWriter stops a long write when ctx ends.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// reportProgress emits progress every progressEvery until stopped.
func reportProgress(emit func(messages.Event), read *atomic.Int64, total int64, out *safefile.File) (stop func()) {
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				emit(messages.Event{Event: messages.EventProgress, Read: read.Load(), Written: out.Written(), Total: total})
			}
		}
	}()
	stopped := false
	return func() {
		if !stopped {
			stopped = true
			close(done)
			<-ended
		}
	}
}
