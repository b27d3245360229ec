package asowner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/policy"
)

func TestScrubbedDefaultPatterns(t *testing.T) {
	removed := []string{
		"API_TOKEN", "GITHUB_TOKEN", "HF_TOKEN", "TOKEN", "TOKENIZER", // *TOKEN* matches anywhere
		"AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_", // AWS_*
		"MY_PASSWORD", "PASSWORD", "DB_PASSWD", "AZURE_CLIENT_SECRET", "SECRET",
		"SSH_KEY", "OPENAI_API_KEY", "_KEY", "GCP_CREDENTIALS", "MUNGE_SOCKET",
		"SSH_KEYS", "PRIVATE_KEY_FILE", "GPG_PASSPHRASE", "DB_PASS",
		// case-insensitive
		"api_token", "Github_Token", "my_password", "ssh_key", "aws_default_region", "tokenizer",
	}
	kept := []string{
		"PATH", "HOME", "USER", "LANG", "TERM", "HOSTNAME", "LD_LIBRARY_PATH", "SSH_AUTH_SOCK",
		"KEYBOARD", "KEY", "MONKEY", "PUBKEY", // *_KEY needs "_KEY" at the end
		"AWS", "AWSCLI", // AWS_* needs the underscore
		"MUNGE", "PASS", "PASSAGE", "SLURM_JOB_ID", "",
	}
	for _, n := range removed {
		assert.Check(t, Scrubbed(n, policy.DefaultScrubEnv), "%q should be scrubbed", n)
	}
	for _, n := range kept {
		assert.Check(t, !Scrubbed(n, policy.DefaultScrubEnv), "%q should be kept", n)
	}
}

func TestScrubbedPatterns(t *testing.T) {
	for _, tc := range []struct {
		name     string
		patterns []string
		want     bool
	}{
		{"FOO", nil, false},
		{"FOO", []string{}, false},
		{"FOO", []string{"foo"}, true}, // lower-case pattern
		{"foo", []string{"FOO"}, true},
		{"FOOBAR", []string{"FOO"}, false}, // a pattern without * is exact
		{"FOO1", []string{"FOO?"}, true},
		{"FOO12", []string{"FOO?"}, false},
		{"FOO_A", []string{"FOO_[A-C]"}, true},
		{"foo_b", []string{"FOO_[a-c]"}, true},
		{"FOO_D", []string{"FOO_[A-C]"}, false},
		{"FOO", []string{"[", "FOO"}, true}, // a bad pattern does not stop the others
		{"[", []string{"["}, false},
	} {
		assert.Check(t, is.Equal(Scrubbed(tc.name, tc.patterns), tc.want), "Scrubbed(%q, %q)", tc.name, tc.patterns)
	}
}

// dockerConfig is an image config as `podman commit --format docker`
// writes it (buildah copies config into container_config).
const dockerConfig = `{
  "architecture": "amd64",
  "author": "alice",
  "config": {
    "Hostname": "f00dfeed",
    "Domainname": "",
    "User": "1000:1000",
    "AttachStdin": false,
    "Tty": true,
    "Env": [
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "HOME=/home/alice",
      "GITHUB_TOKEN=ghp_s3cr3tv4lu3",
      "KEYBOARD=de",
      "aws_secret_access_key=AKIAs3cr3t",
      "NOVALUE",
      "MY_PASSWORD=hunter2=with=equals",
      "EMPTY="
    ],
    "Cmd": ["/bin/bash", "-c", "echo <&> done"],
    "Image": "docker.io/library/ubuntu:24.04",
    "Volumes": null,
    "WorkingDir": "/work",
    "Entrypoint": null,
    "OnBuild": null,
    "Labels": {
      "io.baicommit.task": "0123456789ab.n01",
      "org.opencontainers.image.version": "24.04"
    },
    "StopSignal": "SIGTERM",
    "ExposedPorts": {"8888/tcp": {}}
  },
  "container": "9f8e7d6c5b4a",
  "container_config": {
    "Hostname": "f00dfeed",
    "User": "1000:1000",
    "Env": [
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "HOME=/home/alice",
      "GITHUB_TOKEN=ghp_s3cr3tv4lu3",
      "KEYBOARD=de",
      "aws_secret_access_key=AKIAs3cr3t",
      "NOVALUE",
      "MY_PASSWORD=hunter2=with=equals",
      "EMPTY="
    ],
    "Cmd": ["/bin/bash", "-c", "echo <&> done"],
    "Image": "docker.io/library/ubuntu:24.04",
    "Labels": {"io.baicommit.task": "0123456789ab.n01"}
  },
  "created": "2024-03-05T06:08:09.123456789Z",
  "docker_version": "",
  "comment": "frozen by baicommit task 0123456789ab.n01",
  "history": [
    {"created": "2024-02-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
    {"created": "2024-02-01T00:00:01Z", "created_by": "/bin/sh -c #(nop)  CMD [\"/bin/bash\"]", "empty_layer": true},
    {"created": "2024-03-05T06:08:09Z", "comment": "frozen by baicommit task 0123456789ab.n01"}
  ],
  "os": "linux",
  "rootfs": {
    "type": "layers",
    "diff_ids": [
      "sha256:1111111111111111111111111111111111111111111111111111111111111111",
      "sha256:2222222222222222222222222222222222222222222222222222222222222222"
    ]
  }
}`

