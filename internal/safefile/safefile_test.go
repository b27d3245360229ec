package safefile_test

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/fs"

	"github.com/baicommit/baicommit/internal/safefile"
)

// withUmask sets the process umask for the test. Tests in this package do
// not run in parallel, so that this is safe.
func withUmask(t *testing.T, mask int) {
	t.Helper()
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

func openDir(t *testing.T, root, dir string) *os.File {
	t.Helper()
	d, err := safefile.OpenDir(root, dir, true)
	assert.NilError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	assert.NilError(t, err)
	out := []string{}
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestOpenDirCreatesMissingComponents(t *testing.T) {
	withUmask(t, 0o022)
	root := t.TempDir()
	rootBefore, err := os.Stat(root)
	assert.NilError(t, err)
	dir := filepath.Join(root, "alice", "4711", "x")
	d := openDir(t, root, dir)

	// The returned directory is the one asked for.
	var got, want syscall.Stat_t
	assert.NilError(t, syscall.Fstat(int(d.Fd()), &got))
	assert.NilError(t, syscall.Stat(dir, &want))
	assert.Check(t, is.Equal(got.Ino, want.Ino))
	assert.Check(t, is.Equal(d.Name(), dir))

	for _, p := range []string{"alice", "alice/4711", "alice/4711/x"} {
		fi, err := os.Lstat(filepath.Join(root, p))
		assert.NilError(t, err)
		assert.Check(t, fi.IsDir(), p)
		assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(safefile.DirMode)), p)
	}
	// The root itself is not touched.
	fi, err := os.Stat(root)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(fi.Mode(), rootBefore.Mode()))
}

// Directories are the owner's alone (0700): like archive_mode for files,
// that does not depend on the helper's umask.
func TestOpenDirModeIgnoresUmask(t *testing.T) {
	withUmask(t, 0o077)
	root := t.TempDir()
	openDir(t, root, filepath.Join(root, "alice"))
	fi, err := os.Lstat(filepath.Join(root, "alice"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(safefile.DirMode)))
}

// A project directory's setgid bit passes down, so that archives made
// below stay in the project's group.
func TestOpenDirKeepsInheritedSetgid(t *testing.T) {
	withUmask(t, 0o077)
	root := t.TempDir()
	assert.NilError(t, os.Chmod(root, 0o775|os.ModeSetgid))
	openDir(t, root, filepath.Join(root, "proj", "alice"))
	for _, d := range []string{"proj", "proj/alice"} {
		fi, err := os.Lstat(filepath.Join(root, d))
		assert.NilError(t, err)
		assert.Check(t, is.Equal(fi.Mode()&(os.ModePerm|os.ModeSetgid), os.FileMode(safefile.DirMode)|os.ModeSetgid), d)
	}
}

func TestOpenDirExistingAndRoot(t *testing.T) {
	root := fs.NewDir(t, "root", fs.WithDir("alice", fs.WithMode(0o700)))
	// An existing directory is used as it is (its mode is not changed).
	openDir(t, root.Path(), root.Join("alice"))
	fi, err := os.Stat(root.Join("alice"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(0o700)))
	// dir == root is fine.
	d := openDir(t, root.Path(), root.Path())
	assert.Check(t, is.Equal(d.Name(), root.Path()))
}

func TestOpenDirWithoutCreate(t *testing.T) {
	root := t.TempDir()
	_, err := safefile.OpenDir(root, filepath.Join(root, "missing", "x"), false)
	assert.Check(t, errors.Is(err, os.ErrNotExist), "got %v", err)
	assert.Check(t, is.DeepEqual(names(t, root), []string{}))
}

// The save root comes from the agent's configuration and may itself be
// (or go through) a symbolic link.
func TestOpenDirRootMayBeSymlink(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	assert.NilError(t, os.Mkdir(real, 0o755))
	root := filepath.Join(base, "link")
	assert.NilError(t, os.Symlink(real, root))
	openDir(t, root, filepath.Join(root, "alice"))
	fi, err := os.Lstat(filepath.Join(real, "alice"))
	assert.NilError(t, err)
	assert.Check(t, fi.IsDir())
}

