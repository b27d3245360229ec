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
		usage:    "list your containers (on this node, or with --manager where your jobs run), the ones commit can freeze",
		jsonHelp: "print the sessions as a JSON array",
		flags: []ucli.Flag{
			&ucli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "list the sessions of `USER` (needs the right to)"},
			&ucli.StringFlag{Name: "node", Usage: "with --manager: look on `NODE`"},
			&ucli.StringFlag{Name: "job", Usage: "with --manager: look on the nodes of Slurm job `JOBID`"},
		},
		fetchWith: func(c *ucli.Context, cl *client.Client) ([]api.Session, error) {
			if err := needManager(c, "node", "job"); err != nil {
				return nil, err
			}
			return cl.SessionsOf(c.Context, client.SessionQuery{User: c.String("user"), Node: c.String("node"), Job: c.String("job")})
		},
		print: printTo(printSessions),
	}.command(e)
}

// printSessions prints containers as a table, like podman ps.
func printSessions(w io.Writer, ss []api.Session, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tIMAGE\tNODE\tJOB\tTASK\tCREATED")
	for _, s := range ss {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			shortID(s.ID), orDash(s.Name), orDash(s.State), orDash(s.Image), orDash(s.Node), orDash(s.Job), orDash(s.Task), ago(now, s.Created))
	}
	return tw.Flush()
}
