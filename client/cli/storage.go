package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/client"
	"github.com/baicommit/baicommit/internal/layerstore"
	"github.com/baicommit/baicommit/internal/units"
)

func (e *env) usageCommand() *ucli.Command {
	return query[*api.Usage]{
		name:     "usage",
		usage:    "show how much you keep below your save directory, by container, against your quota",
		jsonHelp: "print the usage as JSON",
		flags:    []ucli.Flag{&ucli.StringFlag{Name: "user", Usage: "another `USER`'s (admins only)"}},
		fetchWith: func(c *ucli.Context, cl *client.Client) (*api.Usage, error) {
			return cl.Usage(c.Context, c.String("user"))
		},
		print: printTo(printUsage),
	}.command(e)
}

// printUsage shows the usage by container, its total and the quotas.
func printUsage(w io.Writer, u *api.Usage, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "CONTAINER\tARCHIVES\tSIZE\tNEWEST")
	for _, c := range u.ByContainer {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", c.Container, c.Archives, units.Human(c.Bytes), timestamp(now, c.Newest))
	}
	if u.Store != "" {
		fmt.Fprintf(tw, "(layer store)\t%d\t%s\t\n", u.StoreImages, units.Human(u.StoreBytes))
	}
	fmt.Fprintf(tw, "total\t%d\t%s\t\n", u.Archives, units.Human(u.Bytes))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nbelow %s\n", u.Dir)
	if u.Store != "" {
		fmt.Fprintf(w, "layer store %s: each blob counted once, however many images use it\n", u.Store)
	}
	if q := u.Quota; q != nil {
		fmt.Fprintf(w, "your quota: %s\n", quotaText(u.Archives, u.Bytes, *q))
	}
	for _, g := range u.Groups {
		fmt.Fprintf(w, "group %s below %s: %s\n", g.Group, g.Dir, quotaText(g.Archives, g.Bytes, g.Quota))
	}
	for _, warn := range u.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	return nil
}

// quotaText is usage against a quota: "3 of 20 archives, 1.2 GiB of 500.0 GiB".
func quotaText(archives int, bytes int64, q api.Quota) string {
	n := fmt.Sprintf("%d archives", archives)
	if q.MaxArchives > 0 {
		n = fmt.Sprintf("%d of %d archives", archives, q.MaxArchives)
	}
	b := units.Human(bytes)
	if q.MaxBytes > 0 {
		b = fmt.Sprintf("%s of %s (%d%%)", b, units.Human(q.MaxBytes), bytes*100/q.MaxBytes)
	}
	return n + ", " + b
}

func (e *env) pruneCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "prune",
		Usage: "remove the archives the retention rules do not keep (the site's, and yours in ~/.config/baicommit/retention.toml)",
		Description: "The rules apply to your archives and, apart from them, to the images of your\n" +
			"layer store. The newest archive of each container always stays (and the newest\n" +
			"store image), and so does any archive a restore or a push is reading. A store\n" +
			"image goes at once; the blobs only it used go with --store.\n" +
			"--dry-run says what would go and removes nothing.\n" +
			"With --store, the blobs of your layer store that no image uses go too, safely\n" +
			"while freezes on other nodes write into it: blobs younger than --grace and\n" +
			"blobs a running freeze holds stay.",
		Flags: append([]ucli.Flag{
			&ucli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "only say what would be removed"},
			&ucli.BoolFlag{Name: "json", Usage: "print the result as JSON (with --store: {\"archives\", \"store\"})"},
		}, pruneStoreFlags()...),
		OnUsageError: onUsageError,
		Action: func(c *ucli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			dry := c.Bool("dry-run")
			res, err := cl.Prune(c.Context, dry)
			if err != nil {
				return err
			}
			var gc *layerstore.GCResult
			var store string
			if c.Bool("store") {
				t0 := time.Now()
				if gc, store, err = e.gcStore(c, dry); err != nil {
					return err
				}
				defer func() {
					if !c.Bool("json") {
						e.printGC(c, gc, store, dry, time.Since(t0))
					}
				}()
			}
			if c.Bool("json") {
				if gc != nil {
					return writeJSON(e.stdout, struct {
						Archives *api.PruneResult     `json:"archives"`
						Store    *layerstore.GCResult `json:"store"`
					}{res, gc})
				}
				return writeJSON(e.stdout, res)
			}
			verb := "removed"
			if res.DryRun {
				verb = "would remove"
			}
			for _, r := range res.Removed {
				fmt.Fprintf(e.stdout, "%s %s (%s, %s)\n", verb, r.Path, r.SourceContainer, r.Created.Local().Format("2006-01-02 15:04"))
			}
			fmt.Fprintf(e.stdout, "%s %d archives (%s); %d kept\n", verb, len(res.Removed), units.Human(res.Freed), res.Kept)
			if gc == nil && slices.ContainsFunc(res.Removed, func(e api.ArchiveEntry) bool { return e.Format == api.FormatStore }) {
				fmt.Fprintln(e.stdout, "the blobs of the store images removed, where no other image uses them, go with `baicommit prune --store`")
			}
			for _, w := range res.Warnings {
				fmt.Fprintf(e.stderr, "baicommit: warning: %s\n", w)
			}
			return nil
		},
	}
}

