package layerstore

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/pgzip"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/ociarchive"
	"github.com/baicommit/baicommit/internal/safefile"
)

// Freeze writes one image into a store: the blobs the store lacks, then
// the image's layout. Every blob it finds or writes is named in its hold
// file before it looks for it or renames it into place, and the hold goes
// only after the image is published, so that a garbage collection running
// meanwhile (on any node) keeps them (see GC).
type Freeze struct {
	s     *Store
	token string
	mode  os.FileMode

	mu        sync.Mutex
	held      []digest.Digest
	seq       int
	temps     map[string]*os.File // temporary name → its directory
	published bool
	closed    bool

	written atomic.Int64
}

// hold is what a hold file says.
type hold struct {
	Created time.Time       `json:"created"`
	Digests []digest.Digest `json:"digests"`
}

// Begin starts writing an image into s: token names this freeze (unique
// to node and task, as temporary archive names are), mode is the mode of
// the files it writes (made read-only: content-addressed files never
// change). Close ends it, removing what it left unpublished.
func (s *Store) Begin(token string, mode os.FileMode) (*Freeze, error) {
	if !safefile.ValidName(token) {
		return nil, fmt.Errorf("%w: bad freeze token %q", safefile.ErrUnsafePath, token)
	}
	f := &Freeze{s: s, token: token, mode: mode.Perm() &^ 0o222, temps: map[string]*os.File{}}
	if f.mode&0o400 == 0 {
		f.mode |= 0o400
	}
	b, _ := json.Marshal(hold{Created: time.Now().UTC(), Digests: []digest.Digest{}})
	temp := f.temp()
	if err := writeFileNew(s.holds, token, temp, f.mode|0o200, b); err != nil {
		return nil, fmt.Errorf("start a freeze into the layer store: %w", err)
	}
	return f, nil
}

// writeFileNew is writeFile that fails when name exists.
func writeFileNew(dir *os.File, name, temp string, mode os.FileMode, data []byte) error {
	if _, err := statAt(dir, name); err == nil {
		return fmt.Errorf("%s exists in %s already", name, dir.Name())
	}
	return writeFile(dir, name, temp, mode, data, false)
}

// temp is a new temporary name of this freeze's.
func (f *Freeze) temp() string {
	f.seq++
	return fmt.Sprintf(".%s.%d%s", f.token, f.seq, tempSuffix)
}

// Hold adds digests to the blobs this freeze uses: a garbage collection
// keeps them until the freeze ends.
func (f *Freeze) Hold(ds ...digest.Digest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	added := false
	for _, d := range ds {
		if !slices.Contains(f.held, d) {
			f.held = append(f.held, d)
			added = true
		}
	}
	if !added {
		return nil
	}
	b, _ := json.Marshal(hold{Created: time.Now().UTC(), Digests: f.held})
	// Replaced whole, through a temporary file: a collector reads either
	// the old list or the new one.
	return writeFile(f.s.holds, f.token, f.temp(), f.mode|0o200, b, true)
}

// diffIDEntry is a diffids/ file: which blob holds a layer's diff ID.
type diffIDEntry struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	// DiffSize is the layer's uncompressed size.
	DiffSize int64 `json:"diffSize"`
}

// maxSmall bounds what is read of a small file of a store (an index
// entry, a hold, a manifest, a config).
const maxSmall = 4 << 20

// Find looks for the layer whose diff ID is diffID (and uncompressed size
// size) and returns the descriptor of the blob that holds it: the
// uncompressed blob of that name, or a gzip'd one the diffids index
// names. It holds each blob before looking for it.
func (f *Freeze) Find(diffID digest.Digest, size int64) (imgspecv1.Descriptor, bool, error) {
	if !validDigest(diffID) {
		return imgspecv1.Descriptor{}, false, fmt.Errorf("bad layer digest %q", diffID)
	}
	if err := f.Hold(diffID); err != nil {
		return imgspecv1.Descriptor{}, false, err
	}
	if st, err := statAt(f.s.blobs, diffID.Encoded()); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == size {
		return imgspecv1.Descriptor{MediaType: MediaTypeLayer, Digest: diffID, Size: size}, true, nil
	}
	e, err := f.s.diffID(diffID)
	if err != nil {
		return imgspecv1.Descriptor{}, false, nil
	}
	if err := f.Hold(e.Digest); err != nil {
		return imgspecv1.Descriptor{}, false, err
	}
	if st, err := statAt(f.s.blobs, e.Digest.Encoded()); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == e.Size {
		return imgspecv1.Descriptor{MediaType: e.MediaType, Digest: e.Digest, Size: e.Size}, true, nil
	}
	return imgspecv1.Descriptor{}, false, nil
}

