package archives

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/baicommit/baicommit/api"
)

// Entry is one archive found through its sidecar. It is the API's type,
// so that the agent's listing and the CLI's print the same JSON.
type Entry = api.ArchiveEntry

// MaxDepth is how many directory levels below the given one List looks
// into (save paths such as ROOT/{user}/{date} have one or two).
const MaxDepth = 4

// Filter selects entries; nil keeps all.
type Filter func(*Entry) bool

// OfUID keeps the archives frozen from uid's sessions.
func OfUID(uid int) Filter { return func(e *Entry) bool { return e.UID == uid } }

// List finds the sidecars below dir (at most MaxDepth levels, never
// following symbolic links), newest first. A sidecar that cannot be read
// or parsed, or whose archive is gone, is skipped and reported in the
// warnings. Only sidecars are read, never the archives.
func List(ctx context.Context, dir string, keep Filter) ([]Entry, []string, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("archive directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, nil, fmt.Errorf("archive directory %s is not a directory", dir)
	}
	entries := []Entry{}
	var warnings []string
	base := strings.Count(filepath.Clean(dir), string(filepath.Separator))
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			if path != dir && errors.Is(err, fs.ErrPermission) {
				// Someone else's directory: not ours to list.
				return fs.SkipDir
			}
			warnings = append(warnings, err.Error())
			return nil
		}
		if d.IsDir() {
			if path != dir && (strings.HasPrefix(d.Name(), ".") ||
				strings.Count(path, string(filepath.Separator))-base > MaxDepth || isLayout(path)) {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(d.Name(), api.SidecarSuffix) || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		sc, err := ReadSidecar(path)
		if err != nil {
			if !errors.Is(err, fs.ErrPermission) {
				warnings = append(warnings, "skipped "+err.Error())
			}
			return nil
		}
		e := Entry{Path: filepath.Join(filepath.Dir(path), sc.Archive), SidecarFile: path, Sidecar: *sc}
		if keep != nil && !keep(&e) {
			return nil
		}
		if _, err := os.Lstat(e.Path); err != nil {
			warnings = append(warnings, fmt.Sprintf("skipped %s: its archive %s is gone", path, e.Path))
			return nil
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, warnings, err
	}
	slices.SortStableFunc(entries, func(a, b Entry) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	return entries, warnings, nil
}

// isLayout reports whether dir is an OCI image layout or a layer store
// (both hold an oci-layout file): their .json files are not sidecars, and
// a store's images are listed from the store itself.
func isLayout(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, "oci-layout"))
	return err == nil
}
