// Package cli is the baicommit command line: it starts freezes of rootless
// Podman containers through the node agent and reports on them. All output
// goes to the writers Run is given, so the commands can be tested without a
// terminal.
package cli

import (
	"context"
	"io"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/client"
	"github.com/baicommit/baicommit/internal/version"
)

// EnvAgent names the environment variable that overrides the agent address.
const EnvAgent = "BAICOMMIT_AGENT"

// Run runs the baicommit command line with args (args[0] is the program
// name) and returns the process exit code: 0 on success, 1 on errors and
// failed freezes, 2 on usage errors, 130 when interrupted while waiting.
// ctx ends any waiting (cancel it on SIGINT/SIGTERM); a freeze already
// started keeps running in the agent.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := newEnv(stdout, stderr)
	return e.run(ctx, args)
}

// run is Run with a prepared environment, which tests adjust.
func (e *env) run(ctx context.Context, args []string) int {
	err := e.app().RunContext(ctx, args)
	return e.report(err)
}

// app builds the urfave/cli application. A new one per run, because
// urfave/cli mutates the App and its commands while running.
func (e *env) app() *ucli.App {
	return &ucli.App{
		Name:    "baicommit",
		Usage:   "freeze rootless Podman containers into docker-archive .tar.gz files",
		Version: version.Version,
		Description: "baicommit asks the node's baicommit agent to commit one of your containers\n" +
			"and export it as a compressed docker-archive you can load elsewhere\n" +
			"(podman load -i FILE). The agent runs as root, finds the container in your\n" +
			"rootless Podman and writes the archive where the site configured it.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{
				Name:    "agent",
				Usage:   "agent address: unix:///path/to.sock, an absolute socket path or http://host:port",
				EnvVars: []string{EnvAgent},
				Value:   client.DefaultAddr,
			},
			&ucli.StringFlag{
				Name:    "manager",
				Usage:   "baicommit-manager `URL` (http(s)://host:port); default from " + DefaultClientConfig + "; without one, the node's agent is asked",
				EnvVars: []string{EnvManager},
			},
			&ucli.StringFlag{
				Name:    "ca",
				Usage:   "PEM `FILE` of the CA that signed an https manager's certificate (default: the system's, or ca in " + DefaultClientConfig + ")",
				EnvVars: []string{"BAICOMMIT_CA"},
			},
		},
		Commands: []*ucli.Command{
			e.commitCommand(),
			e.statusCommand(),
			e.listCommand(),
			e.sessionsCommand(),
			e.versionCommand(),
			e.nodesCommand(),
			e.pushCommand(),
			e.restoreCommand(),
			e.webCommand(),
			e.usageCommand(),
			e.pruneCommand(),
			e.rmCommand(),
			e.exportCommand(),
		},
		// Without an action urfave/cli treats an unknown command as a help
		// topic ("No help topic for …", exit 3); say what is wrong instead.
		Action: func(c *ucli.Context) error {
			if c.Args().Present() {
				return usageErrorf("", "unknown command %q", c.Args().First())
			}
			return ucli.ShowAppHelp(c)
		},
		OnUsageError:         onUsageError,
		Writer:               e.stdout,
		ErrWriter:            e.stderr,
		EnableBashCompletion: true,
		// --before "a, b" is one command, not two.
		DisableSliceFlagSeparator: true,
		// urfave/cli would call os.Exit on errors; Run maps them to exit
		// codes itself so that it stays testable.
		ExitErrHandler: func(*ucli.Context, error) {},
	}
}

// onUsageError turns flag parsing errors into usage errors (exit 2) instead
// of urfave/cli's "Incorrect Usage" plus the whole help text.
func onUsageError(c *ucli.Context, err error, isSubcommand bool) error {
	cmd := ""
	if isSubcommand && c.Command != nil {
		cmd = c.Command.Name
	}
	return &usageError{cmd: cmd, msg: err.Error()}
}
