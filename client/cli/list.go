package cli

import (
	"fmt"
	"io"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/api"
)

// errorWidth caps error messages in the task table; status shows them whole.
const errorWidth = 60

// printTasks prints tasks as a table.
func printTasks(w io.Writer, ts []api.Task, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tSTATE\tCONTAINER\tIMAGE\tARCHIVE/ERROR\tCREATED")
	for i := range ts {
		t := &ts[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n",
			t.ID, shortState(t), t.Container, orDash(t.Image), outcome(t), ago(now, t.Created))
	}
	return tw.Flush()
}

// outcome is the ARCHIVE/ERROR cell: where the archive is, or why there is
// none.
func outcome(t *api.Task) string {
	switch {
	case t.Archive != nil && t.Archive.Path != "":
		return t.Archive.Path
	case t.Store != nil:
		return t.Store.Path
	case t.Error != "":
		return "error: " + oneLine(t.Error, errorWidth)
	default:
		return "-"
	}
}

// noArgs rejects positional arguments for commands that take none.
func noArgs(c *ucli.Context) error {
	if c.Args().Present() {
		return usageErrorf(c.Command.Name, "%s takes no arguments, got %q", c.Command.Name, c.Args().First())
	}
	return nil
}
