package layerstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/ociarchive"
	"github.com/baicommit/baicommit/internal/safefile"
)

// ErrDamaged marks a blob whose content is not what its name says.
var ErrDamaged = errors.New("damaged blob")

// DamagedError names a blob whose content does not match its digest.
type DamagedError struct {
	Digest digest.Digest
	Got    digest.Digest
	Size   int64
	Want   int64
}

func (e *DamagedError) Error() string {
	if e.Got == "" {
		return fmt.Sprintf("blob %s of the layer store is damaged: it is %d bytes, not %d; refusing to use it", e.Digest, e.Size, e.Want)
	}
	return fmt.Sprintf("blob %s of the layer store is damaged: its content has digest %s; refusing to use it", e.Digest, e.Got)
}

func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// Image is one image of a store, its small documents read and checked
// against their digests.
type Image struct {
	// Name is the image's name in the store, Path its layout directory.
	Name, Path string
	// Ref is the image's name:tag (the index's ref name).
	Ref string
	// Sidecar is its sidecar.
	Sidecar *api.Sidecar
	// ManifestDesc describes the manifest, Manifest is it.
	ManifestDesc imgspecv1.Descriptor
	Manifest     imgspecv1.Manifest
	// Config is the config blob as stored; DiffIDs are its layers' diff IDs.
	Config  []byte
	DiffIDs []digest.Digest

	lock *os.File
}

// In use: whoever reads an image (a restore, a push, an export) holds a
// shared lock on its index.json from Image until Close (flock, which
// NFSv4 and Lustre carry across nodes; the index, unlike the sidecar, is
// never rewritten), and Remove refuses an image it cannot lock
// exclusively at once. So retention and rm never take a layout from under
// a reader on any node, and prune --store keeps its blobs, which a layout
// names, meanwhile.

// ErrInUse marks an image a restore, a push or an export is reading.
var ErrInUse = errors.New("the image is being read (a restore, a push or an export is using it)")

// lockIndex takes the lock how (unix.LOCK_SH or LOCK_EX, never waiting)
// on the index of the layout dir. Where the filesystem cannot lock, the
// file is returned unlocked: reading goes on unprotected.
func lockIndex(dir *os.File, how int) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), ociarchive.IndexFile, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), ociarchive.IndexFile)
	if err := unix.Flock(fd, how|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return nil, ErrInUse
	}
	return f, nil
}

