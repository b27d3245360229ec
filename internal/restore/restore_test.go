package restore

import (
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

// writeArchive writes a gzip archive of payload with its sidecar.
func writeArchive(t *testing.T, payload string) string {
	t.Helper()
	return archivetest.Write(t, t.TempDir(), "box", archivetest.Gzip(t, []byte(payload)), api.Sidecar{Image: "localhost/alice/box:v1"})
}

func TestArchive(t *testing.T) {
	path := writeArchive(t, "docker-archive tar stream")
	p := &fakePodman{names: []string{"localhost/alice/box:v1"}}
	res, err := Archive(context.Background(), p, path, "")
	assert.NilError(t, err)
	// Podman gets the decompressed stream (Podman 4.3 cannot gunzip it).
	assert.Assert(t, is.Len(p.loaded, 1))
	assert.Check(t, is.Equal(string(p.loaded[0]), "docker-archive tar stream"))
	assert.Check(t, is.Equal(res.Image, "localhost/alice/box:v1"))
	assert.Check(t, is.Len(p.tags, 0))
	assert.Check(t, is.Len(res.SHA256, 64))

	res, err = Archive(context.Background(), p, path, "me/restored:v2")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(res.Image, "me/restored:v2"))
	assert.Check(t, is.DeepEqual(p.tags, [][2]string{{"localhost/alice/box:v1", "me/restored:v2"}}))
}

func TestArchiveRefusedBeforeLoading(t *testing.T) {
	path := writeArchive(t, "docker-archive tar stream")
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

// An archive the direct freeze wrote (an OCI layout that every Podman
// loads compressed) reaches Podman as it is, still hashed on the way.
func TestArchiveDirectLoadsCompressed(t *testing.T) {
	gz := archivetest.Gzip(t, []byte("oci layout and docker-archive"))
	path := archivetest.Write(t, t.TempDir(), "box", gz, api.Sidecar{Image: "localhost/alice/box:v1", Method: api.MethodDirect})
	p := &fakePodman{names: []string{"localhost/alice/box:v1"}}
	res, err := Archive(context.Background(), p, path, "")
	assert.NilError(t, err)
	assert.Assert(t, is.Len(p.loaded, 1))
	assert.Check(t, is.DeepEqual(p.loaded[0], gz))
	assert.Check(t, is.Equal(res.Image, "localhost/alice/box:v1"))
}
