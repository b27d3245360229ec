package archives

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/archivetest"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// writeArchive writes an archive with content and a matching sidecar.
func writeArchive(t *testing.T, dir, name, content string, created time.Time, uid int) string {
	t.Helper()
	return archivetest.Write(t, dir, name, []byte(content), api.Sidecar{
		Image: "localhost/x/" + name + ":v1", SourceContainer: name, UID: uid, Created: created})
}

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	path := writeArchive(t, dir, "box", "frozen bytes", t0, 1000)
	for _, tc := range []struct {
		name    string
		content string // written over the archive; "" keeps it
		want    string // error text; "" means it verifies
	}{
		{name: "unchanged"},
		{name: "one byte changed", content: "frozen bytez", want: "was changed after the freeze; refusing"},
		{name: "truncated", content: "frozen", want: "is 6 bytes but its sidecar says 12"},
		{name: "appended", content: "frozen bytes!", want: "is 13 bytes but its sidecar says 12"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.content != "" {
				assert.NilError(t, os.WriteFile(path, []byte(tc.content), 0o640))
				defer os.WriteFile(path, []byte("frozen bytes"), 0o640)
			}
			f, sc, err := Open(path)
			assert.NilError(t, err)
			defer f.Close()
			err = Verify(context.Background(), f, sc)
			if tc.want == "" {
				assert.NilError(t, err)
				// Positioned at the start: the verified file is used as is.
				b, err := io.ReadAll(f)
				assert.NilError(t, err)
				assert.Check(t, is.Equal(string(b), "frozen bytes"))
				return
			}
			assert.Check(t, errors.Is(err, ErrMismatch))
			assert.Check(t, is.ErrorContains(err, tc.want))
		})
	}
}

func TestVerifyCancelled(t *testing.T) {
	path := writeArchive(t, t.TempDir(), "box", "frozen bytes", t0, 1000)
	f, sc, err := Open(path)
	assert.NilError(t, err)
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.Check(t, errors.Is(Verify(ctx, f, sc), context.Canceled))
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	path := writeArchive(t, dir, "box", "data", t0, 1000)
	other := writeArchive(t, dir, "other", "data", t0, 1000)

	noSidecar := filepath.Join(dir, "lonely.tar.gz")
	assert.NilError(t, os.WriteFile(noSidecar, []byte("x"), 0o640))
	link := filepath.Join(dir, "link.tar.gz")
	assert.NilError(t, os.Symlink(path, link))
	// The link's sidecar names the link, so only O_NOFOLLOW stops it.
	b, _ := os.ReadFile(SidecarPath(path))
	assert.NilError(t, os.WriteFile(SidecarPath(link), []byte(strings.Replace(string(b), "box.tar.gz", "link.tar.gz", 1)), 0o640))
	// A sidecar that describes another archive.
	b, _ = os.ReadFile(SidecarPath(other))
	mixed := filepath.Join(dir, "mixed.tar.gz")
	assert.NilError(t, os.WriteFile(mixed, []byte("data"), 0o640))
	assert.NilError(t, os.WriteFile(SidecarPath(mixed), b, 0o640))

	for _, tc := range []struct{ path, want string }{
		{noSidecar, "has no sidecar"},
		{link, "too many levels of symbolic links"},
		{mixed, "describes other.tar.gz, not mixed.tar.gz"},
		{filepath.Join(dir, "missing.tar.gz"), "has no sidecar"},
	} {
		_, _, err := Open(tc.path)
		assert.Check(t, is.ErrorContains(err, tc.want), tc.path)
	}
}

func TestReadSidecarMalformed(t *testing.T) {
	dir := t.TempDir()
	good := strings.Repeat("ab", 32)
	for name, body := range map[string]string{
		"notjson":   "{nope",
		"nosha":     `{"archive":"a.tar.gz"}`,
		"shortsha":  `{"archive":"a.tar.gz","sha256":"abc"}`,
		"hexless":   `{"archive":"a.tar.gz","sha256":"` + strings.Repeat("zz", 32) + `"}`,
		"slash":     `{"archive":"../a.tar.gz","sha256":"` + good + `"}`,
		"noarchive": `{"sha256":"` + good + `"}`,
		"huge":      `{"archive":"a.tar.gz","sha256":"` + good + `","image":"` + strings.Repeat("x", maxSidecar) + `"}`,
	} {
		p := filepath.Join(dir, name+".json")
		assert.NilError(t, os.WriteFile(p, []byte(body), 0o600))
		_, err := ReadSidecar(p)
		assert.Check(t, is.ErrorContains(err, "is not a baicommit sidecar"), name)
	}
}