// diffID reads the index entry of diffID.
func (s *Store) diffID(diffID digest.Digest) (*diffIDEntry, error) {
	b, err := readFileAt(s.diffIDs, diffID.Encoded(), maxSmall)
	if err != nil {
		return nil, err
	}
	var e diffIDEntry
	if err := json.Unmarshal(b, &e); err != nil || !validDigest(e.Digest) || e.Size <= 0 || e.MediaType != MediaTypeLayerGzip {
		return nil, fmt.Errorf("bad index entry for %s", diffID)
	}
	return &e, nil
}

// Written is how many bytes the freeze wrote into the store so far.
func (f *Freeze) Written() int64 { return f.written.Load() }

// BlobWriter writes one blob under a temporary name; Commit gives it its
// name.
type BlobWriter struct {
	f    *Freeze
	file *os.File
	temp string
	bw   *bufio.Writer
	n    int64
}

// CreateLayer starts an uncompressed layer blob; its writer must be
// committed with the digest the caller checked (a base layer's diff ID)
// or aborted.
func (f *Freeze) CreateLayer() (*BlobWriter, error) {
	f.mu.Lock()
	temp := f.temp()
	f.mu.Unlock()
	file, err := safefile.CreateTemp(f.s.blobs, temp, f.mode|0o200)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.temps[temp] = f.s.blobs
	f.mu.Unlock()
	return &BlobWriter{f: f, file: file, temp: temp, bw: bufio.NewWriterSize(file, 1<<20)}, nil
}

func (w *BlobWriter) Write(p []byte) (int, error) {
	n, err := w.bw.Write(p)
	w.n += int64(n)
	w.f.written.Add(int64(n))
	return n, err
}

// Commit syncs the blob and renames it to d (which the caller checked is
// its digest). A blob of that name that is there already (another freeze
// wrote it meanwhile) is kept, unless its size shows it damaged.
func (w *BlobWriter) Commit(d digest.Digest, mediaType string) (imgspecv1.Descriptor, error) {
	desc := imgspecv1.Descriptor{MediaType: mediaType, Digest: d, Size: w.n}
	if !validDigest(d) {
		w.Abort()
		return desc, fmt.Errorf("bad blob digest %q", d)
	}
	err := w.bw.Flush()
	if err == nil {
		err = w.file.Chmod(w.f.mode)
	}
	if err == nil {
		err = w.file.Sync()
	}
	if cerr := w.file.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = w.f.Hold(d)
	}
	blobs := w.f.s.blobs
	if err == nil {
		err = safefile.RenameNoReplace(blobs, w.temp, d.Encoded())
		if errors.Is(err, unix.EEXIST) {
			err = nil
			if st, serr := statAt(blobs, d.Encoded()); serr == nil && st.Size != w.n {
				// A damaged blob: this one, checked, replaces it.
				err = unix.Renameat(int(blobs.Fd()), w.temp, int(blobs.Fd()), d.Encoded())
			}
		}
	}
	if err == nil {
		err = blobs.Sync()
	}
	unix.Unlinkat(int(blobs.Fd()), w.temp, 0)
	w.f.mu.Lock()
	delete(w.f.temps, w.temp)
	w.f.mu.Unlock()
	if err != nil {
		return desc, fmt.Errorf("store blob %s: %w", d, err)
	}
	return desc, nil
}

// Abort removes the unfinished blob.
func (w *BlobWriter) Abort() {
	w.file.Close()
	unix.Unlinkat(int(w.f.s.blobs.Fd()), w.temp, 0)
	w.f.mu.Lock()
	delete(w.f.temps, w.temp)
	w.f.mu.Unlock()
}

// GzipWriter compresses a layer in parallel into a blob, hashing the
// compressed bytes as they are written.
type GzipWriter struct {
	bw       *BlobWriter
	gz       *pgzip.Writer
	h        hash.Hash
	diffSize int64
}

// CreateGzipLayer starts a gzip'd layer blob at the given level; what is
// written to it is the uncompressed layer.
func (f *Freeze) CreateGzipLayer(level int) (*GzipWriter, error) {
	bw, err := f.CreateLayer()
	if err != nil {
		return nil, err
	}
	g := &GzipWriter{bw: bw, h: sha256.New()}
	gz, err := pgzip.NewWriterLevel(io.MultiWriter(bw, g.h), level)
	if err == nil {
		// As safefile's archives: 1 MiB blocks, two per core in flight.
		err = gz.SetConcurrency(1<<20, 2*runtime.GOMAXPROCS(0))
	}
	if err != nil {
		bw.Abort()
		return nil, err
	}
	g.gz = gz
	return g, nil
}

func (g *GzipWriter) Write(p []byte) (int, error) {
	n, err := g.gz.Write(p)
	g.diffSize += int64(n)
	return n, err
}

