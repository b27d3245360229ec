package cli

import (
	"context"
	"errors"
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/client"
)

// Exit codes.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitInterrupted = 130 // what shells report for SIGINT
)

// usageError is a mistake on the command line; it exits 2 and points at the
// command's help.
type usageError struct {
	cmd string // subcommand, "" for the app
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usageErrorf(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// exitStatus ends the program with a code after the command already printed
// what there was to say (e.g. a failed freeze).
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// report prints err for the user and returns the exit code for it.
func (e *env) report(err error) int {
	if err == nil {
		return exitOK
	}
	var (
		status exitStatus
		usage  *usageError
		apiErr *client.APIError
		coder  ucli.ExitCoder
	)
	switch {
	case errors.As(err, &status):
		return int(status)
	case errors.As(err, &usage):
		help := "baicommit --help"
		if usage.cmd != "" {
			help = "baicommit " + usage.cmd + " --help"
		}
		fmt.Fprintf(e.stderr, "baicommit: %s\nRun '%s' for usage.\n", usage.msg, help)
		return exitUsage
	case errors.As(err, &apiErr):
		// The agent's messages are written for users: pass them through.
		fmt.Fprintf(e.stderr, "baicommit: %s\n", apiErr.Message)
		if apiErr.Task != "" {
			fmt.Fprintf(e.stderr, "baicommit: the freeze already running is task %s; follow it with: baicommit status %s\n", apiErr.Task, apiErr.Task)
		}
		return exitError
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(e.stderr, "baicommit: interrupted")
		return exitInterrupted
	case errors.As(err, &coder):
		// Only urfave/cli itself exits this way, on usage mistakes such as
		// `baicommit help nosuchcommand` (its own code for that is 3).
		fmt.Fprintf(e.stderr, "baicommit: %s\nRun 'baicommit --help' for usage.\n", err)
		return exitUsage
	default:
		fmt.Fprintf(e.stderr, "baicommit: %s\n", err)
		return exitError
	}
}
