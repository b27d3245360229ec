package cli

import (
	"fmt"
	"io"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/client"
)

func (e *env) sessionsCommand() *ucli.Command {
	return query[[]api.Session]{
		name: "sessions", aliases: []string{"ps"},
		usage:    "list your containers on this node, the ones commit can freeze",
		jsonHelp: "print the sessions as a JSON array",
		fetch:    (*client.Client).Sessions,
		print:    printTo(printSessions),
	}.command(e)
}

// printSessions prints containers as a table, like podman ps.
func printSessions(w io.Writer, ss []api.Session, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tIMAGE\tTASK\tCREATED")
	for _, s := range ss {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n",
			shortID(s.ID), orDash(s.Name), orDash(s.State), orDash(s.Image), orDash(s.Task), ago(now, s.Created))
	}
	return tw.Flush()
}
