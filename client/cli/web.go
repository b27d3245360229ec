package cli

import (
	"fmt"
	"io"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/client"
)

func (e *env) webCommand() *ucli.Command {
	return query[*api.WebLink]{
		name:     "web",
		usage:    "print a login link for the web page, where your sessions have a Commit button",
		jsonHelp: `print {"url", "user", "expires"} as JSON`,
		fetchWith: func(c *ucli.Context, cl *client.Client) (*api.WebLink, error) {
			if err := managerOnly(c, "web", "the web page is served by baicommit-manager"); err != nil {
				return nil, err
			}
			return cl.WebLink(c.Context)
		},
		print: printTo(printWebLink),
	}.command(e)
}

func printWebLink(w io.Writer, l *api.WebLink, now time.Time) error {
	_, err := fmt.Fprintf(w, "Open this link in your browser to sign in as %s (it works once, for %s):\n\n  %s\n\n"+
		"Keep it to yourself: whoever opens it first is signed in as you.\n",
		l.User, l.Expires.Sub(now).Round(time.Second), l.URL)
	return err
}
