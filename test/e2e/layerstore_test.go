package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

// imageBlobs are the digests of every blob the store image at path uses:
// its manifest, config and layers.
func imageBlobs(t *testing.T, path string) []string {
	t.Helper()
	var idx struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	b, err := os.ReadFile(filepath.Join(path, "index.json"))
	assert.NilError(t, err)
	assert.NilError(t, json.Unmarshal(b, &idx))
	b, err = os.ReadFile(filepath.Join(path, "blobs", "sha256", strings.TrimPrefix(idx.Manifests[0].Digest, "sha256:")))
	assert.NilError(t, err)
	var m struct {
		Config storeLayer
		Layers []storeLayer
	}
	assert.NilError(t, json.Unmarshal(b, &m))
	out := []string{idx.Manifests[0].Digest, m.Config.Digest}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
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

// cliJSON runs the CLI as who against a and decodes its JSON answer.
func cliJSON(t *testing.T, a *agentProc, who string, v any, args ...string) result {
	t.Helper()
	r := a.cli(t, who, args...)
	if r.code == 0 && v != nil {
		assert.NilError(t, json.Unmarshal([]byte(r.stdout), v), "%s", r)
	}
	return r
}

// Two containers from one base share its blobs; a second freeze writes
// only the new layer, the config, the manifest and the image's layout,
// byte for byte what the store grows by; list shows the store's images
// beside archives; rm and prune --store free what only a removed image
// used; export writes an archive that podman load takes.
func TestStoreSharesBaseAndWritesOnlyNewLayers(t *testing.T) {
	s := stores(t)[0]
	base := baseWithTree(t, s)
	a := s.agent(t)
	st := storeOf(a, s.user)
	ctr1 := s.session(t, base, "echo one > /root/one && busybox dd if=/dev/urandom of=/root/r1 bs=1M count=4 2>/dev/null")
	ctr2 := s.session(t, base, "echo two > /root/two")

	t1, r := commitJSON(t, a, s.user, "--format", "store", ctr1)
	assert.Assert(t, is.Equal(t1.State, api.StateSucceeded), "%s", r)
	before := storeBytes(t, st)
	t2, r := commitJSON(t, a, s.user, "--format", "store", ctr2)
	assert.Assert(t, is.Equal(t2.State, api.StateSucceeded), "%s", r)
	assert.Check(t, is.Equal(t2.Store.Reused, 2), "the second container's base is in the store")
	l1, l2 := imageLayers(t, t1.Store.Path), imageLayers(t, t2.Store.Path)
	assert.Check(t, is.DeepEqual(l1[:2], l2[:2]), "the two images name the same base blobs")
	assert.Check(t, is.Len(blobFiles(t, st), 2+2*3), "the base once, a new layer, config and manifest each")
	grew := storeBytes(t, st) - before
	assert.Check(t, is.Equal(grew, t2.Store.Written), "the store grew by what the freeze says it wrote")
	assert.Check(t, t2.Store.Written-l2[2].Size < 16<<10, "beyond the new layer (%d B), a few KiB: wrote %d", l2[2].Size, t2.Store.Written)

	// The first session changes more and is frozen again.
	s.must(t, "exec", ctr1, "sh", "-c", "busybox dd if=/dev/urandom of=/root/r2 bs=1M count=2 2>/dev/null")
	baseBlobs := map[string]os.FileInfo{}
	for _, l := range l1[:2] {
		fi, err := os.Stat(filepath.Join(st, "blobs", "sha256", strings.TrimPrefix(l.Digest, "sha256:")))
		assert.NilError(t, err)
		baseBlobs[l.Digest] = fi
	}
	before = storeBytes(t, st)
	t3, r := commitJSON(t, a, s.user, "--format", "store", ctr1)
	assert.Assert(t, is.Equal(t3.State, api.StateSucceeded), "%s", r)
	l3 := imageLayers(t, t3.Store.Path)
	assert.Check(t, is.Equal(storeBytes(t, st)-before, t3.Store.Written))
	assert.Check(t, t3.Store.Written-l3[2].Size < 16<<10, "the new layer (%d B) and a few KiB: wrote %d", l3[2].Size, t3.Store.Written)
	assert.Check(t, l3[2].Size > 6<<20, "the container's layer holds both changes: %d", l3[2].Size)
	for d, fi := range baseBlobs {
		now, err := os.Stat(filepath.Join(st, "blobs", "sha256", strings.TrimPrefix(d, "sha256:")))
		assert.NilError(t, err)
		assert.Check(t, os.SameFile(fi, now) && fi.ModTime().Equal(now.ModTime()), "base blob %s untouched", d)
	}
	assert.Check(t, t3.Progress.BytesTotal < 10<<20, "only the new layer was read: %d", t3.Progress.BytesTotal)

	// Beside an archive in the list.
	ta, r := commitJSON(t, a, s.user, ctr2)
	assert.Assert(t, is.Equal(ta.State, api.StateSucceeded), "%s", r)
	var list struct{ Archives []api.ArchiveEntry }
	r = cliJSON(t, a, s.user, &list, "list", "--json")
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)
	var paths []string
	formats := map[string]int{}
	for _, e := range list.Archives {
		paths = append(paths, e.Path)
		formats[e.Format]++
	}
	assert.Check(t, is.DeepEqual(paths, []string{ta.Archive.Path, t3.Store.Path, t2.Store.Path, t1.Store.Path}), "newest first")
	assert.Check(t, is.DeepEqual(formats, map[string]int{"": 1, api.FormatStore: 3}))
	text := a.cli(t, s.user, "list")
	assert.Check(t, is.Contains(text.stdout, t3.Store.Path))

	// rm, then prune: the first image's own blobs go, nothing else.
	r = a.cli(t, s.user, "rm", t1.Store.Path)
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)
	var gc struct{ Store struct{ Removed, Young int } }
	pr := &gc.Store
	r = cliJSON(t, a, s.user, &gc, "prune", "--store", "--grace", "1h", "--settle", "0s", "--json")
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)
	assert.Check(t, is.Equal(pr.Removed, 0), "young blobs stay")
	assert.Check(t, is.Equal(pr.Young, 3))
	r = cliJSON(t, a, s.user, &gc, "prune", "--store", "--grace", "0s", "--settle", "0s", "--json")
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)
	assert.Check(t, is.Equal(pr.Removed, 3), "%s", r)
	_, err := os.Stat(filepath.Join(st, "blobs", "sha256", strings.TrimPrefix(l1[2].Digest, "sha256:")))
	assert.Check(t, os.IsNotExist(err), "the removed image's layer is gone")
	assert.Check(t, is.Len(blobFiles(t, st), 2+2*3))

	// Export: one self-contained archive, loaded as archives are.
	out := filepath.Join(a.save, s.user, "shared.tar.gz")
	var ex struct{ Archive, SHA256 string }
	r = cliJSON(t, a, s.user, &ex, "export", "--json", t3.Store.Path, out)
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)
	assert.Check(t, is.Equal(ex.SHA256, fileSHA256(t, out)))
	r = a.cli(t, s.user, "export", t3.Store.Path, out)
	assert.Check(t, r.code != 0 && strings.Contains(r.stderr, "already exists"), "export never replaces: %s", r)
	img := s.load(t, out)
	assert.Check(t, is.Equal(s.must(t, "image", "inspect", "--format", "{{.ID}}", img), strings.TrimPrefix(readSidecar(t, t3.Store.Sidecar).ImageID, "sha256:")),
		"the exported archive is the same image")
	assert.Check(t, is.Equal(s.must(t, "run", "--rm", "--network=none", img, "sh", "-c", "cat /root/one; wc -c < /root/r2"), "one\n2097152"))
	r = a.cli(t, s.user, "restore", out)
	assert.Check(t, is.Equal(r.code, 0), "the export's sidecar checks: %s", r)
}

