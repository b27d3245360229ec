package e2e

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
)

// storeOf is the layer store of who under agent a (store_path unset: the
// user's save directory's "store").
func storeOf(a *agentProc, who string) string { return filepath.Join(a.save, who, "store") }

// blobFiles maps each blob file of the store at dir to its size.
func blobFiles(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	ents, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if os.IsNotExist(err) {
		return out
	}
	assert.NilError(t, err)
	for _, e := range ents {
		fi, err := e.Info()
		assert.NilError(t, err)
		out[e.Name()] = fi.Size()
	}
	return out
}

// storeBytes is what every regular file below the store takes.
func storeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	assert.NilError(t, err)
	return n
}

// imageLayers are the manifest's layers of the store image at path, as
// (digest, media type, size).
type storeLayer struct {
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
}

func imageLayers(t *testing.T, path string) []storeLayer {
	t.Helper()
	var idx struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	b, err := os.ReadFile(filepath.Join(path, "index.json"))
	assert.NilError(t, err)
	assert.NilError(t, json.Unmarshal(b, &idx))
	assert.Assert(t, is.Len(idx.Manifests, 1))
	b, err = os.ReadFile(filepath.Join(path, "blobs", "sha256", strings.TrimPrefix(idx.Manifests[0].Digest, "sha256:")))
	assert.NilError(t, err)
	var m struct{ Layers []storeLayer }
	assert.NilError(t, json.Unmarshal(b, &m))
	return m.Layers
}

// A store freeze restores and runs with the user's files on Podman 4.3.1
// and 5.8.2, vfs and overlay; a session started from the restored image
// and frozen again finds every layer of it in the store, the earlier
// freeze's new layer too, and writes only its own.
func TestStoreFreezeRestoresAndRuns(t *testing.T) {
	for _, s := range stores(t)[:4] {
		t.Run(s.name, func(t *testing.T) {
			base := baseWithTree(t, s)
			a := s.agent(t)
			ctr := s.session(t, base, "echo 'my results' > /root/results.txt && rm /srv/old/a && mkdir -p /opt && busybox dd if=/dev/urandom of=/opt/data bs=1M count=3 2>/dev/null")
			task, r := commitJSON(t, a, s.user, "--format", "store", "--tag", "localhost/stored/"+s.name+":v1", ctr)
			assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
			assert.Check(t, is.Equal(task.Format, api.FormatStore))
			assert.Check(t, task.Archive == nil, "no archive: %+v", task.Archive)
			assert.Assert(t, task.Store != nil, "%s", r)
			st := storeOf(a, s.user)
			assert.Check(t, is.Equal(task.Store.Path, filepath.Join(st, "images", filepath.Base(task.Store.Path))))
			assert.Check(t, is.Equal(task.Store.Reused, 0), "the store was empty")
			assert.Check(t, is.Equal(task.Progress.BytesTotal, task.Progress.BytesRead))
			layers := imageLayers(t, task.Store.Path)
			assert.Assert(t, is.Len(layers, 3))
			assert.Check(t, is.Equal(layers[0].MediaType, "application/vnd.oci.image.layer.v1.tar"), "base layers uncompressed")
			assert.Check(t, is.Equal(layers[2].MediaType, "application/vnd.oci.image.layer.v1.tar+gzip"), "the new layer gzip'd")
			assert.Check(t, is.Equal(storeBytes(t, st), task.Store.Written+int64(len(`{"imageLayoutVersion":"1.0.0"}`))),
				"everything in the store is what the freeze says it wrote (and the store's marker)")

			t.Cleanup(func() {
				s.run(t, "rmi", "-f", "localhost/stored/"+s.name+":v1")
				s.run(t, "rmi", "-f", "localhost"+task.Store.Path)
			})
			// The user's own podman reads the layout directly, and
			// baicommit restore loads it, checking it first.
			r = s.run(t, "run", "--rm", "--network=none", "oci:"+task.Store.Path, "cat", "/root/results.txt")
			assert.Check(t, is.Equal(r.code, 0), "podman run oci:PATH: %s", r)
			rr := runAsEnv(t, s.user, nil, s.env(), bins.cli, "--agent", "unix://"+a.sock, "restore", "--json", task.Store.Path)
			assert.Assert(t, is.Equal(rr.code, 0), "%s", rr)
			out := s.must(t, "run", "--rm", "--network=none", "localhost/stored/"+s.name+":v1", "sh", "-c", "cat /root/results.txt; ls /srv/old; wc -c < /opt/data")
			assert.Check(t, is.Equal(out, "my results\nb\n3145728"))

			// The next day's session from the restored image.
			ctr2 := s.session(t, "localhost/stored/"+s.name+":v1", "echo 'day two' > /root/day2.txt")
			before := blobFiles(t, st)
			task2, r := commitJSON(t, a, s.user, "--format", "store", ctr2)
			assert.Assert(t, is.Equal(task2.State, api.StateSucceeded), "%s", r)
			assert.Check(t, is.Equal(task2.Method, api.MethodDirect), "%v", task2.Warnings)
			assert.Check(t, is.Equal(task2.Store.Reused, 3), "all three layers of the restored image are in the store")
			layers2 := imageLayers(t, task2.Store.Path)
			assert.Assert(t, is.Len(layers2, 4))
			assert.Check(t, is.DeepEqual(layers2[:3], layers), "the same blobs, the earlier new layer gzip'd as it was")
			after := blobFiles(t, st)
			for d, n := range before {
				assert.Check(t, is.Equal(after[d], n), "blob %s kept", d)
			}
			assert.Check(t, is.Len(after, len(before)+3), "one new layer, a config, a manifest")
			assert.Check(t, task2.Store.Written < 64<<10, "a few KiB: %d", task2.Store.Written)
		})
	}
}
