// Package ociarchive writes the image archives baicommit makes: one tar
// that is both an OCI image layout (oci-layout, index.json,
// blobs/sha256/…) and a docker-archive (manifest.json naming the same
// blobs), the layout `docker save` writes since Docker 25: Podman 4.3's
// `load -i` takes it gzip'd as an OCI archive, newer Podman and Docker as
// a docker-archive. A freeze (agent/asowner) writes it from the owner's
// containers-storage; `baicommit export` writes it from a layer store
// image (internal/layerstore).
//
// Its entries come in the order they can be written in one pass: the base
// layers (their digests are known), the new layer under a name of its own
// (its digest is known only at its end) and then a hard link to it under
// its digest, and last the config, the manifests and the indexes, which
// name the digests. Every entry's size is known before it is written, so
// the whole archive's size is too (Size).
package ociarchive

import (
	"archive/tar"
	"encoding/json"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/tarfile"
)

// Names inside an archive (and inside an OCI image layout).
const (
	LayoutFile     = imgspecv1.ImageLayoutFile
	IndexFile      = "index.json"
	DockerManifest = "manifest.json"
	BlobDir        = imgspecv1.ImageBlobsDir + "/sha256/"
	// RefNameAnnotation names the image in an OCI index.
	RefNameAnnotation = imgspecv1.AnnotationRefName
	// ContainerdNameAnnotation is where Docker (and containerd) read an
	// image's full name in an OCI layout.
	ContainerdNameAnnotation = "io.containerd.image.name"
)

// BlobPath is where the blob d is in a layout.
func BlobPath(d digest.Digest) string { return BlobDir + d.Encoded() }

// Writer writes an archive's entries into a tar stream.
type Writer struct {
	TW    *tar.Writer
	MTime time.Time
}

// NewWriter is a Writer into w whose entries carry mtime.
func NewWriter(w io.Writer, mtime time.Time) *Writer {
	return &Writer{TW: tar.NewWriter(w), MTime: mtime}
}

// fileHeader and linkHeader are the headers of the archive's entries,
// the same when they are measured and when they are written.
func fileHeader(name string, size int64, mtime time.Time) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o444, ModTime: mtime.Truncate(time.Second)}
}

func linkHeader(name, target string, mtime time.Time) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o444, ModTime: mtime.Truncate(time.Second)}
}

// File writes an entry of size bytes that write produces; archive/tar
// refuses more or fewer.
func (a *Writer) File(name string, size int64, write func(io.Writer) error) error {
	if err := a.TW.WriteHeader(fileHeader(name, size, a.MTime)); err != nil {
		return err
	}
	return write(a.TW)
}

