package layerstore

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/ociarchive"
)

// layerTar is a tar holding one file of n random bytes.
func layerTar(t *testing.T, name string, n int) []byte {
	t.Helper()
	data := make([]byte, n)
	_, _ = rand.Read(data)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	assert.NilError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(n), Typeflag: tar.TypeReg}))
	_, err := tw.Write(data)
	assert.NilError(t, err)
	assert.NilError(t, tw.Close())
	return b.Bytes()
}

func newStore(t *testing.T) *Store {
	t.Helper()
	root := t.TempDir()
	s, err := Open(root, filepath.Join(root, "alice", "store"), true)
	assert.NilError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// freezeImage writes an image of base (stored uncompressed when the store
// lacks it) and a new gzip'd layer, as a freeze does, and publishes it.
// pause, when set, runs after the base layers were found or written.
func freezeImage(t *testing.T, s *Store, name string, base [][]byte, newLayer []byte, pause func()) (string, error) {
	f, err := s.Begin("tok-"+name, 0o640)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var layers []imgspecv1.Descriptor
	var diffIDs []digest.Digest
	for _, b := range base {
		d := digest.FromBytes(b)
		desc, ok, err := f.Find(d, int64(len(b)))
		if err != nil {
			return "", err
		}
		if !ok {
			w, err := f.CreateLayer()
			if err != nil {
				return "", err
			}
			w.Write(b)
			if desc, err = w.Commit(d, MediaTypeLayer); err != nil {
				return "", err
			}
		}
		layers = append(layers, desc)
		diffIDs = append(diffIDs, d)
	}
	if pause != nil {
		pause()
	}
	g, err := f.CreateGzipLayer(1)
	if err != nil {
		return "", err
	}
	g.Write(newLayer)
	nd := digest.FromBytes(newLayer)
	desc, err := g.Commit(nd)
	if err != nil {
		return "", err
	}
	layers = append(layers, desc)
	diffIDs = append(diffIDs, nd)
	cfg := imgspecv1.Image{RootFS: imgspecv1.RootFS{Type: "layers", DiffIDs: diffIDs}}
	cb, _ := json.Marshal(cfg)
	cd, err := f.PutBlob(imgspecv1.MediaTypeImageConfig, cb)
	if err != nil {
		return "", err
	}
	mb, err := ociarchive.MarshalManifest(cd, layers)
	assert.NilError(t, err)
	md, err := f.PutBlob(imgspecv1.MediaTypeImageManifest, mb)
	if err != nil {
		return "", err
	}
	sc := &api.Sidecar{Archive: name, SHA256: md.Digest.Encoded(), Format: api.FormatStore, Image: "localhost/test/" + name + ":v1", Created: time.Now()}
	return f.Publish(name, md, sc.Image, sc)
}

func TestFreezeWritesEachBaseOnce(t *testing.T) {
	s := newStore(t)
	base := [][]byte{layerTar(t, "a", 300<<10), layerTar(t, "b", 200<<10)}
	p1, err := freezeImage(t, s, "one", base, layerTar(t, "n1", 10<<10), nil)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(p1, filepath.Join(s.Path(), "images", "one")))

	f, err := s.Begin("tok-two", 0o640)
	assert.NilError(t, err)
	for _, b := range base {
		desc, ok, err := f.Find(digest.FromBytes(b), int64(len(b)))
		assert.NilError(t, err)
		assert.Check(t, ok, "the second freeze finds the base")
		assert.Check(t, is.Equal(desc.MediaType, MediaTypeLayer))
	}
	f.Close()
	_, err = freezeImage(t, s, "two", base, layerTar(t, "n2", 10<<10), nil)
	assert.NilError(t, err)

	u, err := s.Usage(context.Background())
	assert.NilError(t, err)
	assert.Check(t, is.Equal(u.Images, 2))
	// Two base layers, two new layers, two configs, two manifests.
	assert.Check(t, is.Equal(u.Blobs, 8))
	assert.Check(t, u.Bytes < int64(len(base[0])+len(base[1]))+100<<10, "the base is counted once: %d", u.Bytes)
	assert.Check(t, is.Equal(u.Unreferenced, int64(0)))
	assert.Check(t, u.PerImage["one"].Exclusive < 20<<10, "%+v", u.PerImage["one"])
	assert.Check(t, u.PerImage["one"].Size > 500<<10, "%+v", u.PerImage["one"])

	// A gzip'd new layer of an earlier freeze is found by its diff ID
	// (a session started from that freeze has it as a base layer).
	img, err := s.Image(t.Context(), "one")
	assert.NilError(t, err)
	f, err = s.Begin("tok-three", 0o640)
	assert.NilError(t, err)
	defer f.Close()
	top := img.Manifest.Layers[2]
	desc, ok, err := f.Find(img.DiffIDs[2], 12345)
	assert.NilError(t, err)
	assert.Check(t, ok)
	assert.Check(t, is.DeepEqual(desc, imgspecv1.Descriptor{MediaType: MediaTypeLayerGzip, Digest: top.Digest, Size: top.Size}))

	// Nothing temporary stays behind, and no hold after Close.
	f.Close()
	for _, d := range []string{"blobs/sha256", "diffids", "holds", "images"} {
		ns, err := os.ReadDir(filepath.Join(s.Path(), d))
		assert.NilError(t, err)
		for _, n := range ns {
			assert.Check(t, !isTemp(n.Name()), "%s/%s left behind", d, n.Name())
		}
	}
	ns, _ := os.ReadDir(filepath.Join(s.Path(), "holds"))
	assert.Check(t, is.Len(ns, 0))
}

