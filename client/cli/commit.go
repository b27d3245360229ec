package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/baicommit/baicommit/internal/units"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/client"
	"github.com/baicommit/baicommit/internal/argv"
)

func (e *env) commitCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "commit",
		Usage:     "freeze a container into an image archive (.tar.gz)",
		ArgsUsage: "CONTAINER",
		Description: "Starts a freeze of CONTAINER (a name or id from 'baicommit sessions') and\n" +
			"prints the task id. With --wait, follows the freeze to the end and prints\n" +
			"the archive's path, size and sha256; the exit code is 1 if it failed.",
		Flags: append([]ucli.Flag{
			&ucli.BoolFlag{Name: "wait", Aliases: []string{"w"}, Usage: "follow the freeze until it ends"},
			&ucli.BoolFlag{Name: "json", Usage: "print the task (the final one with --wait) as JSON"},
			&ucli.StringFlag{Name: "tag", Aliases: []string{"t"}, Usage: "name the frozen image `NAME:TAG` (default localhost/baicommit/CONTAINER:TIMESTAMP)"},
			&ucli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "freeze a container of `USER` (name or uid; needs the right to)"},
			&ucli.StringFlag{Name: "job", Usage: "the Slurm `JOBID` the container belongs to (with --manager, also where it runs)"},
			&ucli.StringFlag{Name: "node", Usage: "with --manager: the `NODE` the container runs on"},
			&ucli.StringFlag{Name: "push", Usage: "then push the image to `REF` (REGISTRY/NAME[:TAG]) with your credentials"},
			&ucli.StringSliceFlag{Name: "before", Usage: "first run `COMMAND` in the session (e.g. 'conda clean -afy'; split as a shell would, run without one); repeatable"},
			&ucli.StringSliceFlag{Name: "exclude", Usage: "leave the container path `GLOB` (and what is below it) out of the freeze; repeatable; also from ~/.config/baicommit/exclude"},
			formatFlag(),
		}, registryFlags()...),
		OnUsageError: onUsageError,
		Action:       e.commit,
	}
}

func (e *env) commit(c *ucli.Context) error {
	name, err := oneArg(c, "CONTAINER")
	if err != nil {
		return err
	}
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	push, err := commitPush(c)
	if err != nil {
		return err
	}
	for _, b := range c.StringSlice("before") {
		if _, err := argv.Split("--before", b); err != nil {
			return usageErrorf("commit", "%v", err)
		}
	}
	for _, p := range c.StringSlice("exclude") {
		if _, err := path.Match(p, "/"); err != nil || !strings.HasPrefix(p, "/") {
			return usageErrorf("commit", "--exclude %q: give an absolute glob of container paths, like /root/.cache", p)
		}
	}
	ctx := c.Context
	t, err := cl.Freeze(ctx, api.FreezeRequest{
		Container: name,
		User:      c.String("user"),
		Image:     c.String("tag"),
		Job:       c.String("job"),
		Node:      c.String("node"),
		Push:      push,
		Before:    c.StringSlice("before"),
		Exclude:   c.StringSlice("exclude"),
		Format:    c.String("format"),
	})
	if err != nil {
		return err
	}
	asJSON := c.Bool("json")
	if !c.Bool("wait") {
		if asJSON {
			return writeJSON(e.stdout, t)
		}
		// Only the id on stdout, so `id=$(baicommit commit box)` works.
		fmt.Fprintln(e.stdout, t.ID)
		fmt.Fprintf(e.stderr, "Freezing %s in the background; follow it with: baicommit status %s\n", t.Container, t.ID)
		return nil
	}

	final, err := e.follow(ctx, cl, t, asJSON)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			// Interrupting the CLI does not stop the agent.
			fmt.Fprintf(e.stderr, "baicommit: stopped waiting; the freeze goes on: baicommit status %s\n", t.ID)
			return exitStatus(exitInterrupted)
		}
		return fmt.Errorf("following task %s: %w", t.ID, err)
	}
	if asJSON {
		if err := writeJSON(e.stdout, final); err != nil {
			return err
		}
	} else if final.State == api.StateSucceeded {
		printResult(e.stdout, final)
	}
	if final.State == api.StateFailed {
		printFailure(e.stderr, final, !asJSON)
		return exitStatus(exitError)
	}
	if p := final.Push; p != nil && p.State == api.PushFailed {
		fmt.Fprintf(e.stderr, "baicommit: the archive is complete, but pushing it to %s failed: %s\n", p.Ref, p.Error)
		return exitStatus(exitError)
	}
	return nil
}

