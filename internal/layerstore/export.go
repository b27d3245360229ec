package layerstore

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/baicommit/baicommit/internal/ociarchive"
)

// Export writes img as the archive a freeze writes (package ociarchive:
// an OCI layout and a docker-archive in one tar, every layer uncompressed
// under its diff ID) to w, uncompressed; the caller compresses it. Every
// blob is checked against its digest as it is read, and every layer
// against its diff ID: a damaged store fails the export. It returns the
// tar's size.
func (s *Store) Export(ctx context.Context, img *Image, w io.Writer, mtime time.Time) (int64, error) {
	layers := make([]imgspecv1.Descriptor, len(img.Manifest.Layers))
	for i, l := range img.Manifest.Layers {
		size, ok := s.DiffSize(img, i)
		if !ok {
			// Not in the index: one pass to learn it.
			n, err := s.layerStream(ctx, l, img.DiffIDs[i], io.Discard)
			if err != nil {
				return 0, err
			}
			size = n
		}
		layers[i] = imgspecv1.Descriptor{MediaType: MediaTypeLayer, Digest: img.DiffIDs[i], Size: size}
	}
	docs, err := ociarchive.DocsFor(img.Config, layers, "", img.Ref)
	if err != nil {
		return 0, err
	}
	cw := &countingWriter{w: w}
	aw := ociarchive.NewWriter(cw, mtime)
	total := aw.Size(layers, "", 0, docs)
	if err := aw.Bytes(ociarchive.LayoutFile, ociarchive.Layout()); err != nil {
		return cw.n, err
	}
	for i, l := range img.Manifest.Layers {
		err := aw.File(ociarchive.BlobPath(layers[i].Digest), layers[i].Size, func(w io.Writer) error {
			_, err := s.layerStream(ctx, l, img.DiffIDs[i], w)
			return err
		})
		if err != nil {
			return cw.n, fmt.Errorf("layer %d (%s): %w", i+1, l.Digest, err)
		}
	}
	if err := aw.Docs(docs); err != nil {
		return cw.n, err
	}
	if err := aw.Close(); err != nil {
		return cw.n, err
	}
	if cw.n != total {
		return cw.n, fmt.Errorf("internal error: wrote %d bytes, planned %d", cw.n, total)
	}
	return cw.n, nil
}

// layerStream writes layer l's uncompressed tar to w, checking the blob's
// digest and the layer's diff ID, and returns its length.
func (s *Store) layerStream(ctx context.Context, l imgspecv1.Descriptor, diffID digest.Digest, w io.Writer) (int64, error) {
	br, err := s.OpenBlob(l.Digest, l.Size)
	if err != nil {
		return 0, err
	}
	defer br.Close()
	var r io.Reader = ctxReader{ctx, br}
	if l.MediaType == MediaTypeLayerGzip {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return 0, fmt.Errorf("blob %s: %w", l.Digest, err)
		}
		defer zr.Close()
		r = zr
	}
	h := digest.SHA256.Hash()
	n, err := io.Copy(io.MultiWriter(w, h), r)
	if err != nil {
		if l.MediaType == MediaTypeLayerGzip {
			// A damaged blob is most often why it does not decompress:
			// say so when its digest shows it.
			if _, derr := io.Copy(io.Discard, br); errors.Is(derr, ErrDamaged) {
				return n, derr
			}
		}
		return n, fmt.Errorf("blob %s: %w", l.Digest, err)
	}
	if l.MediaType == MediaTypeLayerGzip {
		// The gzip stream may end before the file does: read the blob to
		// its end, so that its digest is checked too.
		if _, err := io.Copy(io.Discard, br); err != nil {
			return n, err
		}
	}
	if got := digest.NewDigest(digest.SHA256, h); got != diffID {
		return n, fmt.Errorf("the layer in blob %s has diff ID %s, not %s: the layer store is damaged", l.Digest, got, diffID)
	}
	return n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ctxReader stops a long read when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