// Bytes writes an entry holding b.
func (a *Writer) Bytes(name string, b []byte) error {
	return a.File(name, int64(len(b)), func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// Link writes a hard link name to the earlier entry target.
func (a *Writer) Link(name, target string) error {
	return a.TW.WriteHeader(linkHeader(name, target, a.MTime))
}

// Close ends the tar stream.
func (a *Writer) Close() error { return a.TW.Close() }

// EntrySize is what one entry takes in the tar: its header blocks, as
// archive/tar encodes them, and its content rounded up to whole blocks.
func (a *Writer) EntrySize(name string, size int64) int64 {
	hb, _ := encodeBlocks(fileHeader(name, size, a.MTime))
	return int64(hb) + (size+511)/512*512
}

// LinkSize is what a hard link entry takes in the tar.
func (a *Writer) LinkSize(name, target string) int64 {
	hb, _ := encodeBlocks(linkHeader(name, target, a.MTime))
	return int64(hb)
}

// encodeBlocks is how many bytes archive/tar writes for h's header.
func encodeBlocks(h *tar.Header) (int, error) {
	var c countOnly
	tw := tar.NewWriter(&c)
	if err := tw.WriteHeader(h); err != nil {
		return 0, err
	}
	return int(c), nil
}

type countOnly int

func (c *countOnly) Write(p []byte) (int, error) { *c += countOnly(len(p)); return len(p), nil }

// Docs are the documents an archive ends with, for one image.
type Docs struct {
	Config, Manifest, Index, DockerManifest []byte
	ConfigDigest, ManifestDigest            digest.Digest
}

// Docs writes what an archive ends with: the config, the manifests and
// the indexes of docs.
func (a *Writer) Docs(docs *Docs) error {
	for _, e := range []struct {
		name string
		b    []byte
	}{
		{BlobPath(docs.ConfigDigest), docs.Config},
		{BlobPath(docs.ManifestDigest), docs.Manifest},
		{IndexFile, docs.Index},
		{DockerManifest, docs.DockerManifest},
	} {
		if err := a.Bytes(e.name, e.b); err != nil {
			return err
		}
	}
	return nil
}

// MakeDocs marshals the config and the manifests of an image whose
// layers are layers (bottom first, digests and sizes) and whose new
// layer's own entry is newLayerPath (empty: every layer under its
// digest), named ref in the indexes.
func MakeDocs(cfg *imgspecv1.Image, layers []imgspecv1.Descriptor, newLayerPath, ref string) (*Docs, error) {
	config, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return DocsFor(config, layers, newLayerPath, ref)
}

// DocsFor is MakeDocs for a config already marshalled.
func DocsFor(config []byte, layers []imgspecv1.Descriptor, newLayerPath, ref string) (*Docs, error) {
	d := Docs{Config: config}
	var err error
	d.ConfigDigest = digest.FromBytes(d.Config)
	if d.Manifest, err = MarshalManifest(ConfigDescriptor(d.Config), layers); err != nil {
		return nil, err
	}
	d.ManifestDigest = digest.FromBytes(d.Manifest)
	if d.Index, err = MarshalIndex(imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageManifest, Digest: d.ManifestDigest, Size: int64(len(d.Manifest))}, ref); err != nil {
		return nil, err
	}
	item := tarfile.ManifestItem{Config: BlobPath(d.ConfigDigest), RepoTags: []string{ref}}
	for i, l := range layers {
		p := BlobPath(l.Digest)
		if i == len(layers)-1 && newLayerPath != "" {
			// Docker's loader reads regular entries only: the new layer's
			// own, not the link to it.
			p = newLayerPath
		}
		item.Layers = append(item.Layers, p)
	}
	if d.DockerManifest, err = json.Marshal([]tarfile.ManifestItem{item}); err != nil {
		return nil, err
	}
	return &d, nil
}

// ConfigDescriptor describes the image config b.
func ConfigDescriptor(b []byte) imgspecv1.Descriptor {
	return imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageConfig, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// MarshalManifest is the OCI manifest of an image of config and layers.
func MarshalManifest(config imgspecv1.Descriptor, layers []imgspecv1.Descriptor) ([]byte, error) {
	return json.Marshal(imgspecv1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: imgspecv1.MediaTypeImageManifest,
		Config:    config,
		Layers:    layers,
	})
}

// MarshalIndex is the OCI index of a layout holding the one image
// manifest, named ref.
func MarshalIndex(manifest imgspecv1.Descriptor, ref string) ([]byte, error) {
	manifest.Annotations = map[string]string{RefNameAnnotation: ref, ContainerdNameAnnotation: ref}
	return json.Marshal(imgspecv1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: imgspecv1.MediaTypeImageIndex,
		Manifests: []imgspecv1.Descriptor{manifest},
	})
}

// Layout is the oci-layout file.
func Layout() []byte {
	b, _ := json.Marshal(imgspecv1.ImageLayout{Version: imgspecv1.ImageLayoutVersion})
	return b
}

// Size is the exact size of the archive of an image whose base layers
// are base (digests and uncompressed sizes), whose new layer of
// newLayerSize bytes is written under newLayerPath and linked to its
// digest (none when newLayerPath is empty), and whose documents are docs,
// made with any digest standing in for the new layer's real one (the
// lengths do not change).
func (a *Writer) Size(base []imgspecv1.Descriptor, newLayerPath string, newLayerSize int64, docs *Docs) int64 {
	total := a.EntrySize(LayoutFile, int64(len(Layout())))
	for _, b := range base {
		total += a.EntrySize(BlobPath(b.Digest), b.Size)
	}
	placeholder := BlobPath(digest.FromString(""))
	if newLayerPath != "" {
		total += a.EntrySize(newLayerPath, newLayerSize) + a.LinkSize(placeholder, newLayerPath)
	}
	total += a.EntrySize(placeholder, int64(len(docs.Config)))
	total += a.EntrySize(placeholder, int64(len(docs.Manifest)))
	total += a.EntrySize(IndexFile, int64(len(docs.Index)))
	total += a.EntrySize(DockerManifest, int64(len(docs.DockerManifest)))
	return total + 1024
}
