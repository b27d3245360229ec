package cli

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/baicommit/baicommit/internal/units"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/client"
	"github.com/baicommit/baicommit/internal/archives"
)

// EnvDir names the environment variable that overrides where list looks
// for archives.
const EnvDir = "BAICOMMIT_DIR"

// listOutput is what `list --json` prints.
type listOutput struct {
	Tasks    []api.Task       `json:"tasks"`
	Archives []archives.Entry `json:"archives"`
}

func (e *env) listCommand() *ucli.Command {
	return &ucli.Command{
		Name:    "list",
		Aliases: []string{"ls"},
		Usage:   "list your freezes in progress and your archives, newest first",
		Description: "Shows the agent's running and failed freezes, then the archives found through\n" +
			"their sidecars below DIR: by default your save directory, as the agent\n" +
			"reports it. On a login node without an agent, give --dir (or " + EnvDir + ").",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "json", Usage: `print {"tasks": [...], "archives": [...]} as JSON`},
			&ucli.StringFlag{Name: "dir", EnvVars: []string{EnvDir}, Usage: "look for archives below `DIR`"},
			storeFlag(),
		},
		OnUsageError: onUsageError,
		Action:       e.list,
	}
}

func (e *env) list(c *ucli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	ctx := c.Context
	dir := c.String("dir")
	out := listOutput{Tasks: []api.Task{}, Archives: []archives.Entry{}}
	tasks, terr := cl.Tasks(ctx)
	if terr != nil {
		var unreachable *client.UnreachableError
		if dir == "" || !errors.As(terr, &unreachable) {
			return terr
		}
		// A login node has archives but no agent.
		fmt.Fprintf(e.stderr, "baicommit: warning: %v; listing the archives only\n", terr)
	} else {
		out.Tasks = tasks
	}
	explicit := dir != ""
	store := c.String("store")
	if terr == nil && (dir == "" || store == "") {
		if v, err := cl.Version(ctx); err == nil {
			dir = cmp.Or(dir, v.SaveDir)
			store = cmp.Or(store, v.StoreDir)
		}
	}
	if dir != "" {
		owner := os.Geteuid()
		if owner == 0 {
			owner = archives.Anyone
		}
		found, warnings, err := archives.List(ctx, dir, owner)
		switch {
		case err == nil:
			out.Archives = found
		case !explicit && errors.Is(err, fs.ErrNotExist):
			// Nothing frozen yet.
		default:
			return err
		}
		for _, w := range warnings {
			fmt.Fprintf(e.stderr, "baicommit: warning: %s\n", w)
		}
	}
	if store != "" {
		// The layer store's images, beside the archives.
		found, warnings, err := storeEntries(ctx, store)
		if err != nil {
			return err
		}
		out.Archives = mergeEntries(out.Archives, found)
		for _, w := range warnings {
			fmt.Fprintf(e.stderr, "baicommit: warning: %s\n", w)
		}
	}
	if c.Bool("json") {
		return writeJSON(e.stdout, out)
	}
	return printList(e.stdout, out, dir, e.now())
}

// printList prints the freezes not yet (or never) turned into archives,
// then the archives.
func printList(w io.Writer, out listOutput, dir string, now time.Time) error {
	var open []api.Task
	for _, t := range out.Tasks {
		if t.State != api.StateSucceeded {
			open = append(open, t)
		}
	}
	if len(open) > 0 {
		if err := printTasks(w, open, now); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	if len(out.Archives) == 0 {
		if dir == "" {
			fmt.Fprintln(w, "No archive directory known: give --dir DIR.")
		} else {
			fmt.Fprintf(w, "No archives in %s.\n", dir)
		}
		return nil
	}
	return printArchives(w, out.Archives, now)
}

// printArchives prints archives as a table, newest first.
func printArchives(w io.Writer, es []archives.Entry, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "CREATED\tSIZE\tSOURCE\tJOB\tTASK\tPUSHED TO\tPATH")
	for i := range es {
		a := &es[i]
		pushed := "-"
		if p := a.LastPush(); p != nil {
			pushed = p.Ref
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			ago(now, a.Created), units.Human(a.Size), orDash(a.SourceContainer), orDash(a.Job), orDash(a.Task), pushed, a.Path)
	}
	return tw.Flush()
}
