package cli

import (
	"fmt"
	"io"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/api"
)

func (e *env) sessionsCommand() *ucli.Command {
	return &ucli.Command{
		Name:         "sessions",
		Aliases:      []string{"ps"},
		Usage:        "list your containers on this node, the ones commit can freeze",
		Flags:        []ucli.Flag{&ucli.BoolFlag{Name: "json", Usage: "print the sessions as a JSON array"}},
		OnUsageError: onUsageError,
		Action: func(c *ucli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			ss, err := cl.Sessions(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if ss == nil {
					ss = []api.Session{}
				}
				return writeJSON(e.stdout, ss)
			}
			return printSessions(e.stdout, ss, e.now())
		},
	}
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
