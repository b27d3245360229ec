package asowner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"
)

// Scrubbed reports whether the variable name matches one of the glob
// patterns, case-insensitively.
func Scrubbed(name string, patterns []string) bool {
	up := strings.ToUpper(name)
	for _, p := range patterns {
		if ok, _ := path.Match(strings.ToUpper(p), up); ok {
			return true
		}
	}
	return false
}

// scrubbedRef serves an image whose config has the secret-looking
// environment variables removed. Podman's commit copies the container's
// environment into the image and offers no way to drop variables, so the
// archive's config and manifest are rewritten on the way out.
type scrubbedRef struct {
	types.ImageReference
	patterns []string
	removed  *[]string
}

func (r scrubbedRef) NewImageSource(ctx context.Context, sys *types.SystemContext) (types.ImageSource, error) {
	src, err := r.ImageReference.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	s, err := newScrubbedSource(ctx, src, r.patterns, r.removed)
	if err != nil {
		src.Close()
		return nil, err
	}
	return s, nil
}

type scrubbedSource struct {
	types.ImageSource
	manifest, manifestType string
	config                 []byte
	configDigest           digest.Digest
}

func newScrubbedSource(ctx context.Context, src types.ImageSource, patterns []string, removed *[]string) (types.ImageSource, error) {
	mb, mt, err := src.GetManifest(ctx, nil)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	var desc map[string]json.RawMessage
	if err := json.Unmarshal(m["config"], &desc); err != nil {
		return nil, fmt.Errorf("parse manifest config descriptor: %w", err)
	}
	var cfgDigest digest.Digest
	if err := json.Unmarshal(desc["digest"], &cfgDigest); err != nil {
		return nil, fmt.Errorf("parse config digest: %w", err)
	}
	rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: cfgDigest, Size: -1}, nil)
	if err != nil {
		return nil, fmt.Errorf("read image config: %w", err)
	}
	cb, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("read image config: %w", err)
	}
	newCfg, names, err := scrubConfig(cb, patterns)
	if err != nil || len(names) == 0 {
		return src, err
	}
	*removed = names
	d := digest.FromBytes(newCfg)
	desc["digest"], _ = json.Marshal(d)
	desc["size"], _ = json.Marshal(len(newCfg))
	m["config"], _ = json.Marshal(desc)
	nm, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &scrubbedSource{ImageSource: src, manifest: string(nm), manifestType: mt, config: newCfg, configDigest: d}, nil
}

// scrubConfig removes matching variables from the image config's Env and
// returns the new config and the removed names (never their values).
// Docker-format configs carry the environment twice, in "config" and in
// "container_config" (the container's own config at commit time); both
// are scrubbed.
func scrubConfig(cb []byte, patterns []string) ([]byte, []string, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(cb, &cfg); err != nil {
		return nil, nil, fmt.Errorf("parse image config: %w", err)
	}
	var removed []string
	for _, key := range []string{"config", "container_config"} {
		raw, ok := cfg[key]
		if !ok {
			continue
		}
		out, names, err := scrubEnv(raw, patterns)
		if err != nil {
			return nil, nil, err
		}
		if len(names) == 0 {
			continue
		}
		cfg[key] = out
		for _, n := range names {
			if !slices.Contains(removed, n) {
				removed = append(removed, n)
			}
		}
	}
	if len(removed) == 0 {
		return cb, nil, nil
	}
	out, err := json.Marshal(cfg)
	return out, removed, err
}

// scrubEnv removes matching variables from the Env of one container
// config object; it returns raw unchanged when there is nothing to remove.
func scrubEnv(raw json.RawMessage, patterns []string) (json.RawMessage, []string, error) {
	var inner map[string]json.RawMessage
	if json.Unmarshal(raw, &inner) != nil || inner == nil {
		return raw, nil, nil
	}
	var env []string
	if json.Unmarshal(inner["Env"], &env) != nil {
		return raw, nil, nil
	}
	kept := []string{}
	var removed []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if Scrubbed(name, patterns) {
			removed = append(removed, name)
			continue
		}
		kept = append(kept, kv)
	}
	if len(removed) == 0 {
		return raw, nil, nil
	}
	inner["Env"], _ = json.Marshal(kept)
	out, err := json.Marshal(inner)
	return out, removed, err
}

func (s *scrubbedSource) GetManifest(ctx context.Context, instance *digest.Digest) ([]byte, string, error) {
	if instance != nil {
		return s.ImageSource.GetManifest(ctx, instance)
	}
	return []byte(s.manifest), s.manifestType, nil
}

func (s *scrubbedSource) GetBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (io.ReadCloser, int64, error) {
	if info.Digest == s.configDigest {
		return io.NopCloser(bytes.NewReader(s.config)), int64(len(s.config)), nil
	}
	return s.ImageSource.GetBlob(ctx, info, cache)
}
