package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/archives"
	"github.com/baicommit/baicommit/internal/archivetest"
)

// fakePodman records what a restore asks of Podman.
type fakePodman struct {
	loaded   [][]byte
	tags     [][2]string
	pulls    []string
	pullOpts []PullOptions
	loadErr  error
	names    []string
	removed  []string
	// afterLoad runs once Load has read its stream.
	afterLoad func()
	// ids are the images the user's names name already.
	ids map[string]string
}

func (f *fakePodman) ImageID(_ context.Context, name string) (string, error) {
	return f.ids[name], nil
}

func (f *fakePodman) Load(_ context.Context, r io.Reader) ([]string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	f.loaded = append(f.loaded, b)
	if f.afterLoad != nil {
		f.afterLoad()
	}
	return f.names, f.loadErr
}

func (f *fakePodman) Remove(_ context.Context, image string) error {
	f.removed = append(f.removed, image)
	return nil
}

func (f *fakePodman) Tag(_ context.Context, image, name string) error {
	f.tags = append(f.tags, [2]string{image, name})
	return nil
}

func (f *fakePodman) Pull(_ context.Context, ref string, opts PullOptions) error {
	f.pulls = append(f.pulls, ref)
	f.pullOpts = append(f.pullOpts, opts)
	return nil
}

// imageID is the config digest of the test archives' image.
var imageID = strings.Repeat("ab", 32)

// dockerArchive is a docker-archive tar naming its image tags, with a
// layer holding payload (and, as an OCI layout too, an index.json).
func dockerArchive(t *testing.T, payload string, tags ...string) []byte {
	t.Helper()
	manifest, _ := json.Marshal([]map[string]any{{"Config": imageID + ".json", "RepoTags": tags, "Layers": []string{"layer.tar"}}})
	index := `{"schemaVersion":2,"manifests":[{"digest":"sha256:` + imageID + `","annotations":{"org.opencontainers.image.ref.name":"v1","io.containerd.image.name":"` + strings.Join(tags, ",") + `","other":"kept"}}]}`
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct{ name, body string }{
		{"layer.tar", payload}, {imageID + ".json", "{}"}, {"index.json", index},
		{"repositories", `{"localhost/alice/box":{"v1":"x"}}`}, {"manifest.json", string(manifest)},
	} {
		assert.NilError(t, tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(f.body))
		assert.NilError(t, err)
	}
	assert.NilError(t, tw.Close())
	return buf.Bytes()
}

// writeArchive writes a gzip archive of payload with its sidecar.
func writeArchive(t *testing.T, payload string) string {
	t.Helper()
	return archivetest.Write(t, t.TempDir(), "box", archivetest.Gzip(t, dockerArchive(t, payload, "localhost/alice/box:v1")), api.Sidecar{Image: "localhost/alice/box:v1"})
}

// entries reads a tar stream Podman got: names and contents.
func entries(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		assert.NilError(t, err)
		body, err := io.ReadAll(tr)
		assert.NilError(t, err)
		out[hdr.Name] = string(body)
	}
}

func TestArchive(t *testing.T) {
	path := writeArchive(t, "layer bytes")
	p := &fakePodman{names: []string{"sha256:" + imageID}}
	res, err := Archive(context.Background(), p, path, "")
	assert.NilError(t, err)
	// Podman gets the decompressed stream (Podman 4.3 cannot gunzip it),
	// with no name in it; the name is given after, by the restore.
	assert.Assert(t, is.Len(p.loaded, 1))
	got := entries(t, p.loaded[0])
	assert.Check(t, is.Equal(got["layer.tar"], "layer bytes"))
	assert.Check(t, is.Equal(got["manifest.json"], `[{"Config":"`+imageID+`.json","Layers":["layer.tar"]}]`))
	assert.Check(t, is.Equal(got["index.json"], `{"manifests":[{"annotations":{"other":"kept"},"digest":"sha256:`+imageID+`"}],"schemaVersion":2}`))
	_, ok := got["repositories"]
	assert.Check(t, !ok, "the legacy repositories file names images too")
	assert.Check(t, is.Equal(res.Image, "localhost/alice/box:v1"))
	assert.Check(t, is.Equal(res.ID, imageID))
	assert.Check(t, is.DeepEqual(p.tags, [][2]string{{imageID, "localhost/alice/box:v1"}}))
	assert.Check(t, is.Len(res.SHA256, 64))

	p.tags = nil
	res, err = Archive(context.Background(), p, path, "me/restored:v2")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(res.Image, "me/restored:v2"))
	assert.Check(t, is.DeepEqual(p.tags, [][2]string{{imageID, "localhost/alice/box:v1"}, {imageID, "me/restored:v2"}}))
}

