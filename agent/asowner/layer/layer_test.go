package layer

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// tree makes files below root: path → content ("/" suffix: a directory).
func tree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			assert.NilError(t, os.MkdirAll(full, 0o755))
			continue
		}
		assert.NilError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		assert.NilError(t, os.WriteFile(full, []byte(content), 0o644))
	}
}

func scratch(t *testing.T) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "list")
	assert.NilError(t, err)
	return f
}

// stream builds and streams src's layer and returns the tar's entries
// (name → content) in order, and the warnings.
func stream(t *testing.T, src Source, during func()) (*List, []string, map[string]string, []string) {
	t.Helper()
	l, err := Build(src, scratch(t))
	assert.NilError(t, err)
	t.Cleanup(func() { l.Close() })
	if during != nil {
		during()
	}
	open, closeRoot, err := OpenBeneath(src.Root)
	assert.NilError(t, err)
	defer closeRoot()
	var buf bytes.Buffer
	var warnings []string
	n, err := l.Stream(&buf, open, func(f string, args ...any) { warnings = append(warnings, fmt.Sprintf(f, args...)) })
	assert.NilError(t, err)
	assert.Check(t, is.Equal(n, l.Size), "the size listed is the size written")
	assert.Check(t, is.Equal(int64(buf.Len()), l.Size))
	var names []string
	contents := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		assert.NilError(t, err)
		b, _ := io.ReadAll(tr)
		names = append(names, h.Name)
		contents[h.Name] = string(b)
	}
	return l, names, contents, warnings
}

// A change list: deletions become whiteouts, exclusions drop a directory
// with everything below it and count them, what is left is in order.
func TestBuildChangeList(t *testing.T) {
	root, lower := t.TempDir(), t.TempDir()
	tree(t, root, map[string]string{"root/keep": "keep", "root/.cache/pip/wheel": strings.Repeat("w", 1000), "opt/run.log": "log", "opt/data": "data",
		"run/.containerenv": ""})
	tree(t, lower, map[string]string{"bin/ls": "ls", "root/": ""})
	src := Source{Root: root, Lowers: []string{lower}, Exclude: []string{"/root/.cache", "/opt/*.log"}, Mounts: []string{"/run/.containerenv"}, Changes: []Change{
		{Path: "root"}, {Path: "root/keep"}, {Path: "root/.cache"}, {Path: "root/.cache/pip"}, {Path: "root/.cache/pip/wheel"},
		{Path: "opt"}, {Path: "opt/run.log"}, {Path: "opt/data"}, {Path: "bin/ls", Deleted: true}, {Path: "run"}, {Path: "run/.containerenv"},
	}}
	l, names, contents, warnings := stream(t, src, nil)
	assert.Check(t, is.DeepEqual(names, []string{"bin/.wh.ls", "opt/", "opt/data", "root/", "root/keep"}))
	assert.Check(t, is.Equal(contents["opt/data"], "data"))
	assert.Check(t, is.Len(warnings, 0))
	assert.Check(t, is.DeepEqual(l.Excluded, Excluded{Entries: 4, Bytes: 1003}), "placeholders are not counted as excluded")
	assert.Check(t, is.DeepEqual(l.LeftOut, []string{"/run", "/run/.containerenv"}))
}

