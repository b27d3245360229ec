package asowner

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/tarfile"
)

// An archive a freeze writes is one tar that is both an OCI image layout
// (oci-layout, index.json, blobs/sha256/…) and a docker-archive
// (manifest.json naming the same blobs), the layout `docker save` writes
// since Docker 25: Podman 4.3's `load -i` takes it gzip'd as an OCI
// archive, newer Podman and Docker as a docker-archive.
//
// Its entries come in the order they can be written in one pass: the base
// layers (their digests are known), the new layer under a name of its own
// (its digest is known only at its end) and then a hard link to it under
// its digest, and last the config, the manifests and the indexes, which
// name the digests.
const (
	ociLayoutFile     = imgspecv1.ImageLayoutFile
	ociIndexFile      = "index.json"
	dockerManifest    = "manifest.json"
	blobDir           = imgspecv1.ImageBlobsDir + "/sha256/"
	refNameAnnotation = imgspecv1.AnnotationRefName
	// containerdNameAnnotation is where Docker (and containerd) read an
	// image's full name in an OCI layout.
	containerdNameAnnotation = "io.containerd.image.name"
)

func blobPath(d digest.Digest) string { return blobDir + d.Encoded() }

// archiveWriter writes the outer tar's entries.
type archiveWriter struct {
	tw    *tar.Writer
	mtime time.Time
}

// fileHeader and linkHeader are the headers of the outer tar's entries,
// the same when they are measured and when they are written.
func fileHeader(name string, size int64, mtime time.Time) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o444, ModTime: mtime.Truncate(time.Second)}
}

func linkHeader(name, target string, mtime time.Time) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o444, ModTime: mtime.Truncate(time.Second)}
}

func (a *archiveWriter) header(name string, size int64) error {
	return a.tw.WriteHeader(fileHeader(name, size, a.mtime))
}

// file writes an entry of size bytes from r; archive/tar refuses a reader
// that gives more or fewer.
func (a *archiveWriter) file(name string, size int64, write func(io.Writer) error) error {
	if err := a.header(name, size); err != nil {
		return err
	}
	return write(a.tw)
}

func (a *archiveWriter) bytes(name string, b []byte) error {
	return a.file(name, int64(len(b)), func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

func (a *archiveWriter) link(name, target string) error {
	return a.tw.WriteHeader(linkHeader(name, target, a.mtime))
}

// entrySize is what one entry takes in the tar: its header blocks, as
// archive/tar encodes them, and its content rounded up to whole blocks.
func (a *archiveWriter) entrySize(name string, size int64) int64 {
	hb, _ := encodeBlocks(fileHeader(name, size, a.mtime))
	return int64(hb) + (size+511)/512*512
}

func (a *archiveWriter) linkSize(name, target string) int64 {
	hb, _ := encodeBlocks(linkHeader(name, target, a.mtime))
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

// imageDocs are the documents an archive ends with, for one image.
type imageDocs struct {
	config, manifest, index, dockerManifest []byte
	configDigest, manifestDigest            digest.Digest
}

// makeDocs marshals the config and the manifests of an image whose
// layers are layers (bottom first, digests and sizes) and whose new
// layer's own entry is newLayerPath, named ref in the indexes.
func makeDocs(cfg *imgspecv1.Image, layers []imgspecv1.Descriptor, newLayerPath, ref string) (*imageDocs, error) {
	var d imageDocs
	var err error
	if d.config, err = json.Marshal(cfg); err != nil {
		return nil, err
	}
	d.configDigest = digest.FromBytes(d.config)
	m := imgspecv1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: imgspecv1.MediaTypeImageManifest,
		Config:    imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageConfig, Digest: d.configDigest, Size: int64(len(d.config))},
		Layers:    layers,
	}
	if d.manifest, err = json.Marshal(m); err != nil {
		return nil, err
	}
	d.manifestDigest = digest.FromBytes(d.manifest)
	idx := imgspecv1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: imgspecv1.MediaTypeImageIndex,
		Manifests: []imgspecv1.Descriptor{{
			MediaType: imgspecv1.MediaTypeImageManifest, Digest: d.manifestDigest, Size: int64(len(d.manifest)),
			Annotations: map[string]string{refNameAnnotation: ref, containerdNameAnnotation: ref},
		}},
	}
	if d.index, err = json.Marshal(idx); err != nil {
		return nil, err
	}
	item := tarfile.ManifestItem{Config: blobPath(d.configDigest), RepoTags: []string{ref}}
	for i, l := range layers {
		p := blobPath(l.Digest)
		if i == len(layers)-1 && newLayerPath != "" {
			// Docker's loader reads regular entries only: the new layer's
			// own, not the link to it.
			p = newLayerPath
		}
		item.Layers = append(item.Layers, p)
	}
	if d.dockerManifest, err = json.Marshal([]tarfile.ManifestItem{item}); err != nil {
		return nil, err
	}
	return &d, nil
}

// layout is the oci-layout file.
func layout() []byte {
	b, _ := json.Marshal(imgspecv1.ImageLayout{Version: imgspecv1.ImageLayoutVersion})
	return b
}

// archiveSize is the exact size of the outer tar: the base layers, the new
// layer and its link, and docs made with the new layer's real digest
// replaced by any other (the lengths do not change).
func (a *archiveWriter) archiveSize(base []baseLayer, newLayerPath string, newLayerSize int64, docs *imageDocs) (int64, error) {
	total := a.entrySize(ociLayoutFile, int64(len(layout())))
	for _, b := range base {
		d, err := digest.Parse(b.diffID)
		if err != nil {
			return 0, fmt.Errorf("layer %s: %w", short(b.id), err)
		}
		total += a.entrySize(blobPath(d), b.size)
	}
	placeholder := blobPath(digest.FromString(""))
	total += a.entrySize(newLayerPath, newLayerSize) + a.linkSize(placeholder, newLayerPath)
	total += a.entrySize(placeholder, int64(len(docs.config)))
	total += a.entrySize(placeholder, int64(len(docs.manifest)))
	total += a.entrySize(ociIndexFile, int64(len(docs.index)))
	total += a.entrySize(dockerManifest, int64(len(docs.dockerManifest)))
	return total + 1024, nil
}
