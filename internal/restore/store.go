package restore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"go.podman.io/image/v5/docker/reference"

	"github.com/baicommit/baicommit/internal/layerstore"
	"github.com/baicommit/baicommit/internal/registry"
)

// StoreImage restores the image of a layer store whose layout is at path
// into p: its index, manifest and config are checked against its sidecar
// and their digests first, then the user's Podman pulls it from the
// layout (`podman pull oci:PATH`), checking every blob it reads against
// its digest, so a damaged blob fails the restore. The image is given the
// name it was frozen under, and name when set.
func StoreImage(ctx context.Context, p Podman, path, name string) (*Result, error) {
	if name != "" {
		if _, err := registry.ParseRef(name); err != nil {
			return nil, fmt.Errorf("--name: %w", err)
		}
	}
	st, img, err := layerstore.OpenImage(ctx, path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	defer img.Close()
	// Podman 4.3 names an image pulled from a layout after the layout's
	// path, which must then be a valid image name: pull it through a
	// link of such a name, then name it as it was frozen and drop the
	// link's name.
	tmp, err := os.MkdirTemp(linkDir(), "baicommit-restore-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	link := filepath.Join(tmp, "image")
	if err := os.Symlink(img.Path, link); err != nil {
		return nil, err
	}
	if err := p.Pull(ctx, "oci:"+link, PullOptions{}); err != nil {
		return nil, fmt.Errorf("load %s into Podman: %w", img.Path, err)
	}
	defer p.Remove(context.WithoutCancel(ctx), "localhost"+link+":latest")
	id := img.Manifest.Config.Digest.Encoded()
	res := &Result{Source: img.Path, Loaded: []string{id}, SHA256: img.Sidecar.SHA256, Sidecar: img.Sidecar, Image: id}
	if ref := img.Sidecar.Image; ref != "" {
		if err := p.Tag(ctx, id, ref); err != nil {
			return nil, fmt.Errorf("name the restored image %s: %w", ref, err)
		}
		res.Image = ref
	}
	return tagAs(ctx, p, res, name)
}

// linkDir is where the link restore pulls through goes: the temporary
// directory when its path is a valid image name, else /tmp.
func linkDir() string {
	d := os.TempDir()
	if _, err := reference.ParseNormalizedNamed("localhost" + filepath.Join(d, "baicommit-restore-1", "image")); err != nil {
		return "/tmp"
	}
	return d
}