func TestOpenDirRefusesSymlinks(t *testing.T) {
	for _, tc := range []struct {
		name string
		link string // planted below root, pointing to target
		dir  string // asked for, below root
	}{
		{name: "user directory", link: "alice", dir: "alice/4711"},
		{name: "user directory itself", link: "alice", dir: "alice"},
		{name: "deeper component", link: "alice/4711", dir: "alice/4711/sub"},
		{name: "last component", link: "alice/4711", dir: "alice/4711"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			target := t.TempDir()
			link := filepath.Join(root, tc.link)
			assert.NilError(t, os.MkdirAll(filepath.Dir(link), 0o750))
			assert.NilError(t, os.Symlink(target, link))

			d, err := safefile.OpenDir(root, filepath.Join(root, tc.dir), true)
			if d != nil {
				d.Close()
			}
			assert.Check(t, errors.Is(err, safefile.ErrUnsafePath), "got %v", err)
			// Nothing was created through the link.
			assert.Check(t, is.DeepEqual(names(t, target), []string{}))
			// The link is still a link.
			fi, lerr := os.Lstat(link)
			assert.NilError(t, lerr)
			assert.Check(t, fi.Mode()&os.ModeSymlink != 0)
		})
	}
}

func TestOpenDirRefusesFileComponent(t *testing.T) {
	root := fs.NewDir(t, "root", fs.WithFile("alice", "not a dir"))
	_, err := safefile.OpenDir(root.Path(), root.Join("alice", "x"), true)
	assert.Check(t, errors.Is(err, safefile.ErrUnsafePath), "got %v", err)
}

func TestOpenDirRefusesEscapes(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	assert.NilError(t, os.Mkdir(root, 0o755))
	for _, dir := range []string{base, filepath.Join(base, "other"), root + "/../other", "/etc"} {
		_, err := safefile.OpenDir(root, dir, true)
		assert.Check(t, errors.Is(err, safefile.ErrUnsafePath), "%s: got %v", dir, err)
	}
	assert.Check(t, is.DeepEqual(names(t, base), []string{"root"}))
}

func TestBelow(t *testing.T) {
	for _, tc := range []struct {
		root, dir string
		want      string
		ok        bool
	}{
		{"/shared", "/shared", "", true},
		{"/shared", "/shared/alice", "alice", true},
		{"/shared", "/shared/alice/4711", "alice/4711", true},
		{"/shared", "/shared/..alice", "..alice", true}, // a name, not an escape
		{"/", "/shared/alice", "shared/alice", true},
		{"/shared", "/shared/../etc", "", false},
		{"/shared", "/shared/alice/../../etc", "", false},
		{"/shared", "/etc", "", false},
		{"/shared", "/", "", false},
		{"/shared", "/sharedother", "", false},
		{"/shared/alice", "/shared", "", false},
		{"/shared", "/shared/alice/", "", false},
		{"/shared", "/shared//alice", "", false},
		{"/shared", "/shared/./alice", "", false},
		{"/shared/", "/shared/alice", "", false},
		{"shared", "shared/alice", "", false},
		{"/shared", "alice", "", false},
		{"", "", "", false},
	} {
		got, err := safefile.Below(tc.root, tc.dir)
		if tc.ok {
			assert.Check(t, err, "Below(%q, %q)", tc.root, tc.dir)
			assert.Check(t, is.Equal(got, tc.want), "Below(%q, %q)", tc.root, tc.dir)
		} else {
			assert.Check(t, errors.Is(err, safefile.ErrUnsafePath), "Below(%q, %q) = %q, %v", tc.root, tc.dir, got, err)
		}
	}
}

func TestValidName(t *testing.T) {
	good := []string{"a", "box-20240305T060809Z-n01-0123456789ab.tar.gz", "A_b+c@d:e.json", "x.partial", strings.Repeat("a", 255)}
	bad := []string{"", ".", "..", ".hidden", "a/b", "/a", "a b", "a\tb", "a\nb", "a\x00b", "é", "a*", "a\\b", "a?b", strings.Repeat("a", 256)}
	for _, n := range good {
		assert.Check(t, safefile.ValidName(n), "%q", n)
	}
	for _, n := range bad {
		assert.Check(t, !safefile.ValidName(n), "%q", n)
	}
}

func TestValidTemp(t *testing.T) {
	good := []string{".a.partial", ".x.tar.gz.n01.0123456789ab.partial", ".a.json.partial"}
	bad := []string{"", ".partial", "..partial", "a.partial", ".a", ".a.partia", ".a.partial.x", "..a.partial",
		".a/b.partial", "./a.partial", ".a b.partial", "." + strings.Repeat("a", 255) + ".partial", ".a.PARTIAL"}
	for _, n := range good {
		assert.Check(t, safefile.ValidTemp(n), "%q", n)
	}
	for _, n := range bad {
		assert.Check(t, !safefile.ValidTemp(n), "%q", n)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b[:n/2]) // half random, half zeros: compressible but not trivial
	assert.NilError(t, err)
	return b
}