func TestList(t *testing.T) {
	dir := t.TempDir()
	me := os.Geteuid()
	writeArchive(t, dir, "old", "1", t0, me)
	writeArchive(t, filepath.Join(dir, "2025-03-02"), "new", "2", t0.Add(24*time.Hour), me)
	writeArchive(t, dir, "mid", "3", t0.Add(time.Hour), me)
	writeArchive(t, dir, "bobs", "4", t0.Add(2*time.Hour), me+1)
	writeArchive(t, filepath.Join(dir, ".hidden"), "hid", "5", t0, me)
	gone := writeArchive(t, dir, "gone", "6", t0, me)
	assert.NilError(t, os.Remove(gone))
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "junk.json"), []byte("[1,2"), 0o644))
	deep := filepath.Join(dir, "a", "b", "c", "d", "e")
	writeArchive(t, deep, "deep", "7", t0, me)

	es, warnings, err := List(context.Background(), dir, me)
	assert.NilError(t, err)
	var names []string
	for _, e := range es {
		names = append(names, e.SourceContainer)
		assert.Check(t, is.Equal(e.Path, filepath.Join(filepath.Dir(e.SidecarFile), e.Archive)))
	}
	assert.Check(t, is.DeepEqual(names, []string{"new", "mid", "old"}))
	assert.Assert(t, is.Len(warnings, 2), "%q", warnings)
	assert.Check(t, is.Contains(strings.Join(warnings, "\n"), "junk.json is not a baicommit sidecar"))
	assert.Check(t, is.Contains(strings.Join(warnings, "\n"), "its archive "+gone+" is gone"))

	all, _, err := List(context.Background(), dir, Anyone)
	assert.NilError(t, err)
	assert.Check(t, is.Len(all, 4))

	_, _, err = List(context.Background(), filepath.Join(dir, "nope"), Anyone)
	assert.Check(t, errors.Is(err, os.ErrNotExist))
}

func TestRecordPush(t *testing.T) {
	dir := t.TempDir()
	path := writeArchive(t, dir, "box", "data", t0, 1000)
	sc := SidecarPath(path)
	assert.NilError(t, os.Chmod(sc, 0o604))
	recs := []api.PushRecord{
		{Ref: "reg.example/a/box:v1", Digest: "sha256:" + strings.Repeat("1", 64), Pushed: t0},
		{Ref: "reg.example/a/box:v2", Digest: "sha256:" + strings.Repeat("2", 64), Pushed: t0.Add(time.Minute)},
	}
	for _, r := range recs {
		assert.NilError(t, RecordPush(sc, r))
	}
	got, err := ReadSidecar(sc)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(got.Pushes, recs))
	assert.Check(t, is.Equal(got.SourceContainer, "box"))
	fi, err := os.Stat(sc)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(0o604)), "the sidecar keeps its mode")
	ents, err := os.ReadDir(dir)
	assert.NilError(t, err)
	assert.Check(t, is.Len(ents, 2), "no temporary files left")

	assert.Check(t, RecordPush(filepath.Join(dir, "missing.json"), recs[0]) != nil)
	link := filepath.Join(dir, "link.json")
	assert.NilError(t, os.Symlink(sc, link))
	assert.Check(t, is.ErrorContains(RecordPush(link, recs[0]), "symbolic links"))
}

// Pushes recorded at the same time are all kept.
func TestRecordPushConcurrent(t *testing.T) {
	dir := t.TempDir()
	sc := filepath.Join(dir, "a.json")
	assert.NilError(t, os.WriteFile(sc, []byte(`{"archive":"a.tar.gz","sha256":"0000000000000000000000000000000000000000000000000000000000000000","size":1}`), 0o640))
	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.Check(t, RecordPush(sc, api.PushRecord{Ref: fmt.Sprintf("r.example/a:%d", i), Digest: "sha256:1"}))
		}()
	}
	wg.Wait()
	b, err := os.ReadFile(sc)
	assert.NilError(t, err)
	var got api.Sidecar
	assert.NilError(t, json.Unmarshal(b, &got))
	assert.Check(t, is.Len(got.Pushes, n))
}

// entryBeforeTheMove is Entry as this package defined it before the type
// moved into package api, whose JSON `list --json` prints.
type entryBeforeTheMove struct {
	Path        string `json:"path"`
	SidecarFile string `json:"sidecar"`
	api.Sidecar
}

// Entry, now api.ArchiveEntry, prints exactly the JSON it printed before.
func TestEntryJSONUnchanged(t *testing.T) {
	code := 3
	sc := api.Sidecar{Archive: "box.tar.gz", SHA256: strings.Repeat("ab", 32), Size: 42, Image: "localhost/x/box:v1",
		ImageID: "sha256:1", SourceContainer: "box", SourceID: "c0ffee", BaseImage: "busybox", Node: "n1", User: "alice",
		UID: 1000, Job: "42", Task: "t.n1", ContainerState: "exited", Created: t0, ContainerExit: &code,
		JobExit: "0:0", Trigger: api.TriggerEpilog,
		Pushes: []api.PushRecord{{Ref: "r.example/a:v1", Digest: "sha256:2", Pushed: t0}}}
	for _, tc := range []struct {
		name string
		sc   api.Sidecar
	}{
		{name: "every field", sc: sc},
		{name: "only the required fields", sc: api.Sidecar{Archive: "a.tar.gz", SHA256: sc.SHA256}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now, err := json.Marshal(Entry{Path: "/s/alice/box.tar.gz", SidecarFile: "/s/alice/box.json", Sidecar: tc.sc})
			assert.NilError(t, err)
			before, err := json.Marshal(entryBeforeTheMove{Path: "/s/alice/box.tar.gz", SidecarFile: "/s/alice/box.json", Sidecar: tc.sc})
			assert.NilError(t, err)
			assert.Check(t, is.Equal(string(now), string(before)))
			assert.Check(t, strings.HasPrefix(string(now), `{"path":"/s/alice/box.tar.gz","sidecar":"/s/alice/box.json","archive":`), string(now))

			var back Entry
			assert.NilError(t, json.Unmarshal(before, &back))
			assert.Check(t, is.DeepEqual(back, Entry{Path: "/s/alice/box.tar.gz", SidecarFile: "/s/alice/box.json", Sidecar: tc.sc}))
		})
	}
}