var secretValues = []string{"ghp_s3cr3tv4lu3", "AKIAs3cr3t", "hunter2"}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	assert.NilError(t, json.Unmarshal(b, &m))
	return m
}

// withoutEnv returns a copy of the decoded config with Env removed from
// config and container_config.
func withoutEnv(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		if inner, ok := v.(map[string]any); ok && (k == "config" || k == "container_config") {
			cp := map[string]any{}
			for ik, iv := range inner {
				if ik != "Env" {
					cp[ik] = iv
				}
			}
			v = cp
		}
		out[k] = v
	}
	return out
}

func TestScrubConfig(t *testing.T) {
	out, removed, err := scrubConfig([]byte(dockerConfig), policy.DefaultScrubEnv)
	assert.NilError(t, err)
	assert.Check(t, json.Valid(out))
	assert.Check(t, is.DeepEqual(removed, []string{"GITHUB_TOKEN", "aws_secret_access_key", "MY_PASSWORD"}))
	for _, name := range removed {
		for _, v := range secretValues {
			assert.Check(t, !strings.Contains(name, v), "removed names carry a value: %q", name)
		}
	}

	in, got := decode(t, []byte(dockerConfig)), decode(t, out)
	env := got["config"].(map[string]any)["Env"]
	assert.Check(t, is.DeepEqual(env, []any{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/home/alice",
		"KEYBOARD=de",
		"NOVALUE",
		"EMPTY=",
	}))
	// Everything else is the same JSON.
	assert.Check(t, is.DeepEqual(withoutEnv(got), withoutEnv(in)))
	// Numbers and strings survive exactly (no float or escaping surprises).
	assert.Check(t, is.Equal(got["created"], "2024-03-05T06:08:09.123456789Z"))
	assert.Check(t, is.DeepEqual(got["config"].(map[string]any)["Cmd"], []any{"/bin/bash", "-c", "echo <&> done"}))
}

// podman commit --format docker (what the agent asks for) writes the
// environment twice: config.Env and container_config.Env. Both end up in
// the archive, so both must be scrubbed.
func TestScrubConfigLeavesNoSecretAnywhere(t *testing.T) {
	out, _, err := scrubConfig([]byte(dockerConfig), policy.DefaultScrubEnv)
	assert.NilError(t, err)
	for _, v := range secretValues {
		assert.Check(t, !bytes.Contains(out, []byte(v)), "secret %q is still in the config", v)
	}
}

func TestScrubConfigUnchanged(t *testing.T) {
	for _, tc := range []struct {
		name     string
		config   string
		patterns []string
	}{
		{"nothing matches", `{"config":{"Env":["PATH=/bin","HOME=/root"]},"os":"linux"}`, policy.DefaultScrubEnv},
		{"no patterns", dockerConfig, nil},
		{"no Env", `{"config":{"Cmd":["sh"]},"os":"linux"}`, policy.DefaultScrubEnv},
		{"null Env", `{"config":{"Env":null},"os":"linux"}`, policy.DefaultScrubEnv},
		{"empty Env", `{"config":{"Env":[]},"os":"linux"}`, policy.DefaultScrubEnv},
		{"Env not a list", `{"config":{"Env":"API_TOKEN=x"},"os":"linux"}`, policy.DefaultScrubEnv},
		{"no config", `{"os":"linux","architecture":"amd64"}`, policy.DefaultScrubEnv},
		{"null config", `{"config":null,"os":"linux"}`, policy.DefaultScrubEnv},
		{"config not an object", `{"config":[1,2],"os":"linux"}`, policy.DefaultScrubEnv},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, removed, err := scrubConfig([]byte(tc.config), tc.patterns)
			assert.NilError(t, err)
			assert.Check(t, is.Len(removed, 0))
			// Byte for byte: the digest of the image must not change.
			assert.Check(t, is.Equal(string(out), tc.config))
		})
	}
}