func TestCreateWriteCommit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		level int
		mode  os.FileMode
		umask int
	}{
		{name: "empty", size: 0, level: 1, mode: 0o640, umask: 0o022},
		{name: "small", size: 1000, level: 9, mode: 0o644, umask: 0o022},
		{name: "several blocks umask 077", size: 3<<20 + 17, level: 1, mode: 0o640, umask: 0o077},
		{name: "owner only", size: 4096, level: 5, mode: 0o600, umask: 0o000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withUmask(t, tc.umask)
			root := t.TempDir()
			// A save root others cannot write to (the umask would decide).
			assert.NilError(t, os.Chmod(root, 0o755))
			dir := filepath.Join(root, "alice")
			d := openDir(t, root, dir)
			data := randomBytes(t, tc.size)

			f, err := safefile.Create(d, ".a.tar.gz.n01.tok.partial", tc.mode, tc.level)
			assert.NilError(t, err)
			// Written in uneven chunks.
			for rest := data; len(rest) > 0; {
				n := min(len(rest), 100_003)
				w, err := f.Write(rest[:n])
				assert.NilError(t, err)
				assert.Equal(t, w, n)
				rest = rest[n:]
			}
			res, err := f.Commit("a.tar.gz")
			assert.NilError(t, err)

			path := filepath.Join(dir, "a.tar.gz")
			assert.Check(t, is.DeepEqual(names(t, dir), []string{"a.tar.gz"}))
			raw, err := os.ReadFile(path)
			assert.NilError(t, err)
			sum := sha256.Sum256(raw)
			assert.Check(t, is.Equal(res.Name, "a.tar.gz"))
			assert.Check(t, is.Equal(res.SHA256, hex.EncodeToString(sum[:])))
			assert.Check(t, is.Equal(res.Size, int64(len(raw))))
			assert.Check(t, is.Equal(f.Written(), int64(len(raw))))

			zr, err := gzip.NewReader(bytes.NewReader(raw))
			assert.NilError(t, err)
			plain, err := io.ReadAll(zr)
			assert.NilError(t, err)
			assert.Check(t, bytes.Equal(plain, data), "decompressed %d bytes, wrote %d", len(plain), len(data))

			fi, err := os.Lstat(path)
			assert.NilError(t, err)
			assert.Check(t, fi.Mode().IsRegular())
			assert.Check(t, is.Equal(fi.Mode().Perm(), tc.mode))

			// Abort after Commit does nothing.
			f.Abort()
			_, err = os.Stat(path)
			assert.Check(t, err)
		})
	}
}

func TestWrittenGrows(t *testing.T) {
	root := t.TempDir()
	d := openDir(t, root, root)
	f, err := safefile.Create(d, ".a.partial", 0o640, 1)
	assert.NilError(t, err)
	defer f.Abort()
	assert.Check(t, is.Equal(f.Written(), int64(0)))
	_, err = f.Write(randomBytes(t, 4<<20))
	assert.NilError(t, err)
	res, err := f.Commit("a")
	assert.NilError(t, err)
	assert.Check(t, res.Size > 0)
}

