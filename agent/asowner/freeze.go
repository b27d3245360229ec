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
	"path/filepath"
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
	"github.com/baicommit/baicommit/internal/layerstore"
	"github.com/baicommit/baicommit/internal/ociarchive"
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
//
// Into a layer store (spec.Format store or both) the same streams go as
// blobs, only those the store lacks: a base layer the store has is not
// read at all when no archive is written.
func freeze(ctx context.Context, spec messages.Spec, emit func(messages.Event)) (err error) {
	toArchive, toStore, err := formats(spec)
	if err != nil {
		return err
	}
	if toArchive && (!safefile.ValidName(spec.Name) || !safefile.ValidName(spec.SidecarName)) {
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
	var dir *os.File
	var ls *layerstore.Freeze
	var scratch *os.File
	storePath := ""
	if toStore {
		st, err := layerstore.Open(spec.Root, spec.LayerStore.Dir, true)
		if err != nil {
			return err
		}
		defer st.Close()
		storePath = st.Path()
		if ls, err = st.Begin(spec.LayerStore.Token, mode); err != nil {
			return err
		}
		defer ls.Close()
		if !toArchive {
			if scratch, err = ls.Scratch(); err != nil {
				return err
			}
		}
	}
	if toArchive {
		if dir, err = safefile.MakeDir(spec.Root, spec.Dir, safefile.DirModeFor(mode)); err != nil {
			return err
		}
		defer dir.Close()
		if scratch, err = safefile.Scratch(dir, strings.TrimSuffix(spec.Temp, ".partial")+".list.partial"); err != nil {
			return err
		}
	}
	f.src.Exclude = append(slices.Clone(spec.Exclude), userPatterns...)
	list, err := layer.Build(f.src, scratch)
	if err != nil {
		scratch.Close()
		return err
	}
	defer list.Close()

	// Which base layers the store has already (each held before it is
	// looked for, so that a collection keeps it).
	storeLayers := make([]imgspecv1.Descriptor, len(f.base))
	lacks := make([]bool, len(f.base))
	reused := 0
	if toStore {
		for i, b := range f.base {
			desc, ok, err := ls.Find(digest.Digest(b.diffID), b.size)
			if err != nil {
				return err
			}
			storeLayers[i], lacks[i] = desc, !ok
			if ok {
				reused++
			}
		}
	}

	created := time.Now().UTC()
	aw := ociarchive.NewWriter(nil, created)
	// The docs made with a stand-in for the new layer's digest have the
	// lengths of the real ones.
	standIn := digest.FromString("")
	newLayerPath := spec.Temp[1:len(spec.Temp)-len(".partial")] + "/layer.tar"
	layers := make([]imgspecv1.Descriptor, 0, len(f.base)+1)
	for _, b := range f.base {
		layers = append(layers, imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageLayer, Digest: digest.Digest(b.diffID), Size: b.size})
	}
	var total int64
	if toArchive {
		cfg, _ := freezeConfig(f.config, spec.Container, spec, standIn, created)
		provisional, err := ociarchive.MakeDocs(cfg, append(layers, imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageLayer, Digest: standIn, Size: list.Size}), newLayerPath, ref)
		if err != nil {
			return err
		}
		total = aw.Size(layers, newLayerPath, list.Size, provisional)
	} else {
		// Into the store alone, what is read: the base layers it lacks
		// and the new layer.
		total = list.Size
		for i, b := range f.base {
			if lacks[i] {
				total += b.size
			}
		}
	}
	// The limits, before anything is written: what goes to each
	// destination, at most.
	var dests []destination
	if toArchive {
		dests = append(dests, destination{dir, spec.Dir, total})
	}
	if toStore {
		need := list.Size
		for i, b := range f.base {
			if lacks[i] {
				need += b.size
			}
		}
		sd, err := os.Open(storePath)
		if err != nil {
			return err
		}
		defer sd.Close()
		dests = append(dests, destination{sd, storePath, need})
	}
	if err := checkLimits(spec.Quota, list.Size, dests...); err != nil {
		return err
	}

	var out *safefile.File
	var read atomic.Int64
	written := func() int64 {
		n := int64(0)
		if out != nil {
			n += out.Written()
		}
		if ls != nil {
			n += ls.Written()
		}
		return n
	}
	if toArchive {
		if out, err = safefile.Create(dir, spec.Temp, mode, spec.Level); err != nil {
			return err
		}
		defer out.Abort()
		aw.TW = tar.NewWriter(&counter{w: out, n: &read})
	}
	stopProgress := reportProgress(emit, &read, total, written)
	defer stopProgress()
	emit(messages.Event{Event: messages.EventProgress, Total: total})

	warn := func(format string, args ...any) {
		emit(messages.Event{Event: messages.EventWarning, Message: fmt.Sprintf(format, args...)})
	}
	if toArchive {
		if err := aw.Bytes(ociarchive.LayoutFile, ociarchive.Layout()); err != nil {
			return err
		}
	}
	for i, b := range f.base {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !toArchive && !lacks[i] {
			continue
		}
		var blob *layerstore.BlobWriter
		var sink io.Writer
		var target *ociarchive.Writer
		if toArchive {
			target = aw
		}
		if lacks[i] {
			if blob, err = ls.CreateLayer(); err != nil {
				return err
			}
			sink = blob
			if !toArchive {
				sink = &counter{w: blob, n: &read}
			}
		}
		err := streamBase(target, sink, f.driver, b)
		if err == nil && blob != nil {
			storeLayers[i], err = blob.Commit(digest.Digest(b.diffID), layerstore.MediaTypeLayer)
		}
		if err != nil {
			if blob != nil {
				blob.Abort()
			}
			return fmt.Errorf("layer %d of the image (%s): %w", i+1, short(b.id), err)
		}
	}
	open, closeRoot, err := layer.OpenBeneath(f.src.Root)
	if err != nil {
		return err
	}
	defer closeRoot()
	h := sha256.New()
	sinks := []io.Writer{h}
	var gz *layerstore.GzipWriter
	if toStore {
		level := spec.LayerStore.Level
		if level == 0 {
			level = spec.Level
		}
		if gz, err = ls.CreateGzipLayer(level); err != nil {
			return err
		}
		defer gz.Abort()
		sinks = append(sinks, gz)
	}
	if toArchive {
		err = aw.File(newLayerPath, list.Size, func(w io.Writer) error {
			_, err := list.Stream(ctxWriter{ctx, io.MultiWriter(append(sinks, w)...)}, open, warn)
			return err
		})
	} else {
		_, err = list.Stream(ctxWriter{ctx, &counter{w: io.MultiWriter(sinks...), n: &read}}, open, warn)
	}
	if err != nil {
		return fmt.Errorf("the container's changes: %w", err)
	}
	newDiffID := digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
	cfg, removed := freezeConfig(f.config, spec.Container, spec, newDiffID, created)
	docs, err := ociarchive.MakeDocs(cfg, append(layers, imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageLayer, Digest: newDiffID, Size: list.Size}), newLayerPath, ref)
	if err != nil {
		return err
	}
	if toArchive {
		if err := writeDocs(aw, docs, newDiffID, newLayerPath); err != nil {
			return err
		}
	}
	var manifest imgspecv1.Descriptor
	var imageSize int64
	if toStore {
		newDesc, err := gz.Commit(newDiffID)
		if err != nil {
			return fmt.Errorf("the container's changes: %w", err)
		}
		if manifest, imageSize, err = storeDocs(ls, docs.Config, append(storeLayers, newDesc)); err != nil {
			return err
		}
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

	ex := &api.Exclusions{Placeholders: list.LeftOut, Patterns: spec.Exclude, UserPatterns: userPatterns,
		Entries: list.Excluded.Entries, Bytes: list.Excluded.Bytes}
	done := messages.Event{Event: messages.EventDone, Read: total, Total: total, ImageID: docs.ConfigDigest.String(), Exclusions: ex}
	if toStore {
		// The store's image first: an archive that then fails takes it
		// away again, and a failed freeze leaves nothing.
		sc := spec.Sidecar
		sc.Archive, sc.SHA256, sc.Size, sc.Format = spec.LayerStore.Image, manifest.Digest.Encoded(), imageSize, api.FormatStore
		sc.ImageID, sc.Method, sc.Exclusions = docs.ConfigDigest.String(), api.MethodDirect, ex
		sc.Written = ls.Written()
		path, err := ls.Publish(spec.LayerStore.Image, manifest, ref, &sc)
		if err != nil {
			return err
		}
		done.Store = &api.StoreImage{Path: path, Sidecar: filepath.Join(path, layerstore.SidecarFile), Manifest: manifest.Digest.String(),
			Size: imageSize, Written: ls.Written(), Reused: reused}
	}
	if toArchive {
		res, err := out.Commit(spec.Name)
		if err != nil {
			if done.Store != nil {
				removeStoreImage(spec)
			}
			return err
		}
		sc := spec.Sidecar
		sc.Archive, sc.SHA256, sc.Size = res.Name, res.SHA256, res.Size
		sc.ImageID, sc.Method, sc.Exclusions = docs.ConfigDigest.String(), api.MethodDirect, ex
		if err := safefile.WriteSidecar(dir, spec.SidecarName, mode, sc); err != nil {
			warn("the archive is complete but its sidecar could not be written: %v", err)
		}
		done.SHA256, done.Size = res.SHA256, res.Size
	}
	done.Written = written()
	emit(done)
	return nil
}

