package asowner

import (
	"maps"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/baicommit/baicommit/agent/messages"
)

// freezeConfig is the frozen image's config: the base image's, with the
// container's settings applied as libpod's commit applies them (the
// container's entrypoint, command, environment, working directory, user
// when set, labels, ports and anonymous volumes added), the environment
// scrubbed of variables matching scrub (whose names it returns),
// provenance labels, the new layer's diff ID and a history entry.
func freezeConfig(base *imgspecv1.Image, c *messages.Container, spec messages.Spec, newLayer digest.Digest, created time.Time) (*imgspecv1.Image, []string) {
	cfg := *base
	cfg.Config = base.Config
	cfg.Config.Env = slices.Clone(base.Config.Env)
	cfg.Config.Labels = maps.Clone(base.Config.Labels)
	cfg.Config.ExposedPorts = maps.Clone(base.Config.ExposedPorts)
	cfg.Config.Volumes = maps.Clone(base.Config.Volumes)
	cfg.RootFS.DiffIDs = append(slices.Clone(base.RootFS.DiffIDs), newLayer)
	cfg.History = slices.Clone(base.History)
	cfg.Created = &created

	if c != nil {
		cfg.Config.Entrypoint = slices.Clone(c.Entrypoint)
		cfg.Config.Cmd = slices.Clone(c.Cmd)
		for _, kv := range c.Env {
			cfg.Config.Env = setEnv(cfg.Config.Env, kv)
		}
		if c.WorkingDir != "" {
			cfg.Config.WorkingDir = c.WorkingDir
		}
		if c.User != "" {
			cfg.Config.User = c.User
		}
		for k, v := range c.Labels {
			cfg.Config.Labels = put(cfg.Config.Labels, k, v)
		}
		for _, p := range c.ExposedPorts {
			if cfg.Config.ExposedPorts == nil {
				cfg.Config.ExposedPorts = map[string]struct{}{}
			}
			cfg.Config.ExposedPorts[p] = struct{}{}
		}
		for _, v := range c.Volumes {
			if cfg.Config.Volumes == nil {
				cfg.Config.Volumes = map[string]struct{}{}
			}
			cfg.Config.Volumes[v] = struct{}{}
		}
	}
	for k, v := range spec.Labels {
		cfg.Config.Labels = put(cfg.Config.Labels, k, v)
	}
	var removed []string
	if len(spec.ScrubEnv) > 0 {
		kept := []string{}
		for _, kv := range cfg.Config.Env {
			name, _, _ := strings.Cut(kv, "=")
			if Scrubbed(name, spec.ScrubEnv) {
				removed = append(removed, name)
				continue
			}
			kept = append(kept, kv)
		}
		cfg.Config.Env = kept
	}
	cfg.History = append(cfg.History, imgspecv1.History{
		Created: &created, CreatedBy: "baicommit freeze", Comment: spec.Comment,
	})
	return &cfg, removed
}

// setEnv sets NAME=VALUE in env as buildah's SetEnv does: an earlier NAME
// goes, and NAME=VALUE comes last.
func setEnv(env []string, kv string) []string {
	name, _, _ := strings.Cut(kv, "=")
	out := env[:0]
	for _, e := range env {
		if n, _, _ := strings.Cut(e, "="); n != name {
			out = append(out, e)
		}
	}
	return append(out, kv)
}

func put(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}
