// Package cliapp runs the daemons' command lines (baicommit-agent,
// baicommit-manager, baicommit-epilog) the way the baicommit CLI runs its
// own, with urfave/cli: --help and -h print the usage and exit 0,
// --version prints the version, a mistake on the command line prints what
// is wrong and the usage and exits 2, any other failure exits 1.
package cliapp

import (
	"context"
	"errors"
	"fmt"
	"io"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/internal/version"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// UsageError is a mistake on the command line.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// New returns an app named name with the settings every daemon shares:
// the build's version, output to stdout and stderr, usage errors instead
// of urfave/cli's exits.
func New(name, usage string, stdout, stderr io.Writer) *ucli.App {
	return &ucli.App{
		Name:      name,
		Usage:     usage,
		Version:   version.Version,
		Writer:    stdout,
		ErrWriter: stderr,
		OnUsageError: func(_ *ucli.Context, err error, _ bool) error {
			return &UsageError{Msg: err.Error()}
		},
		// urfave/cli would call os.Exit on errors; Run maps them itself.
		ExitErrHandler:  func(*ucli.Context, error) {},
		HideHelpCommand: true,
	}
}

// Run runs app with args (args[0] is the program name) and returns the
// exit code. Errors are printed as "NAME: error" on the app's ErrWriter; a
// usage error is followed by the usage.
func Run(ctx context.Context, app *ucli.App, args []string) int {
	err := app.RunContext(ctx, args)
	if err == nil {
		return ExitOK
	}
	var usage *UsageError
	var coder ucli.ExitCoder
	if errors.As(err, &usage) || errors.As(err, &coder) {
		fmt.Fprintf(app.ErrWriter, "%s: %s\n\n", app.Name, err)
		// The usage goes where the error went: a script that captures
		// stderr sees both.
		app.Writer = app.ErrWriter
		_ = ucli.ShowAppHelp(ucli.NewContext(app, nil, nil))
		return ExitUsage
	}
	fmt.Fprintf(app.ErrWriter, "%s: %s\n", app.Name, err)
	return ExitError
}

// NoArgs is an Action wrapper that refuses positional arguments.
func NoArgs(action ucli.ActionFunc) ucli.ActionFunc {
	return func(c *ucli.Context) error {
		if c.Args().Present() {
			return Usagef("unexpected argument %q", c.Args().First())
		}
		return action(c)
	}
}