// formats says what spec.Format writes.
func formats(spec messages.Spec) (archive, store bool, err error) {
	switch spec.Format {
	case "", api.FormatArchive:
		return true, false, nil
	case api.FormatStore, api.FormatBoth:
		if spec.LayerStore == nil || !safefile.ValidName(spec.LayerStore.Image) {
			return false, false, fmt.Errorf("%w: format %s needs a layer store and an image name", safefile.ErrUnsafePath, spec.Format)
		}
		return spec.Format == api.FormatBoth, true, nil
	}
	return false, false, fmt.Errorf("unknown format %q", spec.Format)
}

// writeDocs ends an archive: the link from the new layer's digest to its
// entry, the config, the manifests and the indexes.
func writeDocs(aw *ociarchive.Writer, docs *ociarchive.Docs, newDiffID digest.Digest, newLayerPath string) error {
	if err := aw.Link(ociarchive.BlobPath(newDiffID), newLayerPath); err != nil {
		return err
	}
	if err := aw.Docs(docs); err != nil {
		return err
	}
	return aw.Close()
}

// storeDocs writes the config (the archive's, byte for byte: the same
// image ID) and the store's manifest, whose layers are the blobs as the
// store holds them; it returns the manifest and what the image's blobs
// take.
func storeDocs(ls *layerstore.Freeze, config []byte, layers []imgspecv1.Descriptor) (imgspecv1.Descriptor, int64, error) {
	cd, err := ls.PutBlob(imgspecv1.MediaTypeImageConfig, config)
	if err != nil {
		return cd, 0, err
	}
	mb, err := ociarchive.MarshalManifest(cd, layers)
	if err != nil {
		return cd, 0, err
	}
	md, err := ls.PutBlob(imgspecv1.MediaTypeImageManifest, mb)
	if err != nil {
		return md, 0, err
	}
	size := cd.Size + md.Size
	for _, l := range layers {
		size += l.Size
	}
	return md, size, nil
}