// A name the sidecar records that already names another of the user's
// images is left alone: only --name moves a name. The same image already
// under that name is named again (nothing moves).
func TestArchiveNeverMovesANameUnasked(t *testing.T) {
	path := writeArchive(t, "layer bytes")
	other := strings.Repeat("cd", 32)
	for _, tc := range []struct {
		name, holder, ask string
		tags              [][2]string
		image, warning    string
	}{
		{name: "taken by another image", holder: other, image: imageID,
			warning: "localhost/alice/box:v1 already names another image in your Podman (cdcdcdcdcdcd), so it was left as it is"},
		{name: "taken, --name given", holder: other, ask: "localhost/alice/box:v1",
			tags: [][2]string{{imageID, "localhost/alice/box:v1"}}, image: "localhost/alice/box:v1",
			warning: "already names another image"},
		{name: "the same image", holder: "sha256:" + imageID,
			tags: [][2]string{{imageID, "localhost/alice/box:v1"}}, image: "localhost/alice/box:v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakePodman{ids: map[string]string{"localhost/alice/box:v1": tc.holder}}
			res, err := Archive(context.Background(), p, path, tc.ask)
			assert.NilError(t, err)
			assert.Check(t, is.DeepEqual(p.tags, tc.tags))
			assert.Check(t, is.Equal(res.Image, tc.image))
			if tc.warning == "" {
				assert.Check(t, is.Len(res.Warnings, 0))
			} else {
				assert.Check(t, is.Contains(strings.Join(res.Warnings, "\n"), tc.warning))
			}
		})
	}
}

// An archive that holds several images, or is no docker-archive, is not
// one baicommit wrote.
func TestArchiveNotOurs(t *testing.T) {
	manifest := `[{"Config":"` + imageID + `.json"},{"Config":"` + imageID + `.json"}]`
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	assert.NilError(t, tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(manifest))}))
	_, _ = tw.Write([]byte(manifest))
	assert.NilError(t, tw.Close())
	path := archivetest.Write(t, t.TempDir(), "two", archivetest.Gzip(t, buf.Bytes()), api.Sidecar{})
	_, err := Archive(context.Background(), &fakePodman{}, path, "")
	assert.Check(t, is.ErrorContains(err, "lists 2 images"))
}

func TestArchiveRefusedBeforeLoading(t *testing.T) {
	path := writeArchive(t, "layer bytes")
	b, err := os.ReadFile(path)
	assert.NilError(t, err)
	b[len(b)/2] ^= 0x01
	assert.NilError(t, os.WriteFile(path, b, 0o640))

	p := &fakePodman{}
	_, err = Archive(context.Background(), p, path, "")
	assert.Check(t, errors.Is(err, archives.ErrMismatch))
	assert.Check(t, is.ErrorContains(err, "changed after the freeze"))
	assert.Check(t, is.Len(p.loaded, 0), "nothing may reach Podman")

	_, err = Archive(context.Background(), p, path, "Not A Name")
	assert.Check(t, is.ErrorContains(err, "--name"))
	_, err = Archive(context.Background(), p, filepath.Join(t.TempDir(), "none.tar.gz"), "")
	assert.Check(t, is.ErrorContains(err, "has no sidecar"))
	assert.Check(t, is.Len(p.loaded, 0))
}

func TestArchiveLoadFails(t *testing.T) {
	path := writeArchive(t, "x")
	p := &fakePodman{loadErr: errors.New("podman load: exit status 125: no space")}
	_, err := Archive(context.Background(), p, path, "a/b:c")
	assert.Check(t, is.ErrorContains(err, "load "+path+" into Podman: podman load: exit status 125: no space"))
	assert.Check(t, is.Len(p.tags, 0))
}