// Freezes of two sessions from one base into one store at the same time,
// repeated, never lose or corrupt an image: every image exports (each
// blob and layer checked) and the base is stored once.
func TestStoreConcurrentFreezes(t *testing.T) {
	s := stores(t)[0]
	base := baseWithTree(t, s)
	a := s.agent(t)
	st := storeOf(a, s.user)
	ctrs := []string{
		s.session(t, base, "busybox dd if=/dev/urandom of=/root/a bs=1M count=8 2>/dev/null"),
		s.session(t, base, "busybox dd if=/dev/urandom of=/root/b bs=1M count=8 2>/dev/null"),
	}
	c := a.client(t)
	var images []string
	for round := range 3 {
		var wg sync.WaitGroup
		tasks := make([]*api.Task, len(ctrs))
		for i, ctr := range ctrs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				task, err := c.Freeze(context.Background(), api.FreezeRequest{Container: ctr, User: s.user, Format: api.FormatStore})
				if !assert.Check(t, err) {
					return
				}
				tasks[i] = a.waitTask(t, task.ID)
			}()
		}
		wg.Wait()
		for i, task := range tasks {
			assert.Assert(t, task != nil)
			assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "round %d, %s: %s", round, ctrs[i], task.Error)
			images = append(images, task.Store.Path)
		}
		s.must(t, "exec", ctrs[round%2], "sh", "-c", fmt.Sprintf("echo %d >> /root/rounds", round))
	}
	used := map[string]bool{}
	for i, p := range images {
		out := filepath.Join(a.save, s.user, fmt.Sprintf("check-%d.tar.gz", i))
		r := a.cli(t, s.user, "export", p, out)
		assert.Check(t, is.Equal(r.code, 0), "image %s: %s", p, r)
		for _, d := range imageBlobs(t, p) {
			used[d] = true
		}
	}
	var list struct{ Archives []api.ArchiveEntry }
	r := cliJSON(t, a, s.user, &list, "list", "--json")
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)
	var listed []string
	for _, e := range list.Archives {
		if e.Format == api.FormatStore {
			listed = append(listed, e.Path)
		}
	}
	assert.Check(t, is.Len(listed, len(images)), "no image lost: %v", listed)
	blobs := blobFiles(t, st)
	for d := range blobs {
		assert.Check(t, used["sha256:"+d], "blob %s is used by no image", d)
	}
	assert.Check(t, is.Len(blobs, len(used)), "every blob the images use is there, once")
	ents, err := os.ReadDir(filepath.Join(st, "holds"))
	assert.NilError(t, err)
	assert.Check(t, is.Len(ents, 0), "no hold left behind")
	rr := runAsEnv(t, s.user, nil, s.env(), bins.cli, "restore", "--name", "localhost/e2e/concurrent:last", images[len(images)-1])
	assert.Assert(t, is.Equal(rr.code, 0), "%s", rr)
	t.Cleanup(func() { s.run(t, "rmi", "-f", "localhost/e2e/concurrent:last") })
	assert.Check(t, is.Equal(s.must(t, "run", "--rm", "--network=none", "localhost/e2e/concurrent:last", "cat", "/root/rounds"), "1"))
}

