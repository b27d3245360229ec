// Package restore makes a frozen image available again in the user's own
// Podman: from an archive on the shared filesystem, verified against its
// sidecar before a single byte reaches Podman, or from a registry.
//
// It runs as the user (the CLI), never through the root agent: loading an
// image into one's own rootless Podman needs no privilege, so nothing
// about it has to be trusted to root.
package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/klauspost/pgzip"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/archives"
	"github.com/baicommit/baicommit/internal/registry"
)

// Podman is what a restore needs from the user's Podman.
type Podman interface {
	// Load loads an archive stream (an OCI or docker archive, compressed
	// or not) and returns the
	// names (or ids) of what it loaded.
	Load(ctx context.Context, r io.Reader) ([]string, error)
	// Tag gives image another name.
	Tag(ctx context.Context, image, name string) error
	// Remove removes an image (by name or id) again.
	Remove(ctx context.Context, image string) error
	// ImageID is the id of the image name names, "" if none does.
	ImageID(ctx context.Context, name string) (string, error)
	// Pull pulls ref from its registry.
	Pull(ctx context.Context, ref string, opts PullOptions) error
}

// PullOptions are the registry settings of a pull.
type PullOptions struct {
	Creds    string // USER:PASSWORD, or empty for the user's auth files
	AuthFile string
	Insecure bool // --tls-verify=false
}

// Result says what was restored.
type Result struct {
	// Source is the archive path or registry reference restored from.
	Source string `json:"source"`
	// Image is the name to `podman run`: the --name given, or the one the
	// archive or reference carries (for an archive whose name already
	// belongs to another image of the user's, the image's id).
	Image string `json:"image"`
	// ID is the restored image's id (archives only).
	ID string `json:"id,omitempty"`
	// Loaded are the names Podman reported for what it loaded.
	Loaded []string `json:"loaded,omitempty"`
	// SHA256 is the verified digest of the archive (archives only).
	SHA256 string `json:"sha256,omitempty"`
	// Sidecar is the archive's description (archives only).
	Sidecar *api.Sidecar `json:"sidecar,omitempty"`
	// Warnings say what the restore left alone, and why.
	Warnings []string `json:"warnings,omitempty"`
}

// Archive verifies the archive at path against its sidecar and, only if it
// matches, loads it into p, decompressing on the fly (Podman 4.3 cannot
// load compressed docker-archives itself). The archive and its sidecar
// must be the caller's own files (archives.Open).
//
// The image is loaded without any of the names the archive carries, so
// that loading it can never move a name the user already has: it is then
// given the name its sidecar recorded, unless that name already belongs to
// another image of the user's (which is left alone, with a warning), and
// name, if set, which moves it if need be (the user asked).
func Archive(ctx context.Context, p Podman, path, name string) (*Result, error) {
	if name != "" {
		if _, err := registry.ParseRef(name); err != nil {
			return nil, fmt.Errorf("--name: %w", err)
		}
	}
	f, sc, err := archives.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The whole file is hashed before anything is loaded: Podman would
	// otherwise have imported layers of a file that turns out not to be
	// the frozen one.
	if err := archives.Verify(ctx, f, sc); err != nil {
		return nil, err
	}
	recorded := ""
	if ref, err := registry.ParseRef(sc.Image); err == nil {
		recorded = ref.String()
	}
	holder := ""
	if recorded != "" {
		if holder, err = p.ImageID(ctx, recorded); err != nil {
			return nil, fmt.Errorf("look for the image %s in your Podman: %w", recorded, err)
		}
	}
	// And hashed again as it is loaded: a file changed between the two
	// reads is caught too, and what was loaded from it removed.
	h := archives.NewHasher(f)
	// Decompressed here for every layout (the dual OCI and docker layout a
	// freeze writes, and older pure docker-archives, which Podman 4.3
	// cannot load compressed), so that the names can be taken out.
	gz, err := pgzip.NewReader(h)
	if err != nil {
		return nil, fmt.Errorf("%s is not a gzip-compressed archive: %w", path, err)
	}
	defer gz.Close()
	stream := untag(gz)
	defer stream.Close()
	loaded, err := p.Load(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("load %s into Podman: %w", path, err)
	}
	if _, err := io.Copy(io.Discard, h); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if err := h.Check(path, sc); err != nil {
		for _, img := range loaded {
			// Best effort: the error below says what happened either way.
			_ = p.Remove(context.WithoutCancel(ctx), img)
		}
		return nil, fmt.Errorf("%w (it changed while it was being restored; what was loaded from it was removed again)", err)
	}
	res := &Result{Source: path, Loaded: loaded, SHA256: sc.SHA256, Sidecar: sc, ID: stream.id}
	if res.ID == "" {
		return nil, fmt.Errorf("%s holds no docker-archive manifest.json: it is not an archive baicommit wrote", path)
	}
	res.Image = res.ID
	switch {
	case recorded == "":
	case holder == "" || strings.TrimPrefix(holder, "sha256:") == res.ID:
		if err := p.Tag(ctx, res.ID, recorded); err != nil {
			return nil, fmt.Errorf("name the restored image %s: %w", recorded, err)
		}
		res.Image = recorded
	default:
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s already names another image in your Podman (%.12s), so it was left as it is: the restored image is %.12s; give --name NAME:TAG to name it", recorded, strings.TrimPrefix(holder, "sha256:"), res.ID))
	}
	// Retention can keep what was used lately.
	if err := archives.RecordUse(archives.SidecarPath(path), time.Now()); err != nil {
		res.Warnings = append(res.Warnings, "the restore could not be recorded in the sidecar: "+err.Error())
	}
	return tagAs(ctx, p, res, name)
}

// Ref pulls ref into p and names it name if set.
func Ref(ctx context.Context, p Podman, ref, name string, opts PullOptions) (*Result, error) {
	named, err := registry.ParseRef(ref)
	if err != nil {
		return nil, err
	}
	if name != "" {
		if _, err := registry.ParseRef(name); err != nil {
			return nil, fmt.Errorf("--name: %w", err)
		}
	}
	if opts.Creds != "" {
		if _, err := registry.ParseCreds(opts.Creds); err != nil {
			return nil, err
		}
	}
	if err := p.Pull(ctx, named.String(), opts); err != nil {
		return nil, fmt.Errorf("pull %s: %w", named, err)
	}
	return tagAs(ctx, p, &Result{Source: named.String(), Image: named.String()}, name)
}

func tagAs(ctx context.Context, p Podman, res *Result, name string) (*Result, error) {
	if name == "" {
		return res, nil
	}
	if res.Image == "" {
		return nil, errors.New("podman did not say what it loaded; cannot name it")
	}
	image := res.Image
	if res.ID != "" {
		image = res.ID
	}
	if err := p.Tag(ctx, image, name); err != nil {
		return nil, fmt.Errorf("name the restored image %s: %w", name, err)
	}
	res.Image = name
	return res, nil
}

// IsArchive tells an archive path from a registry reference: paths end in
// .tar.gz or contain a '/' that starts them or comes from "./" or "../";
// references never do.
func IsArchive(arg string) bool {
	return strings.HasSuffix(arg, archives.Suffix) || strings.HasPrefix(arg, "/") ||
		strings.HasPrefix(arg, "./") || strings.HasPrefix(arg, "../")
}