func TestEntryLastPush(t *testing.T) {
	e := Entry{}
	assert.Check(t, e.LastPush() == nil)
	e.Pushes = []api.PushRecord{{Ref: "r/a:1"}, {Ref: "r/a:2"}}
	assert.Check(t, is.Equal(e.LastPush().Ref, "r/a:2"))
}

func TestGroupScope(t *testing.T) {
	root := t.TempDir()
	assert.NilError(t, os.MkdirAll(filepath.Join(root, "proj", "alice"), 0o755))
	gid := os.Getgid()
	for _, tc := range []struct {
		name, dest string
		gid        int
		want       string
	}{
		{"the outermost directory of the group", filepath.Join(root, "proj", "alice"), gid, root},
		{"the root itself", root, gid, root},
		{"no directory of that group", filepath.Join(root, "proj", "alice"), gid + 12345, ""},
		{"outside the root", filepath.Dir(root), gid, ""},
		{"a sibling of the root", root + "x/proj", gid, ""},
		{"a directory that is not there", filepath.Join(root, "nope", "alice"), gid + 12345, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Check(t, is.Equal(GroupScope(root, tc.dest, tc.gid), tc.want))
		})
	}
}

// A sidecar and archive another user wrote, claiming to be the caller's,
// are not the caller's: List skips them (saying so) and Open refuses them.
// Files of another owner need root to make.
func TestForeignFilesAreNotMine(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("!!! needs root to give files to another uid; the end-to-end tests cover it too")
	}
	const me, bob = 4711, 4712
	dir := t.TempDir()
	writeArchive(t, dir, "mine", "1", t0, me)
	planted := writeArchive(t, dir, "planted", "2", t0.Add(time.Hour), me)
	assert.NilError(t, os.Chown(planted, bob, bob))
	assert.NilError(t, os.Chown(SidecarPath(planted), bob, bob))
	halves := writeArchive(t, dir, "half", "3", t0, me)
	assert.NilError(t, os.Chown(halves, bob, bob))
	for _, p := range []string{dir, filepath.Join(dir, "mine.tar.gz"), filepath.Join(dir, "mine.json"), SidecarPath(halves)} {
		assert.NilError(t, os.Chown(p, me, me))
	}
	// Everyone may read them: what is refused is refused for its owner.
	assert.NilError(t, os.Chmod(filepath.Dir(dir), 0o755))
	for _, p := range []string{planted, SidecarPath(planted), halves, SidecarPath(halves), filepath.Join(dir, "mine.tar.gz"), filepath.Join(dir, "mine.json")} {
		assert.NilError(t, os.Chmod(p, 0o644))
	}

	es, warnings, err := List(context.Background(), dir, me)
	assert.NilError(t, err)
	assert.Assert(t, is.Len(es, 1))
	assert.Check(t, is.Equal(es[0].SourceContainer, "mine"))
	w := strings.Join(warnings, "\n")
	assert.Check(t, is.Contains(w, "planted.json: it claims to describe an archive of yours but belongs to uid 4712"))
	assert.Check(t, is.Contains(w, "half.tar.gz belongs to uid 4712"))

	// Open, as the owner would run it.
	out, err := exec.Command("setpriv", "--reuid=4711", "--regid=4711", "--clear-groups", os.Args[0],
		"-test.run=TestOpenAsHelper", "--", planted, halves, filepath.Join(dir, "mine.tar.gz")).CombinedOutput()
	assert.NilError(t, err, "%s", out)
	assert.Check(t, is.Contains(string(out), "planted.json belongs to uid 4712, not to you"))
	assert.Check(t, is.Contains(string(out), "half.tar.gz belongs to uid 4712, not to you"))
	assert.Check(t, is.Contains(string(out), "mine.tar.gz: ok"))
}

// TestOpenAsHelper opens the archives named after -- (run by
// TestForeignFilesAreNotMine as another uid) and prints what happened.
func TestOpenAsHelper(t *testing.T) {
	args := flagArgs()
	if len(args) == 0 {
		return
	}
	for _, p := range args {
		f, _, err := Open(p)
		if err != nil {
			fmt.Println(err)
			continue
		}
		f.Close()
		fmt.Println(p + ": ok")
	}
}

// flagArgs are the arguments after "--" on the test binary's command line.
func flagArgs() []string {
	for i, a := range os.Args {
		if a == "--" {
			return os.Args[i+1:]
		}
	}
	return nil
}
