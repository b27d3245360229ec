package cli

import (
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/client"
	"github.com/baicommit/baicommit/internal/version"
)

func (e *env) versionCommand() *ucli.Command {
	return query[*api.VersionInfo]{
		name:     "version",
		usage:    "show the CLI's and the agent's versions, and who the agent thinks you are",
		jsonHelp: "print the agent's answer as JSON",
		fetch:    (*client.Client).Version,
		print:    printVersion,
	}.command(e)
}

func printVersion(e *env, cl *client.Client, v *api.VersionInfo) error {
	tw := newTable(e.stdout)
	fmt.Fprintf(tw, "Client:\t%s\n", version.Version)
	fmt.Fprintf(tw, "Agent:\t%s (API %s) at %s\n", v.Version, v.API, cl.Addr())
	fmt.Fprintf(tw, "Node:\t%s, %d freezes running\n", v.Node, v.Running)
	caller := fmt.Sprintf("uid %d", v.CallerUID)
	if v.CallerName != "" {
		caller = fmt.Sprintf("%s (uid %d)", v.CallerName, v.CallerUID)
	}
	fmt.Fprintf(tw, "You:\t%s\n", caller)
	return tw.Flush()
}