// Image reads the image name and holds its shared lock until the
// image's Close.
func (s *Store) Image(ctx context.Context, name string) (*Image, error) {
	if !safefile.ValidName(name) {
		return nil, fmt.Errorf("%w: bad image name %q", safefile.ErrUnsafePath, name)
	}
	dir, err := openDirAt(s.images, name)
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("no image %s in the layer store %s: %w", name, s.path, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open image %s: %w", name, err)
	}
	defer dir.Close()
	img := &Image{Name: name, Path: s.ImagePath(name)}
	// A shared lock waits for nothing but a Remove, which holds its lock
	// for a rename: try a few times, never without end.
	for i := 0; ; i++ {
		img.lock, err = lockIndex(dir, unix.LOCK_SH)
		if !errors.Is(err, ErrInUse) || i == 40 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("image %s: %w", img.Path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if errors.Is(err, ErrInUse) {
		return nil, fmt.Errorf("image %s is being removed", img.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: its index: %w", img.Path, err)
	}
	if err := s.readImage(dir, img); err != nil {
		img.Close()
		return nil, err
	}
	return img, nil
}

// Close releases the image's shared lock: Remove may take it from then on.
func (img *Image) Close() error {
	if img == nil || img.lock == nil {
		return nil
	}
	return img.lock.Close()
}

// readImage reads and checks the documents of the layout dir into img.
func (s *Store) readImage(dir *os.File, img *Image) error {
	var err error
	if img.Sidecar, err = readSidecar(dir); err != nil {
		return fmt.Errorf("image %s: %w", img.Path, err)
	}
	md, ref, err := readIndex(dir)
	if err != nil {
		return fmt.Errorf("image %s: %w", img.Path, err)
	}
	img.ManifestDesc, img.Ref = md, ref
	if img.Sidecar.SHA256 != md.Digest.Encoded() {
		return fmt.Errorf("image %s names manifest %s but its sidecar says sha256:%s: the layout was changed after the freeze; refusing to use it", img.Path, md.Digest, img.Sidecar.SHA256)
	}
	mb, err := s.readBlob(md.Digest, md.Size)
	if err != nil {
		return fmt.Errorf("image %s: its manifest: %w", img.Path, err)
	}
	if err := json.Unmarshal(mb, &img.Manifest); err != nil {
		return fmt.Errorf("image %s: its manifest: %w", img.Path, err)
	}
	m := &img.Manifest
	if !validDigest(m.Config.Digest) {
		return fmt.Errorf("image %s: its manifest names no config", img.Path)
	}
	for _, l := range m.Layers {
		if !validDigest(l.Digest) || (l.MediaType != MediaTypeLayer && l.MediaType != MediaTypeLayerGzip) || l.Size < 0 {
			return fmt.Errorf("image %s: its manifest names a layer %s of type %q", img.Path, l.Digest, l.MediaType)
		}
	}
	if img.Config, err = s.readBlob(m.Config.Digest, m.Config.Size); err != nil {
		return fmt.Errorf("image %s: its config: %w", img.Path, err)
	}
	var cfg imgspecv1.Image
	if err := json.Unmarshal(img.Config, &cfg); err != nil {
		return fmt.Errorf("image %s: its config: %w", img.Path, err)
	}
	img.DiffIDs = cfg.RootFS.DiffIDs
	if len(img.DiffIDs) != len(m.Layers) {
		return fmt.Errorf("image %s: its config lists %d layers, its manifest %d", img.Path, len(img.DiffIDs), len(m.Layers))
	}
	return nil
}

// readSidecar reads an image layout's sidecar.
func readSidecar(dir *os.File) (*api.Sidecar, error) {
	b, err := readFileAt(dir, SidecarFile, maxSmall)
	if err != nil {
		return nil, fmt.Errorf("its sidecar: %w", err)
	}
	var sc api.Sidecar
	if err := json.Unmarshal(b, &sc); err != nil {
		return nil, fmt.Errorf("its sidecar: %w", err)
	}
	if sc.Format != api.FormatStore || digest.NewDigestFromEncoded(digest.SHA256, sc.SHA256).Validate() != nil {
		return nil, errors.New("its sidecar is not a layer store image's")
	}
	return &sc, nil
}

// readIndex reads an image layout's index.json: its one manifest.
func readIndex(dir *os.File) (imgspecv1.Descriptor, string, error) {
	b, err := readFileAt(dir, ociarchive.IndexFile, maxSmall)
	if err != nil {
		return imgspecv1.Descriptor{}, "", fmt.Errorf("its index: %w", err)
	}
	var idx imgspecv1.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return imgspecv1.Descriptor{}, "", fmt.Errorf("its index: %w", err)
	}
	if len(idx.Manifests) != 1 || !validDigest(idx.Manifests[0].Digest) {
		return imgspecv1.Descriptor{}, "", fmt.Errorf("its index names %d manifests, not one", len(idx.Manifests))
	}
	md := idx.Manifests[0]
	return md, md.Annotations[ociarchive.RefNameAnnotation], nil
}

// readBlob reads a small blob whole and checks it.
func (s *Store) readBlob(d digest.Digest, size int64) ([]byte, error) {
	if !validDigest(d) {
		return nil, fmt.Errorf("bad digest %q", d)
	}
	b, err := readFileAt(s.blobs, d.Encoded(), maxSmall)
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("blob %s is missing from the layer store %s: %w", d, s.path, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d, err)
	}
	if got := digest.FromBytes(b); got != d {
		return nil, &DamagedError{Digest: d, Got: got}
	}
	if size > 0 && int64(len(b)) != size {
		return nil, &DamagedError{Digest: d, Size: int64(len(b)), Want: size}
	}
	return b, nil
}

// BlobReader reads a blob and checks it against its digest and size as
// it goes: the read that reaches its end fails with a *DamagedError when
// they differ.
type BlobReader struct {
	f    *os.File
	d    digest.Digest
	size int64
	h    hash.Hash
	n    int64
}

// OpenBlob opens blob d, of size bytes (negative: any), for a checked
// read.
func (s *Store) OpenBlob(d digest.Digest, size int64) (*BlobReader, error) {
	if !validDigest(d) {
		return nil, fmt.Errorf("bad digest %q", d)
	}
	fd, err := unix.Openat(int(s.blobs.Fd()), d.Encoded(), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("blob %s is missing from the layer store %s: %w", d, s.path, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	return &BlobReader{f: os.NewFile(uintptr(fd), d.Encoded()), d: d, size: size, h: digest.SHA256.Hash()}, nil
}

func (r *BlobReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	if r.size >= 0 && r.n > r.size {
		return n, &DamagedError{Digest: r.d, Size: r.n, Want: r.size}
	}
	if errors.Is(err, io.EOF) {
		if r.size >= 0 && r.n != r.size {
			return n, &DamagedError{Digest: r.d, Size: r.n, Want: r.size}
		}
		if got := digest.NewDigest(digest.SHA256, r.h); got != r.d {
			return n, &DamagedError{Digest: r.d, Got: got}
		}
	}
	return n, err
}

// Close closes the blob.
func (r *BlobReader) Close() error { return r.f.Close() }

// OpenImage opens the store an image layout lies in (path is
// STORE/images/NAME, as `baicommit list` shows it) and reads the image.
func OpenImage(ctx context.Context, path string) (*Store, *Image, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, err
	}
	abs = filepath.Clean(abs)
	name := filepath.Base(abs)
	if filepath.Base(filepath.Dir(abs)) != imagesDir {
		return nil, nil, fmt.Errorf("%s is not an image of a layer store (STORE/%s/NAME)", path, imagesDir)
	}
	s, err := OpenPath(filepath.Dir(filepath.Dir(abs)))
	if err != nil {
		return nil, nil, err
	}
	img, err := s.Image(ctx, name)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, img, nil
}

// IsImage reports whether path is an image layout of a layer store.
func IsImage(path string) bool {
	fi, err := os.Lstat(filepath.Join(path, SidecarFile))
	return err == nil && fi.Mode().IsRegular() && filepath.Base(filepath.Dir(filepath.Clean(path))) == imagesDir
}

// Names are the store's published images, unsorted.
func (s *Store) Names() ([]string, error) {
	ns, err := names(s.images)
	if err != nil {
		return nil, fmt.Errorf("list the images of %s: %w", s.path, err)
	}
	return slices.DeleteFunc(ns, func(n string) bool { return isTemp(n) || !safefile.ValidName(n) }), nil
}

// List describes the store's images from their sidecars, newest first,
// as archives are listed (api.ArchiveEntry: Path is the layout, SidecarFile
// its sidecar). keep, when set, selects them. An image whose sidecar
// cannot be read is skipped with a warning.
func (s *Store) List(ctx context.Context, keep func(*api.ArchiveEntry) bool) ([]api.ArchiveEntry, []string, error) {
	ns, err := s.Names()
	if err != nil {
		return nil, nil, err
	}
	out := []api.ArchiveEntry{}
	var warnings []string
	for _, n := range ns {
		if err := ctx.Err(); err != nil {
			return nil, warnings, err
		}
		dir, err := openDirAt(s.images, n)
		if err != nil {
			continue
		}
		sc, err := readSidecar(dir)
		dir.Close()
		if err != nil {
			if !errors.Is(err, os.ErrPermission) {
				warnings = append(warnings, fmt.Sprintf("skipped image %s: %v", s.ImagePath(n), err))
			}
			continue
		}
		e := api.ArchiveEntry{Path: s.ImagePath(n), SidecarFile: filepath.Join(s.ImagePath(n), SidecarFile), Sidecar: *sc}
		if keep != nil && !keep(&e) {
			continue
		}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(a, b api.ArchiveEntry) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	return out, warnings, nil
}

// DiffSize is the uncompressed size of layer l (the i-th of img), from the
// store's index for a gzip'd layer; ok is false when the index does not
// know it.
func (s *Store) DiffSize(img *Image, i int) (int64, bool) {
	l := img.Manifest.Layers[i]
	if l.MediaType == MediaTypeLayer {
		return l.Size, true
	}
	e, err := s.diffID(img.DiffIDs[i])
	if err != nil || e.Digest != l.Digest {
		return 0, false
	}
	return e.DiffSize, true
}