// Files that change between the listing and the writing are cut or padded
// to their listed size, GNU tar style, and named; the layer keeps its size.
func TestStreamFileChanging(t *testing.T) {
	root := t.TempDir()
	tree(t, root, map[string]string{"grow": "12345", "shrink": "1234567890", "gone": "abc", "swapped": "xyz"})
	src := Source{Root: root, Changes: []Change{{Path: "grow"}, {Path: "shrink"}, {Path: "gone"}, {Path: "swapped"}}}
	_, _, contents, warnings := stream(t, src, func() {
		assert.NilError(t, os.WriteFile(filepath.Join(root, "grow"), []byte("1234567890"), 0o644))
		assert.NilError(t, os.WriteFile(filepath.Join(root, "shrink"), []byte("12"), 0o644))
		assert.NilError(t, os.Remove(filepath.Join(root, "gone")))
		// A link where a file was must not be followed out of the root.
		assert.NilError(t, os.Remove(filepath.Join(root, "swapped")))
		assert.NilError(t, os.Symlink("/etc/passwd", filepath.Join(root, "swapped")))
	})
	assert.Check(t, is.Equal(contents["grow"], "12345"))
	assert.Check(t, is.Equal(contents["shrink"], "12\x00\x00\x00\x00\x00\x00\x00\x00"))
	assert.Check(t, is.Equal(contents["gone"], "\x00\x00\x00"))
	assert.Check(t, is.Equal(contents["swapped"], "\x00\x00\x00"))
	all := strings.Join(warnings, "\n")
	assert.Check(t, is.Contains(all, "/grow grew while it was read: only its first 5 bytes"))
	assert.Check(t, is.Contains(all, "/shrink shrank while it was read (2 of 10 bytes)"))
	assert.Check(t, is.Contains(all, "/gone vanished before it could be read"))
	assert.Check(t, is.Contains(all, "/swapped vanished before it could be read"))
}

// Hard links are written once and linked after; the layer's digest is
// that of the bytes written.
func TestStreamHardLinks(t *testing.T) {
	root := t.TempDir()
	tree(t, root, map[string]string{"a": "same"})
	assert.NilError(t, os.Link(filepath.Join(root, "a"), filepath.Join(root, "b")))
	l, err := Build(Source{Root: root, Changes: []Change{{Path: "a"}, {Path: "b"}}}, scratch(t))
	assert.NilError(t, err)
	defer l.Close()
	open, closeRoot, err := OpenBeneath(root)
	assert.NilError(t, err)
	defer closeRoot()
	h := sha256.New()
	var buf bytes.Buffer
	_, err = l.Stream(io.MultiWriter(&buf, h), open, func(string, ...any) {})
	assert.NilError(t, err)
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	first, _ := tr.Next()
	second, _ := tr.Next()
	assert.Check(t, is.Equal(first.Typeflag, byte(tar.TypeReg)))
	assert.Check(t, is.Equal(second.Typeflag, byte(tar.TypeLink)))
	assert.Check(t, is.Equal(second.Linkname, "a"))
	sum := sha256.Sum256(buf.Bytes())
	assert.Check(t, is.DeepEqual(h.Sum(nil), sum[:]))
}

// Placeholders: an empty file or directory mounted over and new in the
// layer goes, with the directories made for it; one the base has, or one
// with content, stays.
func TestPlaceholders(t *testing.T) {
	root, lower := t.TempDir(), t.TempDir()
	tree(t, root, map[string]string{"etc/hosts": "", "etc/mtab": "x", "usr/lib/libcuda.so.1": "", "run/.containerenv": "",
		"data/": "", "etc/resolv.conf": "", "home/me/": ""})
	tree(t, lower, map[string]string{"etc/resolv.conf": "", "home/": ""})
	src := Source{Root: root, Lowers: []string{lower},
		Mounts:  []string{"/etc/hosts", "/usr/lib/libcuda.so.1", "/run/.containerenv", "/data", "/etc/resolv.conf", "/proc", "/home/me"},
		Changes: []Change{{Path: "etc"}, {Path: "etc/hosts"}, {Path: "etc/mtab"}, {Path: "usr"}, {Path: "usr/lib"}, {Path: "usr/lib/libcuda.so.1"}, {Path: "run"}, {Path: "run/.containerenv"}, {Path: "data"}, {Path: "etc/resolv.conf"}, {Path: "home/me"}}}
	l, names, _, _ := stream(t, src, nil)
	assert.Check(t, is.DeepEqual(l.LeftOut, []string{"/data", "/etc/hosts", "/home/me", "/run", "/run/.containerenv", "/usr", "/usr/lib", "/usr/lib/libcuda.so.1"}))
	assert.Check(t, is.DeepEqual(names, []string{"etc/", "etc/mtab", "etc/resolv.conf"}), "the base's own resolv.conf stays")
}