func TestRef(t *testing.T) {
	p := &fakePodman{}
	opts := PullOptions{Creds: "alice:pw", Insecure: true}
	res, err := Ref(context.Background(), p, "127.0.0.1:5001/alice/box", "me/box:v1", opts)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(p.pulls, []string{"127.0.0.1:5001/alice/box:latest"}))
	assert.Check(t, is.DeepEqual(p.pullOpts, []PullOptions{opts}))
	assert.Check(t, is.DeepEqual(p.tags, [][2]string{{"127.0.0.1:5001/alice/box:latest", "me/box:v1"}}))
	assert.Check(t, is.Equal(res.Image, "me/box:v1"))

	_, err = Ref(context.Background(), p, "reg/a:b", "", PullOptions{Creds: "nocolon"})
	assert.Check(t, is.ErrorContains(err, "USER:PASSWORD"))
	assert.Check(t, is.Len(p.pulls, 1))
}

func TestIsArchive(t *testing.T) {
	for arg, want := range map[string]bool{
		"/srv/frozen/alice/box.tar.gz": true,
		"box.tar.gz":                   true,
		"./box":                        true,
		"../x/box":                     true,
		"/abs/without/suffix":          true,
		"reg.example/alice/box:v1":     false,
		"127.0.0.1:5001/a/b":           false,
		"alice/box":                    false,
	} {
		assert.Check(t, is.Equal(IsArchive(arg), want), arg)
	}
}

func TestParseLoaded(t *testing.T) {
	for out, want := range map[string][]string{
		"Getting image source signatures\nLoaded image: localhost/a/b:v1\n": {"localhost/a/b:v1"},
		"Loaded image(s): localhost/a:1,localhost/b:2\n":                    {"localhost/a:1", "localhost/b:2"},
		"Loaded image: sha256:abc\n":                                        {"sha256:abc"},
		"nothing\n":                                                         nil,
	} {
		assert.Check(t, is.DeepEqual(parseLoaded(out), want), out)
	}
}

func TestTempAuthFile(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	path, cleanup, err := tempAuthFile("127.0.0.1:5001/alice/box:v1", "alice:pa:ss")
	assert.NilError(t, err)
	fi, err := os.Stat(path)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(0o600)))
	var auth struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	b, err := os.ReadFile(path)
	assert.NilError(t, err)
	assert.NilError(t, json.Unmarshal(b, &auth))
	dec, err := base64.StdEncoding.DecodeString(auth.Auths["127.0.0.1:5001"].Auth)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(dec), "alice:pa:ss"))
	cleanup()
	_, err = os.Stat(filepath.Dir(path))
	assert.Check(t, errors.Is(err, os.ErrNotExist))
	assert.Check(t, !strings.Contains(path, "pa:ss"))
}

// A file changed between the check and the load is caught as it is
// loaded, and what was loaded is removed again.
func TestArchiveChangedWhileLoading(t *testing.T) {
	path := writeArchive(t, "frozen bytes")
	p := &fakePodman{names: []string{"localhost/x:1"}, afterLoad: func() {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		assert.NilError(t, err)
		_, err = f.WriteString("tampered")
		assert.NilError(t, err)
		assert.NilError(t, f.Close())
	}}
	_, err := Archive(context.Background(), p, path, "")
	assert.ErrorContains(t, err, "changed while it was being restored")
	assert.Check(t, is.DeepEqual(p.removed, []string{"localhost/x:1"}))
	var mm *archives.MismatchError
	assert.Check(t, errors.As(err, &mm))
}

// An archive the direct freeze wrote (the dual OCI and docker layout)
// reaches Podman like any other: decompressed, still hashed on the way,
// with the names of both its manifest.json and its index.json taken out.
func TestArchiveDirectLayoutUntagged(t *testing.T) {
	gz := archivetest.Gzip(t, dockerArchive(t, "direct layer", "localhost/alice/box:v1"))
	path := archivetest.Write(t, t.TempDir(), "box", gz, api.Sidecar{Image: "localhost/alice/box:v1", Method: api.MethodDirect})
	p := &fakePodman{names: []string{"sha256:" + imageID}}
	res, err := Archive(context.Background(), p, path, "")
	assert.NilError(t, err)
	assert.Assert(t, is.Len(p.loaded, 1))
	got := entries(t, p.loaded[0])
	assert.Check(t, is.Equal(got["layer.tar"], "direct layer"))
	assert.Check(t, !strings.Contains(got["manifest.json"], "RepoTags"), got["manifest.json"])
	assert.Check(t, !strings.Contains(got["index.json"], "ref.name"), got["index.json"])
	assert.Check(t, is.Equal(res.Image, "localhost/alice/box:v1"))
	assert.Check(t, is.DeepEqual(p.tags, [][2]string{{imageID, "localhost/alice/box:v1"}}))
}