func TestCommitRefusesExisting(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, dir, name string)
		check func(t *testing.T, dir, name string)
	}{
		{
			name: "regular file",
			plant: func(t *testing.T, dir, name string) {
				assert.NilError(t, os.WriteFile(filepath.Join(dir, name), []byte("keep me"), 0o600))
			},
			check: func(t *testing.T, dir, name string) {
				b, err := os.ReadFile(filepath.Join(dir, name))
				assert.NilError(t, err)
				assert.Check(t, is.Equal(string(b), "keep me"))
			},
		},
		{
			name: "dangling symlink",
			plant: func(t *testing.T, dir, name string) {
				assert.NilError(t, os.Symlink("/nonexistent/target", filepath.Join(dir, name)))
			},
			check: func(t *testing.T, dir, name string) {
				target, err := os.Readlink(filepath.Join(dir, name))
				assert.NilError(t, err)
				assert.Check(t, is.Equal(target, "/nonexistent/target"))
				_, err = os.Lstat("/nonexistent/target")
				assert.Check(t, errors.Is(err, os.ErrNotExist))
			},
		},
		{
			name: "symlink to a file",
			plant: func(t *testing.T, dir, name string) {
				other := filepath.Join(t.TempDir(), "victim")
				assert.NilError(t, os.WriteFile(other, []byte("victim"), 0o600))
				assert.NilError(t, os.Symlink(other, filepath.Join(dir, name)))
			},
			check: func(t *testing.T, dir, name string) {
				b, err := os.ReadFile(filepath.Join(dir, name))
				assert.NilError(t, err)
				assert.Check(t, is.Equal(string(b), "victim"))
			},
		},
		{
			name:  "directory",
			plant: func(t *testing.T, dir, name string) { assert.NilError(t, os.Mkdir(filepath.Join(dir, name), 0o700)) },
			check: func(t *testing.T, dir, name string) {
				fi, err := os.Lstat(filepath.Join(dir, name))
				assert.NilError(t, err)
				assert.Check(t, fi.IsDir())
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			d := openDir(t, root, root)
			tc.plant(t, root, "a.tar.gz")
			f, err := safefile.Create(d, ".a.tar.gz.partial", 0o640, 1)
			assert.NilError(t, err)
			_, err = f.Write([]byte("secret image bytes"))
			assert.NilError(t, err)
			_, err = f.Commit("a.tar.gz")
			assert.Check(t, errors.Is(err, syscall.EEXIST), "got %v", err)
			assert.Check(t, is.DeepEqual(names(t, root), []string{"a.tar.gz"}))
			tc.check(t, root, "a.tar.gz")
		})
	}
}

func TestCommitRefusesBadName(t *testing.T) {
	for _, name := range []string{"", ".hidden", "../a.tar.gz", "a/b.tar.gz", "a b"} {
		base := t.TempDir()
		root := filepath.Join(base, "root")
		d := openDir(t, base, root)
		f, err := safefile.Create(d, ".a.partial", 0o640, 1)
		assert.NilError(t, err)
		_, err = f.Commit(name)
		assert.Check(t, errors.Is(err, safefile.ErrUnsafePath), "%q: got %v", name, err)
		assert.Check(t, is.DeepEqual(names(t, root), []string{}), "%q", name)
		assert.Check(t, is.DeepEqual(names(t, base), []string{"root"}), "%q", name)
	}
}

func TestAbort(t *testing.T) {
	root := t.TempDir()
	d := openDir(t, root, root)
	f, err := safefile.Create(d, ".a.partial", 0o640, 1)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(names(t, root), []string{".a.partial"}))
	_, err = f.Write(randomBytes(t, 1<<20))
	assert.NilError(t, err)
	f.Abort()
	assert.Check(t, is.DeepEqual(names(t, root), []string{}))
	f.Abort() // twice is fine
	assert.Check(t, is.DeepEqual(names(t, root), []string{}))
}

// Abort removes the temporary name only, never anything at the final name.
func TestAbortLeavesFinalName(t *testing.T) {
	root := t.TempDir()
	d := openDir(t, root, root)
	assert.NilError(t, os.WriteFile(filepath.Join(root, "a"), []byte("other"), 0o600))
	f, err := safefile.Create(d, ".a.partial", 0o640, 1)
	assert.NilError(t, err)
	f.Abort()
	assert.Check(t, is.DeepEqual(names(t, root), []string{"a"}))
}

func TestCreateRefusesBadTemp(t *testing.T) {
	for _, temp := range []string{"a.partial", ".a", "a.tar.gz", "..partial", ".a/b.partial", "../.a.partial", "", ".a b.partial"} {
		root := t.TempDir()
		d := openDir(t, root, root)
		f, err := safefile.Create(d, temp, 0o640, 1)
		assert.Check(t, errors.Is(err, safefile.ErrUnsafePath), "%q: got %v", temp, err)
		assert.Check(t, f == nil)
		assert.Check(t, is.DeepEqual(names(t, root), []string{}), "%q", temp)
	}
}

