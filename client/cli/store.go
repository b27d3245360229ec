package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/archives"
	"github.com/baicommit/baicommit/internal/layerstore"
	"github.com/baicommit/baicommit/internal/safefile"
	"github.com/baicommit/baicommit/internal/units"
)

// EnvStore names the environment variable --store comes from.
const EnvStore = "BAICOMMIT_STORE"

// formatFlag is commit's --format.
func formatFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "format", Usage: "write `FORMAT`: archive (a .tar.gz), store (only what the layer store lacks) or both (default: the site's)"}
}

// storeFlag is --store, where store images are looked for.
func storeFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "store", EnvVars: []string{EnvStore}, Usage: "the layer store `DIR` (default: yours, as the agent reports it)"}
}

// printStoreResult adds a freeze's store image to its result table.
func printStoreResult(w io.Writer, t *api.Task) {
	s := t.Store
	if s == nil {
		return
	}
	if t.Archive != nil {
		fmt.Fprintf(w, "  store image:\t%s\n", s.Path)
	}
	fmt.Fprintf(w, "  written:\t%s into the layer store (%d layer(s) found there already; the image is %s)\n", units.Human(s.Written), s.Reused, units.Human(s.Size))
	fmt.Fprintf(w, "  restore:\tbaicommit restore %s\n", s.Path)
}

// storeDir is the layer store to use: --store, or the caller's as the
// agent reports it ("" when neither says).
func storeDir(c *ucli.Context) string {
	if d := c.String("store"); d != "" {
		return d
	}
	cl, err := newClient(c)
	if err != nil {
		return ""
	}
	v, err := cl.Version(c.Context)
	if err != nil {
		return ""
	}
	return v.StoreDir
}

// storeImagePath says whether arg names an image of a layer store: the
// path of its layout (STORE/images/NAME, as `baicommit list` shows it),
// or the NAME of one in the store (--store, or the agent's).
func storeImagePath(c *ucli.Context, arg string) (string, bool) {
	if layerstore.IsImage(arg) {
		return arg, true
	}
	if strings.ContainsRune(arg, '/') || !safefile.ValidName(arg) || strings.HasSuffix(arg, archives.Suffix) {
		return "", false
	}
	dir := storeDir(c)
	if dir == "" {
		return "", false
	}
	p := filepath.Join(dir, "images", arg)
	return p, layerstore.IsImage(p)
}

// storeEntries are the caller's images in the layer store dir, for list.
func storeEntries(ctx context.Context, dir string) ([]archives.Entry, []string, error) {
	st, err := layerstore.OpenPath(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	var keep func(*api.ArchiveEntry) bool
	if uid := os.Getuid(); uid != 0 {
		keep = func(e *api.ArchiveEntry) bool { return e.UID == uid }
	}
	return st.List(ctx, keep)
}

// mergeEntries adds the store's images to the archives, newest first, each
// once (a store below the save directory is not walked for sidecars, but
// an entry found both ways counts once).
func mergeEntries(found, images []archives.Entry) []archives.Entry {
	seen := map[string]bool{}
	for _, e := range found {
		seen[e.Path] = true
	}
	for _, e := range images {
		if !seen[e.Path] {
			found = append(found, e)
		}
	}
	slices.SortStableFunc(found, func(a, b archives.Entry) int { return b.Created.Compare(a.Created) })
	return found
}
