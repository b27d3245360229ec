package layerstore

import (
	"context"
	"fmt"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/archives"
	"github.com/baicommit/baicommit/internal/registry"
)

// Push pushes the image name of s to opts.Ref straight from the store:
// its layout is containers/image's source, so the gzip'd layers go as they
// are, blobs the registry has are skipped, every blob read is checked
// against its digest (a damaged one fails the push), and nothing is
// unpacked to temporary space. Uncompressed base layers the registry
// lacks are compressed on the way, as registries expect. The image's
// small documents are checked first.
func Push(ctx context.Context, s *Store, name string, opts registry.Options) (registry.Result, error) {
	img, err := s.Image(ctx, name)
	if err != nil {
		return registry.Result{}, err
	}
	defer img.Close()
	opts.Archive, opts.Layout = "", img.Path
	res, err := registry.Push(ctx, opts)
	if err != nil {
		return res, fmt.Errorf("push %s: %w", img.Path, err)
	}
	return res, nil
}

// RecordPush adds rec to the pushes in the sidecar of image name,
// replacing the sidecar atomically.
func (s *Store) RecordPush(name string, rec api.PushRecord) error {
	dir, err := openDirAt(s.images, name)
	if err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	defer dir.Close()
	return archives.RecordPushAt(dir, SidecarFile, rec)
}