func (e *env) printGC(c *ucli.Context, res *layerstore.GCResult, store string, dry bool, took time.Duration) {
	verb := "removed"
	if dry {
		verb = "would remove"
	}
	fmt.Fprintf(e.stdout, "%s %d blob(s) (%s) from the layer store %s in %s\n", verb, res.Removed, units.Human(res.Freed), store, took.Round(time.Millisecond))
	if res.Young+res.Held > 0 {
		fmt.Fprintf(e.stdout, "kept %d unused blob(s) younger than %s and %d a running freeze uses\n", res.Young, c.Duration("grace"), res.Held)
	}
}

func (e *env) rmCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "rm",
		Usage: "remove archives of yours, with their sidecars, and images of your layer store",
		Description: "An archive goes with its sidecar, through the agent, and only if it is yours\n" +
			"and nobody reads it. A layer store image (its path, or its name in your store)\n" +
			"goes at once; the blobs it alone used go with `baicommit prune --store`.",
		ArgsUsage:    "ARCHIVE|STORE-IMAGE...",
		Flags:        []ucli.Flag{&ucli.BoolFlag{Name: "json", Usage: "print the result as JSON"}, storeFlag()},
		OnUsageError: onUsageError,
		Action: func(c *ucli.Context) error {
			if !c.Args().Present() {
				return usageErrorf("rm", "name the archives to remove (see baicommit list)")
			}
			var paths, images []string
			for _, p := range c.Args().Slice() {
				if img, ok := storeImagePath(c, p); ok {
					images = append(images, img)
					continue
				}
				abs, err := filepath.Abs(p)
				if err != nil {
					return err
				}
				paths = append(paths, abs)
			}
			res := &api.RemoveResult{Removed: []string{}}
			if len(paths) > 0 {
				cl, err := newClient(c)
				if err != nil {
					return err
				}
				if res, err = cl.RemoveArchives(c.Context, paths); err != nil {
					return err
				}
			}
			for _, img := range images {
				if err := removeStoreImage(img); err != nil {
					return err
				}
				res.Removed = append(res.Removed, img)
			}
			if c.Bool("json") {
				return writeJSON(e.stdout, res)
			}
			for _, p := range res.Removed {
				fmt.Fprintf(e.stdout, "removed %s\n", p)
			}
			fmt.Fprintf(e.stdout, "freed %s", units.Human(res.Freed))
			if len(images) > 0 {
				fmt.Fprint(e.stdout, " (and what the store images alone used, with `baicommit prune --store`)")
			}
			fmt.Fprintln(e.stdout)
			return nil
		},
	}
}