// follow waits for the task to end, showing progress on stderr: a redrawn
// bar on a terminal, a line per phase elsewhere. With --json the plain lines
// are left out, so a script capturing both streams gets only the JSON.
func (e *env) follow(ctx context.Context, cl *client.Client, t *api.Task, asJSON bool) (*api.Task, error) {
	var show func(*api.Task)
	switch {
	case e.tty:
		b := &progressBar{w: e.stderr, width: e.width, now: e.now}
		defer b.clear()
		show = b.update
	case !asJSON:
		show = (&phaseLog{w: e.stderr, now: e.now}).update
	}
	if show != nil {
		show(t)
	}
	return cl.Wait(ctx, t.ID, e.poll, show)
}

// printResult describes a successful freeze.
func printResult(w io.Writer, t *api.Task) {
	path := "(no archive reported)"
	switch {
	case t.Archive != nil:
		path = t.Archive.Path
	case t.Store != nil:
		path = t.Store.Path
	}
	fmt.Fprintf(w, "Froze %s into %s\n", t.Container, path)
	tw := newTable(w)
	fmt.Fprintf(tw, "  image:\t%s\n", t.Image)
	printStoreResult(tw, t)
	if a := t.Archive; a != nil {
		if a.Size > 0 {
			fmt.Fprintf(tw, "  size:\t%s\n", sizeText(a))
		}
		if a.SHA256 != "" {
			fmt.Fprintf(tw, "  sha256:\t%s\n", a.SHA256)
		}
	}
	if p := t.Push; p != nil && p.State == api.PushSucceeded {
		fmt.Fprintf(tw, "  pushed:\t%s\n", p.Ref)
		fmt.Fprintf(tw, "  digest:\t%s\n", p.Digest)
	}
	if t.Durations.Total > 0 {
		fmt.Fprintf(tw, "  took:\t%s\n", seconds(t.Durations.Total))
	}
	tw.Flush()
	for _, warn := range t.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
}

// printFailure explains a failed freeze on stderr. Warnings often say why,
// so they come first; with --json they are in the JSON already.
func printFailure(w io.Writer, t *api.Task, warnings bool) {
	if warnings {
		for _, warn := range t.Warnings {
			fmt.Fprintf(w, "baicommit: warning: %s\n", warn)
		}
	}
	msg := t.Error
	if msg == "" {
		msg = "the agent gave no reason"
	}
	fmt.Fprintf(w, "baicommit: freezing %s failed (task %s): %s\n", t.Container, t.ID, msg)
}

// sizeText is an archive's size, with the uncompressed size when known.
func sizeText(a *api.Archive) string {
	s := units.Human(a.Size)
	if a.Uncompressed > 0 {
		s += fmt.Sprintf(" (%s uncompressed)", units.Human(a.Uncompressed))
	}
	return s
}

// oneArg returns the single positional argument a command takes, or a
// usage error that says what is missing or extra.
func oneArg(c *ucli.Context, what string) (string, error) {
	cmd := c.Command.Name
	args := c.Args().Slice()
	switch {
	case len(args) == 0 || args[0] == "":
		return "", usageErrorf(cmd, "%s needs a %s argument", cmd, what)
	case len(args) > 1 && strings.HasPrefix(args[1], "-"):
		// urfave/cli stops parsing flags at the first argument.
		return "", usageErrorf(cmd, "flags go before %s: baicommit %s %s %s", what, cmd, strings.Join(args[1:], " "), args[0])
	case len(args) > 1:
		return "", usageErrorf(cmd, "%s takes one %s, got %d arguments: %s", cmd, what, len(args), strings.Join(args, " "))
	}
	return args[0], nil
}