func TestImageReadAndExport(t *testing.T) {
	s := newStore(t)
	base := [][]byte{layerTar(t, "a", 100<<10)}
	newLayer := layerTar(t, "n", 50<<10)
	path, err := freezeImage(t, s, "img", base, newLayer, nil)
	assert.NilError(t, err)
	for _, n := range []string{"oci-layout", "index.json", SidecarFile} {
		_, err := os.Stat(filepath.Join(path, n))
		assert.Check(t, err)
	}
	// The layout reaches the blobs through its link, as podman pull oci: does.
	img, err := s.Image(t.Context(), "img")
	assert.NilError(t, err)
	_, err = os.Stat(filepath.Join(path, "blobs", "sha256", img.Manifest.Layers[1].Digest.Encoded()))
	assert.Check(t, err)
	assert.Check(t, is.Equal(img.Ref, "localhost/test/img:v1"))
	assert.Check(t, IsImage(path))

	list, warnings, err := s.List(context.Background(), nil)
	assert.NilError(t, err)
	assert.Check(t, is.Len(warnings, 0))
	assert.Assert(t, is.Len(list, 1))
	assert.Check(t, is.Equal(list[0].Path, path))

	var out bytes.Buffer
	n, err := s.Export(context.Background(), img, &out, time.Now())
	assert.NilError(t, err)
	assert.Check(t, is.Equal(n, int64(out.Len())))
	got := map[string][]byte{}
	tr := tar.NewReader(&out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		assert.NilError(t, err)
		b, _ := io.ReadAll(tr)
		got[h.Name] = b
	}
	assert.Check(t, bytes.Equal(got[ociarchive.BlobPath(digest.FromBytes(base[0]))], base[0]))
	assert.Check(t, bytes.Equal(got[ociarchive.BlobPath(digest.FromBytes(newLayer))], newLayer), "the new layer is uncompressed under its diff ID")
	assert.Check(t, bytes.Equal(got[ociarchive.BlobPath(img.Manifest.Config.Digest)], img.Config), "the config is the store's, byte for byte")
	for _, name := range []string{"oci-layout", "index.json", "manifest.json"} {
		assert.Check(t, got[name] != nil, name)
	}
}

func TestDamagedBlobIsDetected(t *testing.T) {
	s := newStore(t)
	path, err := freezeImage(t, s, "img", [][]byte{layerTar(t, "a", 100<<10)}, layerTar(t, "n", 20<<10), nil)
	assert.NilError(t, err)
	img, err := s.Image(t.Context(), "img")
	assert.NilError(t, err)
	blob := filepath.Join(path, "blobs", "sha256", img.Manifest.Layers[0].Digest.Encoded())
	assert.NilError(t, os.Chmod(blob, 0o640))
	f, err := os.OpenFile(blob, os.O_WRONLY, 0)
	assert.NilError(t, err)
	_, err = f.WriteAt([]byte("X"), 5000)
	assert.NilError(t, err)
	f.Close()
	_, err = s.Export(context.Background(), img, io.Discard, time.Now())
	assert.Check(t, errors.Is(err, ErrDamaged), "%v", err)
	assert.Check(t, is.ErrorContains(err, "is damaged"))

	// A changed index.json no longer matches the sidecar.
	idx := filepath.Join(path, "index.json")
	b, err := os.ReadFile(idx)
	assert.NilError(t, err)
	assert.NilError(t, os.Chmod(idx, 0o640))
	other := digest.FromString("other")
	assert.NilError(t, os.WriteFile(idx, bytes.ReplaceAll(b, []byte(img.ManifestDesc.Digest.Encoded()), []byte(other.Encoded())), 0o640))
	_, err = s.Image(t.Context(), "img")
	assert.Check(t, is.ErrorContains(err, "the layout was changed after the freeze"))
}