func TestCreateRefusesExistingTemp(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, path string) string // returns the target to check, if any
	}{
		{"regular file", func(t *testing.T, path string) string {
			assert.NilError(t, os.WriteFile(path, []byte("someone else's"), 0o600))
			return path
		}},
		{"symlink to a file", func(t *testing.T, path string) string {
			victim := filepath.Join(t.TempDir(), "victim")
			assert.NilError(t, os.WriteFile(victim, []byte("someone else's"), 0o600))
			assert.NilError(t, os.Symlink(victim, path))
			return victim
		}},
		{"dangling symlink", func(t *testing.T, path string) string {
			victim := filepath.Join(t.TempDir(), "victim")
			assert.NilError(t, os.Symlink(victim, path))
			return victim
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			d := openDir(t, root, root)
			temp := filepath.Join(root, ".a.partial")
			victim := tc.plant(t, temp)
			before, _ := os.ReadFile(victim)
			f, err := safefile.Create(d, ".a.partial", 0o640, 1)
			assert.Check(t, errors.Is(err, syscall.EEXIST), "got %v", err)
			assert.Check(t, f == nil)
			after, _ := os.ReadFile(victim)
			assert.Check(t, is.Equal(string(after), string(before)))
			// The planted thing is still there (Create did not remove it).
			_, err = os.Lstat(temp)
			assert.Check(t, err)
			if tc.name == "dangling symlink" {
				_, err := os.Lstat(victim)
				assert.Check(t, errors.Is(err, os.ErrNotExist), "a file was created through the link")
			}
		})
	}
}

func TestCreateRejectsBadLevel(t *testing.T) {
	root := t.TempDir()
	d := openDir(t, root, root)
	_, err := safefile.Create(d, ".a.partial", 0o640, 42)
	assert.Check(t, err != nil)
	assert.Check(t, is.DeepEqual(names(t, root), []string{}))
}

