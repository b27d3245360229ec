package asowner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/image"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/storage"
	drivers "go.podman.io/storage/drivers"
	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/idtools"
	stypes "go.podman.io/storage/types"

	"github.com/baicommit/baicommit/agent/asowner/layer"
	"github.com/baicommit/baicommit/agent/messages"
)

// unsupported is a setup the direct freeze does not read: nothing was
// written, and the agent falls back to the commit path.
type unsupported struct{ why string }

func (u *unsupported) Error() string { return u.why }

func unsupportedf(format string, args ...any) error {
	return &unsupported{why: fmt.Sprintf(format, args...)}
}

// openStore opens the owner's containers-storage as their Podman does:
// their storage.conf (read in their user namespace, with their HOME) for
// the driver's options, and the roots and driver their Podman reports.
func openStore(s messages.Store) (storage.Store, error) {
	opts, err := storage.DefaultStoreOptions()
	if err != nil {
		return nil, fmt.Errorf("read the storage configuration: %w", err)
	}
	if s.Driver != "" && s.Driver != opts.GraphDriverName {
		// Podman runs another driver than storage.conf says (a
		// containers.conf or command-line override): its options are not
		// this driver's.
		opts.GraphDriverOptions = nil
	}
	if s.GraphRoot != "" {
		opts.GraphRoot, opts.RunRoot = s.GraphRoot, s.RunRoot
	}
	if s.Driver != "" {
		opts.GraphDriverName = s.Driver
	}
	if len(s.Options) > 0 {
		opts.GraphDriverOptions = s.Options
	}
	store, err := storage.GetStore(stypes.StoreOptions{
		GraphRoot: opts.GraphRoot, RunRoot: opts.RunRoot, GraphDriverName: opts.GraphDriverName,
		GraphDriverOptions: opts.GraphDriverOptions, UIDMap: opts.UIDMap, GIDMap: opts.GIDMap,
		RootlessStoragePath: opts.RootlessStoragePath, PullOptions: opts.PullOptions,
	})
	if err != nil {
		return nil, fmt.Errorf("open the image store %s: %w", opts.GraphRoot, err)
	}
	return store, nil
}

// baseLayer is one layer of the container's image, streamed from the
// store through its tar-split.
type baseLayer struct {
	id       string
	diffID   string // sha256:…, the uncompressed digest
	size     int64
	tarSplit string // path of its tar-split file
}

// frozen is what a direct freeze reads: the image's layers, its config,
// and the container's changes.
type frozen struct {
	store   storage.Store
	driver  drivers.Driver
	base    []baseLayer // bottom first
	config  *imgspecv1.Image
	src     layer.Source
	release func() // unmounts what was mounted to read the changes
}

// locate finds the container and everything below it, and chooses how to
// read its changes. Each store call takes the store's locks for a moment
// only: the owner's Podman goes on working while the freeze streams.
func locate(ctx context.Context, store storage.Store, spec messages.Spec) (*frozen, error) {
	ctr, err := store.Container(spec.ContainerID)
	if err != nil {
		if errors.Is(err, stypes.ErrContainerUnknown) {
			return nil, fmt.Errorf("container %s is gone from the image store (removed?)", short(spec.ContainerID))
		}
		return nil, fmt.Errorf("find container %s in the image store: %w", short(spec.ContainerID), err)
	}
	if ctr.ImageID == "" {
		return nil, unsupportedf("container %s has no image (created from a root filesystem)", short(ctr.ID))
	}
	img, err := store.Image(ctr.ImageID)
	if err != nil {
		return nil, fmt.Errorf("find the image of container %s: %w", short(ctr.ID), err)
	}
	cl, err := store.Layer(ctr.LayerID)
	if err != nil {
		return nil, fmt.Errorf("find the layer of container %s: %w", short(ctr.ID), err)
	}
	driver, err := store.GraphDriver()
	if err != nil {
		return nil, fmt.Errorf("open the storage driver: %w", err)
	}
	f := &frozen{store: store, driver: driver, release: func() {}}
	layerDir := filepath.Join(store.GraphRoot(), driver.String()+"-layers")
	for id := img.TopLayer; id != ""; {
		l, err := store.Layer(id)
		if err != nil {
			return nil, fmt.Errorf("find layer %s of the image: %w", short(id), err)
		}
		if l.UncompressedDigest == "" || l.UncompressedSize <= 0 {
			return nil, unsupportedf("layer %s of the image has no recorded digest or size", short(id))
		}
		ts := filepath.Join(layerDir, id+".tar-split.gz")
		if _, err := os.Stat(ts); err != nil {
			return nil, unsupportedf("layer %s of the image is not in the store's own layers (an additional image store?) or has no tar-split (%v)", short(id), err)
		}
		f.base = append(f.base, baseLayer{id: id, diffID: l.UncompressedDigest.String(), size: l.UncompressedSize, tarSplit: ts})
		id = l.Parent
	}
	slices.Reverse(f.base)
	if f.config, err = baseConfig(ctx, store, img.ID); err != nil {
		return nil, err
	}
	if got := len(f.config.RootFS.DiffIDs); got != len(f.base) {
		return nil, unsupportedf("the image's config lists %d layers, its store %d", got, len(f.base))
	}
	for i, d := range f.config.RootFS.DiffIDs {
		if d.String() != f.base[i].diffID {
			return nil, unsupportedf("layer %d of the image is %s in its config but %s in the store", i+1, d, f.base[i].diffID)
		}
	}

	mounts, err := mountPoints(store, ctr.ID, spec.Container)
	if err != nil {
		return nil, err
	}
	f.src = layer.Source{Mounts: mounts, Exclude: spec.Exclude}
	if len(cl.UIDMap) > 0 || len(cl.GIDMap) > 0 {
		f.src.IDMap = idtools.NewIDMappingsFromMaps(cl.UIDMap, cl.GIDMap)
	}
	if err := f.chooseSource(cl); err != nil {
		return nil, err
	}
	return f, nil
}