// Commit ends the compressed stream, names the blob by its digest and
// records in the index that it holds the layer diffID.
func (g *GzipWriter) Commit(diffID digest.Digest) (imgspecv1.Descriptor, error) {
	if err := g.gz.Close(); err != nil {
		g.bw.Abort()
		return imgspecv1.Descriptor{}, err
	}
	d := digest.NewDigestFromBytes(digest.SHA256, g.h.Sum(nil))
	desc, err := g.bw.Commit(d, MediaTypeLayerGzip)
	if err != nil {
		return desc, err
	}
	f := g.bw.f
	b, _ := json.Marshal(diffIDEntry{MediaType: MediaTypeLayerGzip, Digest: d, Size: desc.Size, DiffSize: g.diffSize})
	f.mu.Lock()
	temp := f.temp()
	f.mu.Unlock()
	// Another freeze's entry for the same layer may be there: either
	// names a good blob.
	if err := writeFile(f.s.diffIDs, diffID.Encoded(), temp, f.mode, b, false); err != nil {
		return desc, err
	}
	f.written.Add(int64(len(b)))
	return desc, nil
}

// Abort removes the unfinished blob.
func (g *GzipWriter) Abort() {
	g.gz.Close()
	g.bw.Abort()
}

// PutBlob stores b (a config or a manifest) and describes it.
func (f *Freeze) PutBlob(mediaType string, b []byte) (imgspecv1.Descriptor, error) {
	d := digest.FromBytes(b)
	desc := imgspecv1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
	if err := f.Hold(d); err != nil {
		return desc, err
	}
	f.mu.Lock()
	temp := f.temp()
	f.mu.Unlock()
	if err := writeFile(f.s.blobs, d.Encoded(), temp, f.mode, b, false); err != nil {
		return desc, err
	}
	f.written.Add(int64(len(b)))
	return desc, nil
}

// Publish makes the image name visible, all at once: its layout (the
// manifest, named ref, and sidecar) is assembled in a hidden directory,
// synced, and renamed into images/ without replacing anything. It
// returns the layout's path. The freeze's hold goes afterwards.
func (f *Freeze) Publish(name string, manifest imgspecv1.Descriptor, ref string, sidecar *api.Sidecar) (string, error) {
	if !safefile.ValidName(name) {
		return "", fmt.Errorf("%w: bad image name %q", safefile.ErrUnsafePath, name)
	}
	if _, err := statAt(f.s.images, name); err == nil {
		return "", fmt.Errorf("an image %s is in the layer store already; nothing was replaced", name)
	}
	index, err := ociarchive.MarshalIndex(manifest, ref)
	if err != nil {
		return "", err
	}
	sc, err := json.MarshalIndent(sidecar, "", "  ")
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	tmp := fmt.Sprintf(".%s.%s%s", name, f.token, tempSuffix)
	f.temps[tmp] = f.s.images
	f.mu.Unlock()
	images := f.s.images
	if err := unix.Mkdirat(int(images.Fd()), tmp, f.s.dirMode&0o777); err != nil {
		return "", fmt.Errorf("make the image's layout: %w", err)
	}
	dir, err := openDirAt(images, tmp)
	if err != nil {
		return "", err
	}
	defer dir.Close()
	if err := unix.Fchmod(int(dir.Fd()), f.s.dirMode); err != nil {
		return "", err
	}
	for _, e := range []struct {
		name string
		b    []byte
	}{{ociarchive.LayoutFile, ociarchive.Layout()}, {ociarchive.IndexFile, index}, {SidecarFile, append(sc, '\n')}} {
		mode := f.mode
		if e.name == SidecarFile {
			// Pushes are recorded in it later.
			mode |= 0o200
		}
		if err := writeFile(dir, e.name, "."+e.name+tempSuffix, mode, e.b, false); err != nil {
			return "", err
		}
		f.written.Add(int64(len(e.b)))
	}
	if err := unix.Symlinkat(blobsLink, int(dir.Fd()), blobsDir); err != nil {
		return "", fmt.Errorf("link the image's layout to the store's blobs: %w", err)
	}
	if err := dir.Sync(); err != nil {
		return "", err
	}
	if err := safefile.RenameNoReplace(images, tmp, name); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return "", fmt.Errorf("an image %s is in the layer store already; nothing was replaced", name)
		}
		return "", fmt.Errorf("publish image %s: %w", name, err)
	}
	f.mu.Lock()
	delete(f.temps, tmp)
	f.published = true
	f.mu.Unlock()
	if err := images.Sync(); err != nil {
		return "", err
	}
	return f.s.ImagePath(name), nil
}

// Close ends the freeze: what it wrote under temporary names goes, and so
// does its hold. Blobs it renamed into place stay (another image may use
// them; a garbage collection removes them otherwise).
func (f *Freeze) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	for name, dir := range f.temps {
		removeAllAt(dir, name)
	}
	return removeAllAt(f.s.holds, f.token)
}

// Scratch is a scratch file of the freeze's own in the store (the list of
// a new layer's entries), on the shared filesystem rather than the node's
// disk: created and unlinked at once, so nothing of it is ever visible and
// it is gone when closed, even after a crash.
func (f *Freeze) Scratch() (*os.File, error) {
	f.mu.Lock()
	temp := f.temp()
	f.mu.Unlock()
	return safefile.Scratch(f.s.blobs, temp)
}