type sidecar struct {
	Archive string `json:"archive"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	Note    string `json:"note"`
}

func TestWriteSidecar(t *testing.T) {
	withUmask(t, 0o077)
	root := t.TempDir()
	d := openDir(t, root, root)
	want := sidecar{Archive: "a.tar.gz", SHA256: strings.Repeat("ab", 32), Size: 42, Note: "<&> \"quoted\" é"}
	assert.NilError(t, safefile.WriteSidecar(d, "a.json", 0o640, want))

	assert.Check(t, is.DeepEqual(names(t, root), []string{"a.json"}))
	b, err := os.ReadFile(filepath.Join(root, "a.json"))
	assert.NilError(t, err)
	assert.Check(t, json.Valid(b))
	assert.Check(t, strings.HasSuffix(string(b), "}\n"))
	var got sidecar
	assert.NilError(t, json.Unmarshal(b, &got))
	assert.Check(t, is.DeepEqual(got, want))
	fi, err := os.Lstat(filepath.Join(root, "a.json"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(0o640)))
}

func TestWriteSidecarRefusesExisting(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, path string)
	}{
		{"file", func(t *testing.T, path string) { assert.NilError(t, os.WriteFile(path, []byte("old"), 0o600)) }},
		{"dangling symlink", func(t *testing.T, path string) { assert.NilError(t, os.Symlink("/nonexistent/x", path)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			d := openDir(t, root, root)
			final := filepath.Join(root, "a.json")
			tc.plant(t, final)
			before, _ := os.Readlink(final)
			err := safefile.WriteSidecar(d, "a.json", 0o640, sidecar{Archive: "new"})
			assert.Check(t, errors.Is(err, syscall.EEXIST), "got %v", err)
			assert.Check(t, is.DeepEqual(names(t, root), []string{"a.json"}), "temporary file left behind")
			after, _ := os.Readlink(final)
			assert.Check(t, is.Equal(after, before))
			if tc.name == "file" {
				b, err := os.ReadFile(final)
				assert.NilError(t, err)
				assert.Check(t, is.Equal(string(b), "old"))
			}
		})
	}
}

func TestWriteSidecarUnmarshalable(t *testing.T) {
	root := t.TempDir()
	d := openDir(t, root, root)
	err := safefile.WriteSidecar(d, "a.json", 0o640, map[string]any{"f": func() {}})
	assert.Check(t, err != nil)
	assert.Check(t, is.DeepEqual(names(t, root), []string{}))
}

// A stale temporary sidecar (another writer's, or a link planted there) is
// neither followed nor removed.
func TestWriteSidecarRefusesPlantedTemp(t *testing.T) {
	root := t.TempDir()
	d := openDir(t, root, root)
	victim := filepath.Join(t.TempDir(), "victim")
	assert.NilError(t, os.Symlink(victim, filepath.Join(root, ".a.json.partial")))
	err := safefile.WriteSidecar(d, "a.json", 0o640, sidecar{})
	assert.Check(t, errors.Is(err, syscall.EEXIST), "got %v", err)
	_, err = os.Lstat(victim)
	assert.Check(t, errors.Is(err, os.ErrNotExist))
	assert.Check(t, is.DeepEqual(names(t, root), []string{".a.json.partial"}))
}

// WriteSidecar should refuse names Commit refuses: a name with a '/' makes
// the temporary ".<name>.partial" and the final name land in another
// directory.
func TestWriteSidecarRefusesBadName(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	assert.NilError(t, os.MkdirAll(filepath.Join(root, ".sub"), 0o750))
	assert.NilError(t, os.MkdirAll(filepath.Join(root, "sub"), 0o750))
	d := openDir(t, root, root)
	for _, name := range []string{"sub/x.json", ".hidden.json", ""} {
		err := safefile.WriteSidecar(d, name, 0o640, sidecar{})
		assert.Check(t, errors.Is(err, safefile.ErrUnsafePath), "%q: got %v", name, err)
	}
	assert.Check(t, is.DeepEqual(names(t, filepath.Join(root, "sub")), []string{}))
}

func TestRemove(t *testing.T) {
	root := fs.NewDir(t, "root", fs.WithFile(".a.partial", "x"), fs.WithFile("keep", "y"))
	d := openDir(t, root.Path(), root.Path())
	assert.NilError(t, safefile.Remove(d, ".a.partial"))
	assert.NilError(t, safefile.Remove(d, ".a.partial")) // already gone: fine
	for _, bad := range []string{"", ".", ".."} {
		assert.Check(t, errors.Is(safefile.Remove(d, bad), safefile.ErrUnsafePath), "%q", bad)
	}
	assert.Check(t, fs.Equal(root.Path(), fs.Expected(t, fs.WithMode(0o700), fs.WithFile("keep", "y", fs.MatchAnyFileMode))))
}

// Remove of a symlink removes the link, not what it points to.
func TestRemoveSymlink(t *testing.T) {
	root := t.TempDir()
	d := openDir(t, root, root)
	victim := filepath.Join(t.TempDir(), "victim")
	assert.NilError(t, os.WriteFile(victim, []byte("v"), 0o600))
	assert.NilError(t, os.Symlink(victim, filepath.Join(root, ".a.partial")))
	assert.NilError(t, safefile.Remove(d, ".a.partial"))
	assert.Check(t, is.DeepEqual(names(t, root), []string{}))
	_, err := os.Stat(victim)
	assert.Check(t, err)
}

// A directory others may write to without the sticky bit is refused,
// saying how to fix it; nothing is created below it.
func TestOpenDirRefusesDirectoriesOthersCanWrite(t *testing.T) {
	withUmask(t, 0)
	root := t.TempDir()
	assert.NilError(t, os.Chmod(root, 0o755))
	assert.NilError(t, os.Mkdir(filepath.Join(root, "alice"), 0o777))
	_, err := safefile.OpenDir(root, filepath.Join(root, "alice", "2025"), true)
	assert.Check(t, errors.Is(err, safefile.ErrUntrusted), "got %v", err)
	assert.Check(t, is.ErrorContains(err, "chmod go-w "+filepath.Join(root, "alice")))
	assert.Check(t, is.DeepEqual(names(t, filepath.Join(root, "alice")), []string{}))

	// A save root everyone can write to needs the sticky bit.
	assert.NilError(t, os.Chmod(root, 0o777))
	_, err = safefile.OpenDir(root, filepath.Join(root, "bob"), true)
	assert.Check(t, is.ErrorContains(err, "chmod +t "+root))
	assert.NilError(t, os.Chmod(root, os.ModeSticky|0o777))
	openDir(t, root, filepath.Join(root, "bob"))
}

// MakeDir creates directories with the mode asked for, keeping the
// setgid bit (and so the group) of a project directory.
func TestMakeDirModeAndSetgid(t *testing.T) {
	withUmask(t, 0o077)
	root := t.TempDir()
	assert.NilError(t, os.Chmod(root, os.ModeSetgid|0o770))
	d, err := safefile.MakeDir(root, filepath.Join(root, "alice", "x"), 0o750)
	assert.NilError(t, err)
	d.Close()
	for _, p := range []string{"alice", "alice/x"} {
		fi, err := os.Lstat(filepath.Join(root, p))
		assert.NilError(t, err)
		assert.Check(t, is.Equal(fi.Mode()&(os.ModePerm|os.ModeSetgid), 0o750|os.ModeSetgid), p)
	}
}
