package cli

import (
	"context"
	"io"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/client"
)

// query describes a read-only command: fetch something from the agent,
// print it as a table, or as JSON with --json.
type query[T any] struct {
	name     string
	aliases  []string
	usage    string
	jsonHelp string
	fetch    func(*client.Client, context.Context) (T, error)
	print    func(e *env, cl *client.Client, v T) error
	// flags and fetchWith, when set, add flags that fetchWith reads.
	flags     []ucli.Flag
	fetchWith func(*ucli.Context, *client.Client) (T, error)
}

func (q query[T]) command(e *env) *ucli.Command {
	return &ucli.Command{
		Name:         q.name,
		Aliases:      q.aliases,
		Usage:        q.usage,
		Flags:        append([]ucli.Flag{&ucli.BoolFlag{Name: "json", Usage: q.jsonHelp}}, q.flags...),
		OnUsageError: onUsageError,
		Action: func(c *ucli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			var v T
			if q.fetchWith != nil {
				v, err = q.fetchWith(c, cl)
			} else {
				v, err = q.fetch(cl, c.Context)
			}
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(e.stdout, v)
			}
			return q.print(e, cl, v)
		},
	}
}

// printTo adapts a table printer that needs only the writer and the time.
func printTo[T any](f func(io.Writer, T, time.Time) error) func(*env, *client.Client, T) error {
	return func(e *env, _ *client.Client, v T) error { return f(e.stdout, v, e.now()) }
}