func TestScrubConfigBadJSON(t *testing.T) {
	for _, cfg := range []string{"", "not json", "[1,2]", `{"config":`} {
		_, _, err := scrubConfig([]byte(cfg), policy.DefaultScrubEnv)
		assert.Check(t, err != nil, "%q", cfg)
	}
}

func TestScrubConfigRemovesAll(t *testing.T) {
	out, removed, err := scrubConfig([]byte(`{"config":{"Env":["API_TOKEN=a","SSH_KEY=b"]}}`), policy.DefaultScrubEnv)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(removed, []string{"API_TOKEN", "SSH_KEY"}))
	var cfg struct {
		Config map[string][]string `json:"config"`
	}
	assert.NilError(t, json.Unmarshal(out, &cfg))
	env, ok := cfg.Config["Env"]
	assert.Check(t, ok, "Env key dropped: %s", out)
	assert.Check(t, is.Len(env, 0))
	assert.Check(t, !bytes.Contains(out, []byte("API_TOKEN")))
}

// fakeSource is a minimal types.ImageSource serving one manifest and its
// blobs.
type fakeSource struct {
	manifest     []byte
	manifestType string
	blobs        map[digest.Digest][]byte
	blobErr      error
	closed       bool
	fetched      []digest.Digest
}

func (f *fakeSource) Reference() types.ImageReference { return nil }
func (f *fakeSource) Close() error                    { f.closed = true; return nil }
func (f *fakeSource) GetManifest(_ context.Context, instance *digest.Digest) ([]byte, string, error) {
	if instance != nil {
		return []byte("instance " + instance.String()), "other/type", nil
	}
	return f.manifest, f.manifestType, nil
}