// A prune while a freeze runs keeps the base blobs the freeze found
// (used by no image since the image that had them was removed) and
// removes the removed image's own; the freeze's image is whole.
func TestStorePruneDuringFreeze(t *testing.T) {
	s := stores(t)[0]
	base := baseWithTree(t, s)
	a := s.agent(t, withKey("compression_level", "9"))
	st := storeOf(a, s.user)
	old := s.session(t, base, "echo old > /root/old")
	t1, r := commitJSON(t, a, s.user, "--format", "store", old)
	assert.Assert(t, is.Equal(t1.State, api.StateSucceeded), "%s", r)
	r = a.cli(t, s.user, "rm", t1.Store.Path)
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)

	ctr := s.session(t, base, "busybox dd if=/dev/urandom of=/root/big bs=1M count=150 2>/dev/null && echo new > /root/new")
	c := a.client(t)
	task, err := c.Freeze(context.Background(), api.FreezeRequest{Container: ctr, User: s.user, Format: api.FormatStore})
	assert.NilError(t, err)
	waitFor(t, 2*time.Minute, func() bool {
		cur, err := c.Task(context.Background(), task.ID)
		return err == nil && (cur.Done() || cur.Progress.BytesRead > 0)
	})
	var gc struct{ Store struct{ Removed, Held int } }
	pr := &gc.Store
	r = cliJSON(t, a, s.user, &gc, "prune", "--store", "--store-dir", st, "--grace", "0s", "--settle", "0s", "--json")
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)
	cur, err := c.Task(context.Background(), task.ID)
	assert.NilError(t, err)
	if cur.Done() {
		t.Fatalf("the freeze ended before the prune (the test's timing is off)")
	}
	assert.Check(t, is.Equal(pr.Removed, 3), "the removed image's new layer, config, manifest: %s", r)
	assert.Check(t, pr.Held >= 2, "the base layers the freeze found: %s", r)
	done := a.waitTask(t, task.ID)
	assert.Assert(t, is.Equal(done.State, api.StateSucceeded), done.Error)
	assert.Check(t, is.Equal(done.Store.Reused, 2))
	out := filepath.Join(a.save, s.user, "after-prune.tar.gz")
	r = a.cli(t, s.user, "export", done.Store.Path, out)
	assert.Check(t, is.Equal(r.code, 0), "the image is whole: %s", r)
	r = cliJSON(t, a, s.user, &gc, "prune", "--store", "--store-dir", st, "--grace", "0s", "--settle", "0s", "--json")
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)
	assert.Check(t, is.Equal(pr.Removed, 0), "everything left is used: %s", r)
}

