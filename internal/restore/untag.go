package restore

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// maxMetadata bounds the manifest and index files read from an archive.
const maxMetadata = 4 << 20

// OCI annotations that name an image in an OCI layout's index.json.
var nameAnnotations = []string{"org.opencontainers.image.ref.name", "io.containerd.image.name"}

// untagged passes the uncompressed archive r on as a tar with the same
// entries, minus every image name it carries: manifest.json's RepoTags,
// index.json's name annotations and the legacy "repositories" file. A
// `podman load` of the result loads the image without naming it, so an
// archive (whoever wrote it) can never move a name the user already has;
// the restore names it afterwards, by rules of its own. It also notes the
// image's id, the digest of its config.
type untagged struct {
	pr *io.PipeReader
	// id is set once manifest.json has gone by.
	id     string
	images int
}

func untag(r io.Reader) *untagged {
	pr, pw := io.Pipe()
	u := &untagged{pr: pr}
	go func() { pw.CloseWithError(u.copy(tar.NewReader(r), tar.NewWriter(pw))) }()
	return u
}

func (u *untagged) Read(p []byte) (int, error) { return u.pr.Read(p) }

// Close stops the copy early (after a failed load).
func (u *untagged) Close() error { return u.pr.Close() }

func (u *untagged) copy(tr *tar.Reader, tw *tar.Writer) error {
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return fmt.Errorf("read the archive's tar stream: %w", err)
		}
		var rewrite func([]byte) ([]byte, error)
		switch path.Clean(strings.TrimPrefix(hdr.Name, "/")) {
		case "repositories":
			continue
		case "manifest.json":
			rewrite = u.manifest
		case "index.json":
			rewrite = unnameIndex
		}
		if rewrite == nil || hdr.Typeflag != tar.TypeReg {
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := io.Copy(tw, tr); err != nil {
				return err
			}
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxMetadata+1))
		if err != nil {
			return err
		}
		if len(b) > maxMetadata {
			return fmt.Errorf("%s in the archive is larger than %d bytes", hdr.Name, maxMetadata)
		}
		if b, err = rewrite(b); err != nil {
			return fmt.Errorf("%s in the archive: %w", hdr.Name, err)
		}
		hdr.Size = int64(len(b))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
}

// manifest drops the RepoTags of a docker-archive's manifest.json and
// notes the image's id. A baicommit archive holds exactly one image.
func (u *untagged) manifest(b []byte) ([]byte, error) {
	var images []map[string]json.RawMessage
	if err := json.Unmarshal(b, &images); err != nil {
		return nil, err
	}
	u.images = len(images)
	if len(images) != 1 {
		return nil, fmt.Errorf("it lists %d images; a baicommit archive holds one", len(images))
	}
	var config string
	if err := json.Unmarshal(images[0]["Config"], &config); err != nil {
		return nil, fmt.Errorf("no config: %w", err)
	}
	// "<hex>.json" (docker save) or "blobs/sha256/<hex>" (an OCI layout).
	id := strings.TrimSuffix(path.Base(config), ".json")
	if len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("config %q is not named by its digest", config)
	}
	u.id = id
	delete(images[0], "RepoTags")
	return json.Marshal(images)
}

// unnameIndex drops the name annotations of an OCI layout's index.json.
func unnameIndex(b []byte) ([]byte, error) {
	var index map[string]json.RawMessage
	if err := json.Unmarshal(b, &index); err != nil {
		return nil, err
	}
	var manifests []map[string]json.RawMessage
	if raw, ok := index["manifests"]; ok {
		if err := json.Unmarshal(raw, &manifests); err != nil {
			return nil, err
		}
	}
	for _, m := range manifests {
		var ann map[string]string
		if raw, ok := m["annotations"]; ok {
			if err := json.Unmarshal(raw, &ann); err != nil {
				return nil, err
			}
		}
		for _, k := range nameAnnotations {
			delete(ann, k)
		}
		if len(ann) == 0 {
			delete(m, "annotations")
			continue
		}
		raw, _ := json.Marshal(ann)
		m["annotations"] = raw
	}
	if manifests != nil {
		raw, _ := json.Marshal(manifests)
		index["manifests"] = raw
	}
	return json.Marshal(index)
}