func TestPublishNeverReplaces(t *testing.T) {
	s := newStore(t)
	_, err := freezeImage(t, s, "img", nil, layerTar(t, "n", 1<<10), nil)
	assert.NilError(t, err)
	_, err = freezeImage(t, s, "img", nil, layerTar(t, "m", 1<<10), nil)
	assert.Check(t, is.ErrorContains(err, "is in the layer store already"))
	img, err := s.Image(t.Context(), "img")
	assert.NilError(t, err)
	assert.Check(t, is.Len(img.Manifest.Layers, 1))
}

func TestGCRemovesWhatNoImageUses(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	base := [][]byte{layerTar(t, "a", 100<<10)}
	_, err := freezeImage(t, s, "one", base, layerTar(t, "n1", 10<<10), nil)
	assert.NilError(t, err)
	_, err = freezeImage(t, s, "two", base, layerTar(t, "n2", 10<<10), nil)
	assert.NilError(t, err)

	res, err := s.GC(ctx, GCOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(res.Removed, 0), "%+v", res)

	assert.NilError(t, s.Remove("one"))
	assert.Check(t, errors.Is(s.Remove("one"), ErrNotFound))
	res, err = s.GC(ctx, GCOptions{Grace: time.Hour})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(res.Removed, 0), "young blobs stay: %+v", res)
	assert.Check(t, is.Equal(res.Young, 3))

	dry, err := s.GC(ctx, GCOptions{DryRun: true})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(dry.Removed, 3))
	res, err = s.GC(ctx, GCOptions{})
	assert.NilError(t, err)
	// The first image's new layer, config and manifest; the base stays.
	assert.Check(t, is.Equal(res.Removed, 3), "%+v", res)
	assert.Check(t, is.Equal(res.IndexEntries, 1), "the index entry of the removed layer: %+v", res)
	img, err := s.Image(ctx, "two")
	assert.NilError(t, err)
	_, err = s.Export(ctx, img, io.Discard, time.Now())
	assert.NilError(t, err, "the image that stays is whole")

	// Read (the export above holds it until Close): neither it nor its
	// blobs go.
	err = s.Remove("two")
	assert.Check(t, errors.Is(err, ErrInUse), "%v", err)
	res, err = s.GC(ctx, GCOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(res.Removed, 0), "%+v", res)
	assert.NilError(t, img.Close())
	assert.NilError(t, s.Remove("two"))
	res, err = s.GC(ctx, GCOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(res.Removed, 4))
	u, err := s.Usage(ctx)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(u.Bytes, int64(0)))
}

// A blob a freeze found, used by no image yet, survives a collection that
// runs before the freeze publishes its image; a blob another freeze is
// writing too.
func TestGCDuringAFreeze(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	base := [][]byte{layerTar(t, "a", 100<<10)}
	_, err := freezeImage(t, s, "old", base, layerTar(t, "n1", 10<<10), nil)
	assert.NilError(t, err)
	assert.NilError(t, s.Remove("old"))
	// Now the base is unreferenced: a freeze finds it, and a collection
	// runs before it publishes.
	var gc *GCResult
	_, err = freezeImage(t, s, "new", base, layerTar(t, "n2", 10<<10), func() {
		var err error
		gc, err = s.GC(ctx, GCOptions{})
		assert.NilError(t, err)
	})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(gc.Held, 1), "%+v", gc)
	assert.Check(t, is.Equal(gc.Removed, 3), "the removed image's own blobs went: %+v", gc)
	img, err := s.Image(ctx, "new")
	assert.NilError(t, err)
	_, err = s.Export(ctx, img, io.Discard, time.Now())
	assert.NilError(t, err, "the image the freeze published is whole")
}