// A blob corrupted on disk is refused by restore, push and export, which
// say which blob; nothing of it is left in Podman.
func TestStoreDamagedBlob(t *testing.T) {
	s := stores(t)[0]
	reg := startRegistry(t, "alice")
	a := s.agent(t)
	ctr := s.session(t, baseImage, "busybox dd if=/dev/urandom of=/root/data bs=1M count=2 2>/dev/null")
	task, r := commitJSON(t, a, s.user, "--format", "store", "--tag", "localhost/e2e/damaged:v1", ctr)
	assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
	top := imageLayers(t, task.Store.Path)[1]
	blob := filepath.Join(storeOf(a, s.user), "blobs", "sha256", strings.TrimPrefix(top.Digest, "sha256:"))
	f, err := os.OpenFile(blob, os.O_RDWR, 0)
	assert.NilError(t, err)
	b := make([]byte, 1)
	_, err = f.ReadAt(b, top.Size/2)
	assert.NilError(t, err)
	_, err = f.WriteAt([]byte{b[0] ^ 0xff}, top.Size/2)
	assert.NilError(t, err)
	f.Close()

	rr := runAsEnv(t, s.user, nil, s.env(), bins.cli, "restore", task.Store.Path)
	assert.Check(t, rr.code != 0, "restore of a damaged image: %s", rr)
	assert.Check(t, is.Contains(rr.stderr, top.Digest), "%s", rr)
	t.Cleanup(func() { s.run(t, "rmi", "-f", "localhost/e2e/damaged:v1") })
	assert.Check(t, s.run(t, "image", "exists", "localhost/e2e/damaged:v1").code != 0, "nothing restored")

	r = a.cli(t, s.user, "push", "--creds", reg.creds(), "--tls-verify=false", task.Store.Path, reg.addr+"/alice/damaged:v1")
	assert.Check(t, r.code != 0, "push of a damaged image: %s", r)
	assert.Check(t, is.Contains(r.stderr, "igest"), "%s", r)

	r = a.cli(t, s.user, "export", task.Store.Path, filepath.Join(a.save, s.user, "damaged.tar.gz"))
	assert.Check(t, r.code != 0)
	assert.Check(t, is.Contains(r.stderr, "blob "+top.Digest+" of the layer store is damaged"), "%s", r)
	_, err = os.Stat(filepath.Join(a.save, s.user, "damaged.tar.gz"))
	assert.Check(t, os.IsNotExist(err), "no half export")
}

// A freeze pushes straight from the store (commit --push), and `baicommit
// push` pushes a store image; both pull back and run.
func TestStorePush(t *testing.T) {
	s := stores(t)[0]
	reg := startRegistry(t, "alice")
	a := s.agent(t)
	ctr := s.session(t, baseImage, "echo 'pushed from the store' > /root/p.txt")
	ref := reg.addr + "/alice/stored-" + randHex(3) + ":v1"
	task, r := commitJSON(t, a, s.user, "--format", "store", "--push", ref, "--creds", reg.creds(), "--tls-verify=false", ctr)
	assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
	assert.Assert(t, task.Push != nil && task.Push.State == api.PushSucceeded, "%+v", task.Push)
	assert.Check(t, is.Equal(pullAndCat(t, reg, alice, ref, "/root/p.txt"), "pushed from the store"))

	ref2 := reg.addr + "/alice/again-" + randHex(3) + ":v2"
	var out struct{ Digest, Sidecar string }
	r = cliJSON(t, a, s.user, &out, "push", "--json", "--creds", reg.creds(), "--tls-verify=false", filepath.Base(task.Store.Path), ref2)
	assert.Assert(t, is.Equal(r.code, 0), "push by the image's name in the store: %s", r)
	assert.Check(t, is.Equal(reg.manifestDigest(t, strings.SplitN(strings.TrimPrefix(ref2, reg.addr+"/"), ":", 2)[0], "v2"), out.Digest))
	sc := readSidecar(t, out.Sidecar)
	assert.Assert(t, is.Len(sc.Pushes, 2), "both pushes are recorded")
	assert.Check(t, is.Equal(sc.Pushes[1].Ref, ref2))
	assert.Check(t, is.Equal(pullAndCat(t, reg, alice, ref2, "/root/p.txt"), "pushed from the store"))
}