// removeStoreImage takes back the image a freeze published, when the
// archive it also had to write failed.
func removeStoreImage(spec messages.Spec) {
	if st, err := layerstore.Open(spec.Root, spec.LayerStore.Dir, false); err == nil {
		st.Remove(spec.LayerStore.Image)
		st.Close()
	}
}

// streamBase writes one base layer as its tar-split reassembles it from
// the layer's files, into the archive aw (when not nil) and to sink (a
// layer store's blob, when not nil), and checks it against the digest the
// store recorded for it: a layer whose files changed on disk is refused,
// naming it.
func streamBase(aw *ociarchive.Writer, sink io.Writer, driver drivers.Driver, b baseLayer) error {
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
	var n countOnly
	write := func(w io.Writer) error {
		ws := []io.Writer{w, h, &n}
		if w == nil {
			ws = ws[1:]
		}
		if sink != nil {
			ws = append(ws, sink)
		}
		err := asm.WriteOutputTarStream(fg, tsstorage.NewJSONUnpacker(zr), io.MultiWriter(ws...))
		if errors.Is(err, tar.ErrWriteTooLong) || (err == nil && int64(n) != b.size) {
			return fmt.Errorf("it is not the %d bytes the store recorded: its files changed on disk", b.size)
		}
		return err
	}
	if aw != nil {
		err = aw.File(ociarchive.BlobPath(want), b.size, write)
	} else {
		err = write(nil)
	}
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

// countOnly counts what is written to it.
type countOnly int64

func (c *countOnly) Write(p []byte) (int, error) { *c += countOnly(len(p)); return len(p), nil }

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

// reportProgress emits progress every progressEvery until stopped:
// read counts the uncompressed bytes, written what reached the files.
func reportProgress(emit func(messages.Event), read *atomic.Int64, total int64, written func() int64) (stop func()) {
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
				emit(messages.Event{Event: messages.EventProgress, Read: read.Load(), Written: written(), Total: total})
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
