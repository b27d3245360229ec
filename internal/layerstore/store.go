// Package layerstore is baicommit's layer store: frozen images kept on
// the shared filesystem as content-addressed blobs, each base layer once,
// however many images are frozen from it, by however many nodes at once.
//
// A store is a directory:
//
//	oci-layout              marks the directory (and keeps archive listings out of it)
//	blobs/sha256/HEX        every blob once: base layers uncompressed (their
//	                        name is the layer's own diff ID), new layers gzip'd,
//	                        configs and manifests
//	diffids/HEX             for a gzip'd layer, which blob holds the diff ID HEX
//	images/NAME/            one OCI image layout per frozen image: oci-layout,
//	                        index.json (its one manifest), baicommit.json (its
//	                        sidecar) and blobs -> ../../blobs
//	holds/TOKEN             the blobs a freeze in progress uses (see GC)
//
// Writers on many nodes share it without a lock and without a shared
// index file that concurrent writers could lose entries from (what
// containers/image's own oci: layouts do, image#513, image#1028,
// skopeo#2184): every file is written under a hidden temporary name and
// renamed to its final one without replacing anything, so a blob two
// nodes write at once is written twice and kept once, and nothing is ever
// visible half-written; an image's layout is assembled in a hidden
// directory and renamed into images/ in one step.
//
// Base layers are stored uncompressed, as containers-storage holds them:
// a blob's name is then the layer's diff ID, which the owner's store
// records for every layer, so a freeze knows whether the store has a base
// before it reads a byte of it (one stat), and the first freeze of a large
// base costs the node no compression (the base layers of CUDA and PyTorch
// images are mostly compressed payloads already). The price is space for
// the uncompressed base, paid once per store, and compression when a
// registry wants a base layer it does not have yet (a push streams it
// through gzip, staging nothing). The new layer of each freeze, which is
// what is written again and again, is gzip'd in parallel.
//
// Everything here runs as the store's user (the owner-side helper, or the
// CLI), never as root.
package layerstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/baicommit/baicommit/internal/ociarchive"
	"github.com/baicommit/baicommit/internal/safefile"
)

// Names inside a store.
const (
	blobsDir   = "blobs"
	shaDir     = "sha256"
	diffIDsDir = "diffids"
	imagesDir  = "images"
	holdsDir   = "holds"
	// SidecarFile is an image's sidecar, inside its layout.
	SidecarFile = "baicommit.json"
	// blobsLink is the link in each image's layout to the store's blobs,
	// relative, so that the store can be mounted anywhere.
	blobsLink = "../../" + blobsDir
)

// Media types of the layers a store holds.
const (
	MediaTypeLayer     = imgspecv1.MediaTypeImageLayer
	MediaTypeLayerGzip = imgspecv1.MediaTypeImageLayerGzip
)

// Store is an open layer store.
type Store struct {
	path string
	// dir is the store directory, blobs its blobs/sha256, the others
	// their directories; all opened without following links.
	dir, blobs, diffIDs, images, holds *os.File
	// dirMode is the store directory's mode (with setgid), given to the
	// directories made in it, so that a project's store stays writable by
	// its group.
	dirMode uint32
}

// Open opens the store dir, which lies below root (a save root), without
// following a link below root; create makes what is missing (the store
// directory with safefile.DirMode; a project's store is made by its admin
// with the group's mode).
func Open(root, dir string, create bool) (*Store, error) {
	d, err := safefile.OpenDir(root, dir, create)
	if err != nil {
		return nil, err
	}
	s := &Store{path: dir, dir: d}
	if err := s.open(create); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// OpenPath opens the existing store at path (for the CLI, which runs as
// the user and goes where the user points it).
func OpenPath(path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	abs = filepath.Clean(abs)
	s, err := Open(abs, abs, false)
	if err != nil {
		return nil, fmt.Errorf("open the layer store %s: %w", abs, err)
	}
	return s, nil
}

func (s *Store) open(create bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(s.dir.Fd()), &st); err != nil {
		return err
	}
	s.dirMode = st.Mode & 0o2777
	if create {
		if err := s.writeMarker(); err != nil {
			return err
		}
	} else if err := unix.Faccessat(int(s.dir.Fd()), ociarchive.LayoutFile, unix.F_OK, 0); err != nil {
		return fmt.Errorf("%s is not a baicommit layer store (no %s): %w", s.path, ociarchive.LayoutFile, err)
	}
	var err error
	bd, err := s.sub(s.dir, blobsDir, create)
	if err != nil {
		return err
	}
	s.blobs, err = s.sub(bd, shaDir, create)
	bd.Close()
	if err != nil {
		return err
	}
	if s.diffIDs, err = s.sub(s.dir, diffIDsDir, create); err != nil {
		return err
	}
	if s.images, err = s.sub(s.dir, imagesDir, create); err != nil {
		return err
	}
	s.holds, err = s.sub(s.dir, holdsDir, create)
	return err
}

// writeMarker writes the store's oci-layout file once.
func (s *Store) writeMarker() error {
	err := unix.Faccessat(int(s.dir.Fd()), ociarchive.LayoutFile, unix.F_OK, unix.AT_SYMLINK_NOFOLLOW)
	if err == nil {
		return nil
	}
	return writeFile(s.dir, ociarchive.LayoutFile, ".oci-layout."+randomToken()+".partial", 0o444, ociarchive.Layout(), false)
}

// sub opens (and with create makes) the directory name in parent, not
// following a link.
func (s *Store) sub(parent *os.File, name string, create bool) (*os.File, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(int(parent.Fd()), name, flags, 0)
	if errors.Is(err, unix.ENOENT) && create {
		err = unix.Mkdirat(int(parent.Fd()), name, s.dirMode&0o777)
		made := err == nil
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("make %s in %s: %w", name, parent.Name(), err)
		}
		fd, err = unix.Openat(int(parent.Fd()), name, flags, 0)
		if err == nil && made {
			// The umask may have narrowed the mode, and mkdir drops setgid.
			if err := unix.Fchmod(fd, s.dirMode); err != nil {
				unix.Close(fd)
				return nil, err
			}
		}
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil, fmt.Errorf("%w: %s in %s is a symbolic link or not a directory", safefile.ErrUnsafePath, name, parent.Name())
	}
	if err != nil {
		return nil, fmt.Errorf("open %s in %s: %w", name, parent.Name(), err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(parent.Name(), name)), nil
}

// Path is the store's directory.
func (s *Store) Path() string { return s.path }

// ImagePath is where the image name's layout is.
func (s *Store) ImagePath(name string) string { return filepath.Join(s.path, imagesDir, name) }

// Close releases the store's directories.
func (s *Store) Close() error {
	for _, f := range []*os.File{s.blobs, s.diffIDs, s.images, s.holds, s.dir} {
		if f != nil {
			f.Close()
		}
	}
	return nil
}

// validDigest reports whether d is a sha256 digest, the only kind a store
// holds.
func validDigest(d digest.Digest) bool {
	return d.Validate() == nil && d.Algorithm() == digest.SHA256
}

// ErrNotFound marks an image or a blob the store does not have.
var ErrNotFound = errors.New("not in the layer store")