// Format both writes an archive and a store image of the same image in
// one pass; a site may offer fewer formats; the commit path writes an
// archive and says why.
func TestStoreFormats(t *testing.T) {
	s := stores(t)[0]
	a := s.agent(t, withKey("keep_image", "true"))
	ctr := s.session(t, baseImage, "echo both > /root/both.txt")
	task, r := commitJSON(t, a, s.user, "--format", "both", "--tag", "localhost/e2e/both:v1", ctr)
	assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
	t.Cleanup(func() { s.run(t, "rmi", "-f", "localhost/e2e/both:v1") })
	assert.Assert(t, task.Archive != nil && task.Store != nil, "%s", r)
	assert.Check(t, is.Equal(readSidecar(t, task.Archive.Sidecar).ImageID, readSidecar(t, task.Store.Sidecar).ImageID), "one image, two outputs")
	img := s.load(t, task.Archive.Path)
	assert.Check(t, is.Equal(s.must(t, "run", "--rm", "--network=none", img, "cat", "/root/both.txt"), "both"))
	assert.Check(t, !strings.Contains(strings.Join(task.Warnings, "\n"), "keep_image"), "%v", task.Warnings)

	// keep_image with the store alone pulls the image from its layout.
	s.must(t, "rmi", "-f", "localhost/e2e/both:v1")
	task, r = commitJSON(t, a, s.user, "--format", "store", "--tag", "localhost/e2e/both:v1", ctr)
	assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
	assert.Check(t, !strings.Contains(strings.Join(task.Warnings, "\n"), "keep_image"), "%v", task.Warnings)
	assert.Check(t, is.Equal(s.must(t, "run", "--rm", "--network=none", "localhost/e2e/both:v1", "cat", "/root/both.txt"), "both"))

	only := s.agent(t, withKey("formats", `["archive"]`))
	r = only.cli(t, s.user, "commit", "--wait", "--format", "store", ctr)
	assert.Check(t, r.code != 0)
	assert.Check(t, is.Contains(r.stderr, `format "store" is not offered here; choose one of archive`), "%s", r)

	byCommit := s.agent(t, withKey("freeze_method", `"commit"`), withKey("format", `"store"`))
	task, r = commitJSON(t, byCommit, s.user, ctr)
	assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
	assert.Check(t, task.Archive != nil && task.Store == nil)
	assert.Check(t, is.Contains(strings.Join(task.Warnings, "\n"), "the layer store is written by direct freezes only"), "%v", task.Warnings)
}

// An agent killed while it writes into the store leaves no hold and no
// temporary file there once it has started again.
func TestStoreAgentKilledMidFreeze(t *testing.T) {
	s := stores(t)[0]
	a := s.agent(t, withKey("compression_level", "9"), withKey("format", `"store"`))
	st := storeOf(a, s.user)
	ctr := s.session(t, baseImage, "busybox dd if=/dev/urandom of=/root/big bs=1M count=200 2>/dev/null")
	task := a.freezeUntil(t, s.user, ctr, api.PhaseExporting)
	holds, err := os.ReadDir(filepath.Join(st, "holds"))
	assert.NilError(t, err)
	assert.Check(t, is.Len(holds, 1), "the running freeze holds its blobs")
	a.kill()
	a.start()
	done := a.waitTask(t, task.ID)
	assert.Check(t, is.Equal(done.State, api.StateFailed))
	waitFor(t, 30*time.Second, func() bool {
		h, _ := os.ReadDir(filepath.Join(st, "holds"))
		return len(h) == 0
	})
	for _, d := range []string{"blobs/sha256", "images", "diffids"} {
		ents, err := os.ReadDir(filepath.Join(st, d))
		assert.NilError(t, err)
		for _, e := range ents {
			assert.Check(t, !strings.HasPrefix(e.Name(), "."), "%s/%s left behind", d, e.Name())
		}
	}
}
