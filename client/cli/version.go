package cli

import (
	"fmt"

	ucli "github.com/urfave/cli/v2"
)

func (e *env) versionCommand() *ucli.Command {
	return &ucli.Command{
		Name:         "version",
		Usage:        "show the CLI's and the agent's versions, and who the agent thinks you are",
		Flags:        []ucli.Flag{&ucli.BoolFlag{Name: "json", Usage: "print the agent's answer as JSON"}},
		OnUsageError: onUsageError,
		Action: func(c *ucli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			v, err := cl.Version(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(e.stdout, v)
			}
			tw := newTable(e.stdout)
			fmt.Fprintf(tw, "Client:\t%s\n", Version)
			fmt.Fprintf(tw, "Agent:\t%s (API %s) at %s\n", v.Version, v.API, cl.Addr())
			fmt.Fprintf(tw, "Node:\t%s, %d freezes running\n", v.Node, v.Running)
			caller := fmt.Sprintf("uid %d", v.CallerUID)
			if v.CallerName != "" {
				caller = fmt.Sprintf("%s (uid %d)", v.CallerName, v.CallerUID)
			}
			fmt.Fprintf(tw, "You:\t%s\n", caller)
			return tw.Flush()
		},
	}
}
