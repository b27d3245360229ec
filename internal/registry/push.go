// Package registry pushes frozen images (docker-archive .tar.gz files) to
// OCI registries with containers/image, using the credentials of whoever
// runs it: the standard containers auth files of that user, an explicit
// auth file, or USER:PASSWORD given for this push only.
//
// It needs no Podman and no container storage, so the CLI can push from a
// login node, and the agent's helper can push as the archive's owner.
package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	dockerarchive "go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// Options describe one push.
type Options struct {
	// Archive is the docker-archive to push (.tar or .tar.gz). It may be a
	// /proc/self/fd/N path of a file the caller opened safely.
	Archive string
	// Layout, instead of Archive, is an OCI image layout holding one
	// image (a layer store's): its blobs are pushed as they are, each
	// checked against its digest as it is read, and nothing is unpacked
	// to temporary space.
	Layout string
	// Ref is the destination NAME[:TAG], optionally prefixed docker://.
	Ref string
	// Creds is USER:PASSWORD; empty means the auth files.
	Creds string
	// AuthFile replaces the default auth files when set.
	AuthFile string
	// Insecure allows plain HTTP and unverified TLS (--tls-verify=false).
	Insecure bool
	// Retries is how many times a transient failure is retried (0: none).
	Retries int
	// RetryDelay is the first wait between attempts; it doubles each time.
	RetryDelay time.Duration
	// TempDir holds the decompressed archive while it is pushed (the
	// docker-archive format needs random access); empty means /var/tmp.
	TempDir string
	// Progress, if set, is called from time to time with the layer bytes
	// read so far and their total.
	Progress func(sent, total int64)
}

// DefaultRetries is how often a push is retried after transient errors.
const DefaultRetries = 3

// Result is where a push went.
type Result struct {
	// Ref is the normalized destination, e.g. registry.example/ns/img:v1.
	Ref string `json:"ref"`
	// Digest is the manifest digest in the registry; `podman pull
	// REF@DIGEST` gets exactly this image.
	Digest string `json:"digest"`
}

// ParseRef normalizes a destination: NAME[:TAG] with an optional docker://
// prefix; no digest; the tag defaults to latest.
func ParseRef(s string) (reference.NamedTagged, error) {
	s = strings.TrimPrefix(s, "docker://")
	if s == "" {
		return nil, errors.New("no destination given: want REGISTRY/NAME[:TAG]")
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a valid image reference: want REGISTRY/NAME[:TAG] (%v)", s, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, fmt.Errorf("%q has a digest: push to a NAME:TAG", s)
	}
	tagged, ok := reference.TagNameOnly(named).(reference.NamedTagged)
	if !ok {
		return nil, fmt.Errorf("%q has no tag", s)
	}
	return tagged, nil
}

// ParseCreds splits USER:PASSWORD. The password may contain ':'.
func ParseCreds(s string) (*types.DockerAuthConfig, error) {
	user, pass, ok := strings.Cut(s, ":")
	if !ok || user == "" || pass == "" {
		return nil, errors.New("credentials must be USER:PASSWORD")
	}
	return &types.DockerAuthConfig{Username: user, Password: pass}, nil
}

// Push copies the image in opts.Archive to opts.Ref and returns the
// manifest digest the registry now holds.
func Push(ctx context.Context, opts Options) (Result, error) {
	dest, err := ParseRef(opts.Ref)
	if err != nil {
		return Result{}, err
	}
	res := Result{Ref: dest.String()}
	sys := &types.SystemContext{
		AuthFilePath:         opts.AuthFile,
		BigFilesTemporaryDir: opts.TempDir,
	}
	if opts.Insecure {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	}
	secret := ""
	if opts.Creds != "" {
		auth, err := ParseCreds(opts.Creds)
		if err != nil {
			return res, err
		}
		sys.DockerAuthConfig = auth
		secret = auth.Password
	}
	pushErr := func(err error) error { return explain(res.Ref, reference.Domain(dest), Redact(err, secret)) }
	if err := defaultAuth(sys, dest); err != nil {
		return res, err
	}

	src, closeSrc, err := source(sys, opts)
	if err != nil {
		return res, err
	}
	defer closeSrc()
	destRef, err := docker.NewReference(dest)
	if err != nil {
		return res, err
	}
	policy, err := signature.NewPolicyContext(&signature.Policy{
		Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		return res, err
	}
	defer policy.Destroy()

	total := layerBytes(ctx, sys, src)
	delay := opts.RetryDelay
	if delay <= 0 {
		delay = 2 * time.Second
	}
	var manifestBytes []byte
	err = retry(ctx, opts.Retries, delay, func() error {
		var p *progress
		copts := &copy.Options{SourceCtx: sys, DestinationCtx: sys}
		if opts.Progress != nil {
			p = newProgress(total, opts.Progress)
			copts.Progress, copts.ProgressInterval = p.ch, 250*time.Millisecond
		}
		m, err := copy.Image(ctx, policy, destRef, src, copts)
		if p != nil {
			p.stop()
		}
		manifestBytes = m
		return err
	})
	if err != nil {
		return res, pushErr(err)
	}
	d, err := manifest.Digest(manifestBytes)
	if err != nil {
		return res, fmt.Errorf("digest of the pushed manifest: %w", err)
	}
	res.Digest = d.String()
	return res, nil
}

// source is what opts pushes: the layout, or the image of the archive
// (decompressed once, whatever the retries).
func source(sys *types.SystemContext, opts Options) (types.ImageReference, func(), error) {
	if opts.Layout != "" {
		ref, err := layout.NewReference(opts.Layout, "")
		if err != nil {
			return nil, nil, fmt.Errorf("read image layout %s: %w", opts.Layout, err)
		}
		return ref, func() {}, nil
	}
	reader, err := dockerarchive.NewReader(sys, opts.Archive)
	if err != nil {
		return nil, nil, fmt.Errorf("read archive %s: %w", opts.Archive, err)
	}
	refs, err := reader.List()
	if err != nil {
		reader.Close()
		return nil, nil, fmt.Errorf("read archive %s: %w", opts.Archive, err)
	}
	if len(refs) != 1 || len(refs[0]) == 0 {
		reader.Close()
		return nil, nil, fmt.Errorf("archive %s holds %d images; baicommit archives hold one", opts.Archive, len(refs))
	}
	return refs[0][0], func() { reader.Close() }, nil
}

// layerBytes sums the layer sizes of the image, 0 if unknown; it is the
// total of the progress display.
func layerBytes(ctx context.Context, sys *types.SystemContext, ref types.ImageReference) int64 {
	img, err := ref.NewImage(ctx, sys)
	if err != nil {
		return 0
	}
	defer img.Close()
	var n int64
	for _, l := range img.LayerInfos() {
		if l.Size > 0 {
			n += l.Size
		}
	}
	return n
}

// progress sums containers/image's per-blob progress into one count.
type progress struct {
	ch   chan types.ProgressProperties
	done chan struct{}
}

func newProgress(total int64, report func(sent, total int64)) *progress {
	p := &progress{ch: make(chan types.ProgressProperties), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		offsets := map[string]uint64{}
		for ev := range p.ch {
			offsets[ev.Artifact.Digest.String()] = ev.Offset
			var sent int64
			for _, o := range offsets {
				sent += int64(o)
			}
			report(min(sent, max(total, sent)), max(total, sent))
		}
	}()
	return p
}

func (p *progress) stop() {
	close(p.ch)
	<-p.done
}