// The second look of a collection puts back a blob that a freeze began
// to hold after the first look.
func TestGCPutsBackWhatAFreezeHeldMeanwhile(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	base := [][]byte{layerTar(t, "a", 100<<10)}
	_, err := freezeImage(t, s, "old", base, layerTar(t, "n1", 10<<10), nil)
	assert.NilError(t, err)
	assert.NilError(t, s.Remove("old"))
	d := digest.FromBytes(base[0])

	// A freeze that found the base just before the collection took it
	// out: it held it already, but the collection's first look did not
	// see the hold (as on NFS, whose directory listings lag).
	f, err := s.Begin("tok-late", 0o640)
	assert.NilError(t, err)
	defer f.Close()
	_, ok, err := f.Find(d, int64(len(base[0])))
	assert.NilError(t, err)
	assert.Assert(t, ok)
	hold, err := os.ReadFile(filepath.Join(s.Path(), "holds", "tok-late"))
	assert.NilError(t, err)
	assert.NilError(t, os.Rename(filepath.Join(s.Path(), "holds", "tok-late"), filepath.Join(s.Path(), "tok-late.aside")))
	done := make(chan *GCResult)
	go func() {
		res, err := s.GC(ctx, GCOptions{Settle: 300 * time.Millisecond})
		assert.Check(t, err)
		done <- res
	}()
	time.Sleep(100 * time.Millisecond)
	assert.NilError(t, os.WriteFile(filepath.Join(s.Path(), "holds", "tok-late"), hold, 0o640))
	res := <-done
	assert.Check(t, is.Equal(res.Restored, 1), "%+v", res)
	_, err = os.Stat(filepath.Join(s.Path(), "blobs", "sha256", d.Encoded()))
	assert.Check(t, err, "the base is back under its name")
}

// Freezes of sessions from one base into one store, at once and
// repeatedly, with collections running among them: every image published
// is whole, each base layer is stored once.
func TestConcurrentFreezesAndGC(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	base := [][]byte{layerTar(t, "a", 200<<10), layerTar(t, "b", 100<<10)}
	const workers, rounds = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds+rounds)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each worker opens the store itself, as another node would.
			st, err := OpenPath(s.Path())
			if err != nil {
				errs <- err
				return
			}
			defer st.Close()
			for r := range rounds {
				name := fmt.Sprintf("w%d-r%d", w, r)
				if _, err := freezeImage(t, st, name, base, layerTar(t, name, 20<<10), nil); err != nil {
					errs <- fmt.Errorf("%s: %w", name, err)
				}
				if r%2 == 1 {
					if err := st.Remove(fmt.Sprintf("w%d-r%d", w, r-1)); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range rounds * 2 {
			if _, err := s.GC(ctx, GCOptions{Settle: 10 * time.Millisecond}); err != nil {
				errs <- fmt.Errorf("gc: %w", err)
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	names, err := s.Names()
	assert.NilError(t, err)
	assert.Check(t, is.Len(names, workers*(rounds-rounds/2)))
	for _, n := range names {
		img, err := s.Image(ctx, n)
		assert.NilError(t, err)
		_, err = s.Export(ctx, img, io.Discard, time.Now())
		assert.Check(t, err, "image %s", n)
	}
	_, err = s.GC(ctx, GCOptions{})
	assert.NilError(t, err)
	u, err := s.Usage(ctx)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(u.Unreferenced, int64(0)))
	assert.Check(t, is.Equal(u.Blobs, 2+3*len(names)), "two base layers once, a new layer, config and manifest per image")
}

func TestRemoveTaskLeavesNothing(t *testing.T) {
	s := newStore(t)
	f, err := s.Begin("node1.task1", 0o640)
	assert.NilError(t, err)
	w, err := f.CreateLayer()
	assert.NilError(t, err)
	w.Write([]byte("half a layer"))
	// The helper was killed here: the agent's restart recovery removes
	// what it left.
	assert.NilError(t, s.RemoveTask("node1.task1"))
	for _, d := range []string{"blobs/sha256", "holds"} {
		ns, err := os.ReadDir(filepath.Join(s.Path(), d))
		assert.NilError(t, err)
		assert.Check(t, is.Len(ns, 0), d)
	}
}
