package asowner

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/tarfile"

	"github.com/baicommit/baicommit/internal/ociarchive"
)

// maxDoc bounds the small documents of a docker-archive (config,
// manifest.json) read into memory.
const maxDoc = 16 << 20

// rewriteDockerArchive turns the docker-archive tar stream containers/image
// writes (the commit path) into the archive layout a direct freeze writes,
// on the fly: each layer and the config go to blobs/sha256/, checked
// against the digests their names carry, the legacy per-layer directories
// are dropped, and oci-layout, the OCI manifest and index, and a
// manifest.json naming the blobs come at the end. So an archive made
// through podman commit loads everywhere too (Podman 4.3's `load -i`
// reads only the OCI side of a compressed archive).
func rewriteDockerArchive(r io.Reader, aw *ociarchive.Writer, ref string) (configDigest digest.Digest, err error) {
	tr := tar.NewReader(r)
	sizes := map[string]int64{}
	var items []tarfile.ManifestItem
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("read the image stream: %w", err)
		}
		name := path.Clean(h.Name)
		switch {
		case h.Typeflag != tar.TypeReg || strings.Contains(name, "/"):
			// Legacy layer directories, VERSION and json files, links.
			continue
		case name == "manifest.json":
			b, err := io.ReadAll(io.LimitReader(tr, maxDoc))
			if err != nil {
				return "", err
			}
			if err := json.Unmarshal(b, &items); err != nil {
				return "", fmt.Errorf("the image stream's manifest.json: %w", err)
			}
			continue
		case name == "repositories":
			continue
		}
		hex, ext, ok := strings.Cut(name, ".")
		d := digest.NewDigestFromEncoded(digest.SHA256, hex)
		if !ok || (ext != "tar" && ext != "json") || d.Validate() != nil {
			return "", fmt.Errorf("unexpected entry %q in the image stream", h.Name)
		}
		h256 := digest.SHA256.Hash()
		err = aw.File(ociarchive.BlobPath(d), h.Size, func(w io.Writer) error {
			_, err := io.Copy(io.MultiWriter(w, h256), tr)
			return err
		})
		if err != nil {
			return "", err
		}
		if got := digest.NewDigest(digest.SHA256, h256); got != d {
			return "", fmt.Errorf("%s in the image stream has digest %s", h.Name, got)
		}
		sizes[name] = h.Size
	}
	if len(items) != 1 {
		return "", fmt.Errorf("the image stream holds %d images, not 1", len(items))
	}
	item := items[0]
	cfg, ok := sizes[item.Config]
	if !ok {
		return "", fmt.Errorf("the image stream lacks its config %s", item.Config)
	}
	configDigest = digest.NewDigestFromEncoded(digest.SHA256, strings.TrimSuffix(item.Config, ".json"))
	m := imgspecv1.Manifest{MediaType: imgspecv1.MediaTypeImageManifest,
		Config: imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageConfig, Digest: configDigest, Size: cfg}}
	m.SchemaVersion = 2
	docker := tarfile.ManifestItem{Config: ociarchive.BlobPath(configDigest), RepoTags: []string{ref}}
	for _, l := range item.Layers {
		size, ok := sizes[l]
		if !ok {
			return "", fmt.Errorf("the image stream lacks its layer %s", l)
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, strings.TrimSuffix(l, ".tar"))
		m.Layers = append(m.Layers, imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageLayer, Digest: d, Size: size})
		docker.Layers = append(docker.Layers, ociarchive.BlobPath(d))
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	md := digest.FromBytes(mb)
	idx := imgspecv1.Index{MediaType: imgspecv1.MediaTypeImageIndex, Manifests: []imgspecv1.Descriptor{{
		MediaType: imgspecv1.MediaTypeImageManifest, Digest: md, Size: int64(len(mb)),
		Annotations: map[string]string{ociarchive.RefNameAnnotation: ref, ociarchive.ContainerdNameAnnotation: ref},
	}}}
	idx.SchemaVersion = 2
	ib, err := json.Marshal(idx)
	if err != nil {
		return "", err
	}
	db, err := json.Marshal([]tarfile.ManifestItem{docker})
	if err != nil {
		return "", err
	}
	for _, e := range []struct {
		name string
		b    []byte
	}{{ociarchive.BlobPath(md), mb}, {ociarchive.IndexFile, ib}, {ociarchive.DockerManifest, db}, {ociarchive.LayoutFile, ociarchive.Layout()}} {
		if err := aw.Bytes(e.name, e.b); err != nil {
			return "", err
		}
	}
	return configDigest, nil
}
