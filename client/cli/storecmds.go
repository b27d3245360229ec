package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/archives"
	"github.com/baicommit/baicommit/internal/layerstore"
	"github.com/baicommit/baicommit/internal/registry"
	"github.com/baicommit/baicommit/internal/safefile"
	"github.com/baicommit/baicommit/internal/units"
)

// The commands of the layer store that run as the user, on the shared
// filesystem, without the agent: push (from pushStoreImage), export, rm
// and prune.

// pushStoreImage pushes a store image straight from its blobs and records
// the push in its sidecar.
func (e *env) pushStoreImage(c *ucli.Context, path string, opts registry.Options) error {
	st, img, err := layerstore.OpenImage(c.Context, path)
	if err != nil {
		return err
	}
	defer st.Close()
	defer img.Close()
	defer e.pushProgress(c, img.Path, &opts)()
	res, err := layerstore.Push(c.Context, st, img.Name, opts)
	if err != nil {
		return err
	}
	out := pushOutput{Archive: img.Path, SHA256: img.Sidecar.SHA256, Ref: res.Ref, Digest: res.Digest}
	if err := st.RecordPush(img.Name, api.PushRecord{Ref: res.Ref, Digest: res.Digest, Pushed: e.now().UTC()}); err != nil {
		fmt.Fprintf(e.stderr, "baicommit: warning: pushed, but the sidecar could not record it: %v\n", err)
	} else {
		out.Sidecar = filepath.Join(img.Path, layerstore.SidecarFile)
	}
	return e.printPush(c, out)
}

// exportOutput is what `export --json` prints.
type exportOutput struct {
	Image   string `json:"image"`
	Archive string `json:"archive"`
	Sidecar string `json:"sidecar"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
}

func (e *env) exportCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "export",
		Usage:     "write a store image as a self-contained archive, to share it",
		ArgsUsage: "STORE-IMAGE FILE" + archives.Suffix,
		Description: "Writes the image (a layer store image's path, or its name in your store) as\n" +
			"the archive a freeze writes: one .tar.gz that podman load -i and docker load\n" +
			"take, with its .json sidecar, so that baicommit restore and push check it.\n" +
			"Every blob is checked against its digest as it is read. Nothing is\n" +
			"replaced: FILE must not exist.",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
			&ucli.IntFlag{Name: "level", Value: 1, Usage: "gzip `LEVEL`, 1 (fastest) to 9"},
			storeFlag(),
		},
		OnUsageError: onUsageError,
		Action:       e.export,
	}
}

func (e *env) export(c *ucli.Context) error {
	args := c.Args().Slice()
	if len(args) != 2 || strings.HasPrefix(args[1], "-") {
		return usageErrorf("export", "export needs STORE-IMAGE and FILE%s (flags first)", archives.Suffix)
	}
	if !strings.HasSuffix(args[1], archives.Suffix) {
		return usageErrorf("export", "FILE must end in %s", archives.Suffix)
	}
	if l := c.Int("level"); l < 1 || l > 9 {
		return usageErrorf("export", "--level %d: want 1 to 9", l)
	}
	path, ok := storeImagePath(c, args[0])
	if !ok {
		return fmt.Errorf("%s is not an image of a layer store: give its path (as `baicommit list` shows it) or its name with --store", args[0])
	}
	st, img, err := layerstore.OpenImage(c.Context, path)
	if err != nil {
		return err
	}
	defer st.Close()
	defer img.Close()
	abs, err := filepath.Abs(args[1])
	if err != nil {
		return err
	}
	dirPath, name := filepath.Dir(abs), filepath.Base(abs)
	dir, err := safefile.OpenDir(dirPath, dirPath, false)
	if err != nil {
		return err
	}
	defer dir.Close()
	const mode = 0o640
	out, err := safefile.Create(dir, "."+name+"."+fmt.Sprint(os.Getpid())+".partial", mode, c.Int("level"))
	if err != nil {
		return err
	}
	defer out.Abort()
	if !c.Bool("json") {
		fmt.Fprintf(e.stderr, "Exporting %s to %s\n", img.Path, abs)
	}
	if _, err := st.Export(c.Context, img, out, e.now().UTC()); err != nil {
		return fmt.Errorf("export %s: %w", img.Path, err)
	}
	res, err := out.Commit(name)
	if err != nil {
		return err
	}
	sc := *img.Sidecar
	sc.Archive, sc.SHA256, sc.Size, sc.Format, sc.Written, sc.Pushes = res.Name, res.SHA256, res.Size, "", 0, nil
	scName := api.SidecarName(name)
	if err := safefile.WriteSidecar(dir, scName, mode, sc); err != nil {
		return fmt.Errorf("the archive %s is complete but its sidecar could not be written: %w", abs, err)
	}
	o := exportOutput{Image: img.Path, Archive: abs, Sidecar: filepath.Join(dirPath, scName), SHA256: res.SHA256, Size: res.Size}
	if c.Bool("json") {
		return writeJSON(e.stdout, o)
	}
	fmt.Fprintf(e.stdout, "Exported %s to %s\n", img.Path, abs)
	tw := newTable(e.stdout)
	fmt.Fprintf(tw, "  size:\t%s\n", units.Human(res.Size))
	fmt.Fprintf(tw, "  sha256:\t%s\n", res.SHA256)
	fmt.Fprintf(tw, "  load:\tpodman load -i %s\n", abs)
	return tw.Flush()
}

// removeStoreImage removes the store image at path (its layout goes at
// once, its blobs with the next `prune --store`).
func removeStoreImage(path string) error {
	st, err := layerstore.OpenPath(filepath.Dir(filepath.Dir(filepath.Clean(path))))
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Remove(filepath.Base(path))
}

// pruneStoreFlags are prune's flags for the layer store.
func pruneStoreFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.BoolFlag{Name: "store", Usage: "also remove the blobs of your layer store that no image uses (--store-dir, " + EnvStore + ", or yours)"},
		&ucli.StringFlag{Name: "store-dir", EnvVars: []string{EnvStore}, Usage: "the layer store `DIR`"},
		&ucli.DurationFlag{Name: "grace", Value: layerstore.DefaultGrace, Usage: "with --store: keep blobs younger than this"},
		&ucli.DurationFlag{Name: "settle", Value: layerstore.DefaultSettle, Usage: "with --store: wait this long between the collection's two looks (longer than NFS's directory cache)"},
	}
}

// gcStore collects the garbage of the caller's layer store: the blobs no
// image uses, safely while freezes on other nodes write into it (blobs
// younger than --grace and blobs a running freeze holds stay).
func (e *env) gcStore(c *ucli.Context, dryRun bool) (*layerstore.GCResult, string, error) {
	dir := c.String("store-dir")
	if dir == "" {
		if cl, err := newClient(c); err == nil {
			if v, err := cl.Version(c.Context); err == nil {
				dir = v.StoreDir
			}
		}
	}
	if dir == "" {
		return nil, "", errors.New("no layer store known: give --store-dir DIR")
	}
	st, err := layerstore.OpenPath(dir)
	if err != nil {
		return nil, "", err
	}
	defer st.Close()
	res, err := st.GC(c.Context, layerstore.GCOptions{Grace: c.Duration("grace"), Settle: c.Duration("settle"), DryRun: dryRun})
	return res, st.Path(), err
}