// chooseSource says where the container's changes are read: a native
// overlay's upper directory, walked whole; otherwise the driver's change
// list against the parent layer, with the files read from the mounted
// container.
func (f *frozen) chooseSource(cl *storage.Layer) error {
	name := f.driver.String()
	if name == "overlay" && statusIs(f.driver, "Native Overlay Diff", "true") && !statusIs(f.driver, "Using metacopy", "true") {
		md, err := f.driver.Metadata(cl.ID)
		if err != nil {
			return fmt.Errorf("find the container's changes: %w", err)
		}
		f.src.Root = md["UpperDir"]
		if md["LowerDir"] != "" {
			f.src.Lowers = strings.Split(md["LowerDir"], ":")
		}
		if f.src.Root == "" {
			return unsupportedf("the overlay driver names no upper directory for the container")
		}
		return nil
	}
	if name != "vfs" && name != "overlay" {
		return unsupportedf("the %s storage driver is not read directly", name)
	}
	root, err := f.driver.Get(cl.ID, drivers.MountOpts{MountLabel: cl.MountLabel})
	if err != nil {
		return unsupportedf("mount the container's layer to read it (%v)", err)
	}
	parent, err := f.driver.Get(cl.Parent, drivers.MountOpts{MountLabel: cl.MountLabel, Options: []string{"ro"}})
	if err != nil {
		_ = f.driver.Put(cl.ID)
		return unsupportedf("mount the image's layer to compare with (%v)", err)
	}
	f.release = func() {
		_ = f.driver.Put(cl.Parent)
		_ = f.driver.Put(cl.ID)
	}
	changes, err := f.driver.Changes(cl.ID, f.src.IDMap, cl.Parent, nil, cl.MountLabel)
	if err != nil {
		f.release()
		return fmt.Errorf("list the container's changes: %w", err)
	}
	f.src.Root, f.src.Lowers = root, []string{parent}
	f.src.Changes = make([]layer.Change, 0, len(changes))
	for _, c := range changes {
		f.src.Changes = append(f.src.Changes, layer.Change{Path: strings.TrimPrefix(c.Path, "/"), Deleted: c.Kind == archive.ChangeDelete})
	}
	return nil
}

func statusIs(d drivers.Driver, key, want string) bool {
	for _, kv := range d.Status() {
		if kv[0] == key {
			return kv[1] == want
		}
	}
	return false
}

// baseConfig is the OCI config of the container's image, as
// containers/image reads it from the store.
func baseConfig(ctx context.Context, store storage.Store, imageID string) (*imgspecv1.Image, error) {
	ref, err := istorage.Transport.ParseStoreReference(store, "@"+imageID)
	if err != nil {
		return nil, fmt.Errorf("find image %s: %w", short(imageID), err)
	}
	src, err := ref.NewImageSource(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("open image %s: %w", short(imageID), err)
	}
	defer src.Close()
	img, err := image.FromUnparsedImage(ctx, nil, image.UnparsedInstance(src, nil))
	if err != nil {
		return nil, fmt.Errorf("read image %s: %w", short(imageID), err)
	}
	cfg, err := img.OCIConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the config of image %s: %w", short(imageID), err)
	}
	return cfg, nil
}

// maxRuntimeConfig bounds what is read of the container's runtime spec.
const maxRuntimeConfig = 16 << 20

// mountPoints are the container paths mounted over: those the runtime
// spec Podman generated names (which include what CDI devices and the
// runtime itself add, like /etc/hosts), and those Podman's inspect named.
func mountPoints(store storage.Store, id string, c *messages.Container) ([]string, error) {
	var out []string
	if c != nil {
		out = append(out, c.Mounts...)
	}
	dirs := []string{}
	if d, err := store.ContainerDirectory(id); err == nil {
		dirs = append(dirs, d)
	}
	if d, err := store.ContainerRunDirectory(id); err == nil {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		f, err := os.Open(filepath.Join(d, "config.json"))
		if err != nil {
			continue
		}
		var spec struct {
			Mounts []struct {
				Destination string `json:"destination"`
			} `json:"mounts"`
		}
		err = json.NewDecoder(io.LimitReader(f, maxRuntimeConfig)).Decode(&spec)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read the container's runtime spec: %w", err)
		}
		for _, m := range spec.Mounts {
			out = append(out, m.Destination)
		}
	}
	for i, m := range out {
		out[i] = path.Clean("/" + m)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func short(id string) string { return id[:min(len(id), 12)] }