func (f *fakeSource) GetBlob(_ context.Context, info types.BlobInfo, _ types.BlobInfoCache) (io.ReadCloser, int64, error) {
	f.fetched = append(f.fetched, info.Digest)
	if f.blobErr != nil {
		return nil, 0, f.blobErr
	}
	b, ok := f.blobs[info.Digest]
	if !ok {
		return nil, 0, errors.New("no such blob " + info.Digest.String())
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}
func (f *fakeSource) HasThreadSafeGetBlob() bool { return false }
func (f *fakeSource) GetSignatures(context.Context, *digest.Digest) ([][]byte, error) {
	return nil, nil
}
func (f *fakeSource) LayerInfosForCopy(context.Context, *digest.Digest) ([]types.BlobInfo, error) {
	return nil, nil
}

const (
	v2s2Type   = "application/vnd.docker.distribution.manifest.v2+json"
	configType = "application/vnd.docker.container.image.v1+json"
	layerType  = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

func newFake(t *testing.T, config string) (*fakeSource, digest.Digest, digest.Digest) {
	t.Helper()
	layer := []byte("layer bytes")
	cd, ld := digest.FromString(config), digest.FromBytes(layer)
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     v2s2Type,
		"config":        map[string]any{"mediaType": configType, "size": len(config), "digest": cd},
		"layers":        []any{map[string]any{"mediaType": layerType, "size": len(layer), "digest": ld}},
	}
	mb, err := json.Marshal(m)
	assert.NilError(t, err)
	return &fakeSource{
		manifest: mb, manifestType: v2s2Type,
		blobs: map[digest.Digest][]byte{cd: []byte(config), ld: layer},
	}, cd, ld
}

type descriptor struct {
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	Digest    digest.Digest `json:"digest"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

func TestNewScrubbedSource(t *testing.T) {
	ctx := context.Background()
	fake, oldDigest, layerDigest := newFake(t, dockerConfig)
	var removed []string
	src, err := newScrubbedSource(ctx, fake, policy.DefaultScrubEnv, &removed)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(fake.fetched, []digest.Digest{oldDigest}))
	assert.Check(t, is.DeepEqual(removed, []string{"GITHUB_TOKEN", "aws_secret_access_key", "MY_PASSWORD"}))

	mb, mt, err := src.GetManifest(ctx, nil)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(mt, v2s2Type))
	var m manifest
	assert.NilError(t, json.Unmarshal(mb, &m))
	assert.Check(t, is.Equal(m.SchemaVersion, 2))
	assert.Check(t, is.Equal(m.MediaType, v2s2Type))
	assert.Check(t, is.Equal(m.Config.MediaType, configType))
	assert.Check(t, m.Config.Digest != oldDigest)
	assert.Check(t, is.DeepEqual(m.Layers, []descriptor{{MediaType: layerType, Size: int64(len("layer bytes")), Digest: layerDigest}}))

	// The config the manifest names is the one GetBlob serves.
	rc, size, err := src.GetBlob(ctx, types.BlobInfo{Digest: m.Config.Digest, Size: -1}, nil)
	assert.NilError(t, err)
	cfg, err := io.ReadAll(rc)
	assert.NilError(t, err)
	assert.NilError(t, rc.Close())
	assert.Check(t, is.Equal(digest.FromBytes(cfg), m.Config.Digest))
	assert.Check(t, is.Equal(m.Config.Size, int64(len(cfg))))
	assert.Check(t, is.Equal(size, int64(len(cfg))))
	env := decode(t, cfg)["config"].(map[string]any)["Env"].([]any)
	assert.Check(t, is.Len(env, 5))
	for _, kv := range env {
		assert.Check(t, !Scrubbed(strings.SplitN(kv.(string), "=", 2)[0], policy.DefaultScrubEnv), "%v", kv)
	}

	// Other blobs come from the original source.
	rc, _, err = src.GetBlob(ctx, types.BlobInfo{Digest: layerDigest}, nil)
	assert.NilError(t, err)
	layer, _ := io.ReadAll(rc)
	rc.Close()
	assert.Check(t, is.Equal(string(layer), "layer bytes"))

	// A manifest instance is asked of the original source.
	inst := digest.FromString("x")
	mb, mt, err = src.GetManifest(ctx, &inst)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(mb), "instance "+inst.String()))
	assert.Check(t, is.Equal(mt, "other/type"))
}

func TestNewScrubbedSourceNothingToScrub(t *testing.T) {
	fake, _, _ := newFake(t, `{"config":{"Env":["PATH=/bin"]}}`)
	var removed []string
	src, err := newScrubbedSource(context.Background(), fake, policy.DefaultScrubEnv, &removed)
	assert.NilError(t, err)
	// The original source itself: manifest and digests unchanged.
	assert.Check(t, src == types.ImageSource(fake))
	assert.Check(t, is.Len(removed, 0))
}

func TestNewScrubbedSourceErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(f *fakeSource)
	}{
		{"manifest not json", func(f *fakeSource) { f.manifest = []byte("nope") }},
		{"no config descriptor", func(f *fakeSource) { f.manifest = []byte(`{"schemaVersion":2}`) }},
		{"bad config digest", func(f *fakeSource) { f.manifest = []byte(`{"config":{"digest":42}}`) }},
		{"config blob fails", func(f *fakeSource) { f.blobErr = errors.New("disk on fire") }},
		{"config not json", func(f *fakeSource) {
			for d := range f.blobs {
				f.blobs[d] = []byte("garbage")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, _, _ := newFake(t, dockerConfig)
			tc.modify(fake)
			var removed []string
			_, err := newScrubbedSource(context.Background(), fake, policy.DefaultScrubEnv, &removed)
			assert.Check(t, err != nil)
			assert.Check(t, is.Len(removed, 0))
		})
	}
}

type fakeRef struct {
	types.ImageReference
	src *fakeSource
}

func (r fakeRef) NewImageSource(context.Context, *types.SystemContext) (types.ImageSource, error) {
	return r.src, nil
}

func TestScrubbedRef(t *testing.T) {
	ctx := context.Background()
	fake, oldDigest, _ := newFake(t, dockerConfig)
	var removed []string
	src, err := scrubbedRef{ImageReference: fakeRef{src: fake}, patterns: policy.DefaultScrubEnv, removed: &removed}.NewImageSource(ctx, nil)
	assert.NilError(t, err)
	assert.Check(t, is.Len(removed, 3))
	mb, _, err := src.GetManifest(ctx, nil)
	assert.NilError(t, err)
	assert.Check(t, !bytes.Contains(mb, []byte(oldDigest.Encoded())))
	assert.Check(t, !fake.closed)

	// When the rewrite fails, the source it opened is closed.
	bad := &fakeSource{manifest: []byte("nope")}
	src, err = scrubbedRef{ImageReference: fakeRef{src: bad}, patterns: policy.DefaultScrubEnv, removed: &removed}.NewImageSource(ctx, nil)
	assert.Check(t, err != nil)
	assert.Check(t, src == nil)
	assert.Check(t, bad.closed)
}
